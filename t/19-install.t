#!/usr/bin/perl
# Installing the module while nginx runs from it (make build does this to
# build/ngx_http_anomaly_module.so, which make run serves): every install
# writes a new file and renames it over the old one, so the workers keep
# the code they mapped. Installing with cp wrote into the mapped file and
# crashed every worker.
# A reload keeps the build nginx loaded, and the zone with it. Should a zone
# laid out by another build reach a reload all the same, the reload is
# refused: here the running zone's layout number is changed in place.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series);

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
my $module = "$dir/modules/ngx_http_anomaly_module.so";

# The Makefile's own install, to a path of this test's.
sub install_module {
    my $rc = system("make -s -C $AnomalyTest::ROOT install-module MODULE=$module >$dir/make.out 2>&1");
    diag(`cat $dir/make.out`) if $rc;
    return $rc == 0;
}
sub inode { (stat $module)[1] // 0 }

ok(install_module(), 'make install-module MODULE=... installs the built module there');
my $t = AnomalyTest->new(workers => 2, module => $module,
                         log_allow => qr/was laid out by another build of the module \(layout 999,/);
for my $s (0 .. 1) {
    is(($t->fit("i$s", (make_series(20, seed => 190 + $s))[0]))[0], 200, "fit i$s");
}
my @workers = sort $t->worker_pids;

my %load = (port => $t->port, dir => $dir, stop => "$dir/stop", prefix => 'i',
            fitters => 1, predictors => 2, series => 2, fit_pause => 0.05);
my @kids = AnomalyTest::start_load(%load);
sleep 0.5;
for my $n (1 .. 3) {
    my $before = inode();
    ok(install_module(), "install $n while nginx serves from the file");
    my $after = inode();
    ok($after && $after != $before, "install $n made a new file (inode $before -> $after), not a write into the mapped one");
    sleep 0.7;
}
my $r = AnomalyTest::stop_load(%load, kids => \@kids);

ok($r->{predicts} > 50, "predictions were sent during the installs ($r->{predicts})");
is($r->{predict_failures}, 0, 'every prediction was answered 200');
is(scalar @{$r->{fit_failures}}, 0, 'every fit was answered 200') or diag(join '', @{$r->{fit_failures}}[0 .. 2]);
unlike($t->error_log_text, qr/exited on signal/, 'no worker exited on a signal');
is_deeply([ sort $t->worker_pids ], \@workers, 'the same workers run');
my @stale = grep { my $w = $_; grep { /\Q$module\E \(deleted\)/ } `cat /proc/$w/maps` } @workers;
is(scalar @stale, scalar @workers, 'each worker still runs the file it loaded, now replaced');

subtest 'a reload refuses a zone laid out by another build' => sub {
    my $master = $t->master_pid;
    # The zone is shared memory the master mapped; its header starts with the
    # magic "anomalyz", then the layout number (u32).
    my ($at, $layout);
    open my $maps, '<', "/proc/$master/maps" or plan skip_all => "cannot read /proc/$master/maps: $!";
    open my $mem, '+<:raw', "/proc/$master/mem" or plan skip_all => "cannot open /proc/$master/mem: $!";
    no warnings 'portable';
    while (my $line = <$maps>) {
        my ($lo, $hi) = $line =~ m{^([0-9a-f]+)-([0-9a-f]+) rw-s .*/dev/zero} or next;
        ($lo, $hi) = (hex $lo, hex $hi);
        sysseek($mem, $lo, 0) && sysread($mem, my $bytes, $hi - $lo) or next;
        my $i = index($bytes, 'anomalyz');
        next if $i < 0;
        $at = $lo + $i;
        $layout = unpack 'V', substr($bytes, $i + 8, 4);
        last;
    }
    ok(defined $at, "found the zone's header in the master's memory") or return;
    my $poke = sub { sysseek($mem, $at + 8, 0) && syswrite($mem, pack('V', $_[0])) == 4 or die "write: $!" };
    $poke->(999);
    my @workers = sort $t->worker_pids;
    kill 'HUP', $master;
    my $deadline = time + 10;
    sleep 0.05 until $t->error_log_text =~ /\[emerg\].*anomaly_zone "models" was laid out by another build of the module \(layout 999, this build $layout\); restart nginx instead of reloading/
                     || time > $deadline;
    like($t->error_log_text, qr/\[emerg\].*anomaly_zone "models" was laid out by another build of the module \(layout 999, this build $layout\); restart nginx instead of reloading/,
         'the reload logs [emerg] with both layouts');
    sleep 0.5;
    ok($t->running, 'the master still runs');
    is_deeply([ sort $t->worker_pids ], \@workers, 'the old workers keep serving');
    is(($t->predict('i0', { timestamp => 1700000000, value => 1 }))[0], 200, 'predictions are answered');
    $poke->($layout);
    $t->reload;
    is(($t->predict('i0', { timestamp => 1700000000, value => 1 }))[0], 200, 'with the layout restored, a reload works');
};

AnomalyTest::done();
