#!/usr/bin/perl
# The anomaly history (CONTRACT section 8): every anomalous answer of
# /predict and /observe is recorded in the zone, normal ones are only
# counted. GET /anomalies (newest first, series_id, since, limit, paging by
# "next"), GET /anomalies/summary (exact counts across two workers), a small
# anomaly_history keeping the newest, the history written to the store and
# read back at a clean restart, kept across a reload, anomaly_history 0,
# nginx -t refusing wrong values, and the dashboard showing the recent ones.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series mean_std error_ok wait_until);

my $LOCATIONS = <<'EOF';
        location /observe/ {
            anomaly_stream_detector adaptive;
            anomaly_stream_warmup 5;
            anomaly_observe;
        }
        location = /anomalies {
            anomaly_anomalies;
        }
        location = /anomalies/summary {
            anomaly_anomalies_summary;
        }
        location = /metrics {
            anomaly_metrics;
        }
EOF

my $t = AnomalyTest->new(workers => 2, locations => $LOCATIONS, http_extra => "anomaly_checkpoint 200ms;\n");

my ($body, $values) = make_series(100, seed => 7, base => 50, spread => 10);
my ($mean, $std) = mean_std($values);
for my $id (qw(p1 p2 p3)) {
    my ($st, $j, $raw) = $t->fit($id, $body);
    is($st, 200, "fit $id") or diag($raw);
}

my $TS = 1_800_000_000;
my ($predicted, $anomalous, %per) = (0, 0);
my %pids;
# One prediction; counts what the summary must show.
sub predict_one {
    my ($id, $value, $ts) = @_;
    my ($st, $j, $raw, $h) = $t->predict($id, { timestamp => $ts, value => $value });
    die "predict $id: $st $raw" unless $st == 200;
    $pids{ $h->{'x-worker-pid'} // '' } = 1;
    $predicted++;
    $per{$id}{points}++;
    if ($j->{anomaly}) { $anomalous++; $per{$id}{anomalies}++ }
    return $j;
}

sub anomalies {
    my ($query) = @_;
    my ($st, $j, $raw) = $t->request('GET', '/anomalies' . ($query // ''));
    die "GET /anomalies$query: $st $raw" unless $st == 200 && ref $j eq 'HASH';
    return $j;
}

sub summary {
    my ($query) = @_;
    my ($st, $j, $raw) = $t->request('GET', '/anomalies/summary' . ($query // ''));
    die "GET /anomalies/summary: $st $raw" unless $st == 200 && ref $j eq 'HASH';
    return $j;
}

# --- nothing yet; normal points are not recorded ----------------------------------
{
    my $j = anomalies();
    is_deeply($j, { anomalies => [], next => undef }, 'an empty history: no anomalies, next null');
    for my $i (1 .. 10) { predict_one('p1', $mean + 0.1 * $i, $TS + $i) }
    is(scalar @{ anomalies()->{anomalies} }, 0, 'ten normal predictions record nothing');
}

# --- an anomalous prediction ------------------------------------------------------
my $spike = $mean + 10 * $std;
{
    my $before = time;
    my $p = predict_one('p1', $spike, $TS + 100);
    ok($p->{anomaly}, 'a value 10 std away is anomalous');
    my $j = anomalies();
    is(scalar @{ $j->{anomalies} }, 1, 'one anomaly recorded');
    my $e = $j->{anomalies}[0];
    is_deeply([ @$e{qw(series_id timestamp detector version)} ], [ 'p1', $TS + 100, 'three_sigma', 'v1' ],
              'the event names the series, the point\'s timestamp, the detector and the version');
    ok(abs($e->{value} - $spike) < 1e-9, 'the event has the value predicted');
    ok(abs($e->{score} - $p->{score}) < 1e-9 && abs($e->{anomaly_score} - $p->{anomaly_score}) < 1e-9,
       'score and anomaly_score as answered');
    like($e->{recorded_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'recorded_at is ISO 8601');
    ok(defined $e->{sequence}, 'the event has a sequence');
    is($j->{next}, undef, 'next is null: nothing older');
}

# --- an observe batch: its anomalous points, in order -------------------------------
my ($observed, $obs_anomalies) = (0, 0);
{
    my @ts = map { $TS + 1000 + $_ * 60 } 0 .. 39;
    my @v = map { 20 + ($_ % 2) * 0.5 } 0 .. 39;
    $v[25] = 500;
    $v[33] = -400;
    my ($st, $j, $raw) = $t->request('POST', '/observe/o1', { timestamps => \@ts, values => \@v });
    is($st, 200, 'observe a batch of 40 points') or diag($raw);
    $observed += 40;
    my @flagged = grep { $j->{anomaly}[$_] } 0 .. 39;
    ok(@flagged >= 1 && @flagged < 40, 'the batch has anomalous points and normal ones') or diag($raw);
    $obs_anomalies += @flagged;
    $per{o1} = { points => 40, anomalies => scalar @flagged };
    my $h = anomalies('?series_id=o1');
    is(scalar @{ $h->{anomalies} }, scalar @flagged, 'as many events of o1 as points the answer flagged');
    is_deeply([ map { $_->{timestamp} } @{ $h->{anomalies} } ], [ reverse @ts[@flagged] ],
              'their timestamps, newest first');
    is_deeply([ map { $_->{value} } @{ $h->{anomalies} } ], [ reverse @v[@flagged] ], 'and their values');
    ok(!grep({ exists $_->{version} } @{ $h->{anomalies} }), 'a stream\'s events have no version');
    is($h->{anomalies}[0]{detector}, 'adaptive', 'and name the stream detector');
    my $all = anomalies();
    is($all->{anomalies}[-1]{series_id}, 'p1', 'the predict event is the oldest of all');
}

# --- many anomalies over two workers, paging -----------------------------------------
my $since_mark;
{
    for my $i (1 .. 30) {
        my $id = ('p1', 'p2', 'p3')[ $i % 3 ];
        predict_one($id, $mean + 0.5 * $std, $TS + 200 + $i);    # normal
        $since_mark = time if $i == 20;
        sleep 1.1 if $i == 20;                                     # a second between the two halves
        predict_one($id, $mean - (8 + $i / 10) * $std, $TS + 200 + $i);
    }
    note('workers that answered: ' . join(' ', sort keys %pids));
    my $total = $anomalous + $obs_anomalies;
    my (@seen, %dup);
    my $q = '?limit=7';
    my $pages = 0;
    while (1) {
        my $j = anomalies($q);
        $pages++;
        push @seen, @{ $j->{anomalies} };
        last unless defined $j->{next};
        like($j->{next}, qr/^\d+$/, 'next is a sequence') if $pages == 1;
        $q = "?limit=7&before=$j->{next}";
        last if $pages > 50;
    }
    is(scalar @seen, $total, "paging by 7 through all $total events");
    is($pages, int(($total + 6) / 7), 'in as many pages as it takes');
    my @seq = map { $_->{sequence} } @seen;
    ok(!grep({ $seq[$_] <= $seq[ $_ + 1 ] } 0 .. $#seq - 1), 'sequences strictly decrease: newest first, none twice');

    my $p2 = anomalies('?series_id=p2&limit=1000');
    is(scalar @{ $p2->{anomalies} }, $per{p2}{anomalies}, 'series_id=p2 gives its anomalies only');
    ok(!grep({ $_->{series_id} ne 'p2' } @{ $p2->{anomalies} }), 'all of p2');
    is(scalar @{ anomalies('?series_id=nobody')->{anomalies} }, 0, 'a series without anomalies: none');

    my $late = anomalies('?since=' . int($since_mark + 1) . '&limit=1000');
    # the anomalies of rounds 20 to 30 came after the pause
    is(scalar @{ $late->{anomalies} }, 11, 'since (Unix seconds) keeps those recorded after it');
    my @g = gmtime(int($since_mark + 1));
    my $iso = sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $g[5] + 1900, $g[4] + 1, @g[3, 2, 1, 0]);
    is(scalar @{ anomalies("?since=$iso&limit=1000")->{anomalies} }, 11, "since as ISO 8601 ($iso) too");
    is(scalar @{ anomalies('?since=' . int(time + 3600))->{anomalies} }, 0, 'since in the future: none');
    is(scalar @{ anomalies('?limit=3')->{anomalies} }, 3, 'limit=3 gives three');
}

# --- errors ---------------------------------------------------------------------------
{
    error_ok([ $t->request('GET', '/anomalies?series_id=bad%20id') ], 400, 'invalid_series_id',
             'a malformed series_id is 400 invalid_series_id');
    for my $q ('limit=0', 'limit=1001', 'limit=abc') {
        error_ok([ $t->request('GET', "/anomalies?$q") ], 422, 'invalid_limit', "?$q is 422 invalid_limit, as for /series");
    }
    for my $q ('since=yesterday', 'since=2024-13-01', 'before=x') {
        error_ok([ $t->request('GET', "/anomalies?$q") ], 422, 'invalid_parameter', "?$q is 422 invalid_parameter");
    }
    error_ok([ $t->request('GET', '/anomalies/summary?limit=0') ], 422, 'invalid_limit',
             'summary ?limit=0 is 422 invalid_limit');
    error_ok([ $t->request('POST', '/anomalies', {}) ], 405, 'method_not_allowed', 'POST /anomalies is 405');
    error_ok([ $t->request('DELETE', '/anomalies/summary') ], 405, 'method_not_allowed',
             'DELETE /anomalies/summary is 405');
    # the catalogue's endpoints answer once too (no "header already sent" in the log)
    for my $path ('/dashboard', '/series', '/series/p1') {
        error_ok([ $t->request('POST', $path, {}) ], 405, 'method_not_allowed', "POST $path is 405");
    }
}

# --- the summary: exact counts over both workers --------------------------------------
{
    my $s = summary();
    is($s->{points_scored}, $predicted + $observed, "points_scored: $predicted predictions and $observed observed points");
    is($s->{anomalies}, $anomalous + $obs_anomalies, 'anomalies: every anomalous answer');
    ok(abs($s->{anomaly_rate} - $s->{anomalies} / $s->{points_scored}) < 1e-9, 'anomaly_rate = anomalies / points');
    is($s->{history}{capacity}, 10000, 'the default history holds 10000 events');
    is($s->{history}{events}, $s->{anomalies}, 'it holds every event so far');
    like($s->{history}{oldest}, qr/^\d{4}-.*Z$/, 'oldest is an ISO 8601 time');
    my @top = @{ $s->{series} };
    my @want = sort { $per{$b}{anomalies} <=> $per{$a}{anomalies} || $a cmp $b } grep { $per{$_}{anomalies} } keys %per;
    is_deeply([ map { $_->{series_id} } @top ], \@want, 'series by anomalies, most first');
    my ($p1) = grep { $_->{series_id} eq 'p1' } @top;
    is_deeply([ @$p1{qw(points_scored anomalies)} ], [ $per{p1}{points}, $per{p1}{anomalies} ],
              'p1: its points scored and anomalies, exact');
    is(scalar @{ summary('?limit=1')->{series} }, 1, 'limit=1: the top series only');
}

# --- /healthcheck and /metrics show the history's figures ------------------------------
{
    my $s = summary();
    my (undef, $h) = $t->healthcheck;
    is_deeply([ @{ $h->{anomaly_history} }{qw(capacity events recorded points_scored anomalies)} ],
              [ 10000, $s->{history}{events}, $s->{history}{recorded}, $s->{points_scored}, $s->{anomalies} ],
              '/healthcheck: anomaly_history with the summary\'s figures');
    my $res = HTTP::Tiny->new->get('http://127.0.0.1:' . $t->port . '/metrics');
    like($res->{content}, qr/^anomaly_history_recorded_total $s->{history}{recorded}$/m,
         '/metrics: anomaly_history_recorded_total');
    like($res->{content}, qr/^anomaly_points_scored_total $s->{points_scored}$/m, '/metrics: anomaly_points_scored_total');
    like($res->{content}, qr/^# TYPE anomaly_history_events gauge$/m, '/metrics: anomaly_history_events is a gauge');
}

# --- the dashboard shows the recent anomalies and the rate per series ----------------
{
    my $res = HTTP::Tiny->new->get('http://127.0.0.1:' . $t->port . '/dashboard');
    is($res->{status}, 200, 'GET /dashboard');
    my $html = $res->{content};
    like($html, qr/Recent anomalies/, 'the dashboard has a panel of recent anomalies');
    my $newest = anomalies('?limit=1')->{anomalies}[0];
    like($html, qr/<td>p\d<\/td>/, 'it names the series of recent anomalies');
    (my $shown = substr($newest->{recorded_at}, 0, 19)) =~ tr/T/ /;
    like($html, qr/<td>\Q$shown\E<\/td><td>\Q$newest->{series_id}\E<\/td>/, 'it shows the newest event first');
    my ($st, $list) = $t->request('GET', '/series');
    my ($o1) = grep { $_->{series_id} eq 'o1' } @{ $list->{series} };
    is_deeply([ @$o1{qw(points_scored anomalies)} ], [ 40, $per{o1}{anomalies} ], '/series lists each series\' counts');
    like($html, qr/anomaly rate/, 'the series table shows the anomaly rate');

    # In a real browser: the page's script lists each series with its rate.
    my $chromium = -x '/usr/bin/chromium' ? '/usr/bin/chromium' : undef;
    ok($chromium, 'Debian chromium is installed (make test installs it)');
    SKIP: {
        skip 'no chromium', 2 unless $chromium;
        my $dir = tempdir(CLEANUP => 1);
        my @flags = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                     '--disable-background-networking', '--disable-component-update', '--disable-sync',
                     "--user-data-dir=$dir/profile", '--virtual-time-budget=8000');
        my $url = 'http://127.0.0.1:' . $t->port . '/dashboard';
        my $dom = `timeout 60 $chromium @flags --dump-dom $url 2>/dev/null`;
        my $a = $per{o1}{anomalies};
        my $rate = sprintf('%.1f', 100 * $a / 40);
        like($dom, qr{<li data-id="o1"[^>]*>.*?title="anomaly rate: $a anomalies in 40 points scored"}s,
             "the browser lists o1 with its counts ($a anomalies in 40 points)");
        like($dom, qr{<li data-id="o1"[^>]*><span>o1</span><small[^>]*>[^<]* \Q$rate\E%</small>},
             "and its anomaly rate, $rate%");
    }
}

# --- persisted with the checkpoints, read back at a clean restart ---------------------
my $events_before = anomalies('?limit=1000')->{anomalies};
{
    ok(wait_until(10, sub { my $h = summary()->{history}; $h->{persisted} == $h->{recorded} }),
       'the owner writes every event to the store within a few checkpoints');
    $t->stop;
    $t->start;
    my $after = anomalies('?limit=1000')->{anomalies};
    my $key = sub { join ',', map { "$_->{series_id}/$_->{timestamp}/$_->{value}/$_->{recorded_at}" } @{ $_[0] } };
    is($key->($after), $key->($events_before), 'after a restart: the same events, newest first');
    my $s = summary();
    is($s->{points_scored}, 0, 'the counts start again with the zone (documented)');
    is($s->{history}{events}, scalar @$events_before, 'the history holds what was read back');
    predict_one('p3', $spike, $TS + 5000);
    my $j = anomalies('?limit=2');
    is($j->{anomalies}[0]{timestamp}, $TS + 5000, 'a new anomaly goes on top of those read back');
    is($j->{anomalies}[1]{recorded_at}, $events_before->[0]{recorded_at}, 'followed by the newest before the restart');
    ok(wait_until(10, sub { my $h = summary()->{history}; $h->{persisted} == $h->{recorded} }), 'and is written too');
}

# --- a reload keeps the zone: events and counts ---------------------------------------
{
    my $before = summary();
    my $events = anomalies('?limit=1000')->{anomalies};
    $t->reload;
    my $after = summary();
    is($after->{points_scored}, $before->{points_scored}, 'a reload keeps the counts');
    is_deeply(anomalies('?limit=1000')->{anomalies}, $events, 'and the events');
    predict_one('p2', $spike, $TS + 6000);
    is(anomalies('?limit=1')->{anomalies}[0]{timestamp}, $TS + 6000, 'new workers record on top');
}

# --- a reload that changes anomaly_history: the ring keeps its size till a restart ------
{
    $t->{http_extra} = "anomaly_checkpoint 200ms;\nanomaly_history 7;\n";
    $t->write_config;
    $t->reload;
    like($t->error_log_text, qr/\[notice\].*anomaly_history 7 takes effect at the next restart: anomaly_zone "models" keeps its history of 10000 events/,
         'the log says anomaly_history 7 takes effect at the next restart');
    my $s = summary();
    is($s->{history}{capacity}, 10000, 'the ring keeps its 10000 events');
    my $n = $s->{history}{events};
    predict_one('p2', $spike, $TS + 7000);
    is(summary()->{history}{events}, $n + 1, 'and goes on recording');
}

# --- many clients at once over both workers: none lost, counts exact ---------------------
{
    my $c = AnomalyTest->new(workers => 2, locations => $LOCATIONS);
    $c->fit("c$_", $body) for 0 .. 3;
    my ($kids, $each) = (4, 100);
    my @pids = map {
        my $k = $_;
        AnomalyTest::child(sub {
            for my $i (1 .. $each) {
                # every other one anomalous, over fresh connections (both workers)
                my $v = $i % 2 ? $mean + 9 * $std : $mean;
                my ($st) = $c->request('POST', "/predict/c$k", { timestamp => $TS + $i, value => $v }, quiet => 1);
                die "predict: $st\n" unless $st == 200;
            }
        });
    } 0 .. $kids - 1;
    my $failed = 0;
    for (@pids) { waitpid($_, 0); $failed++ if $? }
    is($failed, 0, "$kids clients sent $each predictions each");
    my (undef, $s) = $c->request('GET', '/anomalies/summary?limit=10');
    is_deeply([ @$s{qw(points_scored anomalies)}, @{ $s->{history} }{qw(recorded events dropped)} ],
              [ $kids * $each, $kids * $each / 2, $kids * $each / 2, $kids * $each / 2, 0 ],
              'every prediction counted, every anomaly recorded, none dropped');
    is_deeply([ sort map { "$_->{series_id}:$_->{points_scored}:$_->{anomalies}" } @{ $s->{series} } ],
              [ map { "c$_:$each:" . $each / 2 } 0 .. $kids - 1 ], 'per series, exact');
    my (undef, $h) = $c->request('GET', '/anomalies?limit=1000');
    my %n;
    $n{ $_->{series_id} }{ $_->{timestamp} }++ for @{ $h->{anomalies} };
    is_deeply([ map { scalar keys %{ $n{"c$_"} } } 0 .. $kids - 1 ], [ ($each / 2) x $kids ],
              'each client\'s anomalies are in the history, once each');
    $c->stop;
}

# --- a small history keeps the newest; it persists as many ------------------------------
{
    my $s = AnomalyTest->new(workers => 2, locations => $LOCATIONS,
                             http_extra => "anomaly_history 5;\nanomaly_checkpoint 200ms;\n");
    my ($st) = $s->fit('small', $body);
    is($st, 200, 'fit on a server with anomaly_history 5');
    for my $i (1 .. 12) {
        my ($st2, $j) = $s->predict('small', { timestamp => $TS + $i, value => $mean + (5 + $i) * $std });
        die "predict: $st2" unless $st2 == 200 && $j->{anomaly};
    }
    my ($st3, $h) = $s->request('GET', '/anomalies');
    is_deeply([ map { $_->{timestamp} } @{ $h->{anomalies} } ], [ map { $TS + $_ } reverse 8 .. 12 ],
              'anomaly_history 5 keeps the newest five');
    my ($st4, $sum) = $s->request('GET', '/anomalies/summary');
    is_deeply([ @{ $sum->{history} }{qw(capacity recorded events)}, $sum->{anomalies} ], [ 5, 12, 5, 12 ],
              'the summary: capacity 5, 12 recorded, 5 held, 12 anomalies counted');
    ok(wait_until(10, sub { my (undef, $x) = $s->request('GET', '/anomalies/summary', undef, quiet => 1);
                            $x->{history}{persisted} == 12 }), 'all written');
    $s->stop;
    $s->start;
    my ($st5, $h2) = $s->request('GET', '/anomalies');
    is_deeply([ map { $_->{timestamp} } @{ $h2->{anomalies} } ], [ map { $TS + $_ } reverse 8 .. 12 ],
              'after a restart the store gives back those five');
    $s->stop;
}

# --- anomaly_history 0: nothing recorded, still counted --------------------------------
{
    my $z = AnomalyTest->new(workers => 1, locations => $LOCATIONS, http_extra => "anomaly_history 0;\n");
    $z->fit('zero', $body);
    my ($st, $j) = $z->predict('zero', { timestamp => $TS, value => $spike });
    ok($j->{anomaly}, 'an anomalous prediction with anomaly_history 0');
    my (undef, $h) = $z->request('GET', '/anomalies');
    is_deeply($h->{anomalies}, [], 'nothing is recorded');
    my (undef, $s) = $z->request('GET', '/anomalies/summary');
    is_deeply([ @$s{qw(points_scored anomalies)}, $s->{history}{capacity}, $s->{history}{recording} ? 1 : 0 ],
              [ 1, 1, 0, 0 ], 'but counted; capacity 0, not recording');
    $z->stop;
}

# --- nginx -t ---------------------------------------------------------------------------
{
    # the refusal of a history too large for the zone comes from the zone's
    # initialisation, once the error log is open
    my $nt = AnomalyTest->new(start => 0, log_allow => qr/\[emerg\].*anomaly_history 1000000 needs/);
    my $d = $nt->dir;
    my $try = sub {
        my ($extra) = @_;
        $nt->{http_extra} = $extra;
        $nt->write_config;
        my $rc = system("$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log >$d/t.out 2>$d/t.err");
        my $err = do { local $/; open my $fh, '<', "$d/t.err" or die; <$fh> } // '';
        return ($rc, $err);
    };
    my ($rc, $err) = $try->("anomaly_history 20000;\n");
    ok($rc == 0 && $err =~ /test is successful/, 'nginx -t accepts anomaly_history 20000') or diag($err);
    for my $bad ('-1', 'abc', '10000001', '1.5') {
        ($rc, $err) = $try->("anomaly_history $bad;\n");
        ok($rc != 0 && $err =~ /\[emerg\] "anomaly_history" takes a number of events from 0 \(no history\) to 10000000, such as 10000, not "\Q$bad\E"/,
           "nginx -t refuses anomaly_history $bad") or diag($err);
    }
    ($rc, $err) = $try->("anomaly_history 1; anomaly_history 2;\n");
    ok($rc != 0 && $err =~ /"anomaly_history" directive is duplicate/, 'nginx -t refuses a duplicate anomaly_history')
        or diag($err);
    ($rc, $err) = $try->("anomaly_history 1000000;\n");
    ok($rc != 0 && $err =~ /anomaly_history 1000000 needs \d+k, more than half of anomaly_zone "models"/,
       'nginx -t refuses a history larger than half the 16m zone') or diag($err);
}

$t->done;
