#!/usr/bin/perl
# /healthcheck: fields, types, series_trained, latencies after traffic.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series mean_std json_number_ok raw_field);

my $t = AnomalyTest->new(workers => 2);

sub check_shape {
    my ($j, $raw, $when) = @_;
    ok(ref $j eq 'HASH', "$when: body is a JSON object") or do { diag($raw); return };
    ok(defined $j->{series_trained} && !ref $j->{series_trained}
           && ($j->{series_trained} // '') =~ /^\d+$/
           && (raw_field($raw, 'series_trained') // '') =~ /^\d+$/,
       "$when: series_trained is a JSON integer") or diag($raw);
    for my $kind (qw(inference_latency_ms training_latency_ms)) {
        ok(ref $j->{$kind} eq 'HASH', "$when: $kind is an object") or next;
        for my $f (qw(avg p95)) {
            my $v = $j->{$kind}{$f};
            json_number_ok($v, "$when: $kind.$f is a JSON number");
            ok(defined $v && !ref $v && $v >= 0, "$when: $kind.$f >= 0")
                or diag("$kind.$f = " . ($v // 'undef'));
        }
    }
}

# --- fresh server ------------------------------------------------------------

my ($st, $j, $raw, $h) = $t->healthcheck;
is($st, 200, 'fresh: 200');
like($h->{'content-type'} // '', qr{^application/json}, 'fresh: Content-Type application/json');
check_shape($j, $raw, 'fresh');
is($j && $j->{series_trained}, 0, 'fresh: series_trained 0');

# A healthcheck is neither a fit nor a predict.
($st, $j, $raw) = $t->healthcheck;
ok($j && $j->{inference_latency_ms}{avg} == 0 && $j->{training_latency_ms}{avg} == 0,
   'healthchecks alone record no inference or training latency') or diag($raw);

# --- traffic -----------------------------------------------------------------

my %latest;
my @series = ('alpha', 'beta', 'gamma');
for my $round (1 .. 2) {
    for my $i (0 .. $#series) {
        next if $round == 2 && $i == 2;    # gamma gets a single version
        my ($body, $values) = make_series(100, seed => 10 * $round + $i, base => 50 + $i, spread => 5);
        my ($s, $jj, $r) = $t->fit($series[$i], $body);
        is($s, 200, "fit $series[$i] round $round") or diag($r);
        $latest{$series[$i]} = $values;
    }
    ($st, $j, $raw) = $t->healthcheck;
    is($j && $j->{series_trained}, 3, "series_trained is 3 after round $round (versions do not count twice)")
        or diag($raw);
}

# Rejected fits and failed predicts do not create series.
$t->fit('delta', { timestamps => [1, 2, 3], values => [1, 2, 3] });
$t->fit('epsilon', 'not json');
$t->predict('zeta', { timestamp => '1', value => 1 });
($st, $j, $raw) = $t->healthcheck;
is($j && $j->{series_trained}, 3, 'rejected fits do not count as trained series') or diag($raw);

# Every worker reports the same count (fresh connections spread over workers).
{
    my %counts;
    $counts{ ($t->healthcheck)[1]{series_trained} // 'undef' }++ for 1 .. 10;
    is_deeply([ keys %counts ], [3], '10 healthchecks over fresh connections all say 3')
        or diag(join ' ', %counts);
}

for my $name (@series) {
    my ($mean, $std) = mean_std($latest{$name});
    for my $k (1 .. 20) {
        my ($s) = $t->predict($name, { timestamp => '1800000000', value => $mean + ($k % 5) * $std });
        is($s, 200, "predict $name #$k") if $k == 1 || $s != 200;
    }
}

($st, $j, $raw, $h) = $t->healthcheck;
is($st, 200, 'after traffic: 200');
like($h->{'content-type'} // '', qr{^application/json}, 'after traffic: Content-Type application/json');
check_shape($j, $raw, 'after traffic');
for my $kind (qw(inference_latency_ms training_latency_ms)) {
    for my $f (qw(avg p95)) {
        my $v = $j && ref $j->{$kind} eq 'HASH' ? $j->{$kind}{$f} : undef;
        ok(defined $v && $v > 0, "after traffic: $kind.$f > 0") or diag($raw);
    }
}
# Milliseconds, not seconds or nanoseconds: a fit of 100 points with a synced
# write takes between a microsecond and ten seconds; a predict under a second.
{
    my $tr = $j && $j->{training_latency_ms} ? $j->{training_latency_ms}{avg} // -1 : -1;
    my $in = $j && $j->{inference_latency_ms} ? $j->{inference_latency_ms}{avg} // -1 : -1;
    ok($tr >= 0.001 && $tr < 10_000, "training_latency_ms.avg ($tr) is in milliseconds");
    ok($in > 0 && $in < 1000, "inference_latency_ms.avg ($in) is in milliseconds");
    my $tp = $j && $j->{training_latency_ms} ? $j->{training_latency_ms}{p95} // -1 : -1;
    ok($tp > 0 && $tp < 10_000, "training_latency_ms.p95 ($tp) is in milliseconds");
}

AnomalyTest::done();
