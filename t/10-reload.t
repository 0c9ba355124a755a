#!/usr/bin/perl
# nginx -s reload, 20 times, while clients fit and predict: no request fails,
# the store changes hands between worker generations, the models stay in the
# zone (the disk is read once, at the first start), and every acknowledged
# version answers afterwards.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series encode_body close_enough);

my $t = AnomalyTest->new(workers => 2);
my $port = $t->port;
my $dir = tempdir(CLEANUP => 1);
my $stop = "$dir/stop";

for my $s (0 .. 3) {
    is(($t->fit("r$s", (make_series(20, seed => 100 + $s))[0]))[0], 200, "initial fit r$s");
}

# Fitters: each fit's data has a distinct mean, recorded with the version it got.
my @kids;
for my $k (0 .. 3) {
    push @kids, AnomalyTest::child(sub {
        my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
        open my $log, '>', "$dir/fit.$k" or die;
        my $i = 0;
        until (-e $stop) {
            my $base = 1000 * $k + ++$i;
            my @v = map { $base + ($_ % 5) } 1 .. 20;
            my @ts = map { 1700000000 + 60 * $_ } 1 .. 20;
            my $mean = 0;
            $mean += $_ / 20 for @v;
            my $res = $ua->post("http://127.0.0.1:$port/fit/r$k", {
                headers => { 'Content-Type' => 'application/json' },
                content => encode_body({ timestamps => \@ts, values => \@v }) });
            my $j = eval { decode_json($res->{content}) };
            if ($res->{status} == 200 && $j) { print $log "ok r$k $j->{version} $mean\n" }
            else { print $log "fail $res->{status} " . substr($res->{content} // '', 0, 200) . "\n" }
            $log->flush;
        }
    });
}
# Predictors: count answers that are not 200.
for my $k (0 .. 1) {
    push @kids, AnomalyTest::child(sub {
        my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
        my ($n, $bad) = (0, 0);
        until (-e $stop) {
            my $res = $ua->post("http://127.0.0.1:$port/predict/r" . ($n % 4), {
                headers => { 'Content-Type' => 'application/json' },
                content => '{"timestamp": 1700000000, "value": 10}' });
            $n++;
            $bad++ if $res->{status} != 200;
        }
        open my $out, '>', "$dir/predict.$k" or die;
        print $out "$n $bad\n";
    });
}

sleep 0.5;
my $reloads = 0;
for (1 .. 20) {
    $reloads++ if $t->reload;
}
is($reloads, 20, '20 reloads completed');
sleep 0.5;
open my $fh, '>', $stop or die;
close $fh;
waitpid $_, 0 for @kids;

my ($predicts, $predict_failures) = (0, 0);
for my $k (0 .. 1) {
    open my $in, '<', "$dir/predict.$k" or die "no result from predictor $k";
    my ($n, $bad) = split ' ', scalar <$in>;
    $predicts += $n;
    $predict_failures += $bad;
}
ok($predicts > 100, "predictions were sent during the reloads ($predicts)");
is($predict_failures, 0, 'no prediction failed during the reloads');

my (%acked, @failures, $dupes);
for my $k (0 .. 3) {
    open my $in, '<', "$dir/fit.$k" or die;
    while (<$in>) {
        if (/^ok (\S+) (v\d+) (\S+)/) { $dupes++ if $acked{"$1 $2"}++; $acked{"$1 $2 mean"} = $3 }
        else { push @failures, $_ }
    }
}
my @versions = grep { !/mean$/ } keys %acked;
ok(@versions > 20, 'fits were acknowledged during the reloads (' . scalar(@versions) . ')');
is(scalar @failures, 0, 'no fit failed during the reloads') or diag(join '', @failures[0 .. ($#failures < 9 ? $#failures : 9)]);
ok(!$dupes, 'no version was acknowledged twice');

my $wrong = 0;
for my $key (@versions) {
    my ($series, $version) = split ' ', $key;
    my ($st, $j) = $t->predict($series, { value => 0 + $acked{"$key mean"} }, $version);
    next if $st == 200 && $j->{model_version} eq $version && close_enough($j->{score}, 0, 1e-9);
    diag("$series $version: $st " . encode_json($j // {})) if $wrong++ < 3;
}
is($wrong, 0, 'every acknowledged version answers with its own mean');

my $log = $t->error_log_text;
my @loads = $log =~ /anomaly: loaded \d+ versions from the store/g;
is(scalar @loads, 1, 'versions were read from disk once, at the first start, not on reloads');
my @opens = $log =~ /anomaly store "[^"]+" opened by this worker/g;
ok(@opens >= 2, 'the store changed hands across worker generations (' . scalar(@opens) . ' opens)');

AnomalyTest::done();
