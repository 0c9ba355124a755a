#!/usr/bin/perl
# The module's variables in log_format and add_header.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use AnomalyTest qw(make_series mean_std close_enough raw_field);

my $t = AnomalyTest->new(
    workers    => 2,
    start      => 0,
    http_extra => <<'HTTP',
    log_format anomaly '$request_uri $status $anomaly_model_version $anomaly_result '
                       '$anomaly_score $anomaly_series_trained '
                       '$anomaly_inference_latency_avg_ms $anomaly_inference_latency_p95_ms '
                       '$anomaly_training_latency_avg_ms $anomaly_training_latency_p95_ms';
HTTP
    predict_extra => '            add_header X-Anomaly $anomaly_result;',
);
$t->{server_extra} = "        access_log " . $t->dir . "/anomaly.log anomaly;";
$t->write_config;
$t->start;

my $log = $t->dir . '/anomaly.log';

# --- traffic -----------------------------------------------------------------------

my ($b1, $v1) = make_series(40, seed => 1, base => 10, spread => 2);
my ($b2, $v2) = make_series(40, seed => 2, base => 20, spread => 2);
my ($b3, $v3) = make_series(40, seed => 3, base => 30, spread => 2);
my @fits = ([ 'logged', $b1 ], [ 'logged', $b2 ], [ 'other', $b3 ]);
for my $f (@fits) {
    my ($st, $j, $raw) = $t->fit(@$f);
    is($st, 200, "fit $f->[0]") or diag($raw);
}

my ($m2, $s2) = mean_std($v2);
my ($m1, $s1) = mean_std($v1);
my @predicts = (
    # [uri suffix, version, value, expected version, expected anomaly]
    [ 'logged', undef, $m2 + 5 * $s2,   'v2', 1 ],
    [ 'logged', undef, $m2 + 0.5 * $s2, 'v2', 0 ],
    [ 'logged', 'v1',  $m1 - 4 * $s1,   'v1', 1 ],
    [ 'logged', 'v1',  $m1 - 1 * $s1,   'v1', 0 ],
);
my %answer;   # request_uri => [status, json, raw, headers]
for my $p (@predicts) {
    my ($series, $version, $value, $ev, $ea) = @$p;
    my @res = $t->predict($series, { timestamp => '1800000000', value => $value }, $version);
    my $uri = "/predict/$series" . (defined $version ? "?version=$version" : '');
    my ($st, $j, $raw, $h) = @res;
    ok($st == 200 && $j && $j->{model_version} eq $ev && !!$j->{anomaly} == !!$ea,
       "predict $uri value $value: $ev, anomaly " . ($ea ? 'true' : 'false')) or diag("$st $raw");
    is($h->{'x-anomaly'}, $ea ? 'true' : 'false',
       "add_header X-Anomaly \$anomaly_result says " . ($ea ? 'true' : 'false'));
    push @{$answer{$uri}}, \@res;
}
# A predict that made no prediction: no X-Anomaly header (empty value).
{
    my ($st, $j, $raw, $h) = $t->predict('nosuch', { timestamp => '1800000000', value => 1 });
    is($st, 404, 'predict of an unknown series: 404');
    ok(!defined $h->{'x-anomaly'}, 'no X-Anomaly header when no prediction was made');
}

# --- the log -----------------------------------------------------------------------

my $num = qr/^(?:\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)$/;
my @lines;
for (1 .. 50) {     # the access log is written when each request ends
    open my $fh, '<', $log or die "$log: $!";
    @lines = grep { m{^/(?:fit|predict)/} } <$fh>;
    last if @lines >= @fits + @predicts + 1;
    sleep 0.05;
}
chomp @lines;
is(scalar @lines, @fits + @predicts + 1, 'one log line per fit and predict') or diag(join "\n", @lines);

my @fit_lines = grep { m{^/fit/} } @lines;
for my $l (@fit_lines) {
    my @f = split / /, $l;
    is(scalar @f, 10, "fit line has 10 fields: $l");
    is($f[1], 200, 'fit line: status 200');
    is($f[3], '-', 'fit line: $anomaly_result empty (-)');
    is($f[4], '-', 'fit line: $anomaly_score empty (-)');
    like($f[5] // '', qr/^\d+$/, 'fit line: $anomaly_series_trained is a count');
    like($f[$_] // '', $num, "fit line: latency field $_ is a number") for 6 .. 9;
}
# The last fit created the second series.
is((split / /, $fit_lines[-1] // '')[5], 2, 'series_trained is 2 in the last fit line');

my @pred_lines = grep { m{^/predict/} } @lines;
my %seen;
for my $l (@pred_lines) {
    my @f = split / /, $l;
    is(scalar @f, 10, "predict line has 10 fields: $l");
    my $uri = $f[0];
    if ($uri =~ m{nosuch}) {
        is($f[1], 404, 'unknown series line: status 404');
        is($f[3], '-', 'unknown series line: $anomaly_result empty (-)');
        is($f[4], '-', 'unknown series line: $anomaly_score empty (-)');
        next;
    }
    # Two workers write their access-log lines when each request ends, so
    # lines of one URI may come in another order than the answers: take the
    # first answer not yet matched that agrees with the line, else the next
    # unmatched one (whose checks below then fail).
    my $list = $answer{$uri} || [];
    my ($pick) = grep { !$seen{"$uri $_"} && ($f[3] // '') eq ($list->[$_][1]{anomaly} ? 'true' : 'false')
                        && close_enough($f[4], $list->[$_][1]{score}, 1e-9) } 0 .. $#$list;
    ($pick) = grep { !$seen{"$uri $_"} } 0 .. $#$list unless defined $pick;
    my $res = defined $pick ? $list->[$pick] : undef;
    $seen{"$uri $pick"} = 1 if defined $pick;
    my ($st, $j, $raw) = $res ? @$res : (0, {}, '');
    is($f[1], 200, "$uri: status 200");
    is($f[2], $j->{model_version}, "$uri: \$anomaly_model_version is $j->{model_version}");
    is($f[3], $j->{anomaly} ? 'true' : 'false', "$uri: \$anomaly_result matches the answer");
    ok(($f[4] // '') =~ /^-?\d/ && close_enough($f[4], $j->{score}, 1e-9),
       "$uri: \$anomaly_score $f[4] matches the answer's " . (raw_field($raw, 'score') // 'undef'));
    is($f[5], 2, "$uri: \$anomaly_series_trained is 2");
    like($f[$_] // '', $num, "$uri: latency field $_ is a number") for 6 .. 9;
    # by now there were predicts before and fits: the inference and training
    # averages are positive
    ok(($f[8] // 0) > 0, "$uri: \$anomaly_training_latency_avg_ms > 0 after fits");
}
is(scalar(grep { m{\bv2\b} } @pred_lines), 2, 'two predict lines show v2');
is(scalar(grep { m{\bv1\b} } @pred_lines), 2, 'two predict lines show v1');
# The last good predict line: inference latency includes earlier predicts.
{
    my @good = grep { !/nosuch/ } @pred_lines;
    my @f = split / /, $good[-1] // '';
    ok(($f[6] // 0) > 0 && ($f[7] // 0) > 0,
       'inference latency avg and p95 are positive in the last predict line') or diag($good[-1]);
}

AnomalyTest::done();
