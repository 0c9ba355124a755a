#!/usr/bin/perl
# The store directory as nginx's master (root) prepares it for the workers
# (nobody): a restart hands over a root-owned file left in the store, and a
# spool/ that is not a real directory (a symbolic link, which the workers'
# user can put there, or a file) is refused with [emerg] at start and at
# reload, without changing the owner of anything it points to.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series);

plan skip_all => 'needs root: the master hands the store to the workers\' user' if $> != 0;
my $nobody = getpwnam('nobody') // plan skip_all => 'no user nobody';

my $t = AnomalyTest->new(workers => 2, log_allow => qr/anomaly_store: "[^"]*spool" is/);
my $store = $t->store_dir;
my $d = $t->dir;
my ($body) = make_series(30, seed => 18);
is(($t->fit('s1', $body))[0], 200, 'fit before the restarts');
is((stat "$store/spool")[4], $nobody, 'spool/ belongs to the workers\' user');
$t->stop;

sub owner { (lstat $_[0])[4] // -1 }
sub predicts_ok {
    my ($name) = @_;
    my ($st, $j) = $t->predict('s1', { timestamp => 1700000000, value => 100 });
    ok($st == 200 && ($j->{model_version} // '') eq 'v1', $name) or diag("status $st");
}

# A tool run as root left files in the store and in spool/.
for my $f ("$store/left-by-root", "$store/spool/left-by-root") {
    open my $fh, '>', $f or die "$f: $!";
    close $fh;
    chown 0, 0, $f;
}
$t->start;
is(owner("$store/left-by-root"), $nobody, 'a restart hands a root-owned file in the store to the workers\' user');
is(owner("$store/spool/left-by-root"), $nobody, '... and one in spool/');
predicts_ok('the restarted server answers predictions');
$t->stop;

# A directory of root's, with a file, that spool/ will point to.
my $target = "$d/roots-directory";
mkdir $target, 0755 or die;
open my $fh, '>', "$target/roots-file" or die;
close $fh;
chown 0, 0, $target, "$target/roots-file";

sub spool_is {
    my ($kind) = @_;
    system('rm', '-rf', "$store/spool") == 0 or die;
    if ($kind eq 'symlink') { symlink $target, "$store/spool" or die "symlink: $!" }
    elsif ($kind eq 'file') { open my $f, '>', "$store/spool" or die; close $f }
    else { mkdir "$store/spool", 0700 or die }
}
sub target_untouched {
    my ($when) = @_;
    is(owner("$target/roots-file"), 0, "the file spool/ points to still belongs to root ($when)");
    is(owner($target), 0, "the directory spool/ points to still belongs to root ($when)");
}

subtest 'a spool/ that is a symbolic link stops nginx at start' => sub {
    spool_is('symlink');
    isnt($t->try_start, 0, 'nginx does not start');
    ok(!$t->running, 'no master runs') or $t->stop;
    like($t->error_log_text, qr/\[emerg\].*anomaly_store: "\Q$store\E\/spool" is a symbolic link, not a directory/,
         'error.log names spool/ and says it is a symbolic link');
    target_untouched('start');
};

subtest 'a spool/ that is a file stops nginx at start' => sub {
    spool_is('file');
    isnt($t->try_start, 0, 'nginx does not start');
    $t->stop if $t->running;
    like($t->error_log_text, qr/\[emerg\].*anomaly_store: "\Q$store\E\/spool" is not a directory/,
         'error.log names spool/ and says it is not a directory');
};

subtest 'a spool/ replaced by a symbolic link while nginx runs: the reload is refused' => sub {
    spool_is('dir');
    $t->start or return;
    my $master = $t->master_pid;
    my @workers = sort $t->worker_pids;
    spool_is('symlink');
    my $emergs = () = $t->error_log_text =~ /is a symbolic link, not a directory/g;
    kill 'HUP', $master;
    my $deadline = time + 10;
    my $now;
    while (time < $deadline) {
        $now = () = $t->error_log_text =~ /is a symbolic link, not a directory/g;
        last if $now > $emergs;
        sleep 0.05;
    }
    ok($now > $emergs, 'the reload logs [emerg] about spool/');
    sleep 0.5;
    ok($t->running, 'the master still runs');
    is_deeply([ sort $t->worker_pids ], \@workers, 'the old workers keep serving (the old configuration)');
    predicts_ok('predictions are still answered');
    target_untouched('reload');
    spool_is('dir');
    $t->reload;
    predicts_ok('after spool/ is a directory again, a reload works');
    $t->stop;
};

AnomalyTest::done();
