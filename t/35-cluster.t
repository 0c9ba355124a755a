#!/usr/bin/perl
# The cluster of conf/examples/cluster (CONTRACT section 9): nodes that run
# the module with conf/examples/cluster/node.conf, a plain nginx front with
# front.conf that sends each series to its node by `hash $series_id
# consistent`, and the rebalance script that moves series with export and
# import when a node is added or removed.
#
# Three nodes and the front on loopback. The front's own answers (any
# node's /healthcheck, /nodes/<host:port>/..., JSON errors, a node's 404
# passed through); 1000 series fitted through the front (every 10th with
# three versions, some ids percent-encoded), 50 of them with a stream; each
# node holds only its own series, the one the front sends it to; /plot by
# series_id. rebalance --dry-run (the script's copy of nginx's ring) says
# nothing is misplaced and what would move. A fourth node is added while a
# client predicts through the front without pause: no prediction fails,
# every series answers each of its versions with the same score as before,
# its versions and its stream are where the front sends it, the new node
# holds about a quarter of the series (those the dry run named) and the old
# ones no longer hold what moved. Then a node is removed (4 -> 3) the same
# way, a conflicting version stops a move before the front is switched, and
# a DELETE through the front reaches the series' node.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series encode_body wait_until);

plan skip_all => 'python3 is not installed (the rebalance script needs it)'
    unless grep { -x "$_/python3" } split /:/, $ENV{PATH} // '';

my $ROOT = $AnomalyTest::ROOT;
my $EXAMPLE = "$ROOT/conf/examples/cluster";
my $NODE_CONF = "$EXAMPLE/node.conf";
my $REBALANCE = "$EXAMPLE/rebalance";
my $T0 = time;

sub slurp { my ($f) = @_; open my $fh, '<', $f or die "$f: $!"; local $/; return scalar <$fh> }
sub spew { my ($f, $s) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $s; close $fh }

# ${NAME} placeholders of the example configurations, as envsubst fills them.
sub render {
    my ($text, %v) = @_;
    $text =~ s/\$\{(\w+)\}/exists $v{$1} ? $v{$1} : die "no value for \${$1}\n"/ge;
    return $text;
}

# A node: AnomalyTest's harness (start, stop, error log checks) serving the
# example's node.conf instead of its own configuration.
package ClusterNode {
    our @ISA = ('AnomalyTest');
    sub config_text {
        my ($self) = @_;
        return main::render(main::slurp($NODE_CONF),
            ANOMALY_MODULE => $self->{module}, NODE_LISTEN => "127.0.0.1:$self->{port}",
            NODE_RUN_DIR => $self->{dir}, NODE_STORE => $self->{store},
            NODE_ZONE_SIZE => $self->{zone_size}, NODE_WORKERS => $self->{workers});
    }
    sub name { "127.0.0.1:$_[0]{port}" }
}

ok(-x $REBALANCE, 'conf/examples/cluster/rebalance is executable');
my @nodes = map { ClusterNode->new(workers => 1, zone_size => '16m') } 1 .. 3;
my %node_by_name = map { ($_->name => $_) } @nodes;

# --- the front -------------------------------------------------------------------
my $fdir = tempdir('anomaly-front-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{ANOMALY_TEST_KEEP});
chmod 0755, $fdir;
my $fport = AnomalyTest::free_port();
my $NODES_FILE = "$fdir/nodes.conf";
my $FRONT_PID_FILE = "$fdir/nginx.pid";

sub write_nodes { spew($NODES_FILE, join '', map { "server $_ max_fails=0;\n" } @_) }
sub ring { join ',', map { $_->name } @_ }

write_nodes(map { $_->name } @nodes);
spew("$fdir/front.conf", render(slurp("$EXAMPLE/front.conf"),
    FRONT_LISTEN => "127.0.0.1:$fport", FRONT_RUN_DIR => $fdir,
    FRONT_NODES_FILE => $NODES_FILE, FRONT_WORKERS => 1));
my $front_pid;
{
    my $rc = system("$AnomalyTest::NGINX -p $fdir/ -c $fdir/front.conf -e $fdir/error.log > $fdir/nginx.out 2>&1");
    BAIL_OUT("the front does not start: " . slurp("$fdir/nginx.out") . slurp("$fdir/error.log")) if $rc;
    wait_until(5, sub { -s $FRONT_PID_FILE });
    ($front_pid) = slurp($FRONT_PID_FILE) =~ /(\d+)/;
    ok($front_pid, "the front runs (master $front_pid) on port $fport");
}

END {
    if ($front_pid && kill 0, $front_pid) {
        kill 'QUIT', $front_pid;
        wait_until(10, sub { !kill 0, $front_pid });
    }
}

my $JSON = JSON::PP->new->canonical;
my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);   # fresh connections: no Nagle delay between header and body
my @front_ctype_bad;

# front(METHOD, PATH, BODY) -> (status, json, raw, headers)
sub front {
    my ($method, $path, $body) = @_;
    my %args = (headers => {});
    if (defined $body) {
        $args{content} = ref $body ? encode_body($body) : $body;
        $args{headers}{'Content-Type'} = 'application/json';
    }
    my $res = $ua->request($method, "http://127.0.0.1:$fport$path", \%args);
    my $raw = $res->{content} // '';
    my $j = eval { decode_json($raw) };
    push @front_ctype_bad, "$method $path -> $res->{status} " . ($res->{headers}{'content-type'} // '(none)')
        unless ($res->{headers}{'content-type'} // '') =~ m{^application/json};
    return ($res->{status}, $j, $raw, $res->{headers});
}

# --- the front's own answers ----------------------------------------------------------
{
    my ($st, $j, $raw, $h) = front('GET', '/healthcheck');
    is($st, 200, 'the front answers /healthcheck from a node');
    ok($node_by_name{ $h->{'x-anomaly-node'} // '' }, 'X-Anomaly-Node names the node that answered')
        or diag(explain $h);
    my $n = $nodes[1];
    ($st, $j, $raw, $h) = front('GET', '/nodes/' . $n->name . '/healthcheck');
    is($st, 200, '/nodes/<host:port>/healthcheck reaches that node');
    is($h->{'x-anomaly-node'}, $n->name, 'and that node answered');
    ($st, $j) = front('GET', '/nodes/' . $n->name . '/series?limit=1');
    ok($st == 200 && ref $j->{series} eq 'ARRAY', '/nodes/<host:port>/series?limit=1 keeps the query string');
    ($st, $j) = front('GET', '/no/such/thing');
    is_deeply([ $st, $j->{code} ], [ 404, 'not_found' ], 'an unknown path: 404 as JSON');
    ($st, $j) = front('POST', '/predict/never-fitted', { timestamp => 1, value => 1 });
    is_deeply([ $st, $j->{code} ], [ 404, 'series_not_found' ], "a node's own 404 passes through");
}

# --- 1000 series through the front ---------------------------------------------------
my $N = 1000;
my (@ids, %versions);
for my $i (0 .. $N - 1) {
    push @ids, $i % 100 == 7 ? "host:$i.cpu" : "sensor-$i";    # some with ':' and '.'
    $versions{ $ids[-1] } = $i % 10 == 0 ? 3 : 1;
}
my $POINT = { timestamp => 1_700_003_600, value => 101.5 };

{
    my ($fits, $bad) = (0, 0);
    for my $i (0 .. $N - 1) {
        my $id = $ids[$i];
        (my $path = $id) =~ s/:/%3A/g;            # encoded: the front routes by the decoded $uri
        for my $v (1 .. $versions{$id}) {
            my ($body) = make_series(20, seed => 10 * $i + $v, base => 90 + 5 * $v, spread => 4 + $v);
            my ($st, $j, $raw) = front('POST', "/fit/$path", $body);
            $fits++;
            next if $st == 200 && $j->{version} eq "v$v";
            diag("fit $id: $st $raw") if $bad++ < 3;
        }
    }
    is($bad, 0, "$fits fits of $N series through the front");
    note(sprintf 'fits done at %.1f s', time - $T0);
}

my %observed;
{
    my $bad = 0;
    my @ts = map { 1_700_000_000 + 60 * $_ } 0 .. 29;
    for my $i (grep { $_ % 20 == 5 } 0 .. $N - 1) {
        my $id = $ids[$i];
        my @v = map { 50 + ($_ * 7 + $i) % 5 } 0 .. 29;
        my ($st, $j, $raw) = front('POST', "/observe/$id?detector=adaptive", { timestamps => \@ts, values => \@v });
        $observed{$id} = 30;
        diag("observe $id: $st $raw") if $st != 200 && $bad++ < 3;
    }
    is($bad, 0, scalar(keys %observed) . ' series observed 30 points each through the front');
}

# Where each series is, asked of every node directly: {id => node name}.
sub placement {
    my (@of) = @_;
    my (%where, @dupes, %count);
    for my $n (@of) {
        my $after = '';
        while (1) {
            my ($st, $j, $raw) = $n->request('GET', "/series?limit=1000$after");
            die "GET /series of " . $n->name . ": $st $raw" unless $st == 200;
            for my $s (@{ $j->{series} }) {
                push @dupes, "$s->{series_id} on $where{$s->{series_id}} and " . $n->name
                    if $where{ $s->{series_id} };
                $where{ $s->{series_id} } = $n->name;
                $count{ $n->name }++;
            }
            last unless defined $j->{next_after};
            $after = "&after=$j->{next_after}";
        }
    }
    return (\%where, \@dupes, \%count);
}

# Every series through the front: each version's predict answer, its
# versions and its stream. {id => {node, predict => {vN => "score anomaly"}, versions, stream}}
sub snapshot {
    my %snap;
    for my $id (@ids) {
        my %s;
        for my $v (1 .. $versions{$id}) {
            my ($st, $j, $raw, $h) = front('POST', "/predict/$id?version=v$v", $POINT);
            $s{predict}{"v$v"} = $st == 200
                ? join(' ', AnomalyTest::raw_field($raw, 'score'), AnomalyTest::raw_field($raw, 'anomaly'),
                       $j->{model_version})
                : "$st $raw";
            $s{node} = $h->{'x-anomaly-node'};
        }
        my ($st, $j, $raw) = front('GET', "/series/$id");
        $s{versions} = $st == 200
            ? $JSON->encode([ map { [ @$_{qw(version points detector mean std first_timestamp last_timestamp)} ] }
                              @{ $j->{versions} } ])
            : "$st $raw";
        $s{stream} = $st == 200 && $j->{stream}
            ? "$j->{stream}{detector} $j->{stream}{points_processed} " . ($j->{stream}{last_timestamp} // 'null')
            : 'none';
        $snap{$id} = \%s;
    }
    return \%snap;
}

# The placement checks, after fitting and after each move.
sub check_placement {
    my ($of, $snap, $when) = @_;
    my ($where, $dupes, $count) = placement(@$of);
    is(scalar(@$dupes), 0, "$when: no series on two nodes") or diag(join "\n", @$dupes[0 .. 4]);
    is(scalar(keys %$where), $N, "$when: the nodes hold $N series together ("
       . join(' + ', map { $count->{ $_->name } // 0 } @$of) . ')');
    my @astray = grep { ($where->{$_} // '') ne ($snap->{$_}{node} // '') } @ids;
    is(scalar @astray, 0, "$when: every series is on the node the front sends it to")
        or diag(join "\n", map { "$_ on " . ($where->{$_} // 'none') . ', front sends to '
                                 . ($snap->{$_}{node} // 'none') } @astray[0 .. 4]);
    return ($where, $count);
}

# Runs the script; returns (exit code, output).
sub run_rebalance {
    my (@args) = @_;
    my $out = "$fdir/rebalance.out";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        exec 'python3', $REBALANCE, @args or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $rc = $? >> 8;
    my $text = slurp($out);
    note("rebalance " . join(' ', @args) . " (exit $rc):\n$text");
    return ($rc, $text);
}

# Predictions through the front without pause, on fresh connections, until
# the file $stop exists; writes "SENT FAILED FIRST-FAILURE" to $out.
sub start_predictor {
    my ($stop, $out) = @_;
    return AnomalyTest::child(sub {
        my $c = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
        my ($n, $bad, $first) = (0, 0, '');
        until (-e $stop) {
            my $id = $ids[ ($n * 7) % @ids ];
            my $res = $c->post("http://127.0.0.1:$fport/predict/$id", {
                headers => { 'Content-Type' => 'application/json' }, content => encode_body($POINT) });
            $n++;
            next if $res->{status} == 200;
            $bad++;
            $first ||= "$id: $res->{status} $res->{content}";
        }
        spew($out, "$n $bad $first\n");
    });
}

sub stop_predictor {
    my ($pid, $stop, $out) = @_;
    spew($stop, '');
    waitpid $pid, 0;
    my ($n, $bad, $first) = split ' ', slurp($out), 3;
    return ($n, $bad, $first);
}

# --- three nodes: each holds its own series --------------------------------------------
# Streams move as of their checkpoint: wait until every observed one has one.
ok(wait_until(15, sub {
    for my $id (keys %observed) {
        my ($st, $j) = front('GET', "/series/$id");
        return 0 unless $st == 200 && defined(($j->{stream} // {})->{checkpoint_age_seconds});
    }
    return 1;
}), 'every stream has a checkpoint');

my $before = snapshot();
note(sprintf 'snapshot at %.1f s', time - $T0);
{
    my @bad = grep { $before->{$_}{predict}{v1} !~ /^-?[\d.e+-]+ (true|false) v1$/ } @ids;
    is(scalar @bad, 0, 'every series predicts through the front')
        or diag(join "\n", map { "$_: $before->{$_}{predict}{v1}" } @bad[0 .. ($#bad < 2 ? $#bad : 2)]);
    my @nostream = grep { $before->{$_}{stream} !~ / 30 / } keys %observed;
    is(scalar @nostream, 0, 'every observed series shows its stream of 30 points')
        or diag(join "\n", map { "$_: $before->{$_}{stream}" } @nostream[0 .. ($#nostream < 2 ? $#nostream : 2)]);
}
my ($where3, $count3) = check_placement(\@nodes, $before, 'three nodes');
ok(!grep({ ($count3->{ $_->name } // 0) < 200 } @nodes), 'each of the three nodes holds a share');
{
    my $id = 'host:7.cpu';
    my $res = $ua->get("http://127.0.0.1:$fport/plot?series_id=$id&version=v1");
    is($res->{status}, 200, "GET /plot?series_id=$id through the front");
    like($res->{headers}{'content-type'} // '', qr{^image/svg\+xml}, 'an SVG');
    is($res->{headers}{'x-anomaly-node'}, $where3->{$id}, 'from the node that holds the series');
}

# The script's own ring (for --dry-run) agrees with nginx's.
{
    my ($rc, $out) = run_rebalance('--old', ring(@nodes), '--new', ring(@nodes),
                                   '--nodes-file', $NODES_FILE, '--dry-run');
    is($rc, 0, 'rebalance --dry-run with the same ring');
    like($out, qr/dry run: $N series on 3 nodes, 0 would move, $N stay; 0 are not on the node the old ring gives them/,
         'nothing would move, and every series is where the ring of the script puts it');
}
{
    my ($rc, $out) = run_rebalance('--old', ring(@nodes[0, 1]), '--new', ring(@nodes[0, 1]),
                                   '--nodes-file', $NODES_FILE, '--front-pid', $FRONT_PID_FILE);
    is($rc, 1, 'rebalance refuses an --old ring that is not the nodes file');
    like($out, qr/not --old/, 'and says so');
}

# --- a fourth node -------------------------------------------------------------------------
push @nodes, ClusterNode->new(workers => 1, zone_size => '16m');
$node_by_name{ $nodes[3]->name } = $nodes[3];
my %predicted_moves;
{
    my ($rc, $out) = run_rebalance('--old', ring(@nodes[0 .. 2]), '--new', ring(@nodes),
                                   '--nodes-file', $NODES_FILE, '--dry-run');
    is($rc, 0, 'rebalance --dry-run 3 -> 4');
    while ($out =~ /would move (\d+) series \((\d+) versions\) from (\S+) to (\S+)/g) {
        $predicted_moves{$4} += $1;
    }
    is_deeply([ keys %predicted_moves ], [ $nodes[3]->name ], 'series would move to the new node only');
    is(slurp($NODES_FILE), join('', map { "server " . $_->name . " max_fails=0;\n" } @nodes[0 .. 2]),
       'a dry run leaves the nodes file alone');
}

sub move {
    my ($old, $new, $when) = @_;
    my ($stop, $out) = ("$fdir/stop.$when", "$fdir/predicted.$when");
    my $kid = start_predictor($stop, $out);
    sleep 0.3;
    my $t = time;
    my ($rc, $text) = run_rebalance('--old', ring(@$old), '--new', ring(@$new),
                                    '--nodes-file', $NODES_FILE, '--front-pid', $FRONT_PID_FILE);
    my $secs = time - $t;
    sleep 0.3;
    my ($n, $bad, $first) = stop_predictor($kid, $stop, $out);
    is($rc, 0, "rebalance $when exits 0 (" . sprintf('%.1f s', $secs) . ')');
    like($text, qr/^a\. copy: .*^b\. switch: .*^c\. catch up: .*^d\. delete: /ms, 'it reports the four steps');
    ok($n > 50, "predictions were sent through the front during the move ($n)");
    is($bad, 0, "no prediction failed during the move") or diag("first failure: $first");
    is(slurp($NODES_FILE) =~ s/^#.*\n//mgr, join('', map { "server " . $_->name . " max_fails=0;\n" } @$new),
       'the nodes file lists the new ring');
    return $text;
}

sub check_after {
    my ($of, $when) = @_;
    my $after = snapshot();
    for my $what (qw(predict versions stream)) {
        my @diff = grep {
            $what eq 'predict' ? $JSON->encode($before->{$_}{predict}) ne $JSON->encode($after->{$_}{predict})
                               : $before->{$_}{$what} ne $after->{$_}{$what}
        } @ids;
        my $name = { predict => 'every series answers each of its versions with the same score',
                     versions => 'GET /series/{id} shows the same versions',
                     stream => 'the streams moved with their series (same points processed)' }->{$what};
        is(scalar @diff, 0, "$when: $name") or do {
            for my $id (@diff[0 .. 2]) {
                next unless defined $id;
                diag("$id before: " . $JSON->encode($before->{$id}{$what}) . "\n$id after:  "
                     . $JSON->encode($after->{$id}{$what}));
            }
        };
    }
    return ($after, check_placement($of, $after, $when));
}

my $moved_text = move([ @nodes[0 .. 2] ], \@nodes, '3 -> 4');
my ($after4, $where4, $count4) = check_after(\@nodes, 'four nodes');
{
    my $new = $nodes[3]->name;
    my $share = $count4->{$new} // 0;
    ok($share > 0.15 * $N && $share < 0.35 * $N, "the new node holds about a quarter of the series ($share)");
    is($share, $predicted_moves{$new} // 0, 'exactly the series the dry run said would move');
    my @stayed_wrong = grep { $where3->{$_} ne $where4->{$_} && $where4->{$_} ne $new } @ids;
    is(scalar @stayed_wrong, 0, 'no series moved between the old nodes');
    my @moved_streams = grep { $where4->{$_} eq $new } keys %observed;
    note(scalar(@moved_streams) . ' observed series moved to the new node');
    my ($st, $j) = $nodes[3]->request('GET', '/healthcheck');
    my $v_moved = 0;
    $v_moved += $versions{$_} for grep { $where4->{$_} eq $new } @ids;
    is($j->{series_trained}, $share, "the new node's /healthcheck counts them");
    like($moved_text, qr/^a\. copy: $share series, $v_moved versions imported/m,
         "the copy step reports $share series and $v_moved versions");
}

# --- a node removed: 4 -> 3 -------------------------------------------------------------------
{
    my $gone = $nodes[1];
    my @remaining = @nodes[0, 2, 3];
    my ($rc, $out) = run_rebalance('--old', ring(@nodes), '--new', ring(@remaining),
                                   '--nodes-file', $NODES_FILE, '--dry-run');
    my %to;
    $to{$3} += $1 while $out =~ /would move (\d+) series \(\d+ versions\) from (\S+) to (\S+)/g;
    my $from_gone = 0;
    $from_gone += $1 while $out =~ /would move (\d+) series \(\d+ versions\) from \Q${\ $gone->name}\E /g;
    is($from_gone, $count4->{ $gone->name }, 'the dry run of 4 -> 3 moves exactly the removed node\'s series');

    move(\@nodes, \@remaining, '4 -> 3');
    my ($after3, $where, $count) = check_after(\@remaining, 'after removing a node');
    my ($st, $j) = $gone->request('GET', '/series');
    is_deeply([ $st, scalar @{ $j->{series} // [1] } ], [ 200, 0 ], 'the removed node holds no series any more');
    my @moved_between = grep { $where4->{$_} ne $gone->name && $where->{$_} ne $where4->{$_} } @ids;
    is(scalar @moved_between, 0, 'only the removed node\'s series moved');

    # --- a conflict stops a move before the switch ------------------------------------------
    # Adding the removed node back would give it its series again; one of
    # them gets another v1 on it first: its import is refused (409).
    my ($victim) = grep { $where4->{$_} eq $gone->name && $versions{$_} == 1 } @ids;
    my ($body) = make_series(20, seed => 4242, base => 500);
    ($st, $j, my $raw) = $gone->fit($victim, $body);
    is($st, 200, "a different v1 of $victim fitted on the removed node directly") or diag($raw);
    my $ring_before = slurp($NODES_FILE);
    my ($rc2, $text) = run_rebalance('--old', ring(@remaining), '--new', ring(@nodes),
                                     '--nodes-file', $NODES_FILE, '--front-pid', $FRONT_PID_FILE);
    is($rc2, 1, 'rebalance exits 1 on a conflicting version');
    like($text, qr/CONFLICT \(409\)/, 'and reports the conflict');
    like($text, qr/\Q$victim\E/, 'naming the series') or diag($text);
    unlike($text, qr/^b\. switch/m, 'the front was not switched');
    is(slurp($NODES_FILE), $ring_before, 'the nodes file is unchanged');
    ($st, $j, $raw) = front('POST', "/predict/$victim?version=v1", $POINT);
    is(join(' ', $st, AnomalyTest::raw_field($raw, 'score') // ''),
       '200 ' . (split ' ', $before->{$victim}{predict}{v1})[0],
       'the series still answers from its node with its own v1');
}

# --- a delete through the front ---------------------------------------------------------------
{
    my $id = $ids[10];
    my ($st, $j, $raw) = front('DELETE', "/series/$id");
    is_deeply([ $st, $j->{series_id}, $j->{deleted_versions} ], [ 200, $id, 3 ],
              "DELETE /series/$id through the front deletes its 3 versions") or diag($raw);
    ($st, $j) = front('GET', "/series/$id");
    is_deeply([ $st, $j->{code} ], [ 404, 'series_not_found' ], 'and the series is gone');
}

is(scalar @front_ctype_bad, 0, 'every answer of the front was JSON') or diag(join "\n", @front_ctype_bad[0 .. 4]);
{
    my @bad = grep { /\[(?:alert|emerg)\]|exited on signal/ } split /\n/, slurp("$fdir/error.log");
    is(scalar @bad, 0, "the front's error.log has no [alert], [emerg] or crashed process") or diag(join "\n", @bad);
}
note(sprintf 'done at %.1f s', time - $T0);
AnomalyTest::done();
