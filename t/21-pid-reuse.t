#!/usr/bin/perl
# A dead process's pid taken by another one. Linux hands out pids again, so a
# pid kept in the zone may name a stranger later:
#  - the store owner dies and a root process gets its pid: the workers (user
#    nobody) must still see that the owner is gone and take the store over,
#    rather than wait 30 s and answer 503;
#  - a worker dies with a fit queued in spool/ and its replacement gets the
#    same pid: the replacement's fits must not reuse the dead worker's spool
#    file names, or a queued fit would be committed with another's data.
# Needs root: a chosen pid is taken by writing pid - 1 to
# /proc/sys/kernel/ns_last_pid just before a fork. The test runs in a pid
# namespace of its own (unshare), where no other program forks meanwhile.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use AnomalyTest qw(make_series mean_std close_enough wait_until);

plan skip_all => 'needs root (ns_last_pid, workers as nobody)' if $> != 0;
unless ($ENV{ANOMALY_OWN_PID_NAMESPACE}) {
    $ENV{ANOMALY_OWN_PID_NAMESPACE} = 1;
    { exec 'unshare', '--pid', '--fork', '--mount-proc', $^X, (map { "-I$_" } grep { !ref } @INC), $0, @ARGV }
    plan skip_all => "cannot start a pid namespace (unshare: $!)";
}
plan skip_all => 'cannot choose pids here (/proc/sys/kernel/ns_last_pid)'
    unless open my $probe, '>', '/proc/sys/kernel/ns_last_pid';
close $probe;

my $killed_re = qr/\[alert\] \d+#\d+: worker process \d+ exited on signal 9$/;
my $tmp = tempdir(CLEANUP => 1);
my @sleepers;
END { kill 'KILL', @sleepers if @sleepers; waitpid $_, 0 for @sleepers }

sub set_last_pid {
    my ($pid) = @_;
    open my $fh, '>', '/proc/sys/kernel/ns_last_pid' or die "ns_last_pid: $!";
    print $fh $pid - 1;
    close $fh or die "ns_last_pid: $!";
}

# A root process (sleep 60) with pid $pid, or undef when other processes
# keep taking that pid first.
sub sleeper_with_pid {
    my ($pid) = @_;
    for (1 .. 200) {
        if (-e "/proc/$pid") {   # another fork came first: wait until it ends
            sleep 0.05;
            next;
        }
        set_last_pid($pid);
        my $kid = fork // die "fork: $!";
        if (!$kid) {
            POSIX::_exit(0) if $$ != $pid;
            { exec 'sleep', '60' }
            POSIX::_exit(1);
        }
        return $kid if $kid == $pid;
        waitpid $kid, 0;
    }
    return undef;
}

sub owner_of {
    my ($t) = @_;
    my ($st, $j) = $t->request('GET', '/healthcheck', undef, quiet => 1);
    return $st == 200 && ref $j eq 'HASH' ? $j->{store}{owner_pid} : undef;
}

# The master's worker processes, read from /proc: running ps would fork and
# could take the very pid being handed over.
sub workers_of {
    my ($t) = @_;
    my $m = $t->master_pid;
    open my $fh, '<', "/proc/$m/task/$m/children" or return ();
    my @pids;
    for my $pid (split ' ', scalar(<$fh>) // '') {
        open my $c, '<', "/proc/$pid/cmdline" or next;
        push @pids, $pid if (scalar(<$c>) // '') =~ /worker process/;
    }
    return @pids;
}

# A process's start time (field 22 of /proc/<pid>/stat), undef when it is gone.
sub start_of {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my ($after) = (scalar(<$fh>) // '') =~ /\) (.*)$/s or return undef;
    return (split ' ', $after)[19];
}

sub reaped { my ($pid) = @_; return !-e "/proc/$pid" }

sub fits_waiting {
    my ($t) = @_;
    my ($st, $j) = $t->request('GET', '/healthcheck', undef, quiet => 1);
    return $st == 200 ? $j->{store}{fits_waiting} : -1;
}

sub spool_files {
    my ($dir) = @_;
    opendir my $d, $dir or return ();
    return grep { !/^\./ } readdir $d;
}

# A fit sent from a child process, which writes "STATUS BODY" to $out.
sub fit_in_child {
    my ($t, $series, $body, $out) = @_;
    return AnomalyTest::child(sub {
        my ($st, $j, $raw) = $t->fit($series, $body);
        open my $fh, '>', $out or die;
        print $fh "$st $raw\n";
    });
}

# --- the store owner's pid taken by a root process ------------------------------------

{
    my $t = AnomalyTest->new(workers => 2, log_allow => $killed_re);
    my ($body) = make_series(20, seed => 3);
    is(($t->fit('before', $body))[0], 200, 'a fit before the owner dies');
    my $owner = owner_of($t);
    ok($owner, "the store owner is $owner");

    # The owner must die without a replacement worker taking its place (nginx
    # respawns a crashed worker, and the new one would take the store before
    # any other process could get the pid): make it an old-generation worker,
    # kept from exiting by SIGSTOP across a reload. The new workers are
    # stopped too while the pid changes hands, so none can notice the gap.
    my %old = map { $_ => 1 } $t->worker_pids;
    kill 'STOP', $owner;
    kill 'HUP', $t->master_pid;
    my @new;
    ok(wait_until(20, sub {
        my @now = $t->worker_pids;
        @new = grep { !$old{$_} } @now;
        return @new >= 2 && !grep { $old{$_} && $_ != $owner } @now;
    }), 'the reload started new workers; the stopped owner is still there') or diag($t->error_log_tail(10));
    is(owner_of($t), $owner, 'the new workers leave the store to the old owner while it holds it');
    kill 'STOP', @new;
    kill 'KILL', $owner;
    ok(wait_until(10, sub { reaped($owner) }), "owner $owner died and was reaped");
    my $sleeper = sleeper_with_pid($owner);
    push @sleepers, $sleeper if $sleeper;
    ok($sleeper, "a root process (sleep) now has the dead owner's pid $owner");
    kill 'CONT', @new;

    my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 40);
    my $started = time;
    my $res = $ua->post('http://127.0.0.1:' . $t->port . '/fit/after', {
        headers => { 'Content-Type' => 'application/json' },
        content => AnomalyTest::encode_body($body) });
    my $took = time - $started;
    is($res->{status}, 200, 'a fit after the owner died is committed') or diag("$res->{status} $res->{content}");
    ok($took < 5, sprintf('and answered within a few seconds (%.1f s)', $took));
    my $now = owner_of($t);
    ok($now && grep({ $_ == $now } @new), "a new worker owns the store ($now)");
    is(($t->predict('before', { value => 1 }))[0], 200, 'the version fitted before is still answered');

    kill 'KILL', $sleeper if $sleeper;
    waitpid $sleeper, 0 if $sleeper;
    @sleepers = ();
    $t->stop;
}

# --- a worker's pid taken by its replacement, with a fit of the dead worker queued ------

{
    # Without reuseport every running worker accepts from one socket: with the
    # owner stopped, the other worker (and then its replacement) gets each request.
    my $t = AnomalyTest->new(workers => 2, listen_opts => '', log_allow => $killed_re);
    my $owner = owner_of($t);
    my ($worker) = grep { $_ != $owner } $t->worker_pids;
    ok($owner && $worker, "owner $owner, other worker $worker");
    my $spool = $t->store_dir . '/spool';

    # The owner stops, so fits wait in the queue.
    kill 'STOP', $owner;
    my ($xbody, $xv) = make_series(20, seed => 11, base => 1000, spread => 10);
    my ($ybody, $yv) = make_series(30, seed => 12, base => 5000, spread => 10);
    my $xkid = fit_in_child($t, 'reuse-x', $xbody, "$tmp/x");
    ok(wait_until(10, sub { fits_waiting($t) == 1 && spool_files($spool) == 1 }),
       "worker $worker queued a fit of reuse-x in spool/ (" . join(' ', spool_files($spool)) . ')');

    # Kill that worker; its replacement is given the same pid.
    my $replacement;
    my $victim = $worker;
    for (1 .. 50) {
        # Another process took the pid first: wait for it to end.
        last if $victim != $worker && !wait_until(10, sub { reaped($worker) });
        my $victim_start = start_of($victim);
        set_last_pid($worker);
        kill 'KILL', $victim;
        my @now;   # the new worker: maybe with the victim's very pid
        last unless wait_until(10, sub {
            @now = grep { $_ != $owner && ($_ != $victim || (start_of($_) // '') ne $victim_start) }
                   workers_of($t);
            return @now >= 1;
        });
        if ($now[0] == $worker) { $replacement = $now[0]; last }
        $victim = $now[0];                  # another fork came first: again
    }
    waitpid $xkid, 0;
    SKIP: {
        skip 'another process kept taking the pid', 8 unless $replacement;
        pass("the replacement worker has the dead worker's pid $worker");
        my $ykid = fit_in_child($t, 'reuse-y', $ybody, "$tmp/y");
        ok(wait_until(10, sub { fits_waiting($t) == 2 }), 'the replacement queued a fit of reuse-y too');
        my @files = spool_files($spool);
        is(scalar @files, 2, "the two queued fits have a spool file each (@files)");
        kill 'CONT', $owner;
        waitpid $ykid, 0;
        open my $fh, '<', "$tmp/y" or die;
        my ($st, $raw) = split ' ', scalar(<$fh>), 2;
        is($st, 200, 'the fit of reuse-y is acknowledged') or diag($raw);

        # The dead worker's queued fit is committed too, with its own data.
        my ($xmean) = mean_std($xv);
        my ($ymean) = mean_std($yv);
        for my $case (['reuse-x', $xmean, 20], ['reuse-y', $ymean, 30]) {
            my ($series, $mean, $points) = @$case;
            ok(wait_until(10, sub { ($t->predict($series, { value => 0 + $mean }, 'v1'))[0] == 200 }),
               "$series v1 is committed");
            my ($pst, $j, $praw) = $t->predict($series, { value => 0 + $mean }, 'v1');
            my (undef, $vj) = $t->request('GET', "/series/$series");
            ok($pst == 200 && close_enough($j->{score}, 0, 1e-9) && $vj->{versions}[0]{points} == $points,
               "$series v1 holds its own data ($points points, its own mean)")
                or diag("$pst $praw; points " . ($vj->{versions}[0]{points} // '?'));
        }
    }
    kill 'CONT', $owner;
}

AnomalyTest::done();
