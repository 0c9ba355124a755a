#!/usr/bin/perl
# Deletes and retention (CONTRACT section 9): DELETE /series/{id} (the whole
# series: its versions and its stream) and DELETE /series/{id}?version=vN
# (one version), with `anomaly_delete on` in the location of
# `anomaly_versions`. What is deleted is gone from every worker at once and
# from disk (a restart, a kill -9 right after the answer); the zone memory it
# took comes back; a series deleted whole starts again at v1; version numbers
# follow the newest stored. `anomaly_keep_versions N` keeps the newest N
# versions of each series at each fit, durably. A fit racing deletes of the
# same series leaves it consistent.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series mean_std error_ok close_enough wait_until raw_field encode_body);

my $KILLED = qr/\[alert\] \d+#\d+: worker process \d+ exited on signal 9$/;

my $LOCATIONS = <<'EOF';
        location /observe/ {
            anomaly_stream_detector adaptive;
            anomaly_stream_warmup 5;
            anomaly_observe;
        }
        # the versions of a series, without anomaly_delete: DELETE is 405
        location /ro/ {
            anomaly_versions;
        }
        # DELETE guarded by method, as conf/nginx.conf does: limit_except is
        # a location of its own, which must answer as this one does
        location /guarded/ {
            anomaly_versions;
            anomaly_delete on;
            limit_except GET {
                allow 127.0.0.1;
                deny all;
            }
        }
        location /locked/ {
            anomaly_versions;
            anomaly_delete on;
            limit_except GET {
                deny all;
            }
        }
EOF

# An instance whose `location /series/` has `anomaly_delete on` (the
# harness's own configuration, with that one line added).
sub instance {
    my (%o) = @_;
    my $keep = delete $o{keep_versions};
    my $t = AnomalyTest->new(workers => 2, start => 0, locations => $LOCATIONS,
                             log_allow => $KILLED,
                             http_extra => "anomaly_checkpoint 200ms;\n"
                                 . (defined $keep ? "anomaly_keep_versions $keep;\n" : ''),
                             %o);
    write_conf($t, $keep);
    $t->start;
    return $t;
}

# Rewrites nginx.conf: anomaly_delete on in /series/, and anomaly_keep_versions N.
sub write_conf {
    my ($t, $keep) = @_;
    my $conf = $t->config_text;
    $conf =~ s{(location /series/ \{\n\s*anomaly_versions;)}{$1\n            anomaly_delete on;}
        or die "no `location /series/ { anomaly_versions;` in the harness's configuration";
    $conf =~ s{anomaly_keep_versions \d+;}{anomaly_keep_versions $keep;} if defined $keep;
    open my $fh, '>', $t->dir . '/nginx.conf' or die "nginx.conf: $!";
    print $fh $conf;
    close $fh;
}

my $TS = 1_800_000_000;

sub health { $_[0]->health_json }
sub bytes_free { health($_[0])->{zone}{bytes_free} }

sub del {
    my ($t, $id, $version) = @_;
    return $t->request('DELETE', "/series/$id" . (defined $version ? "?version=$version" : ''));
}

# The versions GET /series/{id} lists (every page), or "status code".
sub listed {
    my ($t, $id) = @_;
    my (@v, $after);
    for (1 .. 100) {
        my ($st, $j, $raw) = $t->request('GET', "/series/$id?limit=1000" . (defined $after ? "&after=$after" : ''));
        return "$st " . (ref $j eq 'HASH' ? $j->{code} // '' : $raw) unless $st == 200;
        push @v, map { $_->{version} } @{ $j->{versions} };
        $after = $j->{next_after};
        last unless defined $after;
    }
    return join ',', @v;
}

# Every series GET /series lists.
sub all_series { $_[0]->all_series }

# Sends the same request over fresh connections until both workers have
# answered (at least 8 requests); CHECK returns '' or what is wrong.
# One test; it also fails when a single worker answered them all.
sub on_every_worker {
    my ($t, $name, $method, $path, $body, $check) = @_;
    my (%pids, @bad);
    for my $n (1 .. 60) {
        my ($st, $j, $raw, $h) = $t->request($method, $path, $body);
        my $pid = $h->{'x-worker-pid'} // 0;
        $pids{$pid}++;
        my $why = $check->($st, $j, $raw);
        push @bad, "worker $pid: $why" if $why;
        last if $n >= 8 && keys %pids >= $t->workers;
    }
    my $ok = ok(!@bad && keys %pids >= $t->workers, $name);
    diag(join "\n", "workers that answered: " . join(' ', keys %pids), @bad[0 .. ($#bad < 4 ? $#bad : 4)])
        unless $ok;
    return $ok;
}

sub error_is {
    my ($status, $code) = @_;
    return sub {
        my ($st, $j, $raw) = @_;
        return '' if $st == $status && ref $j eq 'HASH' && ($j->{code} // '') eq $code;
        return "$st $raw";
    };
}

sub fit_ok {
    my ($t, $id, $body, $want, $query) = @_;
    my ($st, $j, $raw) = $t->request('POST', "/fit/$id" . ($query // ''), $body);
    return is($st == 200 && $j->{version}, $want, "fit $id -> $want") || diag("$st $raw");
}

my $t = instance(zone_size => '16m');

# --- one version: the middle, the newest, the oldest ----------------------------------------
{
    my %mean;
    for my $n (1 .. 4) {
        my ($body, $values) = make_series(30, seed => 10 + $n, base => 100 * $n, spread => 5);
        fit_ok($t, 'd1', $body, "v$n");
        ($mean{"v$n"}) = mean_std($values);
    }
    my $stored = health($t)->{versions_stored};

    my ($st, $j, $raw) = del($t, 'd1', 'v2');
    is($st, 200, 'DELETE /series/d1?version=v2: 200') or diag($raw);
    is_deeply($j, { series_id => 'd1', version => 'v2', deleted_versions => 1, stream_deleted => JSON::PP::false },
              'answer: series_id, version, deleted_versions 1, stream_deleted false') or diag($raw);
    is(listed($t, 'd1'), 'v1,v3,v4', 'GET /series/d1 lists v1, v3, v4');
    on_every_worker($t, 'predict ?version=v2 of the deleted version: 404 version_not_found on every worker',
                    'POST', '/predict/d1?version=v2', { timestamp => $TS, value => 1 },
                    error_is(404, 'version_not_found'));
    on_every_worker($t, 'predict ?version=2 too', 'POST', '/predict/d1?version=2', { value => 1 },
                    error_is(404, 'version_not_found'));
    error_ok([ $t->request('GET', '/plot?series_id=d1&version=v2', undef, quiet => 1) ], 404, 'version_not_found',
             'plot of the deleted version: 404 version_not_found');
    on_every_worker($t, 'v1 and v3 still answer, with their own means', 'POST', '/predict/d1?version=v3',
                    { value => $mean{v3} }, sub {
                        my ($st, $j, $raw) = @_;
                        $st == 200 && $j->{model_version} eq 'v3' && close_enough($j->{score}, 0, 1e-9) ? '' : "$st $raw";
                    });
    is(health($t)->{versions_stored}, $stored - 1, '/healthcheck versions_stored is one less');

    # the newest: latest moves back to v3
    ($st, $j, $raw) = del($t, 'd1', '4');
    is_deeply([ $st, $j ], [ 200, { series_id => 'd1', version => 'v4', deleted_versions => 1,
                                    stream_deleted => JSON::PP::false } ],
              'DELETE ?version=4 (digits only) deletes v4 and names it "v4"') or diag($raw);
    is(listed($t, 'd1'), 'v1,v3', 'v1, v3 remain');
    on_every_worker($t, 'without ?version, predict uses v3 on every worker', 'POST', '/predict/d1',
                    { value => $mean{v3} }, sub {
                        my ($st, $j, $raw) = @_;
                        $st == 200 && $j->{model_version} eq 'v3' && close_enough($j->{score}, 0, 1e-9) ? '' : "$st $raw";
                    });
    my $row = all_series($t)->{d1};
    is_deeply([ $row && $row->{latest_version}, $row && $row->{versions} ], [ 'v3', 2 ],
              'GET /series: d1 has latest_version v3 and 2 versions');

    # the oldest
    ($st, $j, $raw) = del($t, 'd1', 'V1');
    is($st, 200, 'DELETE ?version=V1 (capital V): 200') or diag($raw);
    is(listed($t, 'd1'), 'v3', 'v3 alone remains');
    on_every_worker($t, 'v1: 404 version_not_found on every worker', 'POST', '/predict/d1?version=v1',
                    { value => 1 }, error_is(404, 'version_not_found'));

    # version numbers follow the newest stored: v4 was deleted, the next fit is v4 again
    my ($body, $values) = make_series(30, seed => 99, base => 7, spread => 1);
    fit_ok($t, 'd1', $body, 'v4');
    my ($m4) = mean_std($values);
    on_every_worker($t, 'the new v4 answers with its own data, not the deleted one\'s', 'POST',
                    '/predict/d1?version=v4', { value => $m4 }, sub {
                        my ($st, $j, $raw) = @_;
                        $st == 200 && $j->{model_version} eq 'v4' && close_enough($j->{score}, 0, 1e-9) ? '' : "$st $raw";
                    });
    is(listed($t, 'd1'), 'v3,v4', 'v3, v4');
    error_ok([ del($t, 'd1', 'v2') ], 404, 'version_not_found', 'deleting v2 again: 404 version_not_found');
}

# --- a whole series, its versions and its stream ----------------------------------------------
{
    for my $n (1 .. 3) {
        my ($body) = make_series(30, seed => 20 + $n, base => 50, spread => 5);
        fit_ok($t, 'w1', $body, "v$n");
    }
    my ($st, $j, $raw) = $t->request('POST', '/observe/w1', { timestamps => [ map { $TS + 60 * $_ } 1 .. 20 ],
                                                             values => [ map { 10 + $_ % 3 } 1 .. 20 ] });
    is($st, 200, 'observe 20 points into w1\'s stream') or diag($raw);
    ($st, $j, $raw) = $t->request('POST', '/observe/w2', { timestamp => $TS, value => 1 });
    is($st, 200, 'observe one point into w2 (a stream alone)') or diag($raw);
    my ($body) = make_series(30, seed => 31);
    fit_ok($t, 'w3', $body, 'v1');
    my $h0 = health($t);
    ok(exists all_series($t)->{w1}, 'w1 is listed by GET /series before');

    ($st, $j, $raw) = del($t, 'w1');
    is($st, 200, 'DELETE /series/w1: 200') or diag($raw);
    is_deeply($j, { series_id => 'w1', deleted_versions => 3, stream_deleted => JSON::PP::true },
              'answer: {"series_id":"w1","deleted_versions":3,"stream_deleted":true}') or diag($raw);
    on_every_worker($t, 'predict w1: 404 series_not_found on every worker', 'POST', '/predict/w1',
                    { value => 1 }, error_is(404, 'series_not_found'));
    on_every_worker($t, 'predict w1?version=v2: 404 series_not_found on every worker', 'POST',
                    '/predict/w1?version=v2', { value => 1 }, error_is(404, 'series_not_found'));
    on_every_worker($t, 'GET /series/w1: 404 series_not_found on every worker', 'GET', '/series/w1', undef,
                    error_is(404, 'series_not_found'));
    error_ok([ $t->request('GET', '/plot?series_id=w1', undef, quiet => 1) ], 404, 'series_not_found',
             '/plot?series_id=w1: 404 series_not_found');
    error_ok([ $t->request('GET', '/plot?series_id=w1&stream=1', undef, quiet => 1) ], 404, 'series_not_found',
             '/plot?series_id=w1&stream=1: 404 series_not_found');
    ok(!exists all_series($t)->{w1}, 'w1 is gone from GET /series');
    my $h1 = health($t);
    is($h1->{series_trained}, $h0->{series_trained} - 1, "series_trained $h0->{series_trained} -> $h1->{series_trained}");
    is($h1->{versions_stored}, $h0->{versions_stored} - 3, 'versions_stored is 3 less');
    is($h1->{streams}{count}, $h0->{streams}{count} - 1, 'streams.count is one less');

    # nothing is kept: the next fit is v1, the next observe starts a new stream
    my ($b2, $v2) = make_series(30, seed => 77, base => 1000, spread => 20);
    fit_ok($t, 'w1', $b2, 'v1');
    is(listed($t, 'w1'), 'v1', 'w1 lists v1 alone');
    my ($m) = mean_std($v2);
    ($st, $j) = $t->predict('w1', { value => $m });
    ok($st == 200 && $j->{model_version} eq 'v1' && close_enough($j->{score}, 0, 1e-9),
       'the new v1 answers with the new data');
    ($st, $j, $raw) = $t->request('POST', '/observe/w1', { timestamp => $TS + 60, value => 10 });
    is($st == 200 && $j->{points_processed}, 1, 'an observe after the delete starts a new stream (points_processed 1)')
        or diag($raw);
    ($st, $j, $raw) = $t->request('POST', '/observe/w1', { timestamp => $TS + 61, value => 10 });
    is($st == 200 && $j->{stage}, 'learning', 'which learns again (an old timestamp is not skipped)') or diag($raw);

    # a stream alone; versions alone
    ($st, $j, $raw) = del($t, 'w2');
    is_deeply([ $st, $j ], [ 200, { series_id => 'w2', deleted_versions => 0, stream_deleted => JSON::PP::true } ],
              'a series with a stream alone: deleted_versions 0, stream_deleted true') or diag($raw);
    error_ok([ $t->request('GET', '/series/w2') ], 404, 'series_not_found', 'then GET /series/w2: 404');
    ($st, $j, $raw) = del($t, 'w3');
    is_deeply([ $st, $j ], [ 200, { series_id => 'w3', deleted_versions => 1, stream_deleted => JSON::PP::false } ],
              'a series with versions alone: stream_deleted false') or diag($raw);
    ok(!exists all_series($t)->{w3}, 'w3 is gone from GET /series');
    error_ok([ del($t, 'w3') ], 404, 'series_not_found', 'deleting it again: 404 series_not_found');
}

# --- errors ---------------------------------------------------------------------------------
{
    my ($body) = make_series(30, seed => 41);
    fit_ok($t, 'e1', $body, 'v1');
    error_ok([ del($t, 'nosuch') ], 404, 'series_not_found', 'DELETE of an unknown series: 404 series_not_found');
    error_ok([ del($t, 'nosuch', 'v1') ], 404, 'series_not_found',
             'DELETE ?version=v1 of an unknown series: 404 series_not_found');
    error_ok([ del($t, 'e1', 'v2') ], 404, 'version_not_found', 'an unknown version: 404 version_not_found');
    error_ok([ del($t, 'e1', 'v4294967295') ], 404, 'version_not_found', 'v4294967295: 404 version_not_found');
    for my $v ('abc', 'v0', '0', 'v', '-1', 'v4294967296', 'v1x', '') {
        error_ok([ del($t, 'e1', $v) ], 422, 'invalid_version', "?version=$v: 422 invalid_version");
    }
    error_ok([ del($t, 'bad%20id') ], 400, 'invalid_series_id', 'DELETE /series/bad%20id: 400 invalid_series_id');
    error_ok([ del($t, 'x' x 129) ], 400, 'invalid_series_id', 'a 129-character id: 400 invalid_series_id');
    error_ok([ del($t, 'bad%2Fid', 'v1') ], 400, 'invalid_series_id', 'an escaped slash with ?version: 400');
    is(listed($t, 'e1'), 'v1', 'after all these, e1 still has v1');

    my @r = $t->request('DELETE', '/ro/e1');
    error_ok(\@r, 405, 'method_not_allowed', 'DELETE where anomaly_delete is off: 405');
    is($r[3]{allow}, 'GET, HEAD', 'with Allow: GET, HEAD');
    is(listed($t, 'e1'), 'v1', 'and e1 is not deleted');
    @r = $t->request('POST', '/ro/e1', {});
    is($r[3]{allow}, 'GET, HEAD', 'POST there: Allow: GET, HEAD');
    @r = $t->request('POST', '/series/e1', {});
    error_ok(\@r, 405, 'method_not_allowed', 'POST where anomaly_delete is on: 405');
    is($r[3]{allow}, 'GET, HEAD, DELETE', 'with Allow: GET, HEAD, DELETE');
    @r = $t->request('PUT', '/series/e1', {});
    is($r[3]{allow}, 'GET, HEAD, DELETE', 'PUT: Allow: GET, HEAD, DELETE');
    @r = $t->request('DELETE', '/series');
    error_ok(\@r, 405, 'method_not_allowed', 'DELETE /series (the list): 405');
    is(listed($t, 'e1'), 'v1', 'e1 is still there');
}

# --- durability: a restart, a kill -9 of the owner, a kill -9 of the whole server ----------
{
    # g1: v1..v3, v2 deleted; g2: deleted whole; g3: a checkpointed stream, deleted
    for my $n (1 .. 3) {
        my ($body) = make_series(30, seed => 50 + $n, base => 10 * $n);
        fit_ok($t, 'g1', $body, "v$n");
    }
    my ($body) = make_series(30, seed => 60);
    fit_ok($t, 'g2', $body, 'v1');
    fit_ok($t, 'g2', $body, 'v2');
    my ($st, $j, $raw) = $t->request('POST', '/observe/g3', { timestamps => [ map { $TS + 60 * $_ } 1 .. 10 ],
                                                             values => [ (5, 6) x 5 ] });
    is($st, 200, 'observe into g3') or diag($raw);
    ok(wait_until(5, sub {
        my (undef, $s) = $t->request('GET', '/series/g3', undef, quiet => 1);
        ref $s eq 'HASH' && defined $s->{stream}{checkpoint_age_seconds};
    }), 'g3\'s stream is checkpointed');
    is((del($t, 'g1', 'v2'))[0], 200, 'DELETE g1 v2');
    is((del($t, 'g2'))[0], 200, 'DELETE g2');
    is((del($t, 'g3'))[0], 200, 'DELETE g3');
    sleep 0.5;   # a checkpoint interval or two: nothing writes g3 back

    $t->stop;
    $t->start;
    is(listed($t, 'g1'), 'v1,v3', 'after a stop and a start: g1 lists v1, v3');
    error_ok([ $t->predict('g1', { value => 1 }, 'v2') ], 404, 'version_not_found', 'g1 v2: 404 version_not_found');
    error_ok([ $t->request('GET', '/series/g2') ], 404, 'series_not_found', 'g2 is still gone');
    error_ok([ $t->request('GET', '/series/g3') ], 404, 'series_not_found', 'g3\'s stream is still gone');
    is(listed($t, 'd1'), 'v3,v4', 'd1 still lists v3, v4');
    error_ok([ $t->predict('d1', { value => 1 }, 'v1') ], 404, 'version_not_found', 'd1 v1 still 404');
    ok(!exists all_series($t)->{w3}, 'w3 is not back');
    fit_ok($t, 'g2', $body, 'v1');

    # kill -9 of the store's owner right after each answer
    for my $n (1 .. 3) {
        my ($b) = make_series(30, seed => 70 + $n);
        fit_ok($t, 'k1', $b, "v$n");
    }
    fit_ok($t, 'k2', $body, 'v1');
    my $owner = $t->owner_pid;
    ($st) = del($t, 'k1', 'v3');
    kill 'KILL', $owner;
    is($st, 200, "DELETE k1 v3, then kill -9 of the owner ($owner) at once");
    my $owner2;
    ok(wait_until(10, sub { my $s = $t->store_status;
                            ($s->{owner_pid} // 0) > 1 && $s->{owner_pid} != $owner && ($s->{state} // '') eq 'ready' }),
       'another worker owns the store');
    $owner2 = $t->owner_pid;
    ($st) = del($t, 'k2');
    kill 'KILL', $owner2;
    is($st, 200, "DELETE k2, then kill -9 of the owner ($owner2) at once");
    ok(wait_until(10, sub { my $s = $t->store_status;
                            ($s->{owner_pid} // 0) > 1 && $s->{owner_pid} != $owner2 && ($s->{state} // '') eq 'ready' }),
       'another worker owns the store again');
    is(listed($t, 'k1'), 'v1,v2', 'k1 lists v1, v2 (the zone survived)');
    error_ok([ $t->request('GET', '/series/k2') ], 404, 'series_not_found', 'k2 is gone');
    $t->stop;
    $t->start;
    is(listed($t, 'k1'), 'v1,v2', 'after a restart: k1 lists v1, v2');
    error_ok([ $t->request('GET', '/series/k2') ], 404, 'series_not_found', 'k2 is still gone');
    fit_ok($t, 'k1', $body, 'v3');
    fit_ok($t, 'k2', $body, 'v1');

    # kill -9 of the master and every worker right after the answer: the disk alone
    ($st) = del($t, 'k1', 'v2');
    my ($st2) = del($t, 'k2');
    my @w = $t->worker_pids;
    kill 'KILL', $t->master_pid;
    kill 'KILL', @w;
    ok($st == 200 && $st2 == 200, 'DELETE k1 v2 and k2, then kill -9 of the master and every worker');
    ok(wait_until(5, sub { !grep { AnomalyTest::_pid_alive($_) } $t->master_pid, @w }), 'nginx is gone');
    $t->{master} = undef;
    $t->start;
    is(listed($t, 'k1'), 'v1,v3', 'after the crash: k1 lists v1, v3');
    error_ok([ $t->predict('k1', { value => 1 }, 'v2') ], 404, 'version_not_found', 'k1 v2: 404');
    error_ok([ $t->request('GET', '/series/k2') ], 404, 'series_not_found', 'k2 is gone');
    is(listed($t, 'g1'), 'v1,v3', 'g1 still lists v1, v3');
}

# --- a fit racing deletes of the same series -----------------------------------------------
{
    my $tmp = tempdir(CLEANUP => 1);
    my ($body) = make_series(30, seed => 80);
    fit_ok($t, 'cc', $body, 'v1');
    my $port = $t->port;
    my $stop = "$tmp/stop";
    my @kids;
    for my $k (0 .. 1) {
        push @kids, AnomalyTest::child(sub {
            my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
            open my $out, '>', "$tmp/fit.$k" or die;
            for my $i (1 .. 10) {
                my ($b) = make_series(30, seed => 1000 + 10 * $k + $i, base => 100 + $i);
                my $res = $ua->post("http://127.0.0.1:$port/fit/cc", {
                    headers => { 'Content-Type' => 'application/json' }, content => encode_body($b) });
                print $out "$res->{status} " . substr($res->{content} // '', 0, 200) . "\n";
            }
        });
    }
    push @kids, AnomalyTest::child(sub {
        my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
        open my $out, '>', "$tmp/del" or die;
        my $i = 0;
        until (-e $stop) {
            $i++;
            my $q = $i % 4 == 0 ? '' : '?version=v' . (1 + int rand 12);
            my $res = $ua->request('DELETE', "http://127.0.0.1:$port/series/cc$q");
            print $out "$res->{status} " . substr($res->{content} // '', 0, 200) . "\n";
        }
    });
    waitpid $_, 0 for @kids[0, 1];
    open my $fh, '>', $stop or die;
    close $fh;
    waitpid $kids[2], 0;
    my (@fits, @dels);
    for my $k (0, 1) { open my $in, '<', "$tmp/fit.$k" or die; push @fits, <$in> }
    { open my $in, '<', "$tmp/del" or die; @dels = <$in> }
    my %dst;
    $dst{ (split ' ', $_)[0] }++ for @dels;
    note('deletes: ' . join(' ', map { "$_ x$dst{$_}" } sort keys %dst));
    my @badfit = grep { !/^200 / } @fits;
    is(scalar @fits, 20, '20 fits answered');
    ok(!@badfit, 'every fit racing the deletes answered 200') or diag(join '', @badfit[0 .. ($#badfit < 4 ? $#badfit : 4)]);
    my @baddel = grep { !/^(200|404) / } @dels;
    ok(@dels >= 5 && !@baddel, scalar(@dels) . ' deletes answered 200 or 404')
        or diag(join '', @baddel[0 .. ($#baddel < 4 ? $#baddel : 4)]);
    ok(($dst{200} // 0) > 0, 'some deletes deleted something');

    my $check = sub {
        my ($when) = @_;
        my $list = listed($t, 'cc');
        note("cc $when: $list");
        my @bad;
        if ($list =~ /^404 series_not_found$/) {
            push @bad, 'listed by GET /series' if exists all_series($t)->{cc};
            my ($st, $j, $raw) = $t->predict('cc', { value => 1 });
            push @bad, "predict: $st $raw" unless $st == 404 && $j->{code} eq 'series_not_found';
        } elsif ($list =~ /^v\d+(,v\d+)*$/) {
            my @v = split /,/, $list;
            for my $v (@v) {
                my ($st, $j, $raw) = $t->predict('cc', { value => 1 }, $v);
                push @bad, "predict $v: $st $raw" unless $st == 200 && $j->{model_version} eq $v;
                ($st, undef, $raw) = $t->request('GET', "/plot?series_id=cc&version=$v", undef, quiet => 1);
                push @bad, "plot $v: $st" unless $st == 200;
            }
            my ($st, $j, $raw) = $t->predict('cc', { value => 1 });
            push @bad, "latest: $st $raw" unless $st == 200 && $j->{model_version} eq $v[-1];
            my $row = all_series($t)->{cc};
            push @bad, 'GET /series: ' . encode_json($row // {})
                unless $row && $row->{latest_version} eq $v[-1] && $row->{versions} == @v;
        } else {
            push @bad, "GET /series/cc: $list";
        }
        ok(!@bad, "cc is consistent $when: every listed version answers predict and plot, latest is the newest")
            or diag(join "\n", @bad);
        return $list;
    };
    my $raced = $check->('after the race');
    # one more fit: numbered after the newest listed, and the series is consistent with it
    my @left = $raced =~ /v(\d+)/g;
    my $next = @left ? $left[-1] + 1 : 1;
    my ($b2) = make_series(30, seed => 81);
    fit_ok($t, 'cc', $b2, "v$next");
    my $before = $check->('after one more fit');
    my $stored = health($t)->{versions_stored};
    $t->stop;
    $t->start;
    is(listed($t, 'cc'), $before, 'after a restart the store has exactly what the zone had');
    is(health($t)->{versions_stored}, $stored, "versions_stored $stored again");
    $check->('after the restart');
}
$t->stop;

# --- zone memory comes back after deletes ---------------------------------------------------
# iforest versions of 1000 points with 25 trees take tens of KB each in the zone.
my ($BIG) = make_series(1000, seed => 5, base => 500, spread => 50);
my $IFOREST = '?detector=iforest&trees=25';
{
    my $m = instance(zone_size => '32m');
    # one fit and delete first, so that what a first fit sets up once is not counted
    fit_ok($m, 'warm', $BIG, 'v1', $IFOREST);
    is((del($m, 'warm'))[0], 200, 'warm-up series deleted');
    sleep 0.5;
    my $before = bytes_free($m);
    my $t0 = time;
    my @bad;
    for my $n (1 .. 50) {
        for my $s (0 .. 3) {
            my ($st, $j, $raw) = $m->request('POST', "/fit/m$s$IFOREST", $BIG);
            push @bad, "m$s: $st $raw" unless $st == 200 && $j->{version} eq "v$n";
        }
    }
    ok(!@bad, '200 iforest versions fitted to 4 series (v1..v50 each)') or diag(join "\n", @bad[0 .. 4]);
    note(sprintf('200 fits in %.1f s', time - $t0));
    my (undef, $one) = $m->request('GET', '/series/m0?limit=1');
    note("model_bytes of one version: $one->{versions}[0]{model_bytes}");
    my $fitted = bytes_free($m);
    is(health($m)->{versions_stored}, 200, '200 versions stored');
    ok($before - $fitted > 200 * 10_000, "the zone's free bytes went down by more than 2 MB");

    is((del($m, 'm0'))[0], 200, 'DELETE m0');
    is((del($m, 'm1'))[0], 200, 'DELETE m1');
    my $gone = 0;
    for my $n (reverse 1 .. 50) { $gone++ if (del($m, 'm2', "v$n"))[0] == 200 }
    is($gone, 50, 'm2: its 50 versions deleted one by one, newest first');
    my $odd = 0;
    for my $n (grep { $_ % 2 } 1 .. 50) { $odd++ if (del($m, 'm3', "v$n"))[0] == 200 }
    is($odd, 25, 'm3: its 25 odd versions deleted one by one');
    is((del($m, 'm3'))[0], 200, 'then m3 whole');
    is(health($m)->{versions_stored}, 0, 'versions_stored 0');
    my $after;
    my $back = wait_until(5, sub { $after = bytes_free($m); abs($after - $before) <= 0.01 * $before });
    note("zone bytes_free: before $before, after 200 fits $fitted, after the deletes $after");
    ok($back, 'bytes_free comes back within 1% of the figure before the fits, within 5 s')
        or diag("before $before, fitted $fitted, after $after");
    $m->stop;
}

# --- retention: anomaly_keep_versions 3 -------------------------------------------------------
{
    my $r = instance(keep_versions => 3);
    fit_ok($r, 'warm', $BIG, 'v1', $IFOREST);
    is((del($r, 'warm'))[0], 200, 'warm-up series deleted');
    my @bad;
    for my $n (1 .. 3) {
        my ($st, $j, $raw) = $r->request('POST', "/fit/r1$IFOREST", $BIG);
        push @bad, "$st $raw" unless $st == 200 && $j->{version} eq "v$n";
    }
    ok(!@bad, 'r1: v1..v3') or diag(@bad);
    sleep 0.5;
    my $three = bytes_free($r);
    for my $n (4 .. 50) {
        my ($st, $j, $raw) = $r->request('POST', "/fit/r1$IFOREST", $BIG);
        push @bad, "$st $raw" unless $st == 200 && $j->{version} eq "v$n";
        if ($n == 10) {
            is(listed($r, 'r1'), 'v8,v9,v10', 'after v10: v8, v9, v10 remain');
        }
    }
    ok(!@bad, 'r1: v4..v50, numbered on from the newest') or diag(@bad[0 .. 2]);
    is(listed($r, 'r1'), 'v48,v49,v50', 'GET /series/r1 lists v48, v49, v50 only');
    on_every_worker($r, 'v47: 404 version_not_found on every worker', 'POST', '/predict/r1?version=v47',
                    { timestamp => $TS, value => 1 }, error_is(404, 'version_not_found'));
    on_every_worker($r, 'v1: 404 version_not_found on every worker', 'POST', '/predict/r1?version=v1',
                    { timestamp => $TS, value => 1 }, error_is(404, 'version_not_found'));
    on_every_worker($r, 'v48 answers on every worker', 'POST', '/predict/r1?version=v48',
                    { timestamp => $TS, value => 500 },
                    sub { my ($st, $j, $raw) = @_; $st == 200 && $j->{model_version} eq 'v48' ? '' : "$st $raw" });
    is(health($r)->{versions_stored}, 3, 'versions_stored 3');
    my $row = all_series($r)->{r1};
    is_deeply([ $row && $row->{latest_version}, $row && $row->{versions} ], [ 'v50', 3 ],
              'GET /series: r1 latest v50, 3 versions');
    my $now;
    my $near = wait_until(5, sub { $now = bytes_free($r); abs($now - $three) <= 0.01 * $three });
    note("zone bytes_free: with 3 versions $three, after 50 fits $now");
    ok($near, 'bytes_free stays within 1% of the figure of 3 versions') or diag("3 versions: $three, now: $now");

    # a series below N keeps all; then both survive a restart
    my ($small) = make_series(30, seed => 90);
    fit_ok($r, 'r2', $small, 'v1');
    fit_ok($r, 'r2', $small, 'v2');
    fit_ok($r, 'r3', $small, "v$_") for 1 .. 3;
    $r->stop;
    $r->start;
    is(listed($r, 'r1'), 'v48,v49,v50', 'after a restart: r1 still lists v48, v49, v50');
    error_ok([ $r->predict('r1', { timestamp => $TS, value => 1 }, 'v47') ], 404, 'version_not_found',
             'v47 is still 404');
    is(listed($r, 'r2'), 'v1,v2', 'r2 (2 versions, below N) keeps both');
    is(health($r)->{versions_stored}, 8, 'versions_stored 8');
    fit_ok($r, 'r1', $small, 'v51');
    is(listed($r, 'r1'), 'v49,v50,v51', 'the next fit is v51 and drops v48');

    # lowering N: takes effect at each series' next fit
    write_conf($r, 2);
    $r->reload;
    is(listed($r, 'r3'), 'v1,v2,v3', 'after a reload with anomaly_keep_versions 2, r3 keeps 3 until its next fit');
    fit_ok($r, 'r1', $small, 'v52');
    is(listed($r, 'r1'), 'v51,v52', 'r1\'s next fit (v52) keeps v51, v52');
    fit_ok($r, 'r3', $small, 'v4');
    is(listed($r, 'r3'), 'v3,v4', 'r3\'s next fit (v4) keeps v3, v4');
    $r->stop;
    $r->start;
    is(join(' ', map { listed($r, $_) } qw(r1 r2 r3)), 'v51,v52 v1,v2 v3,v4', 'after a restart: the same');
    $r->stop;
}

# ---- limit_except: DELETE for some addresses only --------------------------------
{
    my $g = instance();
    my ($small) = make_series(30, seed => 91);
    fit_ok($g, 'g1', $small, "v$_") for 1 .. 2;
    my ($st, $j) = $g->request('DELETE', '/locked/g1', undef, quiet => 1);
    is($st, 403, 'limit_except GET { deny all; }: DELETE is 403');
    ($st, $j) = $g->request('GET', '/locked/g1', undef, quiet => 1);
    is($st, 200, '... GET still answers there');
    is(listed($g, 'g1'), 'v1,v2', '... and nothing was deleted');
    ($st, $j) = $g->request('DELETE', '/guarded/g1?version=v1', undef, quiet => 1);
    is($st, 200, 'limit_except GET { allow 127.0.0.1; deny all; }: a DELETE from 127.0.0.1 deletes');
    is($j->{deleted_versions}, 1, '... one version');
    is(listed($g, 'g1'), 'v2', '... v1 is gone');
    $g->stop;
}

AnomalyTest::done();
