#!/usr/bin/perl
# Batch scoring (CONTRACT section 7): POST /score/{id} scores every point of
# a posted series at once, with a stored version (each point answered as
# /predict answers it) or with ?detector= trained or run over the series
# itself, storing nothing. Both JSON shapes and CSV in, JSON or CSV out,
# ?only=anomalies, the CSV edge cases and errors, the limits, a body that
# nginx spilled to a temp file.

use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes ();
use AnomalyTest qw(make_series error_ok encode_body);

my $LOCATIONS = <<'EOF';
        location /score/ {
            client_max_body_size 64m;
            client_body_buffer_size 64m;
            add_header X-Anomaly-Result $anomaly_result always;
            add_header X-Anomaly-Score $anomaly_anomaly_score always;
            add_header X-Model-Version $anomaly_model_version always;
            add_header X-Detector $anomaly_detector always;
            anomaly_score;
        }
        location /score-small/ {
            client_max_body_size 1k;
            anomaly_score;
        }
        location /score-spill/ {
            client_body_buffer_size 1k;
            client_max_body_size 64m;
            anomaly_score;
        }
        location /score-max/ {
            anomaly_max_points 5;
            anomaly_min_points 3;
            anomaly_score;
        }
        location /observe/ {
            anomaly_observe;
        }
        location = /metrics {
            anomaly_metrics;
        }
EOF

my $t = AnomalyTest->new(workers => 2, locations => $LOCATIONS);
my $JSON = JSON::PP->new->canonical;

# (status, decoded JSON or undef, raw, headers)
sub post {
    my ($path, $body, %o) = @_;
    my %h = ('Content-Type' => $o{type} // 'application/json');
    $h{Accept} = $o{accept} if defined $o{accept};
    my $res = HTTP::Tiny->new(keep_alive => 0, timeout => 30)
        ->request($o{method} // 'POST', 'http://127.0.0.1:' . $t->port . $path,
                  { headers => \%h, defined $body ? (content => ref $body ? encode_body($body) : $body) : () });
    my $raw = $res->{content} // '';
    my $j = eval { $JSON->decode($raw) };
    return ($res->{status}, $j, $raw, $res->{headers});
}

# A series with a spike every 50 points.
sub spiky {
    my ($n, %o) = @_;
    my ($body) = make_series($n, seed => $o{seed} // 3, start => $o{start} // 1_700_000_000);
    $body->{values}[$_] += 80 for grep { $_ % 50 == 25 } 0 .. $n - 1;
    return $body;
}

sub csv_of {
    my ($body, %o) = @_;
    my $eol = $o{eol} // "\n";
    my $csv = "timestamp,value$eol";
    $csv .= "$body->{timestamps}[$_]," . encode_body($body->{values}[$_]) . $eol for 0 .. $#{ $body->{timestamps} };
    return $csv;
}

sub iso {
    my ($t) = @_;
    my @g = gmtime $t;
    return sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0]);
}

# Same points, same answers (the arrays and the counts).
sub same_scores {
    my ($a, $b, $name) = @_;
    my @keys = qw(points anomalies timestamps values anomaly anomaly_score expected_value detector);
    my @diff = grep { $JSON->encode([$a->{$_}]) ne $JSON->encode([$b->{$_}]) } @keys;
    ok(!@diff, $name) or diag("differ in: @diff");
}

# --- stored versions ----------------------------------------------------------------
my ($train1) = make_series(300, seed => 1);
my ($train2) = make_series(300, seed => 2, base => 110);
is(($t->fit('s1', $train1))[0], 200, 'v1 trained');
is(($t->fit('s1', $train2))[0], 200, 'v2 trained');
my $series_before = ($t->healthcheck)[1]{series_trained};

my $points = spiky(200, start => 1_700_100_000);
my ($st, $latest, $raw, $h) = post('/score/s1', $points);
is($st, 200, 'score against the latest version') or diag($raw);
is($latest->{series_id}, 's1', 'series_id');
is($latest->{version}, 'v2', 'the latest version by default');
is($latest->{detector}, 'three_sigma', 'detector');
is($latest->{points}, 200, 'points counts every point');
is(scalar @{ $latest->{$_} }, 200, "$_ has a value per point")
    for qw(timestamps values anomaly anomaly_score expected_value);
is($latest->{anomalies}, scalar(grep { $_ } @{ $latest->{anomaly} }), 'anomalies counts the flagged points');
ok($latest->{anomalies} >= 4, "the spikes are flagged ($latest->{anomalies})");
is_deeply($latest->{timestamps}, $points->{timestamps}, 'timestamps as posted');
is($h->{'x-anomaly-result'}, 'true', '$anomaly_result: some point is anomalous');
{
    my $top = 0;
    for (@{ $latest->{anomaly_score} }) { $top = $_ if $_ > $top }
    is($h->{'x-anomaly-score'} + 0, $top, '$anomaly_anomaly_score: the highest anomaly_score');
}
is($h->{'x-model-version'}, 'v2', '$anomaly_model_version');
is($h->{'x-detector'}, 'three_sigma', '$anomaly_detector');
is($h->{vary}, 'Accept', 'Vary: Accept');

my ($st1, $v1) = post('/score/s1?version=v1', $points);
is($v1->{version}, 'v1', '?version=v1');
my ($st1b, $v1b) = post('/score/s1?version=1', $points);
same_scores($v1b, $v1, '?version=1 is ?version=v1');

# Each point's answer is what /predict answers for it.
for my $case ([$latest, ''], [$v1, 'v1']) {
    my ($ans, $version) = @$case;
    my @bad;
    for my $i (0 .. 199) {
        next unless $i % 5 == 0 || $i % 50 == 25;
        my (undef, $p) = $t->predict('s1', { timestamp => $points->{timestamps}[$i], value => $points->{values}[$i] },
                                     $version eq '' ? undef : $version);
        push @bad, $i unless ($p->{anomaly} ? 1 : 0) == ($ans->{anomaly}[$i] ? 1 : 0)
                          && $p->{anomaly_score} == $ans->{anomaly_score}[$i]
                          && (defined $p->{expected_value} ? $p->{expected_value} == $ans->{expected_value}[$i]
                                                           : !defined $ans->{expected_value}[$i])
                          && $p->{model_version} eq $ans->{version};
    }
    ok(!@bad, 'every point equals /predict for ' . ($version || 'the latest')) or diag("points @bad");
}

# The data shape answers the same.
my $data = { data => [ map { { timestamp => $points->{timestamps}[$_], value => $points->{values}[$_] } } 0 .. 199 ] };
my (undef, $from_data) = post('/score/s1', $data);
same_scores($from_data, $latest, 'the data shape answers as the column shape');

# Equal values are scored against a version (nothing is trained on them).
my (undef, $flat) = post('/score/s1', { timestamps => [1, 2, 3], values => [110, 110, 110] });
is($flat->{points}, 3, 'equal values and three points are scored against a version');

# --- CSV in ---------------------------------------------------------------------------
($st, my $csv_in) = post('/score/s1', csv_of($points), type => 'text/csv');
is($st, 200, 'CSV in');
same_scores($csv_in, $latest, 'CSV answers as JSON');
(undef, my $crlf) = post('/score/s1', "\xEF\xBB\xBF" . csv_of($points, eol => "\r\n"), type => 'text/csv; charset=utf-8');
same_scores($crlf, $latest, 'CRLF line ends, a BOM, a charset');

my $n = 200;
my $fancy = "note,Value,host,TIMESTAMP\r\n";
for my $i (0 .. $n - 1) {
    my $ts = $i % 2 ? iso($points->{timestamps}[$i]) : $points->{timestamps}[$i];
    $ts =~ s/Z$/+00:00/ if $i % 3 == 0;
    $ts =~ s/T/ / if $i % 7 == 0;
    $fancy .= qq{"row $i, ""quoted""",} . encode_body($points->{values}[$i]) . qq{,h$i,$ts\r\n};
}
$fancy .= "\r\n\r\n";
(undef, my $fancy_ans) = post('/score/s1', $fancy, type => 'text/csv');
same_scores($fancy_ans, $latest, 'ISO 8601 and Unix timestamps, columns in another order, quoted commas, extra columns');

# --- CSV out --------------------------------------------------------------------------
my $headers;
($st, undef, $raw, $headers) = post('/score/s1', $fancy, type => 'text/csv', accept => 'text/csv');
is($st, 200, 'Accept: text/csv');
like($headers->{'content-type'}, qr{^text/csv}, 'answered as text/csv');
my @lines = split /\r\n/, $raw;
is($lines[0], 'note,Value,host,TIMESTAMP,anomaly,anomaly_score', 'the input header with two columns appended');
is(scalar @lines, 201, 'a row per point');
my $flag = $latest->{anomaly}[25] ? 'true' : 'false';
my @row = split /,/, $lines[26];
is(join(',', @row[0 .. 1]), '"row 25, ""quoted"""', 'the original fields, re-quoted');
is_deeply([ $row[2], $row[5], $row[6] + 0 ], [ encode_body($points->{values}[25]), $flag, $latest->{anomaly_score}[25] ],
          'the value as posted, then anomaly and anomaly_score');

($st, undef, $raw, $headers) = post('/score/s1', $points, accept => 'application/json;q=0.5, text/csv');
@lines = split /\r\n/, $raw;
is($lines[0], 'timestamp,value,anomaly,anomaly_score', 'JSON in, CSV out: timestamp,value,anomaly,anomaly_score');
my @first = split /,/, $lines[1];
is_deeply([ $first[0], $first[1] + 0, $first[2], $first[3] + 0 ],
          [ $points->{timestamps}[0], $points->{values}[0], $latest->{anomaly}[0] ? 'true' : 'false',
            $latest->{anomaly_score}[0] ], 'a row as the JSON answer says');
(undef, undef, undef, $headers) = post('/score/s1', $points, accept => 'application/json, text/csv;q=0.5');
like($headers->{'content-type'}, qr{^application/json}, 'JSON when the client prefers it');

# --- only=anomalies -------------------------------------------------------------------
(undef, my $only) = post('/score/s1?only=anomalies', $points);
is($only->{points}, 200, 'only=anomalies: points still counts every point scored');
is($only->{anomalies}, $latest->{anomalies}, 'the same anomalies');
is(scalar @{ $only->{timestamps} }, $latest->{anomalies}, 'the arrays hold the flagged points alone');
ok(!grep({ !$_ } @{ $only->{anomaly} }), 'every point shown is anomalous');
is_deeply($only->{timestamps}, [ map { $latest->{timestamps}[$_] } grep { $latest->{anomaly}[$_] } 0 .. 199 ],
          'the flagged timestamps');
(undef, undef, $raw) = post('/score/s1?only=anomalies', csv_of($points), type => 'text/csv', accept => 'text/csv');
is(scalar(split /\r\n/, $raw), $latest->{anomalies} + 1, 'only=anomalies in CSV: the header and the flagged rows');

# --- ?detector=: nothing stored -------------------------------------------------------
my $fresh = spiky(400, seed => 9);
($st, my $batch) = post('/score/fresh?detector=three_sigma', $fresh);
is($st, 200, '?detector=three_sigma on a series never trained');
is($batch->{detector}, 'three_sigma', 'detector named');
ok(!exists $batch->{version}, 'no version: nothing was stored');
{
    my ($m, $s) = AnomalyTest::mean_std($fresh->{values});
    my @want = map { abs(($_ - $m) / $s) > 3 ? JSON::PP::true : JSON::PP::false } @{ $fresh->{values} };
    is_deeply([ map { $_ ? 1 : 0 } @{ $batch->{anomaly} } ], [ map { $_ ? 1 : 0 } @want ],
              'trained on the posted series: |z| > 3 of its own mean and std');
}
(undef, my $robust) = post('/score/fresh?detector=robust&sigma=4', $fresh);
is($robust->{detector}, 'robust', '?detector=robust with a parameter');

# A stream detector runs a fresh state over the points, as /observe on a new series would.
($st, my $adaptive) = post('/score/fresh?detector=adaptive', $fresh);
is($st, 200, '?detector=adaptive');
is($adaptive->{detector}, 'adaptive', 'stream detector named');
my (undef, $observed) = $t->request('POST', '/observe/compare-adaptive?detector=adaptive', $fresh);
is_deeply($adaptive->{anomaly_score}, $observed->{anomaly_score}, 'each point scored as /observe scores it');
is_deeply([ map { $_ ? 1 : 0 } @{ $adaptive->{anomaly} } ], [ map { $_ ? 1 : 0 } @{ $observed->{anomaly} } ],
          'and flagged as /observe flags it');
(undef, my $again) = post('/score/fresh?detector=adaptive', $fresh);
same_scores($again, $adaptive, 'a second run starts afresh: the same answer');

my (undef, $health) = $t->healthcheck;
my @detectors = map { $_->{name} } @{ $health->{detectors} // [] };
SKIP: {
    skip 'rcf is not in this build', 4 unless grep { $_ eq 'rcf' } @detectors;
    my $long = spiky(2000, seed => 4);
    ($st, my $rcf) = post('/score/fresh?detector=rcf&trees=20', $long);
    is($st, 200, '?detector=rcf');
    is($rcf->{points}, 2000, 'rcf scored every point');
    (undef, my $rcf_csv) = post('/score/fresh?detector=rcf&trees=20', csv_of($long), type => 'text/csv');
    same_scores($rcf_csv, $rcf, 'the same series as CSV: the same forest, the same answer');
    (undef, my $rcf_score) = post('/score/cmp-rcf?detector=rcf&trees=20', $long);
    (undef, my $rcf_observed) = $t->request('POST', '/observe/cmp-rcf?detector=rcf&trees=20', $long);
    is_deeply([ $rcf_score->{anomaly_score}, $rcf_score->{anomaly} ],
              [ $rcf_observed->{anomaly_score}, $rcf_observed->{anomaly} ],
              'rcf: each point as /observe of the same points into a new series of that id');
}

is(($t->healthcheck)[1]{series_trained}, $series_before, 'no series trained by scoring');
is((post('/series/fresh', undef, method => 'GET'))[0], 404, 'no version and no stream for the scored series');
my (undef, $list) = $t->request('GET', '/series');
my @made = grep { $_ ne 'cmp-rcf' } sort map { $_->{series_id} } @{ $list->{series} };
is_deeply(\@made, [qw(compare-adaptive s1)],
          '/series lists only what fit and observe made');

# Scoring has figures of its own, apart from predictions and fits.
{
    my (undef, $h) = $t->healthcheck;
    ok(ref $h->{score_latency_ms} eq 'HASH' && $h->{score_latency_ms}{count} > 0,
       "/healthcheck: score_latency_ms counts scores ($h->{score_latency_ms}{count})");
    ok(ref $h->{load}{score} eq 'HASH' && exists $h->{load}{score}{in_flight}, '/healthcheck: load.score');
    my (undef, undef, $m) = $t->request('GET', '/metrics', undef, quiet => 1);
    like($m, qr/^anomaly_request_duration_seconds_count\{endpoint="score"\} [1-9]\d*$/m, '/metrics: a score latency histogram');
    like($m, qr/^anomaly_requests_total\{endpoint="score",status="200"\} [1-9]\d*$/m, '/metrics: score requests by status');
}

# --- errors ---------------------------------------------------------------------------
error_ok([post('/score/s1?version=v1&detector=robust', $points)], 422, 'invalid_parameter', '?version with ?detector');
error_ok([post('/score/s1?detector=nope', $points)], 422, 'invalid_detector', 'an unknown detector');
error_ok([post('/score/s1?only=normal', $points)], 422, 'invalid_parameter', 'only= something else');
error_ok([post('/score/s1?version=x', $points)], 422, 'invalid_version', 'a bad version');
error_ok([post('/score/s1?version=v9', $points)], 404, 'version_not_found', 'a version not there');
error_ok([post('/score/nobody', $points)], 404, 'series_not_found', 'a series never trained');
error_ok([post('/score/bad%20id', $points)], 400, 'invalid_series_id', 'a bad series id');
error_ok([post('/score/s1', csv_of($points), type => 'text/plain')], 415, 'unsupported_media_type', 'text/plain');
my @get = post('/score/s1', undef, method => 'GET');
error_ok(\@get, 405, 'method_not_allowed', 'GET');
is($get[3]{allow}, 'POST', 'Allow: POST');
error_ok([post('/score-small/s1', $points)], 413, 'body_too_large', 'a body over client_max_body_size')
    or 1;
error_ok([post('/score/s1', '')], 400, 'malformed_json', 'an empty JSON body');
error_ok([post('/score/s1', '', type => 'text/csv')], 400, 'malformed_csv', 'an empty CSV body', qr/empty/);
error_ok([post('/score/s1', "timestamp,value\n1,1\n2,2,2\n", type => 'text/csv')], 400, 'malformed_csv',
         'a row with a field too many', qr/line 3, column 3/);
error_ok([post('/score/s1', "timestamp,value\n1,1\n2,\"2\n", type => 'text/csv')], 400, 'malformed_csv',
         'an open quote', qr/line 3, column 2 \(value\)/);
error_ok([post('/score/s1', "value,timestamp\n1,1\nabc,2\n", type => 'text/csv')], 422, 'invalid_value',
         'a value that is no number', qr/line 3, column 1 \(value\)/);
error_ok([post('/score/s1', "value,timestamp\n1,2024-01-01T00:00:00Z\n2,2024-01-01T00:00:00.5Z\n", type => 'text/csv')],
         422, 'invalid_timestamp', 'a fraction of a second', qr/line 3, column 2 \(timestamp\)/);
error_ok([post('/score/s1', "timestamp,value\n2,1\n1,2\n", type => 'text/csv')], 422, 'unordered_timestamps',
         'timestamps going back', qr/line 3/);
error_ok([post('/score/s1', "time,value\n1,1\n", type => 'text/csv')], 400, 'malformed_csv',
         'no timestamp column', qr/no timestamp column/);
error_ok([post('/score/s1', { timestamps => [2, 1], values => [1, 2] })], 422, 'unordered_timestamps',
         'JSON timestamps going back');
error_ok([post('/score-max/s1', { timestamps => [1 .. 6], values => [1 .. 6] })], 422, 'too_many_points',
         'more than anomaly_max_points (JSON)');
error_ok([post('/score-max/s1', "timestamp,value\n" . join('', map { "$_,$_\n" } 1 .. 6), type => 'text/csv')],
         422, 'too_many_points', 'more than anomaly_max_points (CSV)');
error_ok([post('/score-max/x?detector=three_sigma', { timestamps => [1, 2], values => [1, 2] })], 422,
         'too_few_points', 'training needs anomaly_min_points');
error_ok([post('/score/x?detector=three_sigma', { timestamps => [1 .. 20], values => [(5) x 20] })], 422,
         'constant_series', 'training on equal values');

# --- a body in nginx's temp file ------------------------------------------------------
my $big = spiky(5000, seed => 5);
(undef, my $in_memory) = post('/score/s1', $big);
($st, my $spilled) = post('/score-spill/s1', $big);
is($st, 200, 'a body spilled to a temp file is scored');
same_scores($spilled, $in_memory, 'as the same body in memory');
(undef, my $spilled_csv) = post('/score-spill/s1', csv_of($big), type => 'text/csv');
same_scores($spilled_csv, $in_memory, 'and as CSV');

# --- off the event loop ---------------------------------------------------------------
# One worker: while it scores a long series with rcf (a second or more), it
# keeps answering /predict. Were the series scored on the event loop, no
# predict could be answered in the second half of the score's request.
SKIP: {
    skip 'rcf is not in this build', 2 unless grep { $_ eq 'rcf' } @detectors;
    my $one = AnomalyTest->new(workers => 1, locations => "location /score/ { client_max_body_size 64m; anomaly_score; }\n");
    is(($one->fit('s1', $train1))[0], 200, 'a version to predict with');
    my ($long) = make_series(60000, seed => 6);
    my $long_body = encode_body($long);
    pipe(my $r, my $w) or die;
    my $pid = fork // die;
    if ($pid == 0) {
        close $r;
        my $t0 = Time::HiRes::time();
        my $res = HTTP::Tiny->new(timeout => 60)->request('POST', 'http://127.0.0.1:' . $one->port . '/score/long?detector=rcf',
                                                          { headers => { 'Content-Type' => 'application/json' }, content => $long_body });
        print $w join(' ', $t0, Time::HiRes::time(), $res->{status}), "\n";
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    my @answered;
    my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
    my $rin = '';
    vec($rin, fileno($r), 1) = 1;
    until (select(my $rout = $rin, undef, undef, 0)) {
        my $res = $ua->request('POST', 'http://127.0.0.1:' . $one->port . '/predict/s1',
                               { headers => { 'Content-Type' => 'application/json' }, content => '{"value": 100}' });
        push @answered, Time::HiRes::time() if $res->{status} == 200;
    }
    my ($start, $end, $status) = split ' ', scalar <$r>;
    waitpid $pid, 0;
    my $late = grep { $_ > $start + ($end - $start) / 2 && $_ < $end } @answered;
    ok($status == 200 && $late > 0,
       sprintf('predicts answered in the second half of a %.2f s rcf score (%d of %d)', $end - $start, $late, scalar @answered));
}

AnomalyTest::done();
