#!/usr/bin/perl
# Each worker process counts in a statistics slot of its own in the zone:
# a worker killed with a request in flight leaves no request in flight
# behind once its replacement starts, and the counts stay exact across
# reloads under load, while old and new workers run side by side.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use AnomalyTest qw(make_series wait_until);

my $t = AnomalyTest->new(
    workers   => 2,
    locations => "location = /metrics { anomaly_metrics; }",
    log_allow => qr/\[alert\] \d+#\d+: worker process \d+ exited on signal 9$/,
);
my $started = time;
my $tmp = tempdir(CLEANUP => 1);

sub metrics {
    my ($st, undef, $raw) = $t->request('GET', '/metrics', undef, quiet => 1);
    my %s;
    for (split /\n/, $raw) { $s{$1} = $2 if /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/ }
    return \%s;
}

sub in_flight {
    my ($st, $j) = $t->request('GET', '/healthcheck', undef, quiet => 1);
    return $st == 200 ? $j->{load}{fit}{in_flight} + $j->{load}{predict}{in_flight} : -1;
}

my ($body, $values) = make_series(30, seed => 5);
is(($t->fit('load', $body))[0], 200, 'a series to predict');

# --- a worker killed with a fit in flight ------------------------------------------

# One connection: a healthcheck says which worker holds it, then a fit whose
# body never completes keeps a request in flight there.
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp')
    or die "connect: $!";
print $sock "GET /healthcheck HTTP/1.1\r\nHost: t\r\n\r\n";
my ($head, $victim) = ('');
while ($head !~ /\r\n\r\n/) { sysread($sock, $head, 4096, length $head) or last }
($victim) = $head =~ /X-Worker-Pid: (\d+)/i;
my ($len) = $head =~ /Content-Length: (\d+)/i;
my $rest = length($head) - index($head, "\r\n\r\n") - 4;
while ($rest < $len) { my $n = sysread($sock, my $buf, $len - $rest) or last; $rest += $n }
print $sock "POST /fit/stalled HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"timestamps\"";
ok($victim, "the connection is held by worker $victim");
ok(wait_until(5, sub { in_flight() == 1 }), 'the stalled fit is in flight');

kill 'KILL', $victim;
ok(wait_until(10, sub { my @w = $t->worker_pids; @w == 2 && !grep { $_ == $victim } @w }),
   'a new worker replaced the killed one');
close $sock;
ok(wait_until(3, sub { in_flight() == 0 }), "no request is left in flight by the killed worker")
    or diag('in flight: ' . in_flight());

# --- reloads under load ----------------------------------------------------------------

my $before = metrics();
my $stop = "$tmp/stop";
my @kids;
for my $k (1 .. 3) {
    push @kids, AnomalyTest::child(sub {
        my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
        my %count;
        until (-e $stop) {
            my $res = $ua->post('http://127.0.0.1:' . $t->port . '/predict/load', {
                headers => { 'Content-Type' => 'application/json' },
                content => '{"value": 100}' });
            $count{$res->{status}}++;
        }
        open my $out, '>', "$tmp/count.$k" or die;
        print $out "$_ $count{$_}\n" for keys %count;
    });
}
sleep 0.5;
$t->reload for 1 .. 3;
sleep 0.5;
open my $fh, '>', $stop or die;
close $fh;
waitpid $_, 0 for @kids;

my %sent;
for my $k (1 .. 3) {
    open my $in, '<', "$tmp/count.$k" or die "no counts from client $k";
    while (<$in>) { my ($st, $n) = split; $sent{$st} += $n }
}
note('answers seen by the clients: ' . join(', ', map { "$_ x$sent{$_}" } sort keys %sent));
ok(($sent{200} // 0) > 100, "predictions were answered during the reloads ($sent{200})");
my @odd = grep { $_ != 200 && $_ != 599 } keys %sent;
ok(!@odd, 'every answer was 200 (or a connection closed by an exiting worker)');

sleep 1.1;   # the load windows count whole seconds
my $after = metrics();
my $key = 'anomaly_requests_total{endpoint="predict",status="200"}';
is($after->{$key} - $before->{$key}, $sent{200}, 'every 200 is counted once in anomaly_requests_total');
my $hkey = 'anomaly_request_duration_seconds_count{endpoint="predict"}';
is($after->{$hkey} - $before->{$hkey}, $sent{200}, 'and once in the latency histogram');
is($after->{anomaly_requests_in_flight}, 0, 'nothing in flight at rest');
SKIP: {
    skip 'the test ran longer than the 60 s window', 1 if time - $started > 58;
    my (undef, $h) = $t->healthcheck;
    my $all = 0;
    $all += $after->{$_} for grep { /^anomaly_requests_total\{endpoint="predict"/ } keys %$after;
    is(sprintf('%.0f', $h->{load}{predict}{rps_60s} * 60), $all, "the last 60 s hold every prediction ($all)");
}

AnomalyTest::done();
