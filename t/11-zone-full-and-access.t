#!/usr/bin/perl
# A zone that fills up answers 507 zone_full naming the directive, keeps the
# models it holds answering, and loses nothing stored. /fit/ behind nginx's
# own auth_basic and allow/deny while /predict/ stays open.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series error_ok close_enough);

# htpasswd entry for user "trainer", password "secret" ({PLAIN} scheme).
my $t = AnomalyTest->new(workers => 2, zone_size => '2m', start => 0,
    fit_extra => "auth_basic \"training\"; auth_basic_user_file HTPASSWD; allow 127.0.0.1; deny all;");
{
    open my $fh, '>', $t->dir . '/htpasswd' or die;
    print $fh "trainer:{PLAIN}secret\n";
    close $fh;
    # The same file where a regenerated config looks for it (relative to -p).
    symlink $t->dir . '/htpasswd', $t->dir . '/HTPASSWD' or die;
    my $conf = do { local $/; open my $in, '<', $t->dir . '/nginx.conf' or die; <$in> };
    my $path = $t->dir . '/htpasswd';
    $conf =~ s/HTPASSWD/$path/;
    open my $out, '>', $t->dir . '/nginx.conf' or die;
    print $out $conf;
    close $out;
    $t->start;
}

my ($body, $values) = make_series(20, seed => 5);
my @res = $t->fit('guarded', $body);
error_ok(\@res, 401, 'unauthorized', 'fit without credentials: 401 from auth_basic, as JSON');
my $st;

my $ua = HTTP::Tiny->new(keep_alive => 0);
my $base = 'http://trainer:secret@127.0.0.1:' . $t->port;
my $res = $ua->post("$base/fit/guarded", { headers => { 'Content-Type' => 'application/json' },
                                           content => AnomalyTest::encode_body($body) });
is($res->{status}, 200, 'fit with credentials: 200');
($st) = $t->predict('guarded', { value => 1 });
is($st, 200, 'predict needs no credentials');

# A body over client_max_body_size: nginx's 413, as JSON.
$res = $ua->post("$base/fit/guarded", { headers => { 'Content-Type' => 'application/json' },
                                        content => 'x' x (65 * 1024 * 1024) });
my $big = eval { JSON::PP::decode_json($res->{content}) };
error_ok([$res->{status}, $big, $res->{content}], 413, 'body_too_large', 'oversized fit: 413 body_too_large',
         qr/client_max_body_size/);

# Fill the 2m zone with single-version series until it says zone_full.
my ($ok, $full, $other, $json) = (0, 0, 0, undef);
for my $i (1 .. 20000) {
    $res = $ua->post("$base/fit/fill_$i", { headers => { 'Content-Type' => 'application/json' },
                                            content => AnomalyTest::encode_body($body) });
    if ($res->{status} == 200) { $ok++; next }
    if ($res->{status} == 507) { $full++; $json = $res->{content}; last }
    $other++;
    diag("unexpected $res->{status}: $res->{content}");
    last;
}
ok($ok > 100, "$ok series fitted before the zone filled");
is($full, 1, 'then 507');
is($other, 0, 'and nothing else');
my $j = eval { JSON::PP::decode_json($json // '') };
error_ok([507, $j, $json], 507, 'zone_full', 'zone full: 507 zone_full');
like($j->{detail} // '', qr/anomaly_zone/, 'the detail names the directive to raise');

# Everything stored before keeps answering, the failed fit never became visible.
my $answered = 0;
for my $i (1 .. $ok) {
    my ($s, $p) = $t->predict("fill_$i", { value => $values->[0] });
    $answered++ if $s == 200 && $p->{model_version} eq 'v1';
}
is($answered, $ok, 'every series fitted before the zone filled still answers');
($st) = $t->predict('fill_' . ($ok + 1), { value => 1 });
is($st, 404, 'the refused fit is not visible');
my (undef, $h) = $t->healthcheck;
is($h->{series_trained}, $ok + 1, 'series_trained counts the stored series only');

# After a restart (a fresh zone of the same size) the same versions load again.
$t->stop;
$t->start;
(undef, $h) = $t->healthcheck;
is($h->{series_trained}, $ok + 1, 'after a restart, the stored series are all back');

# A zone too small for the store: what fits is served, and fits are refused,
# since a new version of a series left out could overwrite one on disk.
$t->stop;
$t->{zone_size} = '1m';
$t->write_config;
$t->start;
(undef, $h) = $t->healthcheck;
ok($h->{series_trained} < $ok + 1, "a smaller zone holds $h->{series_trained} of the stored series");
like($h->{store}{error} // '', qr/anomaly_zone/, 'healthcheck says the load stopped and which directive to raise');
($st, $j) = $t->predict('fill_1', { value => $values->[0] });
ok($st == 200 && $j->{model_version} eq 'v1', 'a loaded series answers');
$res = $ua->post("$base/fit/guarded", { headers => { 'Content-Type' => 'application/json' },
                                        content => AnomalyTest::encode_body($body) });
$j = eval { JSON::PP::decode_json($res->{content}) };
error_ok([$res->{status}, $j, $res->{content}], 507, 'zone_full', 'a fit is refused with 507 zone_full',
         qr/Fits are refused.*anomaly_zone/);

# A zone that holds everything, by a reload: a new zone, loaded
# again once the old owner has gone; fits are accepted and numbering continues.
$t->{zone_size} = '4m';
$t->write_config;
$t->reload;
(undef, $h) = $t->healthcheck;
is($h->{series_trained}, $ok + 1, 'after the reload every stored series is back');
$res = $ua->post("$base/fit/guarded", { headers => { 'Content-Type' => 'application/json' },
                                        content => AnomalyTest::encode_body($body) });
$j = eval { JSON::PP::decode_json($res->{content}) };
is($res->{status} == 200 && $j->{version}, 'v2', 'fits are accepted again, numbering continues');

AnomalyTest::done();
