#!/usr/bin/perl
# /plot: an SVG of a version's training data, read through the store owner,
# and of a stream's recent points (?stream=1, or a series with no versions).

use strict;
use warnings;
use Test::More;
use File::Temp ();
use HTTP::Tiny;
use AnomalyTest qw(error_ok);

my $t = AnomalyTest->new(
    workers    => 2,
    http_extra => 'anomaly_stream_detector adaptive;',
    locations  => 'location /observe/ { anomaly_observe; }',
);

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

# Streams: the recent points a stream keeps, drawn on the event loop.
sub observe {
    my ($series, $query, $body) = @_;
    return $t->request('POST', "/observe/$series$query", $body);
}
{
    # 300 points around 50 from a Monday, two spikes once the detector has warmed up.
    my @sts = map { 1700438400 + 60 * $_ } 0 .. 299;
    my @svs = map { 50 + ($_ * 7919 % 11) / 5 } 0 .. 299;
    $svs[$_] += 100 for 250, 280;
    my ($st, $j) = observe('streamed', '?recent=64', { timestamp => $sts[0], value => $svs[0] });
    is($st, 200, 'first observe, keeping 64 recent points');
    ($st, $j) = observe('streamed', '', { timestamps => [@sts[1 .. 299]], values => [@svs[1 .. 299]] });
    is($st, 200, 'observe 299 more');
    my $anomalies = grep { $_ } @{$j->{anomaly} // []};
    my $recent_anomalies = grep { $j->{anomaly}[$_ - 1] } 236 .. 299;  # the last 64 points
    ok($recent_anomalies >= 1, "the spikes are anomalous ($recent_anomalies in the last 64 points)");

    for my $query ('series_id=streamed', 'series_id=streamed&stream=1', 'series_id=streamed&stream=true') {
        my ($pst, undef, $psvg, $h) = plot($query);
        is($pst, 200, "$query: 200");
        is($h->{'content-type'}, 'image/svg+xml', 'image/svg+xml');
        like($psvg, qr{^<\?xml version="1\.0".*<svg xmlns="http://www\.w3\.org/2000/svg".*</svg>\s*$}s,
             'an XML document with one svg element, closed');
        like($psvg, qr{>streamed</text>}, 'title names the series');
        like($psvg, qr{stream, adaptive, 300 points processed; the last 64 shown, (\d+) with anomaly_score \S+ 70},
             'title gives detector, points processed, points shown and the threshold');
        my ($counted) = $psvg =~ /the last 64 shown, (\d+) with/;
        is($counted, $recent_anomalies, 'the anomalous points of the last 64 are counted');
        my @marks = $psvg =~ /class="anomaly"/g;
        is(scalar @marks, $recent_anomalies, 'and marked');
        like($psvg, qr{class="threshold"[^>]*stroke-dasharray}, 'the threshold is a dashed line');
        like($psvg, qr{>11-20 \d\d:\d\d</text>}, 'readable date labels');
    }

    # A stream that keeps no recent points: a picture that says how to keep them.
    ($st) = observe('unkept', '', { timestamp => $sts[0], value => 1 });
    is($st, 200, 'observe a stream that keeps no recent points');
    my ($pst, undef, $psvg, $h) = plot('series_id=unkept');
    is($pst, 200, 'its plot: 200');
    is($h->{'content-type'}, 'image/svg+xml', 'image/svg+xml');
    like($psvg, qr{No recent points are kept}, 'it says none are kept');
    like($psvg, qr{\?recent=N}, 'and how to keep them');

    # A series with versions and a stream: the version by default, the stream on asking.
    ($st) = observe('plotted', '?recent=16', { timestamp => $sts[0], value => 50 });
    is($st, 200, 'a stream beside the versions of plotted');
    (undef, undef, $psvg) = plot('series_id=plotted');
    like($psvg, qr{v2, 100 points}, 'plotted without stream=1: its latest version');
    (undef, undef, $psvg) = plot('series_id=plotted&stream=1');
    like($psvg, qr{stream, adaptive, 1 point processed; the last 1 shown}, 'with stream=1: its stream');
    (undef, undef, $psvg) = plot('series_id=plotted&stream=0');
    like($psvg, qr{v2, 100 points}, 'stream=0: the version');

    error_ok([plot('series_id=nope&stream=1')], 404, 'series_not_found', 'stream=1 of an unknown series: 404');
    error_ok([plot('series_id=streamed&version=v1')], 404, 'version_not_found', 'a version of a stream-only series: 404');
    error_ok([plot('series_id=streamed&stream=yes')], 422, 'invalid_stream', 'stream=yes: 422');

    # The dashboard lists the stream and draws it.
    my (undef, undef, $html) = $t->request('GET', '/dashboard', undef, quiet => 1);
    like($html, qr{&stream=1}, 'the dashboard draws streams');
}

# A million points still make a small picture.
my $n = 1_000_000;
my $body = '{"timestamps":[' . join(',', map { 1600000000 + 60 * $_ } 0 .. $n - 1)
         . '],"values":[' . join(',', map { ($_ * 7919) % 1000 } 0 .. $n - 1) . ']}';
is(($t->request('POST', '/fit/million', $body))[0], 200, 'fit a million points');
($st, undef, $svg) = plot('series_id=million');
is($st, 200, 'plot of a million points');
ok(length($svg) < 300_000, 'its size is bounded: ' . length($svg) . ' bytes');
like($svg, qr{v1, 1000000 points}, 'title counts every point');

# What a plot draws is stored at fit time (a few KB): 200 plots of the
# million-point version at once leave nothing in spool/, and fits go on.
{
    use Time::HiRes qw(time sleep);
    my $port = $t->port;
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my @kids = map {
        my $k = $_;
        AnomalyTest::child(sub {
            my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
            my %count;
            for (1 .. 10) {
                my $res = $ua->get("http://127.0.0.1:$port/plot?series_id=million");
                my $code = $res->{status} == 503 && $res->{content} =~ /server_busy/
                    && ($res->{headers}{'retry-after'} // '') eq '1' ? 'busy' : $res->{status};
                $count{$code}++;
            }
            open my $out, '>', "$dir/$k" or die;
            print $out join(' ', map { "$_=$count{$_}" } sort keys %count), "\n";
        });
    } 1 .. 20;
    my ($spool_files, @fit_seconds) = (0);
    my ($small) = AnomalyTest::make_series(12, seed => 4);
    for (1 .. 5) {
        opendir my $d, $t->store_dir . '/spool' or die;
        my $n = grep { !/^\./ } readdir $d;
        $spool_files = $n if $n > $spool_files;
        my $t0 = time;
        my ($fst) = $t->fit('during_plots', $small);
        push @fit_seconds, sprintf('%.3f', time - $t0) if $fst == 200;
    }
    waitpid $_, 0 for @kids;
    my %total;
    for my $k (1 .. 20) {
        open my $in, '<', "$dir/$k" or next;
        my $line = <$in> // '';
        $total{$1} += $2 while $line =~ /(\w+)=(\d+)/g;
    }
    diag('200 plots at once: ' . join(', ', map { "$_ x$total{$_}" } sort keys %total)
         . '; fits meanwhile took ' . join(' ', @fit_seconds) . ' s');
    is(($total{200} // 0) + ($total{busy} // 0), 200, 'every plot is drawn, or refused 503 server_busy with Retry-After');
    ok(($total{200} // 0) > 0, 'plots were drawn');
    is(scalar @fit_seconds, 5, 'fits made during the plots are acknowledged');
    is($spool_files, 0, 'plots write nothing to spool/');
}

AnomalyTest::done();
