#!/usr/bin/perl
# GET /series/{id} comes in pages (limit, after, order=newest): a series with
# many versions costs one page per request, not its whole history, on the
# event loop and under the zone's lock.

use strict;
use warnings;
use Test::More;
use HTTP::Tiny;
use AnomalyTest qw(make_series error_ok);

my $t = AnomalyTest->new(workers => 2);
my $port = $t->port;

# 260 versions, fitted from 4 clients at once.
my $N = 260;
my @kids;
for my $k (0 .. 3) {
    push @kids, AnomalyTest::child(sub {
        my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
        for my $i (1 .. $N / 4) {
            my ($b) = make_series(12, seed => 100 * $k + $i);
            my $res = $ua->post("http://127.0.0.1:$port/fit/many", {
                headers => { 'Content-Type' => 'application/json' },
                content => AnomalyTest::encode_body($b) });
            die "fit: $res->{status}\n" unless $res->{status} == 200;
        }
    });
}
waitpid $_, 0 for @kids;
is($? >> 8, 0, "$N versions fitted");

sub page {
    my ($query) = @_;
    return $t->request('GET', "/series/many$query");
}

my ($st, $j, $raw) = page('');
is($st, 200, 'GET /series/many');
is(scalar @{$j->{versions}}, 100, 'a page holds 100 versions by default');
is($j->{versions}[0]{version}, 'v1', 'oldest first');
is($j->{next_after}, 'v100', 'next_after names the last version given');
ok(length($raw) < 30_000, 'the page is bounded: ' . length($raw) . ' bytes');

my @all;
my $after = '';
my $pages = 0;
while (1) {
    ($st, $j) = page("?limit=70$after");
    last unless $st == 200;
    $pages++;
    push @all, map { $_->{version} } @{$j->{versions}};
    last unless defined $j->{next_after};
    $after = "&after=$j->{next_after}";
}
is($pages, 4, "$N versions in pages of 70: 4 pages");
is_deeply(\@all, [ map { "v$_" } 1 .. $N ], 'every version once, in order');

($st, $j) = page('?order=newest&limit=5');
is_deeply([ map { $_->{version} } @{$j->{versions}} ], [ map { "v$_" } reverse $N - 4 .. $N ],
          'order=newest: the latest first');
is($j->{next_after}, 'v' . ($N - 4), 'its next_after');
($st, $j) = page("?order=newest&limit=5&after=$j->{next_after}");
is($j->{versions}[0]{version}, 'v' . ($N - 5), 'and the page after it goes on down');
($st, $j) = page('?order=newest&limit=1000&after=v3');
is_deeply([ map { $_->{version} } @{$j->{versions}} ], ['v2', 'v1'], 'down to v1');
ok(!defined $j->{next_after}, 'the last page has next_after null');

error_ok([page('?limit=0')], 422, 'invalid_limit', 'limit=0: 422');
error_ok([page('?limit=1001')], 422, 'invalid_limit', 'limit=1001: 422');
error_ok([page('?after=x')], 422, 'invalid_version', 'after=x: 422');
error_ok([page('?order=sideways')], 422, 'invalid_order', 'order=sideways: 422');

AnomalyTest::done();
