#!/usr/bin/perl
# Requests that nginx ends while they wait: on the store's owner (a fit to be
# made durable, a plot's data to be read) or on a pool thread. A graceful
# shutdown with worker_shutdown_timeout ends them; the worker must neither
# crash nor hang, and the owner, once it runs again, must not be confused by
# jobs nobody waits for any more.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use HTTP::Tiny;
use AnomalyTest qw(make_series);

# Sends requests from children that give up after $timeout seconds.
sub send_in_background {
    my ($t, $timeout, @requests) = @_;
    my @kids;
    for my $req (@requests) {
        push @kids, AnomalyTest::child(sub {
            my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => $timeout);
            my ($method, $path, $body) = @$req;
            $ua->request($method, 'http://127.0.0.1:' . $t->port . $path,
                         { headers => { 'Content-Type' => 'application/json' },
                           defined $body ? (content => $body) : () });
        });
    }
    return @kids;
}

my $t = AnomalyTest->new(
    workers    => 2,
    main_extra => 'worker_shutdown_timeout 1s;',
);

my ($body) = make_series(50, seed => 5);
is(($t->fit('ended', $body))[0], 200, 'a series to plot');
my $fit_body = AnomalyTest::encode_body($body);

for my $round (1 .. 2) {
    my $owner = $t->owner_pid;
    ok($owner, "round $round: the store has an owner ($owner)");
    kill 'STOP', $owner;
    # Fresh connections spread over both workers; the one that is not
    # stopped queues the fits and plots and waits for the owner.
    my @kids = send_in_background($t, 6,
        (map { ['POST', "/fit/ended_$round", $fit_body] } 1 .. 4),
        (map { ['GET', '/plot?series_id=ended'] } 1 .. 4));
    sleep 1;
    my %old = map { $_ => 1 } $t->worker_pids;
    kill 'HUP', $t->master_pid;
    sleep 2.5;  # worker_shutdown_timeout ends the waiting requests
    kill 'CONT', $owner;
    waitpid $_, 0 for @kids;

    # Every worker of the old generation exits, none on a signal.
    my $deadline = time + 15;
    sleep 0.1 while time < $deadline && grep { $old{$_} } $t->worker_pids;
    ok(!(grep { $old{$_} } $t->worker_pids), "round $round: the old workers exited");
    my @crashes = $t->error_log_text =~ /(exited on signal \d+)/g;
    is(scalar @crashes, 0, "round $round: no worker crashed") or diag(join "\n", @crashes);
    ok(($t->wait_ready(10))[0], "round $round: the store is ready again");
}

# The server still answers and fits still commit.
is(($t->fit('ended_after', $body))[0], 200, 'a fit after the ended requests is acknowledged');
my ($st, undef, $svg) = $t->request('GET', '/plot?series_id=ended', undef, quiet => 1);
is($st, 200, 'a plot after the ended requests is drawn');

AnomalyTest::done();
