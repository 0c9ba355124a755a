#!/usr/bin/perl
# Workers killed with SIGKILL while fits stream in and predictions are asked:
# no acknowledged fit is lost or given a version twice; the store owner moves
# on; predictions never stop being answered, and never wrongly.
#
# make test runs it for 5 s with 4 fitting and 4 predicting clients;
# make soak (ANOMALY_SOAK=1) for 30 s with 8 fitting clients and 100
# predicting connections.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use HTTP::Tiny;
use JSON::PP;
use AnomalyTest qw(make_series mean_std close_enough);

my $t = AnomalyTest->new(
    workers   => 4,
    # nginx reports each killed worker; nothing else may show up
    log_allow => qr/\[alert\] \d+#\d+: worker process \d+ exited on signal 9$/,
);
my $tmp = tempdir(CLEANUP => 1);

my $SOAK       = $ENV{ANOMALY_SOAK} ? 1 : 0;
my $CLIENTS    = $SOAK ? 8 : 4;
my $PREDICTORS = $SOAK ? 100 : 4;
my $KILL_FOR   = $SOAK ? 30.0 : 5.0;    # seconds of killing
my $KILL_EVERY = 0.3;
my @SERIES     = map { "crash$_" } 1 .. 3;

# A series the predicting clients ask about throughout.
my ($steady_body, $steady_values) = make_series(50, seed => 77, base => 500, spread => 20);
my ($steady_mean) = mean_std($steady_values);
{
    my ($st, $j) = $t->fit('steady', $steady_body);
    is($j && $j->{version}, 'v1', 'the series that predictions ask about is trained');
}

# --- clients -----------------------------------------------------------------------

my $stop_file = "$tmp/stop";
my @clients;
for my $c (1 .. $CLIENTS) {
    push @clients, AnomalyTest::child(sub {
        open my $out, '>>', "$tmp/acks.$c" or die $!;
        $out->autoflush(1);
        my $i = 0;
        my %count;
        while (!-e $stop_file) {
            $i++;
            my $series = $SERIES[ ($c + $i) % @SERIES ];
            # a base unique to (client, iteration): the mean identifies the fit
            my ($body, $values) = make_series(30 + $i % 7, seed => 1000 * $c + $i,
                                              base => 100_000 * $c + 10 * $i, spread => 4);
            my ($mean, $std) = mean_std($values);
            my ($st, $j) = $t->fit($series, $body);
            $count{$st}++;
            if ($st == 200) {
                my $v = ref $j eq 'HASH' ? $j->{version} // '' : '';
                my $sid = ref $j eq 'HASH' ? $j->{series_id} // '' : '';
                printf $out "ack %s %s %s %.17g %.17g\n", $series, $v, $sid, $mean, $std;
            }
            sleep 0.02;   # bounds the number of versions to check afterwards
        }
        print $out "count $_ $count{$_}\n" for sort keys %count;
        close $out;
    });
}

# Each predicting client keeps one keep-alive connection (a new one after a
# killed worker drops it) and counts answers per tenth of a second.
my @predictors;
for my $p (1 .. $PREDICTORS) {
    push @predictors, AnomalyTest::child(sub {
        my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
        my $url = 'http://127.0.0.1:' . $t->port . '/predict/steady';
        my $body = AnomalyTest::encode_body({ value => 0 + $steady_mean });
        my (%good, %dropped, @wrong);
        while (!-e $stop_file) {
            my $res = $ua->post($url, { content => $body, headers => { 'Content-Type' => 'application/json' } });
            my $tick = int(time * 10);
            if ($res->{status} == 599) { $dropped{$tick}++; next }
            my $j = eval { JSON::PP::decode_json($res->{content}) };
            if ($res->{status} == 200 && ref $j eq 'HASH' && $j->{model_version} eq 'v1' && !$j->{anomaly}) {
                $good{$tick}++;
            } else {
                push @wrong, "$res->{status} $res->{content}";
            }
        }
        open my $out, '>', "$tmp/predict.$p" or die $!;
        print $out "good $_ $good{$_}\n" for keys %good;
        print $out "dropped $_ $dropped{$_}\n" for keys %dropped;
        print $out "wrong $_\n" for @wrong;
        close $out;
    });
}

# --- killer --------------------------------------------------------------------------

sleep 0.3;   # let the clients get going
my ($kills, $owner_kills, %killed) = (0, 0);
my $end = time + $KILL_FOR;
while (time < $end) {
    my $victim;
    if ($kills % 3 == 0) {       # every third kill goes to the store owner
        my ($st, $j) = $t->request('GET', '/healthcheck', undef, quiet => 1);
        my $owner = $st == 200 && ref $j eq 'HASH' && ref $j->{store} eq 'HASH'
                    ? $j->{store}{owner_pid} : undef;
        my %w = map { $_ => 1 } $t->worker_pids;
        if ($owner && $w{$owner}) { $victim = $owner; $owner_kills++ }
    }
    $victim = $t->kill9_worker($victim);
    if ($victim) { $kills++; $killed{$victim}++ }
    sleep $KILL_EVERY;
}
open my $sf, '>', $stop_file or die $!;
close $sf;
my $kill_end = time;
waitpid($_, 0) for @clients, @predictors;
note("killed $kills workers ($owner_kills of them the store owner)");
ok($kills >= 10, "killed $kills workers while the fits ran");

# --- what the predicting clients saw ---------------------------------------------------

my (%good, @wrong, $dropped, $good_total);
for my $p (1 .. $PREDICTORS) {
    open my $in, '<', "$tmp/predict.$p" or next;
    while (<$in>) {
        chomp;
        my ($kind, @rest) = split / /, $_, 3;
        if ($kind eq 'good') { $good{ $rest[0] } += $rest[1]; $good_total += $rest[1] }
        elsif ($kind eq 'dropped') { $dropped += $rest[1] }
        else { push @wrong, join ' ', @rest }
    }
}
$good_total //= 0;
$dropped //= 0;
note("predictions: $good_total answered, $dropped connections dropped by killed workers");
ok(!@wrong, 'every answered prediction was 200 with the right model and verdict')
    or diag(scalar(@wrong) . " wrong, e.g.:\n" . join "\n", @wrong[0 .. ($#wrong < 4 ? $#wrong : 4)]);
# Seconds of the kill period with no answered prediction at all.
my @silent;
for my $second (int($kill_end - $KILL_FOR) + 1 .. int($kill_end) - 1) {
    my $n = 0;
    $n += $good{$_} // 0 for $second * 10 .. $second * 10 + 9;
    push @silent, $second if $n == 0;
}
ok($good_total > 0 && !@silent, "predictions were answered in every second of the kills ($good_total in all)")
    or diag("silent seconds: @silent");

# --- what the clients saw --------------------------------------------------------------

my (%ack, @dup, %status, @bad_ack);
for my $c (1 .. $CLIENTS) {
    open my $in, '<', "$tmp/acks.$c" or next;
    while (<$in>) {
        chomp;
        my @f = split / /;
        if ($f[0] eq 'count') { $status{$f[1]} += $f[2]; next }
        my (undef, $series, $v, $sid, $mean, $std) = @f;
        push @bad_ack, "client $c: 200 with version '$v' series_id '$sid' for $series"
            unless $v =~ /^v[1-9]\d*$/ && $sid eq $series;
        my $key = "$series $v";
        push @dup, "$key acknowledged twice (means $ack{$key}[0] and $mean)" if $ack{$key};
        $ack{$key} = [ $mean, $std ];
    }
}
note('fit statuses: ' . join(', ', map { "$_ x$status{$_}" } sort keys %status));
my $acks = keys %ack;
ok($acks >= 20, "$acks fits acknowledged with 200 during the kills");
ok(!@bad_ack, 'every 200 carried a version and the series id') or diag(join "\n", @bad_ack[0 .. ($#bad_ack < 9 ? $#bad_ack : 9)]);
ok(!@dup, 'no (series, version) acknowledged twice') or diag(join "\n", @dup[0 .. ($#dup < 9 ? $#dup : 9)]);
my @odd = grep { $_ != 200 && $_ != 503 && $_ != 599 } keys %status;
ok(!@odd, 'fits failed only with a connection error or 503')
    or diag(join ', ', map { "$_ x$status{$_}" } @odd);

# Every acknowledged version answers from its own data: predicting its mean
# gives a score of 0 (other fits' means are >= 10 away, std ~ 1.2).
sub check_acks {
    my ($tt, $when) = @_;
    my @lost;
    for my $key (sort keys %ack) {
        my ($series, $v) = split / /, $key;
        my ($mean) = @{$ack{$key}};
        my ($st, $j, $raw) = $tt->predict($series, { timestamp => '1800000000', value => 0 + $mean }, $v);
        push @lost, "$key: $st $raw"
            unless $st == 200 && ref $j eq 'HASH' && ($j->{model_version} // '') eq $v
                   && close_enough($j->{score}, 0, 1e-9);
    }
    ok(!@lost && $acks, "$when: all $acks acknowledged versions answer with their own data")
        or diag(scalar(@lost) . " bad:\n" . join "\n", @lost[0 .. ($#lost < 14 ? $#lost : 14)]);
}

my ($ready) = $t->wait_ready(10);
ok($ready, 'store is ready again after the kills');
check_acks($t, 'before restart');

# The latest version of each series is at least the highest acknowledged.
my %max;
for (keys %ack) { my ($s, $v) = split / /; my $n = substr($v, 1); $max{$s} = $n if $n > ($max{$s} // 0) }

$t->stop;
$t->start;
check_acks($t, 'after a clean restart');
for my $series (sort keys %max) {
    my ($st, $j, $raw) = $t->predict($series, { timestamp => '1800000000', value => 1 });
    my ($n) = ($j && $j->{model_version} // '') =~ /^v(\d+)$/;
    ok(defined $n && $n >= $max{$series}, "$series: latest (v" . ($n // '?') . ") >= highest acknowledged (v$max{$series})")
        or diag("$st $raw");
    my ($body) = make_series(12, seed => 4242, base => 1, spread => 1);
    ($st, $j, $raw) = $t->fit($series, $body);
    is($j && $j->{version}, 'v' . (($n // 0) + 1), "$series: the next fit after the restart continues at v" . (($n // 0) + 1))
        or diag("$st $raw");
}

AnomalyTest::done();
