#!/usr/bin/perl
# Persistence: every version survives a stop and a start of a new nginx on
# the same store, answering exactly as before; numbering continues.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series mean_std raw_field);

my $t = AnomalyTest->new(workers => 2);

my %versions = (       # series => number of versions
    'p.one'   => 3,
    'p:two'   => 1,
    'p-three' => 5,
    'P_four'  => 2,
);
my %values;            # "series/vN" => \@values
for my $series (sort keys %versions) {
    for my $n (1 .. $versions{$series}) {
        my ($body, $values) = make_series(20 + 7 * $n, seed => length($series) * 31 + $n,
                                          base => 100 * $n, spread => 3 * $n,
                                          data => $n % 2);
        my ($st, $j, $raw) = $t->fit($series, $body);
        is($j && $j->{version}, "v$n", "fit $series -> v$n") or diag("$st $raw");
        $values{"$series/v$n"} = $values;
    }
}

# Every question asked before the restart, with its raw answer.
my @questions;   # [series, version or undef, value]
for my $key (sort keys %values) {
    my ($series, $v) = split m{/}, $key;
    my ($mean, $std) = mean_std($values{$key});
    for my $k (-4, -1.5, 0, 0.7, 3.2, 8) {
        push @questions, [ $series, $v, $mean + $k * $std ];
    }
    push @questions, [ $series, substr($v, 1), $mean + 3.5 * $std ];
}
for my $series (sort keys %versions) {
    my ($mean, $std) = mean_std($values{"$series/v$versions{$series}"});
    push @questions, [ $series, undef, $_ ] for $mean - 5 * $std, $mean + $std, $mean;
}

sub ask {
    my ($tt) = @_;
    my @answers;
    for my $q (@questions) {
        my ($series, $v, $value) = @$q;
        my ($st, $j, $raw) = $tt->predict($series, { timestamp => '1800000000', value => $value }, $v);
        my $a = $st == 200 && ref $j eq 'HASH'
            ? join(' ', 'anomaly=' . ($j->{anomaly} ? 'true' : 'false'),
                        'model_version=' . ($j->{model_version} // ''),
                        'score=' . (raw_field($raw, 'score') // ''))
            : "status $st $raw";
        push @answers, $a;
    }
    return \@answers;
}

my $before = ask($t);
my @bad_before = grep { !/^anomaly=(true|false) model_version=v\d+ score=-?\d/ } @$before;
ok(!@bad_before && @$before == @questions, scalar(@questions) . ' predicts answered before the restart')
    or diag(join "\n", @bad_before[0 .. ($#bad_before < 5 ? $#bad_before : 5)]);

my ($hs, $hj) = $t->healthcheck;
my $trained = $hj ? $hj->{series_trained} : undef;

$t->stop;

# A new nginx, new directory and port, same store.
my $t2 = AnomalyTest->new(workers => 3, store => $t->store_dir);
my $after = ask($t2);
my @diff;
for my $i (0 .. $#questions) {
    next if ($before->[$i] // '') eq ($after->[$i] // '');
    my ($s, $v, $value) = @{$questions[$i]};
    push @diff, "$s " . ($v // 'latest') . " value $value: before [$before->[$i]] after [" . ($after->[$i] // '') . ']';
}
ok(!@diff, 'every answer after the restart is identical (anomaly, model_version, score as text)')
    or diag(join "\n", @diff[0 .. ($#diff < 9 ? $#diff : 9)]);

($hs, $hj) = $t2->healthcheck;
is($hj && $hj->{series_trained}, $trained, "series_trained is still $trained after the restart");

for my $series (sort keys %versions) {
    my $n = $versions{$series};
    my ($st, $j, $raw) = $t2->predict($series, { timestamp => '1800000000', value => 1 });
    is($j && $j->{model_version}, "v$n", "$series: latest is still v$n") or diag("$st $raw");
    ($st, $j, $raw) = $t2->predict($series, { timestamp => '1800000000', value => 1 }, 'v' . ($n + 1));
    is($st, 404, "$series: v" . ($n + 1) . ' does not exist');
    my ($body) = make_series(15, seed => 999 + $n, base => 7, spread => 1);
    ($st, $j, $raw) = $t2->fit($series, $body);
    is($j && $j->{version}, 'v' . ($n + 1), "$series: the next fit is v" . ($n + 1)) or diag("$st $raw");
}

# A second restart keeps the versions fitted after the first one too.
$t2->stop;
my $t3 = AnomalyTest->new(workers => 2, store => $t->store_dir);
for my $series (sort keys %versions) {
    my $n = $versions{$series} + 1;
    my ($st, $j, $raw) = $t3->predict($series, { timestamp => '1800000000', value => 7 });
    is($j && $j->{model_version}, "v$n", "second restart: $series latest is v$n") or diag("$st $raw");
}
my $again = ask($t3);
my @diff3 = grep { ($before->[$_] // '') ne ($again->[$_] // '') }
            grep { defined $questions[$_][1] } 0 .. $#questions;
ok(!@diff3, 'second restart: every versioned answer is still identical')
    or diag(join "\n", map { "[$before->[$_]] vs [$again->[$_]]" } @diff3[0 .. ($#diff3 < 5 ? $#diff3 : 5)]);

AnomalyTest::done();
