#!/usr/bin/perl
# /metrics (Prometheus text) and the load figures of /healthcheck.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use AnomalyTest qw(make_series);

my $t = AnomalyTest->new(workers => 2,
    locations => "location = /metrics { anomaly_metrics; }");

sub metrics {
    my ($st, undef, $raw, $h) = $t->request('GET', '/metrics', undef, quiet => 1);
    is($st, 200, 'GET /metrics: 200');
    like($h->{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, 'Prometheus text content type');
    my (%samples, %help, %type);
    for my $line (split /\n/, $raw) {
        if ($line =~ /^# HELP (\S+) \S/) { $help{$1}++; next }
        if ($line =~ /^# TYPE (\S+) (counter|gauge|histogram)$/) { $type{$1}++; next }
        if ($line =~ /^([a-z_]+)(\{[^}]*\})? (\S+)$/) {
            $samples{$1 . ($2 // '')} = $3;
            next;
        }
        fail("unparsable line: $line");
    }
    return (\%samples, \%help, \%type, $raw);
}

my ($s, $help, $type, $raw) = metrics();
for my $family (qw(anomaly_requests_total anomaly_request_duration_seconds anomaly_series
                   anomaly_versions anomaly_zone_bytes anomaly_zone_free_bytes
                   anomaly_store_queue_fits anomaly_store_up anomaly_store_last_write_age_seconds
                   anomaly_anomalies_total anomaly_requests_in_flight)) {
    is($help->{$family}, 1, "HELP once for $family");
    is($type->{$family}, 1, "TYPE once for $family");
}
for my $name (keys %$s) {
    (my $family = $name) =~ s/\{.*//;
    $family =~ s/_(bucket|sum|count)$// if $family =~ /^anomaly_request_duration_seconds/;
    ok($type->{$family}, "sample $name belongs to a declared family");
}
is($s->{anomaly_store_up}, 1, 'store up');
is($s->{anomaly_store_last_write_age_seconds}, -1, 'no write yet');
ok($s->{anomaly_zone_bytes} > $s->{anomaly_zone_free_bytes} && $s->{anomaly_zone_free_bytes} > 0,
   'zone bytes: total > free > 0');

# Traffic: 2 series, 3 versions; predicts with known answers.
for my $i (1 .. 2) {
    my ($body) = make_series(30, seed => $i);
    is(($t->fit("m$i", $body))[0], 200, "fit m$i");
}
is(($t->fit('m1', (make_series(30, seed => 9))[0]))[0], 200, 'fit m1 v2');
my ($ok, $anomalies) = (0, 0);
for my $i (1 .. 40) {
    my $value = $i % 4 == 0 ? 1e6 : 500;  # make_series values sit near 500
    my ($st, $j) = $t->predict('m1', { timestamp => 1700000000, value => $value });
    $ok++ if $st == 200;
    $anomalies++ if $j && $j->{anomaly};
}
is($ok, 40, '40 predicts answered 200');
ok($anomalies >= 10, "some predicts are anomalies ($anomalies)");
is(($t->predict('nope', { value => 1 }))[0], 404, 'predict of an unknown series: 404');
is(($t->request('POST', '/metrics', '{}', quiet => 1))[0], 405, 'POST /metrics: 405');
# Refusals before the body is read count too (not in the latency histogram).
is(($t->request('GET', '/predict/m1', undef, quiet => 1))[0], 405, 'GET /predict: 405');
is(($t->request('POST', '/predict/bad%2Fid', '{"value": 1}', quiet => 1))[0], 400, 'predict with a bad id: 400');
is(($t->request('PUT', '/fit/m1', '{}', quiet => 1))[0], 405, 'PUT /fit: 405');
is(($t->request('POST', '/fit/' . ('x' x 200), '{}', quiet => 1))[0], 400, 'fit with a 200-character id: 400');

sleep 1.1;  # the load windows count whole seconds
($s) = metrics();
is($s->{'anomaly_requests_total{endpoint="predict",status="200"}'}, 40, 'predict 200 count');
is($s->{'anomaly_requests_total{endpoint="predict",status="404"}'}, 1, 'predict 404 count');
is($s->{'anomaly_requests_total{endpoint="fit",status="200"}'}, 3, 'fit 200 count');
is($s->{'anomaly_requests_total{endpoint="predict",status="405"}'}, 1, 'predict 405 count');
is($s->{'anomaly_requests_total{endpoint="predict",status="400"}'}, 1, 'predict 400 count');
is($s->{'anomaly_requests_total{endpoint="fit",status="405"}'}, 1, 'fit 405 count');
is($s->{'anomaly_requests_total{endpoint="fit",status="400"}'}, 1, 'fit 400 count');
is($s->{anomaly_series}, 2, 'series gauge');
is($s->{anomaly_versions}, 3, 'versions gauge');
is($s->{anomaly_anomalies_total}, $anomalies, 'anomalies counter matches the answers');
is($s->{anomaly_requests_in_flight}, 0, 'nothing in flight at rest');
is($s->{anomaly_store_queue_fits}, 0, 'store queue empty');
ok($s->{anomaly_store_last_write_age_seconds} >= 0 && $s->{anomaly_store_last_write_age_seconds} < 30,
   'last durable write is recent');

my $count = $s->{'anomaly_request_duration_seconds_count{endpoint="predict"}'};
is($count, 41, 'histogram count: every predict');
is($s->{'anomaly_request_duration_seconds_bucket{endpoint="predict",le="+Inf"}'}, $count, '+Inf bucket = count');
my @les = map { /le="([^"]+)"/ ? $1 : () } grep { /^anomaly_request_duration_seconds_bucket\{endpoint="predict"/ } keys %$s;
my $prev = -1;
my $monotonic = 1;
for my $le (sort { ($a eq '+Inf' ? 1e99 : $a) <=> ($b eq '+Inf' ? 1e99 : $b) } @les) {
    my $v = $s->{"anomaly_request_duration_seconds_bucket{endpoint=\"predict\",le=\"$le\"}"};
    $monotonic = 0 if $v < $prev;
    $prev = $v;
}
ok($monotonic && @les > 5, 'buckets are cumulative');
ok($s->{'anomaly_request_duration_seconds_sum{endpoint="predict"}'} > 0, 'histogram sum > 0');

# /healthcheck load: every request above fell within the last 10 s.
my (undef, $h) = $t->healthcheck;
my $load = $h->{load};
ok(ref $load eq 'HASH', 'healthcheck has load') or diag(explain($h));
is(sprintf('%.0f', $load->{predict}{rps_10s} * 10), 43, 'predict requests in the last 10 s, refusals included');
is(sprintf('%.0f', $load->{predict}{rps_60s} * 60), 43, 'predict requests in the last 60 s');
is(sprintf('%.0f', $load->{fit}{rps_10s} * 10), 5, 'fit requests in the last 10 s');
is($load->{predict}{in_flight}, 0, 'no predict in flight');
is($load->{fit}{in_flight}, 0, 'no fit in flight');

AnomalyTest::done();
