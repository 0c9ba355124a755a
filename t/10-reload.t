#!/usr/bin/perl
# nginx -s reload, 20 times, while clients fit and predict: no request fails,
# the store changes hands between worker generations, the models stay in the
# zone (the disk is read once, at the first start), and every acknowledged
# version answers afterwards.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series);

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
my @versions = AnomalyTest::check_load($t, $r, during => 'the reloads', min_fits => 20);

my $log = $t->error_log_text;
my @loads = $log =~ /anomaly: loaded \d+ versions from the store/g;
is(scalar @loads, 1, 'versions were read from disk once, at the first start, not on reloads');
my @opens = $log =~ /anomaly store "[^"]+" opened by this worker/g;
ok(@opens >= 2, 'the store changed hands across worker generations (' . scalar(@opens) . ' opens)');

AnomalyTest::done();
