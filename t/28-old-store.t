#!/usr/bin/perl
# A store written before model images (t/data/store-format1, made by the
# previous release with three-sigma records of format 1) opens unchanged:
# every version answers as it did, with the new fields after the old ones,
# and new versions are added beside the old ones.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series wait_until);
use File::Copy qw(copy);
use JSON::PP;

my $t = AnomalyTest->new(workers => 2, start => 0);
my $src = "$AnomalyTest::ROOT/t/data/store-format1";
mkdir $t->store_dir or die "mkdir: $!";
for my $f (grep { -f } glob "$src/*") {
    copy($f, $t->store_dir) or die "copy $f: $!";
}
$t->start;
ok(wait_until(10, sub { ($t->store_status->{state} // '') eq 'ready' }), 'the old store opens');

my $answers = do {
    local $/;
    open my $fh, '<', "$AnomalyTest::ROOT/t/data/store-format1.answers.json" or die;
    JSON::PP->new->decode(<$fh>);
};
my ($same, $total) = (0, 0);
for my $key (sort keys %$answers) {
    my ($series, $version, $value) = split / /, $key;
    my (undef, undef, $raw) = $t->request('POST', "/predict/$series?version=$version",
                                          { timestamp => 1700000000, value => 0 + $value });
    my $old = $answers->{$key};
    $old =~ s/\}$//;
    $total++;
    if (index($raw, $old . ',"detector":"three_sigma","anomaly_score":') == 0) { $same++ }
    else { diag("$key: was $answers->{$key}, now $raw") }
}
is($same, $total, "all $total answers of the old release are the same, the new fields after them");

my (undef, $versions) = $t->request('GET', '/series/old.a');
is(scalar @{$versions->{versions}}, 3, 'old.a has its three versions');
is($versions->{versions}[0]{detector}, 'three_sigma', 'old versions are three_sigma');

my ($body) = make_series(40, seed => 4);
my ($st, $j) = $t->request('POST', '/fit/old.a?detector=robust', $body);
is($j->{version}, 'v4', 'a new version continues the old numbering');
$t->stop;
$t->start;
ok(wait_until(10, sub { ($t->store_status->{state} // '') eq 'ready' }), 'restarted');
(undef, $versions) = $t->request('GET', '/series/old.a');
is(join(',', map { $_->{detector} } @{$versions->{versions}}), 'three_sigma,three_sigma,three_sigma,robust',
   'old and new records read back together');

AnomalyTest::done();
