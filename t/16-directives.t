#!/usr/bin/perl
# The tuning directives (anomaly_sigma, anomaly_tail, anomaly_min_points,
# anomaly_max_points) and a series id from a named capture, through a real
# nginx; `nginx -t` refusing wrong values; and the access-control example
# conf/examples/access-control.conf, loaded as it is shipped.

use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use AnomalyTest qw(make_series mean_std close_enough error_ok raw_field);

my $ts  = 1_700_100_000;
my $p2  = AnomalyTest::free_port();

my $t = AnomalyTest->new(
    workers   => 2,
    # A second server: anomaly_sigma and anomaly_tail at server level,
    # inherited by its location.
    http_extra => <<"HTTP",
    server {
        listen 127.0.0.1:$p2;
        anomaly_sigma 2;
        anomaly_tail  upper;
        location /predict/ { anomaly_predict; }
    }
HTTP
    locations => <<'LOC',
        location /predict-sigma2/ {
            anomaly_sigma 2;
            anomaly_predict;
        }
        location /predict-upper/ {
            anomaly_tail upper;
            anomaly_predict;
        }
        location /fit-bounds/ {
            anomaly_min_points 5;
            anomaly_max_points 20;
            anomaly_fit;
        }
        location ~ ^/v2/models/(?<sid>[^/]+)/predict$ {
            anomaly_predict $sid;
        }
        location ~ ^/v2/models/(?<sid>[^/]+)/fit$ {
            anomaly_fit $sid;
        }
LOC
);

# --- anomaly_sigma and anomaly_tail ------------------------------------------

my ($body, $values) = make_series(60, seed => 41, base => 50, spread => 8);
{
    my ($st, $j, $raw) = $t->fit('tuned', $body);
    is($st, 200, 'fit "tuned" through /fit/') or diag($raw);
}
my ($mean, $std) = mean_std($values);

# POST a prediction of mean + k*std to PATH; check status 200, model v1,
# the score against (value - mean) / std computed here, and the anomaly flag.
sub predict_at {
    my ($path, $k, $expect, $name, %o) = @_;
    my ($m, $s) = $o{values} ? mean_std($o{values}) : ($mean, $std);
    my $value = 0 + sprintf('%.6f', $m + $k * $s);
    my $score = ($value - $m) / $s;
    my ($st, $j, $raw) = $t->request('POST', $path, { timestamp => "$ts", value => $value });
    my @why;
    push @why, "status $st, expected 200" unless $st == 200;
    if (ref $j eq 'HASH') {
        push @why, "model_version " . ($j->{model_version} // 'undef')
            unless ($j->{model_version} // '') eq ($o{version} // 'v1');
        push @why, "anomaly is not a JSON boolean" unless JSON::PP::is_bool($j->{anomaly});
        push @why, "anomaly " . ($j->{anomaly} ? 'true' : 'false') . ", expected "
                   . ($expect ? 'true' : 'false')
            unless !!$j->{anomaly} == !!$expect;
        push @why, "score " . ($j->{score} // 'undef') . ", expected $score"
            unless close_enough($j->{score}, $score, 1e-9);
        push @why, "score is not a JSON number" unless (raw_field($raw, 'score') // '') =~ /^-?\d/;
    } else {
        push @why, 'body is not a JSON object';
    }
    ok(!@why, $name) or diag(join("\n", @why) . "\nbody: $raw");
    return $j;
}

predict_at('/predict/tuned',        2.5,  0, 'default sigma 3: +2.5 std is normal, score = (v-mean)/std');
predict_at('/predict-sigma2/tuned', 2.5,  1, 'anomaly_sigma 2: +2.5 std is an anomaly, same score');
predict_at('/predict-sigma2/tuned', -2.5, 1, 'anomaly_sigma 2 (tail both): -2.5 std is an anomaly');
predict_at('/predict-sigma2/tuned', 1.5,  0, 'anomaly_sigma 2: +1.5 std is normal');
predict_at('/predict-sigma2/tuned', -1.5, 0, 'anomaly_sigma 2: -1.5 std is normal');

predict_at('/predict/tuned',        -4,   1, 'default tail both: -4 std is an anomaly');
predict_at('/predict/tuned',        4,    1, 'default tail both: +4 std is an anomaly');
predict_at('/predict-upper/tuned',  -4,   0, 'anomaly_tail upper: -4 std (far below) is normal');
predict_at('/predict-upper/tuned',  -50,  0, 'anomaly_tail upper: -50 std is normal');
predict_at('/predict-upper/tuned',  4,    1, 'anomaly_tail upper: +4 std (far above) is an anomaly');
predict_at('/predict-upper/tuned',  2.5,  0, 'anomaly_tail upper keeps sigma 3: +2.5 std is normal');

# Server-level settings are inherited by the server's locations.
{
    local $t->{port} = $p2;
    predict_at('/predict/tuned', 2.5, 1, 'server-level anomaly_sigma 2 + tail upper: +2.5 std is an anomaly');
    predict_at('/predict/tuned', -4,  0, 'server-level tail upper: -4 std is normal');
    predict_at('/predict/tuned', 1.5, 0, 'server-level sigma 2: +1.5 std is normal');
}

# --- anomaly_min_points / anomaly_max_points -----------------------------------

sub fit_n {
    my ($path, $n) = @_;
    my ($b) = make_series($n, seed => 100 + $n, base => 10, spread => 4);
    return [ $t->request('POST', $path, $b) ];
}
for my $case ([ 5, 200 ], [ 4, 422, 'too_few_points', qr/At least 5 points.*anomaly_min_points/ ],
              [ 20, 200 ], [ 21, 422, 'too_many_points', qr/At most 20 points.*anomaly_max_points/ ]) {
    my ($n, $status, $code, $re) = @$case;
    my $res = fit_n("/fit-bounds/b$n", $n);
    if ($status == 200) {
        ok($res->[0] == 200 && ($res->[1]{points_used} // -1) == $n,
           "anomaly_min_points 5 / anomaly_max_points 20: $n points accepted")
            or diag("$res->[0] $res->[2]");
    } else {
        error_ok($res, $status, $code, "anomaly_min_points 5 / anomaly_max_points 20: $n points -> 422 $code", $re);
    }
}
# The same counts at the plain /fit/ (defaults 10 and 1000000) answer otherwise.
error_ok(fit_n('/fit/d5', 5), 422, 'too_few_points', 'default anomaly_min_points 10: 5 points -> 422',
         qr/At least 10 points/);
error_ok(fit_n('/fit/d9', 9), 422, 'too_few_points', 'default anomaly_min_points 10: 9 points -> 422');
is(fit_n('/fit/d10', 10)->[0], 200, 'default: 10 points accepted');
is(fit_n('/fit/d21', 21)->[0], 200, 'default: 21 points accepted');

# --- series id from a named capture -------------------------------------------

{
    my ($b2, $v2) = make_series(30, seed => 77, base => -300, spread => 20);
    my ($st, $j, $raw) = $t->fit('cap.series-1', $b2);
    is($st, 200, 'fit "cap.series-1" through /fit/') or diag($raw);
    predict_at('/v2/models/cap.series-1/predict', 1, 0,
               'anomaly_predict $sid: answers for the series fitted through /fit/', values => $v2);
    predict_at('/v2/models/cap.series-1/predict', -3.5, 1,
               'anomaly_predict $sid: its own model (score and anomaly)', values => $v2);
    predict_at('/v2/models/tuned/predict?version=v1', 2.5, 0,
               'anomaly_predict $sid: another series, with ?version=v1');
    error_ok([ $t->request('POST', '/v2/models/nope/predict', { timestamp => "$ts", value => 1 }) ],
             404, 'series_not_found', 'anomaly_predict $sid: an unknown captured id -> 404 series_not_found');

    my ($b3, $v3) = make_series(15, seed => 78, base => 7, spread => 2);
    ($st, $j, $raw) = $t->request('POST', '/v2/models/cap.series-2/fit', $b3);
    is_deeply($j, { series_id => 'cap.series-2', version => 'v1', points_used => 15 },
              'anomaly_fit $sid: fits the captured id') or diag("$st $raw");
    predict_at('/predict/cap.series-2', 0.5, 0, 'a fit through the capture answers at /predict/',
               values => $v3);
}

# --- nginx -t refuses wrong values ----------------------------------------------

my $nt = AnomalyTest->new(start => 0);

# Renders the harness config with EXTRA in place, runs nginx -t on it.
# Returns (exit status, stderr, line of the "# HERE" marker or undef).
sub nginx_t {
    my (%extra) = @_;
    $nt->{$_} = '' for qw(http_extra server_extra fit_extra predict_extra locations);
    $nt->{$_} = $extra{$_} for keys %extra;
    $nt->write_config;
    my $d = $nt->dir;
    my $rc = system("$AnomalyTest::NGINX -t -p $d/ -c $d/nginx.conf -e $d/nginx-t.log >$d/t.out 2>$d/t.err");
    my $err = do { local $/; open my $fh, '<', "$d/t.err" or die; <$fh> } // '';
    my $line;
    my $n = 0;
    for (split /\n/, $nt->config_text) { $n++; if (/# HERE/) { $line = $n; last } }
    return ($rc, $err, $line);
}

{
    my ($rc, $err) = nginx_t(
        predict_extra => 'anomaly_sigma 1000; anomaly_tail lower;',
        fit_extra     => 'anomaly_min_points 2; anomaly_max_points 100000000;',
        server_extra  => 'anomaly_sigma 2.5; anomaly_max_points 1k; anomaly_min_points 1k;');
    ok($rc == 0 && $err =~ /test is successful/,
       'nginx -t accepts sigma 1000 and 2.5, tail lower, min/max points 2, 1k, 100000000')
        or diag("exit $rc\n$err");
}

my $sigma_re = sub { my ($v) = @_;
    qr/\[emerg\] "anomaly_sigma" must be a number above 0 and at most 1000, such as 3 or 2\.5, not "\Q$v\E"/ };
my @bad = (
    [ 'anomaly_sigma 0',    predict_extra => $sigma_re->('0') ],
    [ 'anomaly_sigma -1',   predict_extra => $sigma_re->('-1') ],
    [ 'anomaly_sigma abc',  predict_extra => $sigma_re->('abc') ],
    [ 'anomaly_sigma 2.5x', server_extra  => $sigma_re->('2.5x') ],
    [ 'anomaly_sigma 1001', server_extra  => $sigma_re->('1001') ],
    [ 'anomaly_sigma nan',  http_extra    => $sigma_re->('nan') ],
    [ 'anomaly_sigma inf',  predict_extra => $sigma_re->('inf') ],
    [ 'anomaly_tail sideways', predict_extra => qr/\[emerg\] invalid value "sideways"/ ],
    [ 'anomaly_tail',       predict_extra => qr/\[emerg\] invalid number of arguments in "anomaly_tail" directive/ ],
    [ 'anomaly_min_points 0', fit_extra => qr/\[emerg\] "anomaly_min_points" must be between 2 and 100000000/ ],
    [ 'anomaly_min_points 1', fit_extra => qr/\[emerg\] "anomaly_min_points" must be between 2 and 100000000/ ],
    [ 'anomaly_min_points abc', fit_extra => qr/\[emerg\] "anomaly_min_points" directive invalid value/ ],
    [ 'anomaly_max_points 100000001', fit_extra => qr/\[emerg\] "anomaly_max_points" must be between 2 and 100000000/ ],
    [ 'anomaly_sigma 2; anomaly_sigma 3', predict_extra => qr/\[emerg\] "anomaly_sigma" directive is duplicate/ ],
);
for my $case (@bad) {
    my ($text, $where, $re) = @$case;
    my ($rc, $err, $line) = nginx_t($where => "$text; # HERE");
    my $d = $nt->dir;
    ok($rc != 0 && $err =~ $re && $err =~ /in \Q$d\E\/nginx\.conf:$line\b/ && $err =~ /test failed/,
       "nginx -t refuses `$text;` ($where) naming it, at its line $line")
        or diag("exit $rc\n$err");
}
# min above max, in one block and after inheritance (reported at the merge).
for my $case ([ 'one location', fit_extra => 'anomaly_min_points 100; anomaly_max_points 50;' ],
              [ 'max from server, min from location', server_extra => 'anomaly_max_points 50;',
                fit_extra => 'anomaly_min_points 100;' ]) {
    my ($name, %extra) = @$case;
    my ($rc, $err) = nginx_t(%extra);
    ok($rc != 0 && $err =~ /\[emerg\] "anomaly_min_points" 100 is larger than "anomaly_max_points" 50/,
       "nginx -t refuses anomaly_min_points above anomaly_max_points ($name)")
        or diag("exit $rc\n$err");
}

# --- conf/examples/access-control.conf, as shipped ----------------------------

my $example = "$AnomalyTest::ROOT/conf/examples/access-control.conf";
my $snippet = do { local $/; open my $fh, '<', $example or die "$example: $!"; <$fh> };
my $ac = AnomalyTest->new(workers => 2, start => 0, api_locations => 0);
{
    my $pw = $ac->dir . '/anomaly.htpasswd';
    open my $fh, '>', $pw or die;
    print $fh "trainer:{PLAIN}secret\n";
    close $fh;
    my $n = ($snippet =~ s{auth_basic_user_file\s+/etc/nginx/anomaly\.htpasswd;}{auth_basic_user_file $pw;}g);
    is($n, 1, 'the example names its password file once (replaced by the test\'s)');
    open $fh, '>', $ac->dir . '/access-control.conf' or die;
    print $fh $snippet;
    close $fh;
    $ac->{server_extra} = '        include ' . $ac->dir . '/access-control.conf;';
    $ac->write_config;
    $ac->start;
}

sub ac_post {
    my ($path, %o) = @_;
    my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 15,
                             $o{from} ? (local_address => $o{from}) : ());
    my $auth = $o{user} ? "$o{user}\@" : '';
    my ($b) = make_series(12, seed => 9);
    my $res = $ua->request('POST', "http://${auth}127.0.0.1:" . $ac->port . $path,
                           { headers => { 'Content-Type' => 'application/json' },
                             content => AnomalyTest::encode_body($o{body} // $b) });
    my $j = eval { decode_json($res->{content}) };
    # counted by AnomalyTest::done like the harness's own requests
    $ac->{requests}++;
    my $ct = $res->{headers}{'content-type'} // '(none)';
    push @{$ac->{ctype_bad}}, "POST $path -> $res->{status} Content-Type: $ct"
        unless $ct =~ m{^application/json\s*(;|$)}i;
    return [ $res->{status}, $j, $res->{content}, $res->{headers} ];
}

# 127.0.0.2 is a loopback address that the example does not allow.
{
    my $r = ac_post('/fit/ac', from => '127.0.0.2');
    error_ok($r, 403, 'forbidden', 'fit from a denied address (127.0.0.2): 403 forbidden as JSON');
    error_ok(ac_post('/fit/ac', from => '127.0.0.2', user => 'trainer:secret'), 403, 'forbidden',
             'fit from a denied address with valid credentials: still 403 (satisfy all)');
    error_ok(ac_post('/fit/ac', from => '127.0.0.1'), 401, 'unauthorized',
             'fit from an allowed address without credentials: 401 unauthorized as JSON');
    error_ok(ac_post('/fit/ac', from => '127.0.0.1', user => 'trainer:wrong'), 401, 'unauthorized',
             'fit from an allowed address with a wrong password: 401');
    my $ok = ac_post('/fit/ac', from => '127.0.0.1', user => 'trainer:secret');
    is_deeply($ok->[1], { series_id => 'ac', version => 'v1', points_used => 12 },
              'fit from an allowed address with credentials: 200 v1') or diag("$ok->[0] $ok->[2]");
    for my $from ('127.0.0.2', '127.0.0.1') {
        my $p = ac_post('/predict/ac', from => $from, body => { timestamp => "$ts", value => 100 });
        ok($p->[0] == 200 && ($p->[1]{model_version} // '') eq 'v1',
           "predict from $from, no credentials: 200 (open)") or diag("$p->[0] $p->[2]");
    }
}

AnomalyTest::done();
