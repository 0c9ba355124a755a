#!/usr/bin/perl
# Alerts (CONTRACT section 8): anomaly_alert issues a background subrequest
# for each anomalous answer, which the alert location delivers with
# proxy_pass to a real HTTP receiver on loopback (t/lib/receiver.py).
# Delivery, suppression per series (across 2 workers), observe, a receiver
# that answers 500, is down or is slow (answers stay prompt, failures are
# counted and logged once), the example configuration as shipped.

use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series mean_std wait_until);

my $DIR = File::Temp::tempdir('anomaly-receiver-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{ANOMALY_TEST_KEEP});
my $RPORT = AnomalyTest::free_port();
my $RECORD = "$DIR/received.jsonl";
my $MODE = "$DIR/mode";
my $receiver;

sub set_mode { open my $fh, '>', $MODE or die; print $fh "$_[0]\n"; close $fh }

sub start_receiver {
    set_mode('200');
    $receiver = fork // die "fork: $!";
    if (!$receiver) {
        exec('python3', "$AnomalyTest::ROOT/t/lib/receiver.py", $RPORT, $RECORD, $MODE) or POSIX::_exit(1);
    }
    my $up = wait_until(10, sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$RPORT", Timeout => 1) });
    die "the receiver did not start on port $RPORT\n" unless $up;
}

sub stop_receiver {
    return unless $receiver;
    local $?;   # also called from END, where $? is the test's exit status
    kill 'TERM', $receiver;
    waitpid($receiver, 0);
    $receiver = undef;
}
END { stop_receiver() }

# Every request the receiver got, in order.
sub received {
    open my $fh, '<', $RECORD or return ();
    return map { decode_json($_) } grep { /\S/ } <$fh>;
}
sub received_for { my ($series) = @_; return grep { ($_->{headers}{'x-alert-series'} // '') eq $series } received() }
sub n_received { my @r = @_ ? received_for(@_) : received(); return scalar @r }
# Waits until the receiver has at least n requests (of a series); returns them.
sub wait_received {
    my ($n, $series) = @_;
    wait_until(5, sub { n_received(defined $series ? $series : ()) >= $n });
    return defined $series ? received_for($series) : received();
}

start_receiver();

# The alert location of the tests: the generic webhook form (the ready
# JSON body), with a header per variable so that each is checked.
my $ALERT = <<"LOC";
        location = /alert {
            internal;
            error_log deliveries.log;   # proxy_pass's own line for each failed delivery
            proxy_connect_timeout 1s;
            proxy_read_timeout 1s;
            proxy_set_header X-Alert-Series \$anomaly_alert_series;
            proxy_set_header X-Alert-Timestamp \$anomaly_alert_timestamp;
            proxy_set_header X-Alert-Time \$anomaly_alert_time;
            proxy_set_header X-Alert-Value \$anomaly_alert_value;
            proxy_set_header X-Alert-Anomaly-Score \$anomaly_alert_anomaly_score;
            proxy_set_header X-Alert-Score \$anomaly_alert_score;
            proxy_set_header X-Alert-Detector \$anomaly_alert_detector;
            proxy_set_header X-Alert-Version \$anomaly_alert_version;
            proxy_set_header X-Alert-Anomalies \$anomaly_alert_anomalies;
            proxy_set_header X-Alert-Suppressed \$anomaly_alert_suppressed;
            proxy_pass http://127.0.0.1:$RPORT/hook;
        }
        location /predict-fast/ {
            anomaly_predict;
            anomaly_alert /alert;
            anomaly_alert_interval 1s;
        }
        location /predict-every/ {
            anomaly_predict;
            anomaly_alert /alert;
            anomaly_alert_interval 0;
        }
        location /predict-quiet/ {
            anomaly_predict;
        }
        location /observe/ {
            anomaly_observe;
            anomaly_stream_detector adaptive;
            anomaly_stream_warmup 5;
            anomaly_alert /alert;
        }
        location /observe-learn/ {
            anomaly_observe;
            anomaly_stream_detector adaptive;
            anomaly_stream_warmup 5;
        }
        location = /metrics { anomaly_metrics; }
LOC

my $t = AnomalyTest->new(
    workers       => 2,
    predict_extra => "            anomaly_alert /alert;\n",
    locations     => $ALERT,
);

my $T0 = 1_700_000_000;
my %mean;   # series => [mean, std]
sub fit_series {
    my ($series, $seed) = @_;
    my ($body, $values) = make_series(40, seed => $seed, base => 100, spread => 10);
    my ($st, undef, $raw) = $t->fit($series, $body);
    is($st, 200, "fit $series") or diag($raw);
    $mean{$series} = [ mean_std($values) ];
}
sub value_of { my ($series, $k) = @_; return $mean{$series}[0] + $k * $mean{$series}[1] }

# POST over a fresh connection; returns (status, json, seconds taken, headers).
sub post {
    my ($path, $body, %o) = @_;
    my $ua = $o{ua} // HTTP::Tiny->new(keep_alive => 0, timeout => 15);
    my $t0 = time;
    my $res = $ua->request('POST', 'http://127.0.0.1:' . $t->port . $path,
                           { headers => { 'Content-Type' => 'application/json', %{ $o{headers} // {} } },
                             content => AnomalyTest::encode_body($body) });
    my $took = time - $t0;
    $t->{requests}++;
    push @{$t->{ctype_bad}}, "POST $path -> $res->{status}"
        unless ($res->{headers}{'content-type'} // '') =~ m{^application/json};
    return ($res->{status}, eval { decode_json($res->{content}) }, $took, $res->{headers});
}
sub predict_at {
    my ($prefix, $series, $k, %o) = @_;
    return post("/$prefix/$series", { timestamp => $o{ts} // $T0, value => value_of($series, $k) }, %o);
}
sub counts {
    my ($st, $j) = $t->request('GET', '/healthcheck', undef, quiet => 1);
    return $j && $j->{alerts} ? $j->{alerts} : {};
}
sub metric {
    my ($outcome) = @_;
    my (undef, undef, $raw) = $t->request('GET', '/metrics', undef, quiet => 1);
    return $raw =~ /^anomaly_alerts_total\{outcome="$outcome"\} (\d+)$/m ? $1 : undef;
}
sub log_count { my ($re) = @_; return scalar(() = $t->error_log_text =~ /$re/g) }
my $FAILING = qr/anomaly alerts to "\/alert" are failing/;
my $AGAIN = qr/anomaly alerts to "\/alert" are delivered again/;

my $seed = 0;
fit_series($_, ++$seed) for qw(s1 s2 s3 s4 s5 s6 s7);

# --- 1. normal points send nothing --------------------------------------------
{
    for (1 .. 3) {
        my ($st, $j) = predict_at('predict', 's1', 0.5);
        is($st, 200, 'a normal point is answered');
        ok($j && !$j->{anomaly}, 'and is not anomalous');
    }
    sleep 0.5;
    is(n_received(), 0, 'normal points send no alert');
    is_deeply([ @{ counts() }{qw(sent suppressed failed)} ], [0, 0, 0], 'and count none');
}

# --- 2. delivery -------------------------------------------------------------------
{
    my ($st, $j, $took) = predict_at('predict', 's1', 6, ts => $T0 + 60,
                                     headers => { Authorization => 'Bearer client-secret', Cookie => 'c=1' });
    ok($st == 200 && $j->{anomaly}, 'an anomalous point is answered anomalous');
    my @got = wait_received(1);
    is(scalar(@got), 1, 'the receiver got one request');
    my $r = $got[0] // {};
    is($r->{method}, 'POST', 'a POST');
    is($r->{path}, '/hook', 'to the alert location\'s proxy_pass');
    like($r->{headers}{'content-type'} // '', qr{^application/json$}, 'Content-Type application/json');
    ok(!exists $r->{headers}{authorization} && !exists $r->{headers}{cookie},
       'none of the client\'s headers (Authorization, Cookie) goes to the webhook');
    my $b = eval { decode_json($r->{body}) } // {};
    is($b->{series_id}, 's1', 'body: series_id');
    is($b->{timestamp}, $T0 + 60, 'body: timestamp');
    is($b->{time}, '2023-11-14T22:14:20Z', 'body: time (ISO 8601)');
    ok(abs($b->{value} - value_of('s1', 6)) < 1e-9, 'body: value');
    ok(abs($b->{anomaly_score} - $j->{anomaly_score}) < 1e-9 && $b->{anomaly_score} >= 70,
       "body: anomaly_score as answered ($b->{anomaly_score})");
    ok(abs($b->{score} - $j->{score}) < 1e-9, 'body: score as answered');
    is($b->{detector}, 'three_sigma', 'body: detector');
    is($b->{version}, 'v1', 'body: version');
    is($b->{anomalies}, 1, 'body: anomalies 1');
    is($b->{suppressed}, 0, 'body: suppressed 0');
    my $h = $r->{headers};
    is_deeply([ @$h{map { "x-alert-$_" } qw(series timestamp time detector version anomalies suppressed)} ],
              [ 's1', $T0 + 60, '2023-11-14T22:14:20Z', 'three_sigma', 'v1', 1, 0 ],
              'the variables in the alert location: series, timestamp, time, detector, version, anomalies, suppressed');
    ok(abs($h->{'x-alert-value'} - $b->{value}) < 1e-6 && abs($h->{'x-alert-anomaly-score'} - $b->{anomaly_score}) < 1e-6
       && abs($h->{'x-alert-score'} - $b->{score}) < 1e-6, 'value, anomaly_score and score variables as in the body');
    wait_until(3, sub { (counts()->{delivered} // 0) == 1 });
    is_deeply([ @{ counts() }{qw(sent delivered failed suppressed)} ], [1, 1, 0, 0], 'healthcheck: sent 1, delivered 1');
}

# --- 3. suppression within the interval; series are independent ---------------
{
    predict_at('predict', 's1', 7) for 1 .. 4;
    my ($st, $j) = predict_at('predict', 's2', -6);
    ok($j && $j->{anomaly}, 'another series\' anomaly');
    my @s2 = wait_received(1, 's2');
    is(scalar(@s2), 1, 'alerts for its series, independent of s1\'s');
    sleep 0.5;
    is(n_received('s1'), 1, 'four more anomalies of s1 within 60s send nothing more');
    is(metric('sent'), 2, '/metrics: anomaly_alerts_total{outcome="sent"} 2');
    is(metric('suppressed'), 4, '/metrics: anomaly_alerts_total{outcome="suppressed"} 4');
    is(metric('failed'), 0, '/metrics: anomaly_alerts_total{outcome="failed"} 0');
}

# --- 4. a short interval: another alert after it, saying what was suppressed ------
{
    predict_at('predict-fast', 's3', 6);
    wait_received(1, 's3');
    predict_at('predict-fast', 's3', 6) for 1 .. 2;
    sleep 0.3;
    is(n_received('s3'), 1, 'anomaly_alert_interval 1s: one alert, then suppressed');
    sleep 1.0;
    predict_at('predict-fast', 's3', 6);
    my @s3 = wait_received(2, 's3');
    is(scalar(@s3), 2, 'after 1s another alert goes out');
    my $b = eval { decode_json($s3[1]{body}) } // {};
    is($b->{suppressed}, 2, 'and says 2 were suppressed since the last one');
}

# --- 5. a location without anomaly_alert sends none ----------------------------
{
    my $before = n_received();
    predict_at('predict-quiet', 's4', 8);
    sleep 0.5;
    is(n_received(), $before, 'a predict location without anomaly_alert sends no alert');
}

# --- 6. observe ----------------------------------------------------------------------
{
    # The stream learns through a location without alerts (a stream is
    # the series', whichever location observes it).
    my ($body) = make_series(300, seed => 11, base => 100, spread => 10, start => $T0);
    my ($st, $j, $raw) = $t->request('POST', '/observe-learn/st1', $body);
    is($st, 200, 'a stream learns 300 steady points') or diag($raw);
    ($st, $j, $raw) = $t->request('POST', '/observe/st1', { timestamps => [ $T0 + 18000, $T0 + 18060, $T0 + 18120 ],
                                                              values => [ 101, 900, 102 ] });
    ok($j && $j->{anomalies} >= 1, 'a spike in a batch of three is anomalous') or diag($raw);
    my @st1 = wait_received(1, 'st1');
    is(scalar(@st1), 1, 'an anomalous observe alerts');
    my $b = eval { decode_json($st1[0]{body}) } // {};
    is($b->{timestamp}, $T0 + 18060, 'describing the anomalous point (the highest anomaly_score)');
    is($b->{value}, 900, 'its value');
    is($b->{detector}, 'adaptive', 'the stream\'s detector');
    ok(!defined $b->{version}, 'version null for a stream');
    is($st1[0]{headers}{'x-alert-version'} // '', '', '$anomaly_alert_version empty for a stream');
    is($b->{anomalies}, $j->{anomalies}, 'anomalies: the anomalous points of that answer');

    # A batch large enough for the thread pool (over 64 KB): the alert is
    # issued from the pool task's completion on the event loop.
    ($body) = make_series(300, seed => 12, base => 100, spread => 10, start => $T0);
    ($st) = $t->request('POST', '/observe-learn/st2', $body);
    is($st, 200, 'another stream learns 300 points');
    my ($big, $values) = make_series(5000, seed => 13, base => 100, spread => 10, start => $T0 + 18000);
    $big->{values}[2500] = 5000;
    ok(length(AnomalyTest::encode_body($big)) > 64 * 1024, 'a batch of 5000 points, over 64 KB');
    ($st, $j, $raw) = $t->request('POST', '/observe/st2', $big);
    ok($st == 200 && $j->{anomalies} >= 1, "answered with its anomalies ($j->{anomalies})") or diag(substr($raw, 0, 300));
    my @st2 = wait_received(1, 'st2');
    is(scalar(@st2), 1, 'one alert for the batch');
    $b = eval { decode_json($st2[0]{body}) } // {};
    is_deeply([ @$b{qw(value timestamp anomalies)} ], [ 5000, $T0 + 18000 + 60 * 2500, $j->{anomalies} ],
              'describing the spike, the highest anomaly_score of the batch, with the batch\'s anomaly count');
}

# --- 7. suppression holds across 2 workers ---------------------------------------
{
    my $before = counts();
    my @kids;
    for my $k (1 .. 4) {
        push @kids, AnomalyTest::child(sub {
            my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 15);
            open my $out, '>', "$DIR/pids.$k" or die;
            for (1 .. 5) {
                my $res = $ua->request('POST', 'http://127.0.0.1:' . $t->port . '/predict/s5',
                                       { headers => { 'Content-Type' => 'application/json' },
                                         content => '{"timestamp":' . $T0 . ',"value":' . value_of('s5', 9) . '}' });
                print $out "$res->{status} " . ($res->{headers}{'x-worker-pid'} // '') . "\n";
            }
            close $out;
        });
    }
    waitpid($_, 0) for @kids;
    my (%pids, $ok);
    for my $k (1 .. 4) {
        open my $in, '<', "$DIR/pids.$k" or next;
        while (<$in>) { my ($st, $pid) = split; $ok++ if $st == 200; $pids{$pid}++ if $pid }
    }
    is($ok, 20, '20 anomalous predicts of one series from 4 clients answered');
    is(scalar(keys %pids), 2, 'by both workers') or diag(join ' ', %pids);
    wait_received(1, 's5');
    sleep 0.5;
    is(n_received('s5'), 1, 'one alert for them all');
    my $after = counts();
    is($after->{sent} - $before->{sent}, 1, 'sent: +1');
    is($after->{suppressed} - $before->{suppressed}, 19, 'suppressed: +19');
}

# --- 8. a receiver answering 500: failed, logged once; then delivered again ------
{
    set_mode('500');
    my $before = counts();
    predict_at('predict-every', 's6', 6) for 1 .. 5;
    ok(wait_until(5, sub { counts()->{failed} - $before->{failed} == 5 }), 'five alerts answered 500: failed +5');
    is(counts()->{sent} - $before->{sent}, 5, 'anomaly_alert_interval 0: every anomalous answer sends');
    is(log_count($FAILING), 1, 'one "failing" line in the error log for five failures');
    like($t->error_log_text, qr/\[warn\].*anomaly alerts to "\/alert" are failing: status 500 for series "s6"/,
         'at warn, naming the location and the status');
    is(counts()->{failing}, JSON::PP::true, 'healthcheck: failing true');
    set_mode('200');
    predict_at('predict-every', 's6', 6);
    ok(wait_until(5, sub { counts()->{delivered} - $before->{delivered} == 1 }), 'the receiver is back: delivered');
    is(log_count($AGAIN), 1, 'one notice line when deliveries succeed again');
    is(counts()->{failing}, JSON::PP::false, 'healthcheck: failing false');
}

# --- 9. a receiver that is down: answers stay prompt -------------------------------
{
    stop_receiver();
    my $before = counts();
    my $slowest = 0;
    for (1 .. 10) {
        my ($st, $j, $took) = predict_at('predict-every', 's6', 6);
        is($st, 200, 'answered while the receiver is down') if $_ == 1;
        $slowest = $took if $took > $slowest;
    }
    ok($slowest < 1, sprintf('every answer arrives within 1 s (slowest %.3f s)', $slowest));
    ok(wait_until(5, sub { counts()->{failed} - $before->{failed} == 10 }), 'ten failed alerts counted')
        or diag(JSON::PP->new->encode(counts()));
    is(log_count($FAILING), 2, 'and one more "failing" line for all ten');
    like($t->error_log_text, qr/are failing: status 502 for series "s6"/, 'status 502: nothing listens');
    is(log_count(qr/connect\(\) failed/), 0, 'nginx\'s own line for each failed delivery is not in the error log');
    my $deliveries = do { local $/; open my $fh, '<', $t->dir . '/deliveries.log' or die; <$fh> } // '';
    my $refused = () = $deliveries =~ /connect\(\) failed \(111: Connection refused\) while connecting to upstream.*subrequest: "\/alert"/g;
    is($refused, 10, 'but in the alert location\'s error_log, one for each of the ten');
    start_receiver();
}

# --- 10. a slow receiver: answers stay prompt; the keepalive connection waits ------
{
    set_mode('sleep 5');
    my $before = counts();
    my ($st, $j, $took) = predict_at('predict-every', 's7', 6);
    ok($st == 200 && $took < 1, sprintf('the answer arrives within 1 s while the receiver sleeps 5 s (%.3f s)', $took));
    ok(wait_until(5, sub { counts()->{failed} - $before->{failed} == 1 }),
       'the alert fails after the location\'s proxy_read_timeout (1s)');
    is(log_count(qr/upstream timed out/), 0, 'its timeout line is in the alert location\'s error_log only');

    # The next request on the same keepalive connection: nginx holds the
    # connection until the alert's subrequest ends (proxy_read_timeout 1s).
    my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 15);
    my ($st1, undef, $first) = predict_at('predict-every', 's7', 6, ua => $ua);
    my ($st2, undef, $second) = predict_at('predict-every', 's7', 0.1, ua => $ua);
    ok($st1 == 200 && $first < 1, sprintf('keepalive: the anomalous answer arrives at once (%.3f s)', $first));
    ok($st2 == 200 && $second < 5, sprintf('keepalive: the next request waits for the alert, bounded by its '
                                           . 'timeouts (%.3f s, less than the receiver\'s 5 s)', $second));
    diag(sprintf('keepalive: next request on the connection answered after %.3f s', $second));
    set_mode('200');
}

# --- 11. conf/examples/alerts.conf, as shipped, to an Alertmanager-style receiver ---
{
    my $example = "$AnomalyTest::ROOT/conf/examples/alerts.conf";
    my $snippet = do { local $/; open my $fh, '<', $example or die "$example: $!"; <$fh> };
    my $n = ($snippet =~ s{http://127\.0\.0\.1:9093/}{http://127.0.0.1:$RPORT/}g);
    is($n, 1, 'the example names its Alertmanager once (replaced by the receiver)');
    my $ex = AnomalyTest->new(workers => 1, start => 0, api_locations => 0);
    open my $fh, '>', $ex->dir . '/alerts.conf' or die;
    print $fh $snippet;
    close $fh;
    $ex->{server_extra} = "        include " . $ex->dir . "/alerts.conf;\n"
                        . "        location /fit/ { anomaly_fit; }\n";
    $ex->write_config;
    my $d = $ex->dir;
    my $out = `$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log 2>&1`;
    is($?, 0, 'nginx -t accepts the example') or diag($out);
    $ex->start;
    my ($body) = make_series(40, seed => 3, base => 100, spread => 10);
    my ($st) = $ex->fit('am1', $body);
    is($st, 200, 'fit am1 on the example\'s server');
    my $before = n_received();
    my ($pst, $pj, $praw) = $ex->predict('am1', { timestamp => $T0, value => 1e6 });
    ok($pj && $pj->{anomaly}, 'an anomalous predict') or diag($praw);
    my @got = wait_received($before + 1);
    my $r = $got[$before] // {};
    is($r->{path}, '/api/v2/alerts', 'posted to /api/v2/alerts');
    my $alerts = eval { decode_json($r->{body}) };
    ok(ref $alerts eq 'ARRAY' && @$alerts == 1, 'a JSON array of one alert') or diag($r->{body});
    my $a = $alerts->[0] // {};
    is_deeply([ @{ $a->{labels} // {} }{qw(alertname series_id detector)} ], [ 'AnomalyDetected', 'am1', 'three_sigma' ],
              'labels: alertname, series_id, detector');
    is($a->{startsAt}, '2023-11-14T22:13:20Z', 'startsAt: the point\'s time');
    is($a->{annotations}{model_version}, 'v1', 'annotations: model_version');
    like($r->{headers}{'content-type'} // '', qr{^application/json}, 'Content-Type application/json');
}

# --- 12. directives at nginx -t ------------------------------------------------------
for my $case ([ 'anomaly_alert alert;', qr/"anomaly_alert" takes the URI of a location, starting with "\/"/ ],
              [ 'anomaly_alert /alert?x=1;', qr/"anomaly_alert" takes a plain location URI/ ],
              [ 'anomaly_alert_interval soon;', qr/"anomaly_alert_interval" takes a time such as 60s/ ]) {
    my ($line, $re) = @$case;
    my $bad = AnomalyTest->new(workers => 1, start => 0, predict_extra => "            $line\n");
    my $d = $bad->dir;
    my $out = `$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log 2>&1`;
    ok($? != 0 && $out =~ $re, "nginx -t refuses \"$line\"") or diag($out);
}
{
    my $ok = AnomalyTest->new(workers => 1, start => 0,
                              http_extra => "    anomaly_alert /alert;\n    anomaly_alert_interval 10m;\n",
                              predict_extra => "            anomaly_alert off;\n");
    my $d = $ok->dir;
    my $out = `$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log 2>&1`;
    is($?, 0, 'anomaly_alert and anomaly_alert_interval at the http level, anomaly_alert off in a location')
        or diag($out);
}

AnomalyTest::done();
