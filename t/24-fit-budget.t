#!/usr/bin/perl
# anomaly_fit_memory: the request bodies of the fits a worker holds at once
# are bounded. A fit that would pass the budget is refused with 503
# server_busy and Retry-After before nginx reads its body; a fit alone is
# always admitted, so one larger than the budget can still be trained.

use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series error_ok);

# One worker: every connection meets the same budget.
my $t = AnomalyTest->new(workers => 1, http_extra => "anomaly_fit_memory 1m;",
                         locations => "location = /metrics { anomaly_metrics; }");

# About 700 KB of JSON.
my ($big_body) = make_series(30_000, seed => 9);
my $big = AnomalyTest::encode_body($big_body);
ok(length($big) > 524_288 && length($big) < 1_000_000, 'a fit body of ' . length($big) . ' bytes');

# A client that sends the headers and half the body, then waits: its fit
# holds its share of the budget while nginx reads the rest.
sub start_slow_fit {
    my ($series) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp') or die $!;
    print $s "POST /fit/$series HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           . "Content-Type: application/json\r\nContent-Length: " . length($big) . "\r\n\r\n"
           . substr($big, 0, length($big) / 2);
    $s->flush;
    return $s;
}

sub finish_slow_fit {
    my ($s) = @_;
    print $s substr($big, length($big) / 2);
    $s->flush;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d{3})};
    return $status // 0;
}

my $slow = start_slow_fit('budget_a');
sleep 0.3;

my @busy = $t->request('POST', '/fit/budget_b', $big);
error_ok(\@busy, 503, 'server_busy', 'a second large fit would pass the budget: 503 server_busy',
         qr/anomaly_fit_memory/);
is($busy[3]{'retry-after'}, '1', 'with Retry-After: 1');

my ($small) = make_series(20, seed => 3);
is(($t->fit('budget_small', $small))[0], 200, 'a small fit still fits in the budget');

is(finish_slow_fit($slow), 200, 'the fit that held the budget is answered 200');
is(($t->request('POST', '/fit/budget_b', $big))[0], 200, 'once it is answered, the large fit is admitted');

# A body larger than the whole budget, alone, is admitted.
my ($huge_body) = make_series(60_000, seed => 11);
my $huge = AnomalyTest::encode_body($huge_body);
ok(length($huge) > 1024 * 1024, 'a body larger than the budget (' . length($huge) . ' bytes)');
is(($t->request('POST', '/fit/budget_huge', $huge))[0], 200, 'alone, it is trained');

# Chunked bodies (no Content-Length) are counted once read.
$slow = start_slow_fit('budget_c');
sleep 0.3;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp') or die $!;
print $s "POST /fit/budget_d HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
       . "Transfer-Encoding: chunked\r\n\r\n" . sprintf("%x\r\n%s\r\n0\r\n\r\n", length $big, $big);
my $resp = do { local $/; <$s> } // '';
close $s;
like($resp, qr{^HTTP/1\.1 503 .*"code":"server_busy"}s, 'a chunked fit that passes the budget is 503 server_busy');
like($resp, qr{\r\nRetry-After: 1\r\n}, 'with Retry-After');
is(finish_slow_fit($slow), 200, 'the slow fit is answered 200');

# The refusals count in /metrics as 503s of fit.
my (undef, undef, $metrics) = $t->request('GET', '/metrics', undef, quiet => 1);
like($metrics, qr/anomaly_requests_total\{endpoint="fit",status="503"\} [2-9]/, '/metrics counts the refusals')
    or diag(join "\n", grep { /fit/ } split /\n/, $metrics);

my @v = map { [ $t->request('GET', "/series/$_", undef, quiet => 1) ] } qw(budget_a budget_b budget_c budget_d);
is_deeply([ map { $_->[0] == 200 ? scalar @{$_->[1]{versions}} : $_->[0] } @v ], [1, 1, 1, 404],
          'exactly the acknowledged fits were stored');

AnomalyTest::done();
