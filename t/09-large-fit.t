#!/usr/bin/perl
# A million points (about 20 MB of JSON) in one fit, with the body kept in
# memory as conf/nginx.conf does, and again through a temporary file.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(close_enough);

my $t = AnomalyTest->new(workers => 2, fit_extra => 'client_body_buffer_size 64m;',
    locations => 'location /fit-via-file/ { client_max_body_size 64m; client_body_buffer_size 16k; anomaly_fit; }');

my $n = 1_000_000;
my (@ts, @vs);
my ($sum, $sumsq) = (0, 0);
for my $i (0 .. $n - 1) {
    push @ts, 1700000000 + $i;
    my $v = (($i * 7919) % 1000) / 10;   # 0.0 .. 99.9, exact in decimal
    push @vs, $v;
    $sum += $v;
}
my $mean = $sum / $n;
$sumsq += ($_ - $mean) ** 2 for @vs;
my $std = sqrt($sumsq / $n);
my $body = '{"timestamps":[' . join(',', @ts) . '],"values":[' . join(',', @vs) . ']}';
ok(length($body) > 15_000_000, 'body is ' . length($body) . ' bytes');

for my $path ('/fit/big', '/fit-via-file/big') {
    my ($st, $j, $raw) = $t->request('POST', $path, $body);
    is($st, 200, "$path: 200") or diag(substr($raw, 0, 300));
    is($j && $j->{points_used}, $n, "$path: points_used $n");
}
my ($st, $j) = $t->predict('big', { timestamp => 1800000000, value => $mean + 2 * $std }, 'v2');
is($st, 200, 'predict on the 1M-point model');
ok(close_enough($j->{score}, 2, 1e-9), "score 2 at mean + 2 std (got $j->{score})");
ok(!$j->{anomaly}, 'not anomalous at 2 std');

AnomalyTest::done();
