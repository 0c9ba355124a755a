#!/usr/bin/perl
# make run from a clone that nginx's workers (nobody) cannot reach: a clone
# under /root, mode 0700. The run directory and the store move under
# /var/lib/ngx-anomaly/<hash of the clone's path>, and the server fits,
# predicts, reloads (make reload) and stops (make stop). An explicitly set
# ANOMALY_DATA_DIR out of the workers' reach is refused before anything is
# built. The module already built here is served (ANOMALY_MODULE), so the
# clone builds nothing.

use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series encode_body);

plan skip_all => 'needs root: nginx runs its workers as nobody only under root' if $> != 0;
plan skip_all => 'needs git and runuser' if system('command -v git >/dev/null && command -v runuser >/dev/null');

my $src = $AnomalyTest::ROOT;
my $clone = "/root/anomaly-run-anywhere-$$";
my $state = '/var/lib/ngx-anomaly/' . substr(sha256_hex($clone), 0, 12);
my $out = tempdir(CLEANUP => 1);
my $master;

END {
    if ($master && kill 0, $master) {
        kill 'QUIT', $master;
        for (1 .. 100) { last if waitpid($master, WNOHANG); sleep 0.1 }
        kill 'KILL', $master;
    }
    system('rm', '-rf', $clone, $state);
    rmdir '/var/lib/ngx-anomaly';   # only when no other clone uses it
}

system('git', 'clone', '-q', $src, $clone) == 0 or BAIL_OUT("git clone $src $clone failed");
chmod 0700, $clone;
# The working tree's run files, so that what is tested is what is checked out here.
copy("$src/$_", "$clone/$_") or die "$_: $!" for qw(conf/run.sh conf/nginx.conf Makefile .env.example);
chmod 0755, "$clone/conf/run.sh";
isnt(system('runuser', '-u', 'nobody', '--', 'test', '-x', $clone), 0, "nobody cannot reach the clone $clone");

my $port = AnomalyTest::free_port();
my %env = (ANOMALY_LISTEN => "127.0.0.1:$port", ANOMALY_MODULE => $AnomalyTest::MODULE, ANOMALY_WORKERS => 1);
my $env = join ' ', map { "$_=$env{$_}" } sort keys %env;
sub slurp { open my $fh, '<', $_[0] or return ''; local $/; scalar <$fh> }

# --- an explicit store out of reach: refused before the build ---------------
{
    my $t0 = time;
    my $rc = system("cd $clone && ANOMALY_DATA_DIR=$clone/data timeout 120 make -s run >$out/refused.out 2>$out/refused.err");
    isnt($rc, 0, 'make run refuses an ANOMALY_DATA_DIR the workers cannot reach');
    like(slurp("$out/refused.err"), qr/cannot reach \Q$clone\E\/data/, 'and says which directory');
    ok(!-e "$clone/build/nginx", sprintf('before building anything (%.1f s)', time - $t0));
}

# --- the default store: moved where the workers reach it ---------------------
$master = fork // die "fork: $!";
if (!$master) {
    chdir $clone or die;
    open STDOUT, '>', "$out/run.out" or die;
    open STDERR, '>', "$out/run.err" or die;
    @ENV{keys %env} = values %env;
    exec 'conf/run.sh' or die "exec: $!";
}

my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
my $base = "http://127.0.0.1:$port";
sub post {
    my ($path, $body) = @_;
    my $r = $ua->post("$base$path", { headers => { 'Content-Type' => 'application/json' }, content => encode_body($body) });
    return ($r->{status}, eval { decode_json($r->{content}) }, $r->{content});
}
my $ready = 0;
for (1 .. 300) {
    my $r = $ua->get("$base/healthcheck");
    if ($r->{status} == 200 && $r->{content} =~ /"state":"ready"/) { $ready = 1; last }
    last if waitpid($master, WNOHANG);
    sleep 0.1;
}
ok($ready, 'conf/run.sh serves from the clone') or diag(slurp("$out/run.out") . slurp("$out/run.err"));
my $said = slurp("$out/run.out");
like($said, qr/cannot reach \Q$clone\E, so the run directory and the store moved under \Q$state\E/,
     'it says where the run directory and the store went');
like($said, qr/serving on http:\/\/127\.0\.0\.1:$port .*master pid $master\b.*reload: .*make -C \Q$clone\E reload/,
     'the serving line gives the master pid and the reload command');
ok(-d "$state/var" && (stat "$state/var")[4] == getpwnam('nobody'), "the store $state/var belongs to nobody");
ok(!-e "$clone/var", 'nothing was created for the workers inside the clone');

my ($body, $values) = make_series(30, seed => 20);
my ($st, $j) = post('/fit/anywhere', $body);
is($st, 200, 'fit answers 200');
($st, $j) = post('/predict/anywhere', { timestamp => 1700000000, value => 1e6 });
ok($st == 200 && $j->{anomaly} && $j->{model_version} eq 'v1', 'predict answers 200 from v1');
is($ua->get("$base/favicon.ico")->{status}, 204, '/favicon.ico answers 204');

# --- make reload and make stop ----------------------------------------------
sub workers { map { /^\s*(\d+)/ ? $1 : () } grep { /worker process/ } `ps -o pid=,args= --ppid $master` }
my @before = workers();
is(system("cd $clone && $env make -s reload >$out/reload.out 2>&1"), 0, 'make reload') or diag(slurp("$out/reload.out"));
my $replaced = 0;
for (1 .. 100) {
    my @now = workers();
    if (@now && !grep { my $w = $_; grep { $_ == $w } @before } @now) { $replaced = 1; last }
    sleep 0.1;
}
ok($replaced, 'the reload started new workers');
($st, $j) = post('/predict/anywhere', { timestamp => 1700000000, value => 1e6 });
is($st, 200, 'predict answers 200 after the reload');

is(system("cd $clone && make -s stop >$out/stop.out 2>&1"), 0, 'make stop') or diag(slurp("$out/stop.out"));
my $gone = 0;
for (1 .. 100) { if (waitpid($master, WNOHANG) == $master) { $gone = 1; last } sleep 0.1 }
ok($gone && $? == 0, 'the master exited with status 0') and $master = undef;

my $log = slurp("$out/run.err");
unlike($log, qr/favicon/, 'the error log says nothing about favicon.ico');
unlike($log, qr/\[(?:alert|emerg|crit)\]|exited on signal/, 'the error log has no [alert], [emerg] or crash');

done_testing();
