#!/usr/bin/perl
# /plot: an SVG of a version's training data, read through the store owner.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(error_ok);

my $t = AnomalyTest->new(workers => 2);

# 100 points around 50 with three spikes far outside the 3-sigma band.
my @ts = map { 1700000000 + 3600 * $_ } 0 .. 99;
my @vs = map { 50 + ($_ % 7) - 3 } 0 .. 99;
$vs[$_] = 200 for 20, 50, 80;
is(($t->fit('plotted', { timestamps => \@ts, values => \@vs }))[0], 200, 'fit v1');
my @v2 = map { 10 + ($_ % 3) } 0 .. 99;
is(($t->fit('plotted', { timestamps => \@ts, values => \@v2 }))[0], 200, 'fit v2');

sub plot {
    my ($query) = @_;
    return $t->request('GET', "/plot?$query", undef, quiet => 1);
}

for my $round (1 .. 6) {  # fresh connections reach both workers, owner or not
    my ($st, undef, $svg, $h) = plot('series_id=plotted&version=v1');
    is($st, 200, "plot v1 ($round): 200");
    is($h->{'content-type'}, 'image/svg+xml', 'image/svg+xml');
    like($svg, qr{^<\?xml version="1\.0"}, 'an XML document');
    like($svg, qr{<svg xmlns="http://www\.w3\.org/2000/svg".*</svg>\s*$}s, 'one svg element, closed');
    like($svg, qr{>plotted</text>}, 'title names the series');
    like($svg, qr{v1, 100 points, mean [\d.]+, std [\d.]+}, 'title gives version, points, mean, std');
    my @outliers = $svg =~ /class="outlier"/g;
    is(scalar @outliers, 3, 'the three spikes are marked, nothing else');
    like($svg, qr{>11-1[4-9] \d\d:\d\d</text>}, 'readable date labels');
}

my ($st, undef, $svg) = plot('series_id=plotted');
like($svg, qr{v2, 100 points}, 'without version: the latest');
my @outliers = $svg =~ /class="outlier"/g;
is(scalar @outliers, 0, 'v2 has no training point outside its band');

error_ok([plot('series_id=nope')], 404, 'series_not_found', 'unknown series: 404');
error_ok([plot('series_id=plotted&version=v3')], 404, 'version_not_found', 'unknown version: 404');
error_ok([plot('series_id=plotted&version=abc')], 422, 'invalid_version', 'bad version: 422');
error_ok([plot('series_id=a%2Fb')], 400, 'invalid_series_id', 'escaped slash in the id: 400');
error_ok([plot('version=v1')], 400, 'invalid_series_id', 'no series_id: 400');
error_ok([$t->request('POST', '/plot?series_id=plotted', '{}', quiet => 1)], 405, 'method_not_allowed', 'POST: 405');

# A million points still make a small picture.
my $n = 1_000_000;
my $body = '{"timestamps":[' . join(',', map { 1600000000 + 60 * $_ } 0 .. $n - 1)
         . '],"values":[' . join(',', map { ($_ * 7919) % 1000 } 0 .. $n - 1) . ']}';
is(($t->request('POST', '/fit/million', $body))[0], 200, 'fit a million points');
($st, undef, $svg) = plot('series_id=million');
is($st, 200, 'plot of a million points');
ok(length($svg) < 300_000, 'its size is bounded: ' . length($svg) . ' bytes');
like($svg, qr{v1, 1000000 points}, 'title counts every point');

AnomalyTest::done();
