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

my %load = (port => $port, dir => $dir, stop => $stop, prefix => 'r', fitters => 4, predictors => 2, series => 4);
my @kids = AnomalyTest::start_load(%load);

sleep 0.5;
my $reloads = 0;
for (1 .. 20) {
    $reloads++ if $t->reload;
}
is($reloads, 20, '20 reloads completed');
sleep 0.5;
my $r = AnomalyTest::stop_load(%load, kids => \@kids);
ok($r->{predicts} > 100, "predictions were sent during the reloads ($r->{predicts})");
is($r->{predict_failures}, 0, 'no prediction failed during the reloads');
my %acked = %{$r->{acked}};
my @failures = @{$r->{fit_failures}};
my @versions = keys %acked;
ok(@versions > 20, 'fits were acknowledged during the reloads (' . scalar(@versions) . ')');
is(scalar @failures, 0, 'no fit failed during the reloads') or diag(join '', @failures[0 .. ($#failures < 9 ? $#failures : 9)]);
ok(!$r->{dupes}, 'no version was acknowledged twice');

my $wrong = 0;
for my $key (@versions) {
    my ($series, $version) = split ' ', $key;
    my ($st, $j) = $t->predict($series, { value => 0 + $acked{$key} }, $version);
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
