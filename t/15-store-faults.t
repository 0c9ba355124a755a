#!/usr/bin/perl
# Store faults. A disk that fills up while fits arrive (a small tmpfs), a
# corrupted store at start, a store directory that becomes unwritable while
# nginx runs, a store directory that cannot be created. A fit
# that cannot be made durable is 503 store_unavailable and never appears
# later; predictions keep being answered; the store recovers without a
# restart once the fault is gone; no worker dies.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series mean_std close_enough error_ok);

my @mounts;
END { system('umount', '-l', $_) for @mounts }

sub poll {
    my ($seconds, $code) = @_;
    my $deadline = time + $seconds;
    while (1) {
        my @r = $code->();
        return @r if $r[0];
        return () if time > $deadline;
        sleep 0.1;
    }
}

sub store_state {
    my ($t) = @_;
    my ($st, $j) = $t->request('GET', '/healthcheck', undef, quiet => 1);
    return ($st == 200 && ref $j eq 'HASH') ? $j->{store} : {};
}

# ---------------------------------------------------------------------------
subtest 'full disk: 503, predictions served, recovery without a restart, nothing half-stored' => sub {
    plan skip_all => 'mounting a tmpfs needs root' unless $> == 0;
    my $t = AnomalyTest->new(workers => 2, start => 0);
    my $store = $t->store_dir;
    mkdir $store or die "mkdir $store: $!";
    system('mount', '-t', 'tmpfs', '-o', 'size=3m,mode=0755', 'tmpfs', $store) == 0
        or plan skip_all => 'this machine cannot mount a tmpfs';
    push @mounts, $store;
    $t->start or return;

    my ($kb, $kv) = make_series(30, seed => 3);
    my ($st, $j, $raw) = $t->fit('keep', $kb);
    is($j && $j->{version}, 'v1', 'a small series is trained first') or diag("$st $raw");

    # 50,000 points are about 450 KB in the store: a 3 MB disk takes a few.
    my (@acked, $fault);
    for my $i (1 .. 12) {
        my ($b, $v) = make_series(50_000, seed => 100 + $i, base => 1000, spread => 50 + $i);
        my @r = $t->fit('big', $b);
        if ($r[0] == 200) {
            is($r[1]{version}, 'v' . (@acked + 1), "fit $i acknowledged as the next version");
            push @acked, $v;
            next;
        }
        $fault = \@r;
        last;
    }
    ok(@acked >= 1 && $fault, 'the disk filled up after ' . scalar(@acked) . ' acknowledged fits')
        or return;
    error_ok($fault, 503, 'store_unavailable', 'the fit that did not fit is 503 store_unavailable',
             qr/No space left on device/);
    my @workers = sort $t->worker_pids;

    # While the disk is full: fits fail cleanly, predictions are answered.
    for my $i (1 .. 3) {
        my ($b) = make_series(50_000, seed => 200 + $i);
        error_ok([ $t->fit('big', $b) ], 503, 'store_unavailable', "fit $i while the disk is full is 503");
    }
    ($st, $j) = $t->predict('keep', { value => 1e6 });
    ok($st == 200 && $j->{anomaly} && $j->{model_version} eq 'v1', 'predict keeps answering from the zone');
    ($st, $j) = $t->predict('big', { value => 1000 });
    is($st == 200 && $j->{model_version}, 'v' . scalar(@acked), 'predict answers with the latest acknowledged version');
    like($t->error_log_text, qr/No space left on device/, 'error.log says the disk is full');

    # The disk grows: the store reopens by itself and numbering continues.
    system('mount', '-o', 'remount,size=256m', $store) == 0 or die "remount failed";
    my ($b, $v) = make_series(50_000, seed => 300, base => 1000, spread => 99);
    my @r = poll(20, sub {
        my @x = $t->fit('big', $b);
        return $x[0] == 200 ? @x : ();
    });
    is(@r && $r[1]{version}, 'v' . (@acked + 1), 'after the disk grows, the next fit is the next version, no gap');
    push @acked, $v if @r;
    ($st, $j) = $t->fit('keep', $kb);
    is($st == 200 && $j->{version}, 'v2', 'and the other series trains too');
    is_deeply([ sort $t->worker_pids ], \@workers, 'no worker died or restarted');

    # A new nginx on the same store: exactly the acknowledged versions.
    $t->stop;
    $t->start or return;
    ($st, $j) = $t->request('GET', '/series/big');
    my @versions = $st == 200 ? @{ $j->{versions} } : ();
    is_deeply([ map { $_->{version} } @versions ], [ map { "v$_" } 1 .. @acked ],
              'after a restart the store holds every acknowledged version and nothing else');
    my $same = 0;
    for my $i (0 .. $#versions) {
        my ($mean, $std) = mean_std($acked[$i]);
        $same++ if $versions[$i]{points} == 50_000 && close_enough($versions[$i]{mean}, $mean, 1e-12)
                   && close_enough($versions[$i]{std}, $std, 1e-9);
    }
    is($same, scalar @acked, 'each with exactly its statistics');
    $t->stop;
};

# ---------------------------------------------------------------------------
subtest 'corrupted store at start: degraded, no crash loop, recovers once repaired' => sub {
    my $t = AnomalyTest->new(workers => 2);
    my ($b, $v) = make_series(40, seed => 7);
    my ($st, $j) = $t->fit('c1', $b);
    is($j && $j->{version}, 'v1', 'trained before the damage');
    $t->stop;

    my $current = $t->store_dir . '/CURRENT';
    open my $in, '<', $current or die "$current: $!";
    my $good = do { local $/; <$in> };
    close $in;
    open my $out, '>', $current or die "$current: $!";
    print $out "MANIFEST-999999\n";
    close $out;

    $t->start(wait => 0);
    my ($state) = poll(10, sub { my $s = store_state($t); ($s->{state} // '') eq 'unavailable' ? $s : () });
    ok($state, 'healthcheck answers, store.state "unavailable"');
    like($state && $state->{error}, qr/MANIFEST-999999/, 'store.error names what is broken');
    # Clients are told where to look; file names stay in the log and /healthcheck.
    error_ok([ $t->fit('c1', $b) ], 503, 'store_unavailable', 'a fit is 503 store_unavailable', qr/^(?!.*MANIFEST).*healthcheck/);
    error_ok([ $t->predict('c1', { value => 1 }) ], 503, 'store_loading',
             'a predict is 503 store_loading, saying why', qr/^(?!.*MANIFEST).*unavailable.*healthcheck/);
    my @workers = sort $t->worker_pids;
    sleep 2.5;    # two retries of the open
    is_deeply([ sort $t->worker_pids ], \@workers, 'the workers keep running: no crash loop');
    my @lines = grep { /\[error\].*MANIFEST-999999/ } split /\n/, $t->error_log_text;
    ok(@lines >= 1 && @lines <= 2, 'error.log says so once per worker, not on every retry')
        or diag(scalar(@lines) . " lines");

    open $out, '>', $current or die "$current: $!";
    print $out $good;
    close $out;
    my ($ready) = $t->wait_ready(10);
    ok($ready, 'once repaired, the store opens without a restart');
    ($st, $j) = $t->predict('c1', { value => 1e6 });
    ok($st == 200 && $j->{model_version} eq 'v1' && $j->{anomaly}, 'the stored model answers');
    ($st, $j) = $t->fit('c1', $b);
    is($j && $j->{version}, 'v2', 'and numbering continues');
};

# ---------------------------------------------------------------------------
subtest 'a store directory that becomes unwritable while nginx runs' => sub {
    my $t = AnomalyTest->new(workers => 2);
    my ($b) = make_series(20, seed => 11);
    is(($t->fit('w', $b))[1]{version}, 'v1', 'trained before the fault');
    my $spool = $t->store_dir . '/spool';
    ok(-d $spool, 'the store has its spool directory');

    # Fits received by a worker that does not own the store travel through a
    # file in spool/: those fail; the owner's own fits need no new file.
    chmod 0500, $spool or die "chmod $spool: $!";
    my (@ok, @refused, @other);
    for my $i (1 .. 24) {
        my ($st, $j, $raw) = $t->fit('w', $b);
        if ($st == 200) { push @ok, $j->{version} }
        elsif ($st == 503 && ($j->{code} // '') eq 'store_unavailable' && ($j->{detail} // '') =~ /Permission denied/ && ($j->{detail} // '') !~ m{/}) { push @refused, $raw }
        else { push @other, "$st $raw" }
        my ($pst) = $t->predict('w', { value => 1 });
        push @other, "predict $pst" unless $pst == 200;
    }
    chmod 0700, $spool or die "chmod $spool: $!";
    ok(@refused >= 1, scalar(@refused) . ' fits refused with 503 store_unavailable giving the reason, no path');
    like($t->error_log_text, qr{\[error\].*spool/.*Permission denied}, 'error.log names the spool file');
    is_deeply(\@other, [], 'every other fit was acknowledged and every prediction answered');
    is_deeply(\@ok, [ map { 'v' . ($_ + 1) } 1 .. @ok ], 'the acknowledged fits took consecutive versions');

    my @after = map { ($t->fit('w', $b))[1]{version} } 1 .. 6;
    is_deeply(\@after, [ map { 'v' . ($_ + 1 + @ok) } 1 .. 6 ], 'once the directory is writable again, fits succeed without a restart');

    $t->stop;
    $t->start or return;
    my ($st, $j) = $t->request('GET', '/series/w');
    is(scalar @{ $j->{versions} // [] }, 1 + @ok + 6, 'after a restart the store holds exactly the acknowledged versions');
    $t->stop;
};

# ---------------------------------------------------------------------------
subtest 'a store directory that cannot be created stops nginx with [emerg]' => sub {
    my $t = AnomalyTest->new(workers => 1, start => 0, log_allow => qr/anomaly_store: cannot create/);
    my $blocker = $t->dir . '/not-a-directory';
    open my $fh, '>', $blocker or die "$blocker: $!";
    close $fh;
    $t->{store} = "$blocker/store";
    $t->write_config;
    my $d = $t->dir;
    my $rc = system("$AnomalyTest::NGINX -p $d/ -c $d/nginx.conf -e $d/error.log >$d/nginx.out 2>&1");
    isnt($rc, 0, 'nginx does not start');
    like($t->error_log_text, qr/\[emerg\].*anomaly_store: cannot create "\Q$blocker\E\/store" \(20: Not a directory\)/,
         'error.log says which directory and why');
};

AnomalyTest::done();
