#!/usr/bin/perl
# Fit and predict: versions, the z-score, the anomaly rule, both body shapes.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series mean_std close_enough raw_field json_number_ok);

my $t = AnomalyTest->new(workers => 2);

# --- several series, one of them with three versions -------------------------

my %data;   # "$series/$version" => \@values
my %fits = (
    temp     => [ [50, seed => 11, base => 20,   spread => 4],
                  [80, seed => 12, base => 25,   spread => 6],
                  [30, seed => 13, base => 1000, spread => 100] ],
    'cpu.load_1:host-a' => [ [200, seed => 21, base => 0.5, spread => 0.2] ],
    humidity => [ [12, seed => 31, base => -40, spread => 3, data => 1],
                  [40, seed => 32, base => 60,  spread => 8] ],
);

for my $series (sort keys %fits) {
    my $n = 0;
    for my $spec (@{$fits{$series}}) {
        $n++;
        my ($count, %o) = @$spec;
        my ($body, $values) = make_series($count, %o);
        my ($st, $j, $raw, $h) = $t->fit($series, $body);
        is($st, 200, "fit $series #$n: 200") or diag($raw);
        like($h->{'content-type'} // '', qr{^application/json}, "fit $series #$n: Content-Type");
        is_deeply($j, { series_id => $series, version => "v$n", points_used => $count },
                  "fit $series #$n: series_id, version v$n, points_used $count")
            or diag($raw);
        json_number_ok($j->{points_used}, "fit $series #$n: points_used is a JSON number")
            if ref $j eq 'HASH';
        $data{"$series/v$n"} = $values;
    }
}

# --- predictions ------------------------------------------------------------

# Checks one predict answer against the score and rule computed here.
sub check_predict {
    my ($series, $version_q, $expect_version, $value, $ts, $name) = @_;
    my $values = $data{"$series/$expect_version"};
    my ($mean, $std) = mean_std($values);
    my $score = ($value - $mean) / $std;
    my $anomaly = abs($value - $mean) > 3 * $std ? 1 : 0;

    my ($st, $j, $raw, $h) = $t->predict($series, { timestamp => $ts, value => $value },
                                         $version_q);
    my @why;
    push @why, "status $st" unless $st == 200;
    push @why, "Content-Type " . ($h->{'content-type'} // 'none')
        unless ($h->{'content-type'} // '') =~ m{^application/json};
    if (ref $j eq 'HASH') {
        push @why, "model_version " . ($j->{model_version} // 'undef') . " != $expect_version"
            unless ($j->{model_version} // '') eq $expect_version;
        push @why, "anomaly is not a JSON boolean" unless JSON::PP::is_bool($j->{anomaly});
        push @why, "anomaly " . ($j->{anomaly} ? 'true' : 'false') . ", expected "
                   . ($anomaly ? 'true' : 'false')
            unless (!!$j->{anomaly}) == (!!$anomaly);
        push @why, "score " . ($j->{score} // 'undef') . " != $score"
            unless close_enough($j->{score}, $score, 1e-9);
        my $rs = raw_field($raw, 'score') // '';
        push @why, "score is not a JSON number: $rs" unless $rs =~ /^-?\d/;
    } else {
        push @why, "body is not a JSON object";
    }
    ok(!@why, $name) or diag(join("\n", @why) . "\nbody: $raw");
    return $j;
}

my $ts = 1_700_100_000;
for my $key (sort keys %data) {
    my ($series, $v) = split m{/}, $key;
    my ($mean, $std) = mean_std($data{$key});
    my $n = substr($v, 1);
    for my $k (-3.5, -2.5, -1, 0.25, 2.5, 3.5) {
        my $value = 0 + sprintf('%.6f', $mean + $k * $std);
        check_predict($series, $v, $v, $value, "$ts",
                      "$series ?version=$v, value mean${\($k < 0 ? '' : '+')}${k}std"
                      . " (" . (abs($k) > 3 ? 'anomaly' : 'normal') . ")");
    }
    # the bare number form picks the same version, integer timestamp
    my $value = 0 + sprintf('%.6f', $mean + 3.5 * $std);
    check_predict($series, $n, $v, $value, $ts, "$series ?version=$n picks $v (integer timestamp)");
}

# Without version: the latest.
for my $series (sort keys %fits) {
    my $latest = 'v' . scalar @{$fits{$series}};
    my ($mean, $std) = mean_std($data{"$series/$latest"});
    check_predict($series, undef, $latest, 0 + sprintf('%.6f', $mean + 4 * $std), "$ts",
                  "$series without version uses the latest ($latest), anomaly");
    check_predict($series, undef, $latest, 0 + sprintf('%.6f', $mean - 0.5 * $std), $ts,
                  "$series without version uses the latest ($latest), normal");
}

# Older versions keep their own models: a value normal for temp v1 is far
# out for v3 (base 20 vs 1000) and the other way round.
{
    my ($m1) = mean_std($data{'temp/v1'});
    my $j1 = check_predict('temp', 'v1', 'v1', 0 + sprintf('%.3f', $m1), "$ts", 'temp v1: its mean is normal');
    my $j3 = check_predict('temp', undef, 'v3', 0 + sprintf('%.3f', $m1), "$ts", 'temp latest (v3): v1 mean is an anomaly');
    ok($j1 && $j3 && !$j1->{anomaly} && $j3->{anomaly}, 'versions differ: v1 normal, v3 anomaly');
}

# A fourth fit of temp makes v4 the latest, right away.
{
    my ($body, $values) = make_series(25, seed => 14, base => -500, spread => 10);
    my ($st, $j, $raw) = $t->fit('temp', $body);
    is($j && $j->{version}, 'v4', 'fourth fit of temp is v4') or diag($raw);
    $data{'temp/v4'} = $values;
    my ($mean, $std) = mean_std($values);
    check_predict('temp', undef, 'v4', 0 + sprintf('%.3f', $mean + 2 * $std), "$ts",
                  'temp without version now uses v4');
    check_predict('temp', 'v2', 'v2', -499, "$ts", 'temp ?version=v2 still answers from v2');
}

# The score is reported with full precision, not rounded for display:
# a value 1e-7 std from the mean has a score of about 1e-7.
{
    my $values = $data{'cpu.load_1:host-a/v1'};
    my ($mean, $std) = mean_std($values);
    my $value = $mean + 1e-7 * $std;
    my ($st, $j, $raw) = $t->predict('cpu.load_1:host-a', { timestamp => "$ts", value => $value });
    ok($j && close_enough($j->{score} / 1e-7, ($value - $mean) / $std / 1e-7, 1e-6),
       'a tiny score keeps its precision') or diag($raw);
}

# A series name that is a prefix of another is its own series.
{
    my ($st, $j, $raw) = $t->predict('tem', { timestamp => "$ts", value => 1 });
    is($st, 404, 'series "tem" (prefix of "temp") is not found') or diag($raw);
}

AnomalyTest::done();
