#!/usr/bin/perl
# nginx's binary upgrade (USR2, WINCH, QUIT) under load, once rolled back
# (HUP to the old master, QUIT to the new one) and once completed. The new
# generation has a zone of its own and cannot open LevelDB while the old one
# holds it: it reads the models from a copy and answers predictions at once,
# and its fits wait for the store. After the rollback the old zone learns of
# the versions the new generation committed. No request fails, no version is
# lost or acknowledged twice.

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
    is(($t->fit("u$s", (make_series(20, seed => 200 + $s))[0]))[0], 200, "initial fit u$s");
}

my %load = (port => $port, dir => $dir, stop => $stop, prefix => 'u', fitters => 2, predictors => 2, series => 4,
            timeout => 60, fit_pause => 0.05);
my @kids = AnomalyTest::start_load(%load);

sub workers_of {
    my ($master) = @_;
    return grep { /^\d+$/ } map { /^\s*(\d+)\s+(\S+)\s+.*worker process/ && $2 !~ /^Z/ ? $1 : () }
        `ps -o pid=,stat=,args= --ppid $master 2>/dev/null`;
}
sub wait_until {
    my ($what, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 20);
    until ($cond->()) {
        if (time > $deadline) { fail($what); diag($t->error_log_tail(20)); return 0 }
        sleep 0.05;
    }
    pass($what);
    return 1;
}
sub pid_file { my ($f) = @_; open my $fh, '<', $f or return 0; my $p = <$fh> // 0; chomp $p; $p }
sub copies_read { my @c = $t->error_log_text =~ /read \d+ versions from a copy/g; scalar @c }
sub alive { AnomalyTest::_pid_alive($_[0]) }

# USR2: a new master with a new zone beside the old one; returns its pid.
sub start_new_binary {
    my ($old) = @_;
    my $copies = copies_read();
    kill 'USR2', $old;
    my $new;
    wait_until('USR2 started a new master', sub {
        $new = pid_file($t->dir . '/nginx.pid');
        $new && $new != $old && -e $t->dir . '/nginx.pid.oldbin' && workers_of($new) == 2
    });
    wait_until('the new generation read the models from a copy of the store', sub { copies_read() > $copies });
    return $new;
}

sleep 0.5;
my $old = $t->master_pid;

# --- an upgrade rolled back ---------------------------------------------
my $new = start_new_binary($old);
sleep 1;                                   # both generations answer
kill 'WINCH', $old;
wait_until('WINCH: the old workers left', sub { workers_of($old) == 0 });
sleep 1;                                   # the new generation alone, owning the store
kill 'HUP', $old;
wait_until('HUP: the old master started workers again', sub { workers_of($old) == 2 });
kill 'QUIT', $new;
wait_until('QUIT: the new master left', sub { !alive($new) });
wait_until('the old master took its pid file back', sub { pid_file($t->dir . '/nginx.pid') == $old });
wait_until('the old zone read the versions the new generation committed',
           sub { $t->error_log_text =~ /another nginx generation committed to the store/ });
sleep 1;

# --- an upgrade completed ------------------------------------------------
$new = start_new_binary($old);
sleep 1;
kill 'WINCH', $old;
wait_until('WINCH: the old workers left', sub { workers_of($old) == 0 });
kill 'QUIT', $old;
wait_until('QUIT: the old master left', sub { !alive($old) });
$t->{master} = $new;
sleep 1;

my $r = AnomalyTest::stop_load(%load, kids => \@kids);
my @versions = AnomalyTest::check_load($t, $r, during => 'the upgrades', min_fits => 10, after => 'after a rollback and an upgrade');

# The versions of each series are consecutive: none skipped, none reused.
for my $k (0 .. 1) {
    my @v = sort { $a <=> $b } map { /^u$k v(\d+)$/ ? $1 : () } @versions;
    my ($st, $j) = $t->predict("u$k", { value => 1 });
    is($j->{model_version}, 'v' . ($v[-1] // 0), "u$k: the latest version is the last one acknowledged");
    is_deeply(\@v, [2 .. $v[-1]], "u$k: v2..v$v[-1] were each acknowledged once");
}
opendir my $d, $t->store_dir or die;
my @copies = grep { /^copy\./ } readdir $d;
is(scalar @copies, 0, 'no copy of the store is left behind');

AnomalyTest::done();
