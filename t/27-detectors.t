#!/usr/bin/perl
# Detectors (CONTRACT section 5): each chosen per fit by query, body or
# directive; the answers' new fields; what each is for, on data where it
# matters; parameters and their errors; the catalogue, /healthcheck,
# /metrics, variables and plots per detector; versions surviving a restart.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series error_ok encode_body wait_until);
use POSIX qw(floor);

my $t = AnomalyTest->new(
    workers => 2,
    locations => <<'EOF',
        location /fit-robust/ {
            anomaly_detector robust;
            anomaly_fit;
        }
        location /fit-forest/ {
            anomaly_detector iforest;
            anomaly_iforest_trees 20;
            anomaly_iforest_sample 64;
            anomaly_iforest_contamination 0.05;
            anomaly_fit;
        }
        location /fit-weekly/ {
            anomaly_detector seasonal;
            anomaly_seasonal_season week;
            anomaly_fit;
        }
        location /predict-tagged/ {
            add_header X-Detector $anomaly_detector always;
            add_header X-Anomaly-Score $anomaly_anomaly_score always;
            anomaly_predict;
        }
        location = /metrics { anomaly_metrics; }
EOF
);

my $monday = 1700438400;  # 2023-11-20 00:00:00 UTC

sub post { my ($path, $body) = @_; return $t->request('POST', $path, $body) }
sub predict_at {
    my ($series, $value, $ts, $version) = @_;
    my $q = defined $version ? "?version=$version" : '';
    my @r = post("/predict/$series$q", { timestamp => $ts // $monday, value => $value });
    return @r;
}

# --- three_sigma: the challenge's answer first, unchanged -----------------------
my ($body, $values) = make_series(200, seed => 3, base => 50, spread => 10);
my ($st, $j, $raw) = post('/fit/plain', $body);
is($st, 200, 'a fit without a detector trains three_sigma') or diag($raw);
($st, $j, $raw) = predict_at('plain', 50);
like($raw, qr/^\{"anomaly":false,"model_version":"v1","score":-?[0-9.e-]+,"detector":"three_sigma","anomaly_score":[0-9.e-]+,"expected_value":[-0-9.e]+,"lower":[-0-9.e]+,"upper":[-0-9.e]+\}$/,
     'three_sigma: the challenge\'s three fields first, then detector, anomaly_score and the band');
my $k_edge = $j->{expected_value} + 3 * ($j->{upper} - $j->{expected_value}) / 3;
($st, $j) = predict_at('plain', $k_edge);
ok(abs($j->{anomaly_score} - 70) < 1e-6, "anomaly_score is 70 on the band's edge ($j->{anomaly_score})");
($st, $j) = predict_at('plain', $j->{expected_value});
ok($j->{anomaly_score} < 1e-9, 'anomaly_score is 0 at the mean');

# --- robust: 5% spikes in the training data ------------------------------------
{
    my ($b) = make_series(400, seed => 5, base => 100, spread => 4);
    $b->{values}[$_ * 20] = 1000 for 0 .. 19;
    my ($s1, $j1, $r1) = post('/fit/spiky?detector=three_sigma', $b);
    my ($s2, $j2, $r2) = post('/fit/spiky?detector=robust', $b);
    is("$s1 $s2", '200 200', 'spiky series fitted with three_sigma (v1) and robust (v2)') or diag("$r1 $r2");
    my (undef, $p1) = predict_at('spiky', 130, undef, 'v1');
    my (undef, $p2) = predict_at('spiky', 130, undef, 'v2');
    ok(!$p1->{anomaly} && $p2->{anomaly}, 'an incident at 130: three_sigma misses it, robust flags it');
    is($p2->{detector}, 'robust', 'the answer names the version\'s detector');
    ok(abs($p2->{expected_value} - 100) < 1, "robust's expected value is the median ($p2->{expected_value})");
    my (undef, $p3) = predict_at('spiky', 101, undef, 'v2');
    ok(!$p3->{anomaly}, 'robust: ordinary noise stays normal');
}

# --- seasonal: a daily rhythm ----------------------------------------------------
my (@dt, @dv);
for my $i (0 .. 14 * 288 - 1) {   # two weeks every 5 minutes
    my $ts = $monday + 300 * $i;
    my $hour = ($ts % 86400) / 3600;
    push @dt, $ts;
    push @dv, 0 + sprintf('%.3f', 100 + 80 * sin(($hour - 6) / 24 * 2 * 3.14159265358979) + (($i * 7919) % 13) / 4);
}
my $daily = { timestamps => \@dt, values => \@dv };
($st, $j, $raw) = post('/fit/traffic?detector=seasonal', $daily);
is($st, 200, 'seasonal fit of two weeks of a daily rhythm') or diag($raw);
post('/fit/traffic?detector=three_sigma', $daily);
my $noon = $monday + 15 * 86400 + 12 * 3600;
my $night = $monday + 15 * 86400 + 3 * 3600;
my (undef, $a1) = predict_at('traffic', 180, $noon, 'v1');
my (undef, $a2) = predict_at('traffic', 180, $night, 'v1');
my (undef, $a3) = predict_at('traffic', 180, $night, 'v2');
ok(!$a1->{anomaly} && $a2->{anomaly}, 'seasonal: 180 is normal at noon, anomalous at 3 a.m.');
ok(!$a3->{anomaly}, 'three_sigma cannot tell the hours apart');
ok($a1->{expected_value} > $a2->{expected_value} + 100, 'the seasonal band follows the rhythm');
is($a1->{detector}, 'seasonal', 'detector seasonal');
{
    my (undef, $now) = post('/predict/traffic?version=v1', { value => 100 });
    ok(defined $now->{expected_value}, 'a point without a timestamp is judged at the time it arrives');
}

# --- iforest ---------------------------------------------------------------------
# Weekdays around 100, weekends around 10: 100 on a Sunday fits no band.
{
    my (@t, @v);
    for my $i (0 .. 21 * 48 - 1) {   # three weeks, every 30 minutes
        my $ts = $monday + 1800 * $i;
        my $weekday = (floor($ts / 86400) + 3) % 7;   # Monday 0
        push @t, $ts;
        push @v, ($weekday < 5 ? 100 : 10) + (($i * 7919) % 11) / 5;
    }
    ($st, $j, $raw) = post('/fit/weekly?detector=iforest', { timestamps => \@t, values => \@v });
    is($st, 200, 'iforest fit') or diag($raw);
    my $sunday = $monday + 27 * 86400 + 12 * 3600;
    my $wednesday = $monday + 23 * 86400 + 12 * 3600;
    my (undef, $f1) = predict_at('weekly', 101, $sunday);
    my (undef, $f2) = predict_at('weekly', 101, $wednesday);
    my (undef, $f3) = predict_at('weekly', 11, $sunday);
    ok($f1->{anomaly}, "iforest: a weekday value on a Sunday is anomalous ($f1->{anomaly_score})");
    ok(!$f2->{anomaly} && !$f3->{anomaly}, "iforest: the same value on a Wednesday, and a Sunday value, are not ($f2->{anomaly_score}, $f3->{anomaly_score})");
    is($f1->{detector}, 'iforest', 'detector iforest');
    ok(!exists $f1->{expected_value} && !exists $f1->{lower} && !exists $f1->{upper},
       'iforest answers no band');
    ok($f1->{anomaly_score} > 70 && $f2->{anomaly_score} < 70, 'anomaly_score on either side of 70');
}

# --- choosing: body, directive, query ----------------------------------------------
{
    my ($b) = make_series(100, seed => 9);
    $b->{detector} = 'robust';
    ($st, $j) = post('/fit/by-body', $b);
    my (undef, $p) = predict_at('by-body', 100);
    is($p->{detector}, 'robust', 'the body\'s "detector" chooses');
    ($st, $j) = post('/fit/by-body?detector=seasonal', $b);
    (undef, $p) = predict_at('by-body', 100);
    is($p->{detector}, 'seasonal', 'the query wins over the body');
    delete $b->{detector};
    ($st, $j, $raw) = post('/fit-robust/by-directive', $b);
    is($st, 200, 'fit at a location with anomaly_detector robust') or diag($raw);
    (undef, $p) = predict_at('by-directive', 100);
    is($p->{detector}, 'robust', 'anomaly_detector robust chooses');
    ($st, $j) = post('/fit-robust/by-directive?detector=three_sigma', $b);
    (undef, $p) = predict_at('by-directive', 100);
    is($p->{detector}, 'three_sigma', 'the query wins over the directive');
}

# --- sigma and tail stored with the version -----------------------------------------
{
    my ($b) = make_series(300, seed => 11, base => 0, spread => 10);
    post('/fit/tuned?sigma=2&tail=upper', $b);
    post('/fit/tuned', $b);
    my (undef, $v1) = predict_at('tuned', 0, undef, 'v1');
    my $sd = ($v1->{upper} - $v1->{expected_value}) / 2;
    my (undef, $hi) = predict_at('tuned', $v1->{expected_value} + 2.5 * $sd, undef, 'v1');
    my (undef, $lo) = predict_at('tuned', $v1->{expected_value} - 50 * $sd, undef, 'v1');
    my (undef, $hi2) = predict_at('tuned', $v1->{expected_value} + 2.5 * $sd, undef, 'v2');
    ok($hi->{anomaly} && !$lo->{anomaly}, 'sigma=2&tail=upper stored with v1: +2.5 std anomalous, far below normal');
    ok(!exists $v1->{lower}, 'a one-sided version answers no lower edge');
    ok(!$hi2->{anomaly}, 'v2 without them: the location\'s sigma 3');
    my (undef, $list) = $t->request('GET', '/series/tuned');
    is($list->{versions}[0]{sigma}, 2, '/series shows the stored sigma');
    is($list->{versions}[0]{tail}, 'upper', '/series shows the stored tail');
    ok(!exists $list->{versions}[1]{sigma}, 'and none where the fit gave none');
}

# --- parameter errors, before the body is read -----------------------------------
{
    my ($b) = make_series(50, seed => 12);
    error_ok([post('/fit/bad?detector=prophet', $b)], 422, 'invalid_detector', 'unknown detector: 422 invalid_detector',
             qr/three_sigma, robust, seasonal, iforest/);
    error_ok([post('/fit/bad?sigma=0', $b)], 422, 'invalid_parameter', 'sigma=0: 422 invalid_parameter', qr/sigma/);
    error_ok([post('/fit/bad?detector=iforest&trees=5000', $b)], 422, 'invalid_parameter', 'trees=5000', qr/trees/);
    error_ok([post('/fit/bad?contamination=0.5', $b)], 422, 'invalid_parameter', 'contamination=0.5', qr/below 0\.5/);
    error_ok([post('/fit/bad?season=month', $b)], 422, 'invalid_parameter', 'season=month', qr/day or week/);
    error_ok([post('/fit/bad?sigma=2&sigma=3', $b)], 422, 'invalid_parameter', 'a parameter twice', qr/more than once/);
    $b->{detector} = 7;
    error_ok([post('/fit/bad', $b)], 400, 'malformed_json', '"detector": 7 is malformed', qr/detector/);
    $b->{detector} = 'nope';
    error_ok([post('/fit/bad', $b)], 422, 'invalid_detector', '"detector": "nope"');
    # A refused query costs nothing: the answer comes before a large body is sent.
    my ($big) = make_series(50_000, seed => 13);
    my $t0 = time;
    error_ok([post('/fit/bad?detector=nope', $big)], 422, 'invalid_detector', 'a bad detector with a 1 MB body');
    my (undef, undef, $none_raw) = $t->request('GET', '/series/bad');
    like($none_raw, qr/series_not_found/, 'nothing was stored by the refused fits');
}

# --- the catalogue, /healthcheck, /metrics ----------------------------------------------
{
    my (undef, $v) = $t->request('GET', '/series/spiky');
    is($v->{versions}[0]{detector}, 'three_sigma', '/series/{id}: v1 three_sigma');
    ok(exists $v->{versions}[0]{mean} && exists $v->{versions}[0]{std}, 'three_sigma shows mean and std');
    is($v->{versions}[1]{detector}, 'robust', 'v2 robust');
    ok(exists $v->{versions}[1]{median} && exists $v->{versions}[1]{spread}, 'robust shows median and spread');
    is($v->{versions}[0]{model_bytes}, 64, 'a three_sigma image is 64 bytes');
    my (undef, $w) = $t->request('GET', '/series/weekly');
    is($w->{versions}[0]{trees}, 100, 'iforest shows its trees');
    ok($w->{versions}[0]{model_bytes} > 1000, "an iforest image: $w->{versions}[0]{model_bytes} bytes");
    my (undef, $list) = $t->request('GET', '/series?limit=100');
    my ($weekly) = grep { $_->{series_id} eq 'weekly' } @{$list->{series}};
    is($weekly->{detector}, 'iforest', '/series shows the latest version\'s detector');

    my (undef, $h) = $t->healthcheck;
    my %d = map { $_->{name} => $_ } @{$h->{detectors}};
    is_deeply([sort grep { $d{$_}{kind} eq 'batch' } keys %d], [sort qw(three_sigma robust seasonal iforest)],
              '/healthcheck lists the four batch detectors');
    is_deeply([sort grep { $d{$_}{kind} eq 'stream' } keys %d], [sort qw(adaptive pattern rcf)], 'and the stream detectors');
    is($d{iforest}{kind}, 'batch', 'their kind');
    ok($d{three_sigma}{zone_bytes_per_version} <= 256,
       "three_sigma takes $d{three_sigma}{zone_bytes_per_version} bytes of zone a version (at most 256)");
    ok($d{robust}{predictions} >= 4, "robust predictions counted ($d{robust}{predictions})");
    diag("zone bytes per version: " . join(', ', map { "$_ $d{$_}{zone_bytes_per_version}" } sort keys %d));

    my ($ms, undef, $metrics) = $t->request('GET', '/metrics', undef, quiet => 1);
    like($metrics, qr/^anomaly_predictions_total\{detector="seasonal"\} [1-9]/m, '/metrics counts predictions by detector');
    like($metrics, qr/^anomaly_detector_zone_bytes\{detector="iforest"\} [1-9]/m, '/metrics: zone bytes by detector');
}

# --- variables ----------------------------------------------------------------------
{
    my ($s, $jj, $r, $hd) = post('/predict-tagged/spiky?version=v2', { timestamp => $monday, value => 130 });
    is($hd->{'x-detector'}, 'robust', '$anomaly_detector');
    ok(abs($hd->{'x-anomaly-score'} - $jj->{anomaly_score}) < 1e-9, '$anomaly_anomaly_score is the answer\'s');
}

# --- plots --------------------------------------------------------------------------
{
    my $ua = HTTP::Tiny->new(timeout => 30);
    my $base = "http://127.0.0.1:" . $t->port;
    my $seasonal = $ua->get("$base/plot?series_id=traffic&version=v1");
    is($seasonal->{status}, 200, 'a seasonal plot');
    like($seasonal->{content}, qr/<polygon class="band"/, 'its band is a polygon that follows the season');
    like($seasonal->{content}, qr/seasonal \(hour of the day\)/, 'its title names the detector');
    my $forest = $ua->get("$base/plot?series_id=weekly");
    is($forest->{status}, 200, 'an iforest plot');
    unlike($forest->{content}, qr/class="band"|fill="#dbeafe"/, 'no band for a forest');
    like($forest->{content}, qr/iforest: 100 trees/, 'its title names the forest');
    my $robust = $ua->get("$base/plot?series_id=spiky&version=v2");
    like($robust->{content}, qr/robust: median/, 'a robust plot says median and spread');
    like($robust->{content}, qr/class="outlier"/, 'and marks the spikes it flags');
}

# --- the location's forest parameters, and weekly seasons ------------------------------
{
    my ($b) = make_series(500, seed => 14);
    ($st, $j, $raw) = post('/fit-forest/small-forest', $b);
    is($st, 200, 'fit at a location with anomaly_iforest_*') or diag($raw);
    my (undef, $v) = $t->request('GET', '/series/small-forest');
    is_deeply([@{$v->{versions}[0]}{qw(trees sample contamination)}], [20, 64, 0.05],
              'the directives\' trees, sample and contamination are stored with the version');
    ($st, $j) = post('/fit-forest/small-forest?trees=30', $b);
    (undef, $v) = $t->request('GET', '/series/small-forest');
    is($v->{versions}[1]{trees}, 30, 'the query wins over anomaly_iforest_trees');
    ($st, $j, $raw) = post('/fit-weekly/weekly-season', $daily);
    (undef, $v) = $t->request('GET', '/series/weekly-season');
    is($v->{versions}[0]{season}, 'week', 'anomaly_seasonal_season week');
}

# --- a restart: every detector's versions answer the same from disk --------------------
{
    my @asks = (['spiky', 'v2', 130, $monday], ['traffic', 'v1', 180, $night], ['weekly', 'v1', 101, $monday + 27 * 86400 + 12 * 3600],
                ['plain', 'v1', 61, $monday], ['tuned', 'v1', 25, $monday]);
    my @before = map { [ (predict_at($_->[0], $_->[2], $_->[3], $_->[1]))[2] ] } @asks;
    $t->stop;
    $t->start;
    wait_until(10, sub { ($t->store_status->{state} // '') eq 'ready' });
    my @after = map { [ (predict_at($_->[0], $_->[2], $_->[3], $_->[1]))[2] ] } @asks;
    is_deeply(\@after, \@before, 'after a restart every detector answers byte for byte as before');
}

# --- nginx -t ---------------------------------------------------------------------
{
    my $nt = AnomalyTest->new(start => 0);
    my @bad = (
        ['anomaly_detector prophet', qr/"anomaly_detector" must be one of three_sigma, robust, seasonal, iforest, not "prophet"/],
        ['anomaly_iforest_trees 0', qr/"anomaly_iforest_trees" must be a whole number from 1 to 1000, not "0"/],
        ['anomaly_iforest_sample 1', qr/"anomaly_iforest_sample" must be a whole number from 2 to 1024/],
        ['anomaly_iforest_contamination 0.7', qr/"anomaly_iforest_contamination" must be a share above 0 and below 0\.5/],
        ['anomaly_seasonal_season month', qr/"anomaly_seasonal_season" must be day or week, not "month"/],
        ['anomaly_detector robust; anomaly_detector iforest', qr/"anomaly_detector" directive is duplicate/],
    );
    for my $case (@bad) {
        my ($text, $re) = @$case;
        $nt->{fit_extra} = "$text;";
        $nt->write_config;
        my $d = $nt->dir;
        my $rc = system("$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log >$d/t.out 2>$d/t.err");
        my $err = do { local $/; open my $fh, '<', "$d/t.err" or die; <$fh> } // '';
        ok($rc != 0 && $err =~ /\[emerg\] / && $err =~ $re, "nginx -t refuses `$text`") or diag($err);
    }
    $nt->{fit_extra} = 'anomaly_detector iforest; anomaly_iforest_trees 1000; anomaly_iforest_sample 1024; '
                     . 'anomaly_iforest_contamination 0.49; anomaly_seasonal_season week;';
    $nt->write_config;
    my $d = $nt->dir;
    my $rc = system("$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log >$d/t.out 2>$d/t.err");
    is($rc, 0, 'nginx -t accepts the largest values');
}

AnomalyTest::done();
