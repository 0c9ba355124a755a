#!/usr/bin/perl
# Export and import (CONTRACT section 9): GET /export streams the store (every
# version with its model, training data and plot envelope, and the streams'
# checkpoints) in the format of docs/export-format.md; POST /import loads it
# into another node keeping version numbers. A round trip answers exactly as
# before; a backup restores a wiped node; a rerun imports nothing twice; a
# version that differs is a 409 after what came before it; ?since=, a prefix
# and a consistent-hash ring (the one nginx's `hash ... consistent` uses)
# filter the export; a damaged body is a 400 after what came before it.

use strict;
use warnings;
use Test::More;
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series mean_std error_ok raw_field wait_until);

# The first bytes of every export (docs/export-format.md).
my $MAGIC = "anomaly-export\n";

my $TMP = tempdir(CLEANUP => 1);
my $JSON = JSON::PP->new->canonical;

my $LOCATIONS = <<'EOF';
        location /observe/ {
            anomaly_stream_detector adaptive;
            anomaly_stream_warmup 5;
            anomaly_observe;
        }
        location = /export {
            anomaly_export;
        }
        location = /import {
            client_max_body_size 1g;
            anomaly_import;
        }
EOF

# On A only: which of three nodes nginx's own consistent hash gives a series
# (the peers refuse connections; $upstream_addr names the one chosen).
my $RING_HTTP = <<'EOF';
    upstream ring3 {
        hash $ring_sid consistent;
        server 127.0.0.1:1 max_fails=0;
        server 127.0.0.1:2 max_fails=0;
        server 127.0.0.1:3 max_fails=0;
    }
EOF
my $RING_LOCATIONS = <<'EOF';
        location ~ ^/route/(?<ring_sid>[^/]+)$ {
            proxy_pass http://ring3;
            proxy_next_upstream off;
            error_page 502 504 = @routed;
        }
        location @routed {
            default_type text/plain;
            return 200 "$upstream_addr";
        }
EOF

sub node {
    my (%o) = @_;
    my $ring = delete $o{ring};
    return AnomalyTest->new(workers => 2,
                            locations => $LOCATIONS . ($ring ? $RING_LOCATIONS : ''),
                            http_extra => "anomaly_checkpoint 200ms;\n" . ($ring ? $RING_HTTP : ''),
                            %o);
}

my $UA = HTTP::Tiny->new(keep_alive => 0, timeout => 120, agent => 'anomaly-test/1');

# GET /export?QUERY -> HTTP::Tiny's response
sub export {
    my ($t, $query) = @_;
    return $UA->get('http://127.0.0.1:' . $t->port . '/export' . ($query // ''));
}

# POST /import -> (status, json, raw, headers)
sub import_body {
    my ($t, $body, $ctype) = @_;
    my $res = $UA->request('POST', 'http://127.0.0.1:' . $t->port . '/import', {
        headers => { 'Content-Type' => $ctype // 'application/octet-stream' }, content => $body });
    my $j = eval { decode_json($res->{content}) };
    return ($res->{status}, $j, $res->{content}, $res->{headers});
}

# A request written by hand (HTTP::Tiny always sends a Content-Type with a
# body): -> (status, json, raw body, headers)
sub raw_http {
    my ($t, $text) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Proto => 'tcp', Timeout => 10)
        or return (599, undef, "connect: $!", {});
    print $sock $text;
    local $/;
    my $all = <$sock> // '';
    my ($head, $body) = split /\r\n\r\n/, $all, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.[01] (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } split /\r\n/, $head // '';
    return ($status // 599, eval { decode_json($body // '') }, $body, \%h);
}

my @FIGURES = qw(versions_imported versions_present streams_imported streams_kept source_commits);

# The figures of an import's answer as "name=value ..." (for is()).
sub figures {
    my ($j) = @_;
    return 'not a JSON object' unless ref $j eq 'HASH';
    return join ' ', map { "$_=" . ($j->{$_} // 'undef') } @FIGURES;
}

# An import error: the status, the code, a detail, and the figures of what came before.
sub import_error_ok {
    my ($res, $status, $code, $name, $detail_re) = @_;
    my ($st, $j, $raw) = @$res;
    my @why;
    push @why, "status $st, expected $status" unless $st == $status;
    if (ref $j ne 'HASH') {
        push @why, 'body is not a JSON object';
    } else {
        push @why, 'code ' . ($j->{code} // 'undef') . ", expected $code" unless ($j->{code} // '') eq $code;
        push @why, 'no detail' unless defined $j->{detail} && length $j->{detail};
        push @why, "detail does not match $detail_re" if $detail_re && ($j->{detail} // '') !~ $detail_re;
        push @why, "no $_" for grep { !defined $j->{$_} || $j->{$_} !~ /^\d+$/ } @FIGURES;
        push @why, 'no series array' unless ref $j->{series} eq 'ARRAY';
    }
    my $ok = ok(!@why, $name);
    diag(join("\n", @why) . "\nbody: " . substr($raw // '', 0, 500)) unless $ok;
    return $ok;
}

sub health { $_[0]->health_json }

# Every series GET /series lists: { id => row }
sub all_series { $_[0]->all_series }

# GET /series/{id}: its versions as canonical JSON, and its stream's lasting fields.
my @STREAM_FIELDS = qw(detector points_processed stage warmup hold last_timestamp state_bytes);
sub series_info {
    my ($t, $id) = @_;
    my ($st, $j, $raw) = $t->request('GET', "/series/$id?limit=1000");
    return ("status $st", undef) unless $st == 200;
    my $stream = $j->{stream} ? join(' ', map { "$_=" . ($j->{stream}{$_} // 'null') } @STREAM_FIELDS) : 'none';
    return ($JSON->encode($j->{versions}), $stream);
}

sub version_names {
    my ($t, $id) = @_;
    my ($st, $j) = $t->request('GET', "/series/$id?limit=1000");
    return "status $st" unless $st == 200;
    return join ',', map { $_->{version} } @{ $j->{versions} };
}

# The question every version is asked: a fixed point.
my $POINT_TS = 1_700_050_000;
my %VALUE;   # series => value asked

sub answer {
    my ($t, $id, $v) = @_;
    my ($st, $j, $raw) = $t->predict($id, { timestamp => $POINT_TS, value => $VALUE{$id} }, $v);
    return "status $st $raw" unless $st == 200 && ref $j eq 'HASH';
    return join ' ', 'anomaly=' . ($j->{anomaly} ? 'true' : 'false'), map { "$_=" . (raw_field($raw, $_) // '') }
                     qw(model_version score detector anomaly_score expected_value lower upper);
}

# Asks every (series, version) of %$expected on T; one test.
sub same_answers {
    my ($t, $expected, $name) = @_;
    my @diff;
    for my $key (sort keys %$expected) {
        my ($id, $v) = split ' ', $key;
        my $got = answer($t, $id, $v eq 'latest' ? undef : $v);
        push @diff, "$key: expected [$expected->{$key}] got [$got]" unless $got eq $expected->{$key};
    }
    my $ok = ok(!@diff, $name . ' (' . scalar(keys %$expected) . ' predicts)');
    diag(join "\n", @diff[0 .. ($#diff < 5 ? $#diff : 5)]) unless $ok;
    return $ok;
}

sub plot {
    my ($t, $id, $v) = @_;
    my $res = $UA->get('http://127.0.0.1:' . $t->port . "/plot?series_id=$id&version=$v");
    return $res->{status} == 200 && ($res->{headers}{'content-type'} // '') eq 'image/svg+xml'
        ? $res->{content} : "status $res->{status} $res->{content}";
}

# --- A: 30 series with versions (two prefixes), 5 streams -------------------------------------
my $A = node(ring => 1);
my (%NV, %EXPECT, %INFO, %STREAM, %PLOT);
my @DETECTORS = ('', '?detector=robust', '?detector=iforest&trees=30', '?detector=seasonal');
my @VERSIONED;
for my $k (0 .. 29) {
    my $id = ($k < 15 ? 'pre_a.' : 'pre_b.') . ($k % 15);
    push @VERSIONED, $id;
    $NV{$id} = $k % 3 == 0 ? 3 : 1;
    $VALUE{$id} = 50 + $k + 9.5;
    for my $n (1 .. $NV{$id}) {
        my ($body) = make_series(120, seed => 100 * $k + $n, base => 50 + $k, spread => 4 + $n, step => 3600);
        my $q = $NV{$id} == 3 ? $DETECTORS[$n - 1] : $DETECTORS[$k % 4];
        my ($st, $j, $raw) = $A->request('POST', "/fit/$id$q", $body);
        die "fit $id$q: $st $raw" unless $st == 200 && $j->{version} eq "v$n";
    }
}
my @STREAMED = qw(pre_a.0 pre_a.1 pre_b.0 pre_a.st pre_b.st);
for my $i (0 .. $#STREAMED) {
    my $id = $STREAMED[$i];
    my ($st, $j, $raw) = $A->request('POST', "/observe/$id", {
        timestamps => [ map { $POINT_TS + 300 * $_ } 1 .. 20 ],
        values     => [ map { 20 + $i + ($_ % 4) * 0.5 } 1 .. 20 ] });
    die "observe $id: $st $raw" unless $st == 200 && $j->{learned} == 20;
}
my @ALL = sort(@VERSIONED, 'pre_a.st', 'pre_b.st');
my $TOTAL = 0;
$TOTAL += $NV{$_} for @VERSIONED;
ok(1, "A: fitted $TOTAL versions of " . scalar(@VERSIONED) . ' series (three_sigma, robust, iforest, seasonal),'
      . ' observed 20 points into ' . scalar(@STREAMED) . ' streams');
ok(wait_until(10, sub {
    !grep { my (undef, $s) = $A->request('GET', "/series/$_", undef, quiet => 1);
            !(ref $s eq 'HASH' && defined $s->{stream}{checkpoint_age_seconds}) } @STREAMED
}), 'every stream is checkpointed');

for my $id (@VERSIONED) {
    for my $n (1 .. $NV{$id}) {
        $EXPECT{"$id v$n"} = answer($A, $id, "v$n");
        $PLOT{"$id v$n"} = plot($A, $id, "v$n");
    }
    $EXPECT{"$id latest"} = answer($A, $id);
}
($INFO{$_}, $STREAM{$_}) = series_info($A, $_) for @ALL;
my @bad = grep { $EXPECT{$_} !~ /^anomaly=/ } keys %EXPECT;
ok(!@bad, 'every version answers on A') or diag(join "\n", @EXPECT{@bad[0 .. 2]});
@bad = grep { $PLOT{$_} !~ /^<\?xml/ } keys %PLOT;
ok(!@bad, 'every version has a plot on A') or diag(join "\n", @PLOT{@bad[0 .. 2]});
is(scalar(grep { $STREAM{$_} ne 'none' } @ALL), 5, 'A: 5 series show a stream');
my $HEALTH_A = health($A);

# --- export A -----------------------------------------------------------------------------------
my $res = export($A);
is($res->{status}, 200, 'GET /export: 200') or diag(substr($res->{content}, 0, 300));
is($res->{headers}{'content-type'}, 'application/octet-stream', 'Content-Type: application/octet-stream');
is($res->{headers}{'transfer-encoding'}, 'chunked', 'Transfer-Encoding: chunked');
my $N1 = $res->{headers}{'x-anomaly-commits'};
like($N1 // '', qr/^\d+$/, 'X-Anomaly-Commits is a number (' . ($N1 // 'none') . ')');
my $E1 = $res->{content};
is(substr($E1, 0, length $MAGIC), $MAGIC, 'the body starts with the magic of docs/export-format.md');
note('export of A: ' . length($E1) . ' bytes');
{ open my $fh, '>:raw', "$TMP/a.export" or die; print $fh $E1; close $fh; }
$N1 //= 0;

# Each stream judges one more point on A, now: what the imported streams must answer too.
my %PROBE;
sub probe {
    my ($t, $id) = @_;
    my ($st, $j, $raw) = $t->request('POST', "/observe/$id", { timestamp => $POINT_TS + 300 * 21, value => 31 });
    return "status $st $raw" unless $st == 200;
    return join ' ', map { "$_=" . (raw_field($raw, $_) // '') } qw(anomaly_score score expected_value stage points_processed);
}
$PROBE{$_} = probe($A, $_) for @STREAMED;

# --- import into B --------------------------------------------------------------------------------
my $B = node();
{
    my $t0 = time;
    my ($st, $j, $raw) = import_body($B, $E1);
    note(sprintf('import into B: %.2f s', time - $t0));
    is($st, 200, 'POST /import into B: 200') or diag(substr($raw, 0, 500));
    is(figures($j), "versions_imported=$TOTAL versions_present=0 streams_imported=5 streams_kept=0 source_commits=$N1",
       "counts: $TOTAL versions, 5 streams, source_commits as X-Anomaly-Commits");
    is_deeply([ sort @{ $j->{series} // [] } ], \@ALL, '"series" lists all ' . scalar(@ALL) . ' series');
    same_answers($B, \%EXPECT, 'on B every version answers predict exactly as on A');
    my @d = grep { (series_info($B, $_))[0] ne $INFO{$_} } @ALL;
    ok(!@d, 'GET /series/{id} on B shows the same versions as on A (every field)')
        or diag("$d[0]: A " . substr($INFO{$d[0]}, 0, 400) . "\nB " . substr((series_info($B, $d[0]))[0], 0, 400));
    @d = grep { (series_info($B, $_))[1] ne $STREAM{$_} } @ALL;
    ok(!@d, 'and the same streams (5), with their points processed and last timestamp')
        or diag("$d[0]: A $STREAM{$d[0]}\nB " . (series_info($B, $d[0]))[1]);
    my @p = grep { plot($B, split ' ', $_) !~ /^<\?xml/ } sort keys %PLOT;
    ok(!@p, '/plot?series_id=&version= works on B for every version') or diag("$p[0]: " . substr(plot($B, split ' ', $p[0]), 0, 300));
    @p = grep { plot($B, split ' ', $_) ne $PLOT{$_} } sort keys %PLOT;
    ok(!@p, 'and draws the same SVG as on A') or diag("differs: @p[0 .. ($#p < 4 ? $#p : 4)]");
    my $h = health($B);
    is_deeply([ $h->{series_trained}, $h->{versions_stored}, $h->{streams}{count} ],
              [ $HEALTH_A->{series_trained}, $HEALTH_A->{versions_stored}, $HEALTH_A->{streams}{count} ],
              "/healthcheck on B: series_trained, versions_stored, streams.count as on A");
    my @pr = grep { probe($B, $_) ne $PROBE{$_} } @STREAMED;
    ok(!@pr, 'each imported stream judges the next point as A\'s did')
        or diag("$pr[0]: A [$PROBE{$pr[0]}]");

    # the same import again: all present
    ($st, $j, $raw) = import_body($B, $E1);
    is($st, 200, 'the same import into B again: 200') or diag(substr($raw, 0, 500));
    is(figures($j), "versions_imported=0 versions_present=$TOTAL streams_imported=0 streams_kept=5 source_commits=$N1",
       "versions_present $TOTAL, versions_imported 0, streams kept");
    same_answers($B, \%EXPECT, 'B still answers as A');

    # numbering goes on from the imported versions
    my ($body) = make_series(50, seed => 4242);
    my ($fst, $fj, $fraw) = $B->fit('pre_a.0', $body);
    is($fst == 200 && $fj->{version}, 'v4', 'a fit on B of pre_a.0 (3 imported versions) is v4') or diag($fraw);
}
$B->stop;

# --- a conflict: C has pre_b.9 v1 with other data -----------------------------------------------
{
    my $C = node();
    my $CID = 'pre_b.9';
    my ($body) = make_series(120, seed => 777, base => 5, spread => 1);
    is((($C->fit($CID, $body))[1] // {})->{version}, 'v1', "C: $CID v1 fitted with other data");
    my $mine = answer($C, $CID, 'v1');
    my @r = import_body($C, $E1);
    import_error_ok(\@r, 409, 'version_conflict', "importing A's export into C: 409 version_conflict, naming $CID and v1",
                    qr/\Q$CID\E.*\bv1\b|\bv1\b.*\Q$CID\E/);
    my $j = ref $r[1] eq 'HASH' ? $r[1] : {};
    my @before = grep { $_ ne $CID } @{ $j->{series} // [] };
    my $want = 0;
    $want += $NV{$_} // 0 for @before;
    note(scalar(@before) . " series came before the conflict, $want versions");
    is($j->{versions_imported}, $want, 'versions_imported counts the versions of the series before the conflict');
    my %exp = map { $_ => $EXPECT{$_} } grep { my ($id) = split ' '; grep { $_ eq $id } @before } keys %EXPECT;
    same_answers($C, \%exp, 'those versions were imported and answer as on A');
    is(answer($C, $CID, 'v1'), $mine, "C's own $CID v1 is unchanged");
    is(version_names($C, $CID), 'v1', "$CID has v1 alone on C");
    my %seen = map { $_ => 1 } @before, $CID;
    my @after = grep { !$seen{$_} && exists all_series($C)->{$_} } @ALL;
    ok(!@after, 'nothing after the conflict was imported') or diag("@after");
    $C->stop;
}

# --- export query errors ------------------------------------------------------------------------
{
    my $ring = 'ring=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3';
    for my $q ('since=abc', 'since=-1', 'since=1.5', 'since=', $ring, "$ring&node=127.0.0.1:4",
               "$ring&node=127.0.0.1", 'ring=a:b,c:d&node=a:b', 'ring=&node=127.0.0.1:1',
               'ring=127.0.0.1:1,,127.0.0.1:2&node=127.0.0.1:1') {
        my $r = export($A, "?$q");
        error_ok([ $r->{status}, eval { decode_json($r->{content}) }, $r->{content} ], 422, 'invalid_parameter',
                 "GET /export?$q: 422 invalid_parameter");
    }
    for my $q ('series_id=bad%20id', 'series_id=a/b', 'series_id=' . ('x' x 129)) {
        my $r = export($A, "?$q");
        error_ok([ $r->{status}, eval { decode_json($r->{content}) }, $r->{content} ], 400, 'invalid_series_id',
                 "GET /export?$q: 400 invalid_series_id");
    }
    my @r = $A->request('POST', '/export', {});
    error_ok(\@r, 405, 'method_not_allowed', 'POST /export: 405');
    like($r[3]{allow} // '', qr/^GET\b/, 'Allow names GET (' . ($r[3]{allow} // 'none') . ')');
    @r = $A->request('GET', '/import');
    error_ok(\@r, 405, 'method_not_allowed', 'GET /import: 405');
    is($r[3]{allow}, 'POST', 'Allow: POST');
}

# --- a prefix; a ring of three nodes ---------------------------------------------------------------
{
    my $P = node();
    my $r = export($A, '?series_id=pre_a');
    is($r->{status}, 200, 'GET /export?series_id=pre_a: 200');
    my ($st, $j, $raw) = import_body($P, $r->{content});
    my @pre_a = grep { /^pre_a/ } @ALL;
    my $nv = 0;
    $nv += $NV{$_} // 0 for @pre_a;
    is($st, 200, 'imported into a fresh node') or diag(substr($raw, 0, 300));
    is_deeply([ sort @{ $j->{series} // [] } ], \@pre_a, 'it holds the ' . scalar(@pre_a) . ' series of pre_a only');
    is(figures($j), "versions_imported=$nv versions_present=0 streams_imported=3 streams_kept=0 source_commits=$N1",
       "$nv versions and the 3 streams of pre_a");
    is_deeply([ sort keys %{ all_series($P) } ], \@pre_a, 'GET /series on that node: pre_a only');
    $r = export($A, '?series_id=pre_a.1');
    ($st, $j) = import_body(node(), $r->{content});
    is_deeply([ sort @{ $j->{series} // [] } ], [ 'pre_a.1', 'pre_a.10', 'pre_a.11', 'pre_a.12', 'pre_a.13', 'pre_a.14' ],
              '?series_id=pre_a.1 is a prefix: pre_a.1 and pre_a.10 to pre_a.14');
    $r = export($A, '?series_id=nothing_here');
    ($st, $j) = import_body($P, $r->{content});
    is_deeply([ $r->{status}, $st, figures($j), $j->{series} ],
              [ 200, 200, "versions_imported=0 versions_present=0 streams_imported=0 streams_kept=0 source_commits=$N1", [] ],
              'a prefix no series has: an export with nothing in it, which imports nothing');
    $P->stop;

    my %route;
    for my $id (@ALL) {
        my $x = $UA->get('http://127.0.0.1:' . $A->port . "/route/$id");
        $route{$id} = $x->{content};
    }
    my @unrouted = grep { $route{$_} !~ /^127\.0\.0\.1:[123]$/ } @ALL;
    ok(!@unrouted, 'nginx\'s consistent hash over the three nodes places every series')
        or diag("$unrouted[0]: $route{$unrouted[0]}");
    my $G = node();
    my %got;
    my ($versions, $streams) = (0, 0);
    for my $n (1 .. 3) {
        my $node = "127.0.0.1:$n";
        my $x = export($A, "?ring=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3&node=$node");
        is($x->{status}, 200, "export for node $node: 200");
        my ($st, $j, $raw) = import_body($G, $x->{content});
        is($st, 200, "imported into one fresh node") or diag(substr($raw, 0, 300));
        my @want = sort grep { $route{$_} eq $node } @ALL;
        is_deeply([ sort @{ $j->{series} // [] } ], \@want,
                  "node $node gets the " . scalar(@want) . ' series nginx\'s hash gives it');
        ok(@want > 0 && @want < @ALL, 'a subset') if $n == 2;
        $got{$_}++ for @{ $j->{series} // [] };
        $versions += $j->{versions_imported} // 0;
        $streams += $j->{streams_imported} // 0;
        is($j->{versions_present}, 0, 'none of its versions was there already');
    }
    is_deeply([ sort keys %got ], \@ALL, 'the three node exports together hold every series');
    ok(!grep({ $got{$_} > 1 } keys %got), 'and none twice');
    is("$versions $streams", "$TOTAL 5", "they imported the $TOTAL versions and the 5 streams");
    same_answers($G, \%EXPECT, 'which answer as on A');
    $G->stop;
}

# --- malformed bodies ------------------------------------------------------------------------------
{
    my $M = node();
    my $cut = substr($E1, 0, int(length($E1) / 2));
    my @r = import_body($M, $cut);
    import_error_ok(\@r, 400, 'malformed_export', 'the export cut in the middle: 400 malformed_export, the detail names a byte offset',
                    qr/\d/);
    my $j = ref $r[1] eq 'HASH' ? $r[1] : {};
    my @offsets = ($j->{detail} // '') =~ /(\d+)/g;
    ok(grep({ $_ > 0 && $_ <= length $cut } @offsets), 'an offset within the body (' . length($cut) . ' bytes) is named')
        or diag($j->{detail});
    my $n = $j->{versions_imported} // 0;
    ok($n > 0 && $n < $TOTAL, "the versions before the cut were imported ($n of $TOTAL)");
    is(health($M)->{versions_stored}, $n, 'the node has exactly those');
    my %exp;
    for my $id (keys %{ all_series($M) }) {
        for my $v (split /,/, version_names($M, $id)) { $exp{"$id $v"} = $EXPECT{"$id $v"} // 'not on A' }
    }
    is(scalar keys %exp, $n, 'GET /series lists them');
    same_answers($M, \%exp, 'and they answer as on A');
    my @rest = import_body($M, $E1);
    is($rest[0], 200, 'the whole export after the cut one: 200') or diag(substr($rest[2], 0, 300));
    is(ref $rest[1] eq 'HASH' && "$rest[1]{versions_present} $rest[1]{versions_imported}", "$n " . ($TOTAL - $n),
       'what the cut one imported is present, the rest imported');

    srand(42);
    my $random = join '', map { chr int rand 256 } 1 .. 4096;
    import_error_ok([ import_body($M, $random) ], 400, 'malformed_export', '4 KB of random bytes: 400 malformed_export');
    my @e = import_body($M, '');
    ok($e[0] == 400 && ($e[1]{code} // '') eq 'malformed_export', 'an empty body (Content-Length: 0): 400 malformed_export')
        or diag("$e[0] $e[2]");
    @e = raw_http($M, "POST /import HTTP/1.0\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\r\n");
    ok($e[0] == 400 && ($e[1]{code} // '') eq 'malformed_export', 'no body at all: 400 malformed_export')
        or diag("$e[0] $e[2]");
    import_error_ok([ import_body($M, substr($E1, 0, length $MAGIC)) ], 400, 'malformed_export',
                    'the magic alone: 400 malformed_export');
    import_error_ok([ import_body($M, $MAGIC . ("\xff" x 64)) ], 400, 'malformed_export',
                    'the magic and garbage: 400 malformed_export');
    my $flipped = $E1;
    substr($flipped, int(length($E1) * 0.7), 1) ^= "\x5a";
    my @f = import_body(node(), $flipped);
    ok($f[0] == 400 && ($f[1]{code} // '') eq 'malformed_export', 'one byte changed at 70%: 400 malformed_export')
        or diag("$f[0] " . substr($f[2], 0, 300));
    error_ok([ import_body($M, $E1, 'application/json') ], 415, 'unsupported_media_type',
             'Content-Type application/json: 415 unsupported_media_type');
    error_ok([ import_body($M, $E1, 'text/plain') ], 415, 'unsupported_media_type', 'text/plain: 415');
    error_ok([ raw_http($M, "POST /import HTTP/1.0\r\nHost: x\r\nContent-Length: " . length($E1) . "\r\n\r\n$E1") ],
             415, 'unsupported_media_type', 'no Content-Type: 415');
    my @c = import_body($M, $E1, 'application/octet-stream; charset=binary');
    ok($c[0] == 200 && $c[1]{versions_present} == $TOTAL, 'application/octet-stream with a parameter is accepted')
        or diag("$c[0] $c[2]");
    $M->stop;
}

# --- since ------------------------------------------------------------------------------------------
{
    my ($b1) = make_series(120, seed => 5001, base => 70, spread => 3, step => 3600);
    my ($b2) = make_series(120, seed => 5002, base => 80, spread => 3, step => 3600);
    is((($A->fit('pre_a.1', $b1))[1] // {})->{version}, 'v2', 'A: pre_a.1 v2');
    is((($A->request('POST', '/fit/late?detector=robust', $b2))[1] // {})->{version}, 'v1', 'A: late v1 (robust)');
    $VALUE{late} = 81;
    my %late = ('pre_a.1 v2' => answer($A, 'pre_a.1', 'v2'), 'late v1' => answer($A, 'late', 'v1'));
    my $x = export($A, "?since=$N1");
    is($x->{status}, 200, "GET /export?since=$N1: 200");
    ok(($x->{headers}{'x-anomaly-commits'} // 0) >= $N1 + 2, 'X-Anomaly-Commits counts the two new commits ('
       . ($x->{headers}{'x-anomaly-commits'} // 'none') . ')');
    my $D = node();
    my ($st, $j, $raw) = import_body($D, $x->{content});
    is($st, 200, 'imported into a fresh node') or diag(substr($raw, 0, 300));
    is($j->{versions_imported}, 2, 'versions_imported 2: only the versions committed after');
    my $ds = all_series($D);
    is_deeply([ sort grep { $ds->{$_}{versions} } keys %$ds ], [ 'late', 'pre_a.1' ], 'of late and pre_a.1');
    note("the since export also held $j->{streams_imported} stream(s): " . join(' ', @{ $j->{series} // [] }));
    is(version_names($D, 'pre_a.1'), 'v2', 'pre_a.1 has v2 alone there, with its number');
    same_answers($D, \%late, 'and they answer as on A');
    $x = export($A, '?since=' . ($N1 + 1_000_000));
    ($st, $j) = import_body($D, $x->{content});
    is($x->{status} == 200 && $j->{versions_imported} + $j->{versions_present}, 0, 'since beyond the last commit: nothing');
    $D->stop;
}

# --- restore: A wiped, then the saved export imported --------------------------------------------
{
    $A->stop;
    remove_tree($A->store_dir);
    ok(!-e $A->store_dir, 'A\'s store directory is wiped');
    $A->start;
    is(health($A)->{versions_stored}, 0, 'A starts empty');
    open my $fh, '<:raw', "$TMP/a.export" or die;
    my $saved = do { local $/; <$fh> };
    my ($st, $j, $raw) = import_body($A, $saved);
    is($st, 200, 'the saved export imported into A') or diag(substr($raw, 0, 300));
    is(figures($j), "versions_imported=$TOTAL versions_present=0 streams_imported=5 streams_kept=0 source_commits=$N1",
       'every version and stream');
    same_answers($A, \%EXPECT, 'every version answers as before');
    my @d = grep { join(' ', series_info($A, $_)) ne "$INFO{$_} $STREAM{$_}" } @ALL;
    ok(!@d, 'GET /series/{id}: the same versions and streams') or diag("@d");
    my @pr = grep { probe($A, $_) ne $PROBE{$_} } @STREAMED;
    ok(!@pr, 'the streams judge the next point as before') or diag("$pr[0]: [$PROBE{$pr[0]}]");
    $A->stop;
    $A->start;
    same_answers($A, \%EXPECT, 'and after a restart (the import is on disk)');
    $A->stop;
}

# --- large-ish: 200 series of 1000 points ------------------------------------------------------------
{
    my $L1 = node(zone_size => '64m');
    my $t0 = time;
    my @bad;
    for my $i (0 .. 199) {
        my ($body) = make_series(1000, seed => 9000 + $i, base => $i, spread => 10);
        my ($st, $j, $raw) = $L1->fit("big$i", $body);
        push @bad, "big$i: $st $raw" unless $st == 200;
    }
    ok(!@bad, '200 series of 1000 points fitted') or diag(@bad[0 .. 2]);
    note(sprintf('200 fits: %.1f s', time - $t0));
    my %exp;
    for my $i (0 .. 199) { $VALUE{"big$i"} = $i + 4; $exp{"big$i v1"} = answer($L1, "big$i", 'v1') }

    $t0 = time;
    my $x = export($L1);
    my $te = time - $t0;
    is($x->{status}, 200, 'export: 200');
    $L1->stop;
    my $L2 = node(zone_size => '64m');
    $t0 = time;
    my ($st, $j, $raw) = import_body($L2, $x->{content});
    my $ti = time - $t0;
    is($st == 200 && $j->{versions_imported}, 200, 'import: 200 versions') or diag(substr($raw, 0, 300));
    note(sprintf('export: %d bytes in %.3f s (%.0f versions/s); import: %.3f s (%.0f versions/s)',
                 length $x->{content}, $te, 200 / ($te || 1e-6), $ti, 200 / ($ti || 1e-6)));
    same_answers($L2, \%exp, 'every version answers as before');
    $L2->stop;
}

AnomalyTest::done();
