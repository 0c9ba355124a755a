#!/usr/bin/perl
# GET /series (paginated), GET /series/{id}, and /dashboard rendered by
# headless Chromium.

use strict;
use warnings;
use Test::More;
use Compress::Zlib qw(uncompress);
use File::Temp qw(tempdir);
use AnomalyTest qw(make_series mean_std close_enough error_ok);

my $t = AnomalyTest->new(workers => 2);

my %fitted;
for my $i (1 .. 25) {
    my ($body, $values) = make_series(15, seed => $i);
    is(($t->fit("cat_$i", $body))[0], 200, "fit cat_$i") unless $i > 3;
    $t->fit("cat_$i", $body) if $i > 3;
    $fitted{"cat_$i"} = [$values];
}
my ($body2, $values2) = make_series(15, seed => 99);
is(($t->fit('cat_1', $body2))[0], 200, 'cat_1 v2');
push @{$fitted{cat_1}}, $values2;

# Every series exactly once across pages of 10.
my (%seen, $after, $pages);
while (1) {
    my $q = '/series?limit=10' . (defined $after ? "&after=$after" : '');
    my ($st, $j, $raw) = $t->request('GET', $q);
    is($st, 200, "GET $q") or last;
    $pages++;
    ok(@{$j->{series}} <= 10, 'a page holds at most limit series');
    for my $s (@{$j->{series}}) {
        $seen{$s->{series_id}}++;
        my $n = scalar @{$fitted{$s->{series_id}} // []};
        is($s->{latest_version}, "v$n", "$s->{series_id}: latest_version v$n");
        is($s->{versions}, $n, "$s->{series_id}: versions $n");
        like($s->{trained_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'trained_at is ISO 8601 UTC');
    }
    $after = $j->{next_after};
    last unless defined $after;
    last if $pages > 10;
}
is($pages, 3, '25 series in pages of 10: 3 pages');
is_deeply([sort keys %seen], [sort keys %fitted], 'every series listed');
ok(!grep({ $_ != 1 } values %seen), 'each exactly once');

my ($st, $j) = $t->request('GET', '/series/cat_1');
is($st, 200, 'GET /series/cat_1');
is(scalar @{$j->{versions}}, 2, 'two versions');
for my $k (0, 1) {
    my ($mean, $std) = mean_std($fitted{cat_1}[$k]);
    my $v = $j->{versions}[$k];
    is($v->{version}, 'v' . ($k + 1), "version v" . ($k + 1));
    is($v->{points}, 15, 'points');
    ok(close_enough($v->{mean}, $mean, 1e-12) && close_enough($v->{std}, $std, 1e-9), 'mean and std match the data');
}
error_ok([$t->request('GET', '/series/nope')], 404, 'series_not_found', 'unknown series: 404');
error_ok([$t->request('GET', '/series/a%20b')], 400, 'invalid_series_id', 'bad id: 400');
error_ok([$t->request('GET', '/series?limit=0')], 422, 'invalid_limit', 'limit 0: 422');
error_ok([$t->request('GET', '/series?limit=5000')], 422, 'invalid_limit', 'limit 5000: 422');

# The dashboard: one page, nothing fetched from elsewhere.
my (undef, undef, $html, $h) = $t->request('GET', '/dashboard', undef, quiet => 1);
is($h->{'content-type'}, 'text/html; charset=utf-8', 'dashboard is HTML');
unlike($html, qr{(src|href)\s*=\s*["']?(https?:)?//}i, 'no external scripts, styles or fonts');
unlike($html, qr{\@import|url\(}i, 'no imported styles');

my $chromium = -x '/usr/bin/chromium' ? '/usr/bin/chromium' : undef;
ok($chromium, 'Debian chromium is installed (make test installs it)');
SKIP: {
    skip 'no chromium', 6 unless $chromium;
    my $dir = tempdir(CLEANUP => 1);
    my $url = 'http://127.0.0.1:' . $t->port . '/dashboard';
    my @flags = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 "--user-data-dir=$dir/profile", '--window-size=1280,900', '--virtual-time-budget=8000');
    my $dom = `timeout 60 $chromium @flags --dump-dom $url 2>/dev/null`;
    like($dom, qr{<li data-id="cat_1"}, 'the page lists the series (its script ran)');
    like($dom, qr{<img id="plot" [^>]*src="plot\?series_id=cat_\d+&amp;version=v\d"}, 'and shows a plot');
    system("timeout 60 $chromium @flags --screenshot=$dir/shot.png $url >/dev/null 2>&1");
    ok(-s "$dir/shot.png", 'screenshot taken');
    my ($w, $hgt, $colors) = png_colors("$dir/shot.png");
    is("$w x $hgt", '1280 x 900', 'screenshot size');
    ok($colors > 20, "the screenshot is not blank ($colors distinct byte values in its pixels)");
    system("cp $dir/shot.png $ENV{ANOMALY_SCREENSHOT}") if $ENV{ANOMALY_SCREENSHOT};
    pass('screenshot checked');
}

# Width, height and the number of distinct byte values in the raw pixel rows
# (filter bytes dropped): a blank page has one or two.
sub png_colors {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return (0, 0, 0);
    local $/;
    my $png = <$fh>;
    my ($w, $h) = unpack('N N', substr($png, 16, 8));
    my ($pos, $idat) = (8, '');
    while ($pos < length $png) {
        my ($len, $type) = unpack('N a4', substr($png, $pos, 8));
        $idat .= substr($png, $pos + 8, $len) if $type eq 'IDAT';
        $pos += 12 + $len;
    }
    my $raw = uncompress($idat) // return ($w, $h, 0);
    my %distinct;
    my $stride = length($raw) / $h;
    for (my $row = 0; $row < $h; $row += 7) {
        $distinct{$_}++ for unpack('C*', substr($raw, $row * $stride + 1, $stride - 1));
    }
    return ($w, $h, scalar keys %distinct);
}

AnomalyTest::done();
