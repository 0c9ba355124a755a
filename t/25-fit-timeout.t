#!/usr/bin/perl
# anomaly_fit_timeout: a fit whose owner stops answering (a hung disk, a
# stopped process) is answered 503 in time, whether its job was still
# queued or the owner had begun to commit it, and the worker holding it can
# still exit. A fit answered store_timeout may still be stored: the commit
# that was under way finishes when the owner runs again.

use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series);

my $t = AnomalyTest->new(workers => 2, http_extra => 'anomaly_fit_timeout 2s;');
my $port = $t->port;

# 300,000 points: a commit long enough to be caught in the act.
my ($body) = make_series(300_000, seed => 21);
my $json = AnomalyTest::encode_body($body);
is(($t->request('POST', '/fit/warm', $json))[0], 200, 'a large fit, untimed');

my (%codes, @timeouts, $hung);
my @delays = (0.005, 0.01, 0.02, 0.04, 0.08, 0.003, 0.015, 0.03, 0.06, 0.12, 0.008, 0.025);
for my $attempt (0 .. $#delays) {
    my $owner = $t->owner_pid;
    # The fit goes to the other worker over a connection it accepted (a
    # stopped process answers nothing of its own). The owner stops, the fit
    # is queued, the owner runs for a moment and is stopped again: often in
    # the middle of the commit it began.
    pipe(my $rd, my $wr) or die;
    pipe(my $go_rd, my $go_wr) or die;
    my $kid = AnomalyTest::child(sub {
        close $rd;
        close $go_wr;
        my $ua;
        for (1 .. 100) {
            $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 12);
            my $res = $ua->get("http://127.0.0.1:$port/healthcheck");
            last if ($res->{headers}{'x-worker-pid'} // 0) != $owner;
        }
        print $wr "ready\n";
        $wr->flush;
        <$go_rd>;
        my $t0 = time;
        my $res = $ua->post("http://127.0.0.1:$port/fit/slow$attempt", {
            headers => { 'Content-Type' => 'application/json' }, content => $json });
        my $code = eval { decode_json($res->{content})->{code} } // '-';
        printf $wr "%d %s %.3f\n", $res->{status}, $code, time - $t0;
        close $wr;
    });
    close $wr;
    close $go_rd;
    <$rd>;
    kill 'STOP', $owner;
    print $go_wr "go\n";
    close $go_wr;
    sleep 0.6;
    kill 'CONT', $owner;
    sleep $delays[$attempt];
    kill 'STOP', $owner;
    my $line = <$rd> // '';
    kill 'CONT', $owner;
    waitpid $kid, 0;
    my ($status, $code, $seconds) = split ' ', $line;
    $status //= 0;
    $code = '' if !defined $code || $code eq '-';
    $codes{"$status $code"}++;
    $hung++ if $status == 599 || $status == 0;
    push @timeouts, $seconds if $status == 503 && $code eq 'store_timeout';
    last if @timeouts >= 2;
}
diag('answers: ' . join(', ', map { "$_ x$codes{$_}" } sort keys %codes));
ok(!$hung, 'no fit waited past the client\'s 12 s for a stopped owner');
ok(@timeouts >= 1, 'a fit the stopped owner was committing is answered 503 store_timeout');
ok(!(grep { $_ > 6 } @timeouts), 'within anomaly_fit_timeout (2 s) of being queued: ' . join(' ', @timeouts) . ' s');
my @other = grep { !/^(200 |503 store_timeout|503 store_unavailable)$/ } keys %codes;
is_deeply(\@other, [], 'every other answer was 200, or 503 for a fit still queued');

# The owner runs again: the store is ready, fits are acknowledged.
ok(($t->wait_ready(10))[0], 'the store is ready once the owner runs again');
my ($small) = make_series(20, seed => 2);
is(($t->fit('after_timeout', $small))[0], 200, 'fits are acknowledged again');

AnomalyTest::done();
