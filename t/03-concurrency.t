#!/usr/bin/perl
# Concurrent fits of one series get distinct consecutive versions, each with
# its own data; a new version is visible at once on every worker.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use AnomalyTest qw(make_series mean_std close_enough);

my $t = AnomalyTest->new(workers => 4);
my $N = 30;
my $tmp = tempdir(CLEANUP => 1);

# --- 30 concurrent fits ----------------------------------------------------------

my %mean_of;   # fit number => mean of its data
my @pids;
my $go = time + 0.5;   # every child sends at the same moment
for my $i (1 .. $N) {
    # fit i trains on values around 1000 * i: its mean identifies it
    my ($body, $values) = make_series(50 + $i, seed => 100 + $i, base => 1000 * $i, spread => 50);
    ($mean_of{$i}) = mean_std($values);
    push @pids, AnomalyTest::child(sub {
        sleep($go - time) if $go > time;
        my ($st, $j, $raw) = $t->fit('concurrent', $body);
        open my $fh, '>', "$tmp/fit.$i" or die $!;
        my $v = ref $j eq 'HASH' ? ($j->{version} // '') : '';
        $raw =~ s/\s+/ /g;
        print $fh "$st\t$v\t$raw\n";
        close $fh;
    });
}
waitpid($_, 0) for @pids;

my (%version_of, %fit_of_version, @problems);
for my $i (1 .. $N) {
    open my $fh, '<', "$tmp/fit.$i" or do { push @problems, "fit $i: no result"; next };
    my ($st, $v, $raw) = split /\t/, scalar(<$fh>) // '', 3;
    chomp($raw //= '');
    if (($st // '') ne '200') {
        push @problems, "fit $i: status " . ($st // '?') . " $raw";
        next;
    }
    $version_of{$i} = $v;
    push @{$fit_of_version{$v}}, $i;
}
ok(!@problems, "all $N concurrent fits answered 200") or diag(join "\n", @problems);
is_deeply([ sort { substr($a, 1) <=> substr($b, 1) } keys %fit_of_version ],
          [ map { "v$_" } 1 .. $N ], "versions are exactly v1..v$N")
    or diag(join ' ', map { "$_=$version_of{$_}" } sort { $a <=> $b } keys %version_of);
my @dups = grep { @{$fit_of_version{$_}} > 1 } keys %fit_of_version;
ok(!@dups, 'no version given to two fits')
    or diag(join "\n", map { "$_ given to fits @{$fit_of_version{$_}}" } @dups);

# Each version holds the data of the fit that got it: predicting that fit's
# mean gives a score of 0 (any other fit's mean is >= 1000 away, std ~ 15).
my @wrong;
for my $v (sort { substr($a, 1) <=> substr($b, 1) } keys %fit_of_version) {
    my $i = $fit_of_version{$v}[0];
    my ($st, $j, $raw) = $t->predict('concurrent', { timestamp => '1800000000', value => $mean_of{$i} }, $v);
    push @wrong, "$v (fit $i, mean $mean_of{$i}): $st $raw"
        unless $st == 200 && ref $j eq 'HASH' && ($j->{model_version} // '') eq $v
               && close_enough($j->{score}, 0, 1e-9) && !$j->{anomaly};
}
ok(!@wrong && keys %fit_of_version, 'every version answers with the mean of the data of its own fit')
    or diag(join "\n", @wrong);

# Latest is v30 and holds the data of its fit.
{
    my $i = $fit_of_version{"v$N"} ? $fit_of_version{"v$N"}[0] : 0;
    my ($st, $j, $raw) = $t->predict('concurrent', { timestamp => '1800000000', value => $mean_of{$i} // 0 });
    ok($i && $j && $j->{model_version} eq "v$N" && close_enough($j->{score}, 0, 1e-9),
       "latest is v$N with the data of its fit") or diag("$st $raw");
}

# --- concurrent fits of different series do not disturb each other -------------

{
    my $go2 = time + 0.3;
    my @p;
    for my $s (1 .. 8) {
        for my $k (1 .. 3) {
            my ($body) = make_series(20, seed => 1000 + 10 * $s + $k, base => 10 * $s, spread => 2);
            push @p, AnomalyTest::child(sub {
                sleep($go2 - time) if $go2 > time;
                my ($st, $j) = $t->fit("multi$s", $body);
                open my $fh, '>', "$tmp/multi.$s.$k" or die $!;
                print $fh "$st " . (ref $j eq 'HASH' ? $j->{version} // '' : '') . "\n";
                close $fh;
            });
        }
    }
    waitpid($_, 0) for @p;
    my @bad;
    for my $s (1 .. 8) {
        my @v;
        for my $k (1 .. 3) {
            open my $fh, '<', "$tmp/multi.$s.$k" or do { push @bad, "multi$s/$k: no result"; next };
            my ($st, $v) = split ' ', scalar <$fh>;
            push @bad, "multi$s/$k: status $st" unless $st == 200;
            push @v, $v // '';
        }
        my $got = join ',', sort @v;
        push @bad, "multi$s got versions $got" unless $got eq 'v1,v2,v3';
    }
    ok(!@bad, '8 series x 3 concurrent fits: each series got v1, v2, v3') or diag(join "\n", @bad);
}

# --- cross-worker visibility -------------------------------------------------------

# After each fit, 20 predicts over fresh connections (spread over the workers)
# must all see the new version at once.
my (%pids_seen, @stale);
my $other_worker = 0;
for my $round (1 .. 5) {
    my ($body, $values) = make_series(20, seed => 500 + $round, base => 100 * $round, spread => 5);
    my ($st, $j, $raw, $h) = $t->fit('visible', $body);
    my $fit_pid = $h->{'x-worker-pid'} // 0;
    unless ($st == 200 && $j && $j->{version} eq "v$round") {
        push @stale, "round $round: fit answered $st $raw";
        next;
    }
    my ($mean) = mean_std($values);
    for my $k (1 .. 20) {
        my ($ps, $pj, $praw, $ph) = $t->predict('visible', { timestamp => 1800000000, value => $mean });
        my $wp = $ph->{'x-worker-pid'} // 0;
        $pids_seen{$wp}++;
        $other_worker++ if $wp ne $fit_pid;
        push @stale, "round $round predict $k (worker $wp, fit on $fit_pid): $ps $praw"
            unless $ps == 200 && ref $pj eq 'HASH' && ($pj->{model_version} // '') eq "v$round"
                   && close_enough($pj->{score}, 0, 1e-9);
    }
}
ok(!@stale, 'every predict right after a fit sees the new version')
    or diag(join "\n", @stale[0 .. ($#stale < 9 ? $#stale : 9)]);
# Not about the module: makes sure the check above did cross workers.
ok($other_worker > 0 && keys %pids_seen >= 2,
   'the predicts reached workers other than the one that took the fit')
    or diag('workers seen: ' . join(' ', map { "$_ x$pids_seen{$_}" } keys %pids_seen));

AnomalyTest::done();
