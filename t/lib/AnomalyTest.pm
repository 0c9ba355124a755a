package AnomalyTest;

# A small harness for the integration tests of ngx_http_anomaly_module, in the
# spirit of nginx's own Test::Nginx: every test file starts its own nginx
# (the Debian binary plus the freshly built module) in a temporary directory
# on a free loopback port, talks to it over HTTP, and at the end stops it and
# fails if error.log shows an [alert], an [emerg] or a crashed process.
#
#   use AnomalyTest;
#   my $t = AnomalyTest->new(workers => 2);
#   my ($status, $json, $raw, $headers) = $t->fit('s1', { timestamps => [...], values => [...] });
#   ...
#   AnomalyTest::done();          # instead of done_testing()
#
# Environment:
#   ANOMALY_TEST_KEEP=1      keep the temporary directories (and print them)
#   ANOMALY_TEST_NGINX       nginx binary (default /usr/sbin/nginx)
#   ANOMALY_TEST_MODULE      module path (default <repo>/build/ngx_http_anomaly_module.so;
#                            the option module => PATH sets it for one instance)

use strict;
use warnings;

use B ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

use Exporter 'import';
our @EXPORT_OK = qw(make_series mean_std z_score close_enough json_string_ok
                    json_number_ok error_ok encode_body raw_field wait_until);

our $ROOT   = abs_path(dirname(__FILE__) . '/../..');
our $NGINX  = $ENV{ANOMALY_TEST_NGINX}  || '/usr/sbin/nginx';
our $MODULE = $ENV{ANOMALY_TEST_MODULE} || "$ROOT/build/ngx_http_anomaly_module.so";

my $CREATOR = $$;      # forked children must never stop nginx or run checks
my @INSTANCES;         # every instance created by this test file
my $DONE = 0;

my $JSON = JSON::PP->new->allow_nonref->canonical;

# ---------------------------------------------------------------------------
# Construction and configuration

sub new {
    my ($class, %opts) = @_;

    my $module = $opts{module} // $MODULE;
    die "module not built: $module does not exist (run `make build`)\n"
        unless -f $module;
    die "nginx binary $NGINX not found\n" unless -x $NGINX;

    my $self = bless {
        module       => $module,
        workers      => 2,
        zone_size    => '16m',
        http_extra   => '',
        server_extra => '',
        locations    => '',      # extra location blocks
        fit_extra    => '',      # directives added inside location /fit/
        predict_extra => '',     # directives added inside location /predict/
        health_extra => '',      # directives added inside location = /healthcheck
        main_extra   => '',      # directives at the main (top) level
        api_locations => 1,      # 0: leave out location /fit/ and /predict/
                                 # (the test brings its own, e.g. in server_extra)
        listen_opts  => 'reuseport',
        log_allow    => undef,   # qr// of error.log lines that are expected
        start        => 1,
        %opts,
        ctype_bad    => [],
        requests     => 0,
    }, $class;

    my $keep = $ENV{ANOMALY_TEST_KEEP} ? 1 : 0;
    $self->{dir} = tempdir('anomaly-test-XXXXXX', TMPDIR => 1, CLEANUP => !$keep);
    # Workers run as nobody when the master runs as root: they must be able
    # to traverse the directory (the module chowns the store itself).
    chmod 0755, $self->{dir};
    diag("keeping $self->{dir}") if $keep;

    $self->{store} //= "$self->{dir}/store";
    $self->{port}  //= free_port();

    push @INSTANCES, $self;
    $self->write_config;
    $self->start if $self->{start};
    return $self;
}

sub dir        { $_[0]{dir} }
sub port       { $_[0]{port} }
sub store_dir  { $_[0]{store} }
sub error_log  { "$_[0]{dir}/error.log" }
sub workers    { $_[0]{workers} }

sub free_port {
    my $sock = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1,
    ) or die "cannot bind a free port: $!";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

sub config_text {
    my ($self) = @_;
    my $d = $self->{dir};
    my $api = !$self->{api_locations} ? '' : <<"API";
        location /fit/ {
            client_max_body_size 64m;
            anomaly_fit;
$self->{fit_extra}
        }

        location /predict/ {
            anomaly_predict;
$self->{predict_extra}
        }
API
    return <<"CONF";
load_module $self->{module};

worker_processes $self->{workers};
error_log $d/error.log info;
pid $d/nginx.pid;
$self->{main_extra}

events {
    worker_connections 1024;
}

http {
    access_log $d/access.log;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;

    anomaly_zone models:$self->{zone_size};
    anomaly_store $self->{store};

$self->{http_extra}

    server {
        listen 127.0.0.1:$self->{port} $self->{listen_opts};

        # which worker answered: lets tests see that fresh connections spread
        add_header X-Worker-Pid \$pid always;

        error_page 400 401 403 404 405 408 413 429 500 502 503 504 /.anomaly-error;
        location = /.anomaly-error {
            internal;
            anomaly_error;
        }

$self->{server_extra}

$api
        location = /healthcheck {
            anomaly_healthcheck;
$self->{health_extra}
        }

        location = /plot {
            anomaly_plot;
        }
        location = /series {
            anomaly_series;
        }
        location /series/ {
            anomaly_versions;
        }
        location = /dashboard {
            anomaly_dashboard;
        }

        # browsers ask for it on every dashboard visit
        location = /favicon.ico {
            access_log off;
            log_not_found off;
            return 204;
        }

$self->{locations}
    }
}
CONF
}

sub write_config {
    my ($self) = @_;
    open my $fh, '>', "$self->{dir}/nginx.conf" or die "nginx.conf: $!";
    print $fh $self->config_text;
    close $fh;
}

# ---------------------------------------------------------------------------
# Process control

sub _pid_alive {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    # nobody reaps a daemonized master here: a zombie counts as gone
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        return 0 if $stat =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub _read_pid_file {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/nginx.pid" or return undef;
    my $pid = <$fh>;
    return undef unless defined $pid && $pid =~ /^(\d+)/;
    return $1;
}

sub master_pid { $_[0]{master} }

sub running { my ($self) = @_; return $self->{master} && _pid_alive($self->{master}) }

# Runs nginx once and returns its exit status (0 when it started), without
# dying or waiting for the store: for tests of a start that must be refused.
sub try_start {
    my ($self) = @_;
    my $d = $self->{dir};
    unlink "$d/nginx.pid";
    my $rc = system("$NGINX -p $d/ -c $d/nginx.conf -e $d/error.log >$d/nginx.out 2>&1");
    my $deadline = time + 5;
    while ($rc == 0 && time < $deadline) {   # so that done() stops it
        last if $self->{master} = $self->_read_pid_file;
        sleep 0.02;
    }
    return $rc;
}

# Starts nginx and waits until /healthcheck says the store is ready.
# Emits one test; returns true when nginx is up and ready. wait => 0 only
# starts it (no test): for a store that is not meant to open.
sub start {
    my ($self, %o) = @_;
    my $d = $self->{dir};
    unlink "$d/nginx.pid";
    my $rc = system("$NGINX -p $d/ -c $d/nginx.conf -e $d/error.log >$d/nginx.out 2>&1");
    if ($rc != 0) {
        my $out = _slurp("$d/nginx.out");
        my $log = $self->error_log_tail(20);
        die "nginx failed to start (exit $rc):\n$out\nerror.log:\n$log\n";
    }
    my $deadline = time + 5;
    my $pid;
    while (time < $deadline) {
        last if $pid = $self->_read_pid_file;
        sleep 0.02;
    }
    die "nginx wrote no pid file\n" . $self->error_log_tail(20) unless $pid;
    $self->{master} = $pid;
    $self->{stopped_ok} = undef;
    return 1 if defined $o{wait} && !$o{wait};   # wait => 0: the store may not open

    my ($ready, $last) = $self->wait_ready($o{timeout} // 10);
    ok($ready, "nginx started (master $pid) and store ready on port $self->{port}")
        or diag("last /healthcheck: " . ($last // '(none)') . "\nerror.log tail:\n"
                . $self->error_log_tail(15));
    return $ready;
}

# Polls /healthcheck until it answers 200 with store.state "ready".
# Returns (ready, last raw answer).
sub wait_ready {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my $last;
    while (1) {
        my ($st, $j, $raw) = $self->request('GET', '/healthcheck', undef, quiet => 1);
        $last = "$st $raw";
        return (1, $last)
            if $st == 200 && ref $j eq 'HASH' && ref $j->{store} eq 'HASH'
               && ($j->{store}{state} // '') eq 'ready';
        return (0, $last) if time > $deadline;
        sleep 0.05;
    }
}

# Graceful stop (QUIT); emits one test. Falls back to TERM and KILL.
sub stop {
    my ($self, %o) = @_;
    my $pid = $self->{master};
    return 1 unless $pid && _pid_alive($pid);
    kill 'QUIT', $pid;
    my $gone = _wait_gone($pid, $o{timeout} // 20);
    unless ($gone) {
        kill 'TERM', $pid;
        _wait_gone($pid, 5) or kill 'KILL', $pid;
        kill 'KILL', $self->worker_pids;
    }
    ok($gone, "nginx (master $pid) stopped gracefully on QUIT")
        or diag($self->error_log_tail(15));
    $self->{master} = undef;
    return $gone;
}

sub _wait_gone {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (_pid_alive($pid)) {
        return 0 if time > $deadline;
        sleep 0.02;
    }
    return 1;
}

# Worker processes (children of the master titled "worker process"),
# including old ones still shutting down after a reload.
sub worker_pids {
    my ($self) = @_;
    my $m = $self->{master} or return ();
    my @pids;
    for my $line (`ps -o pid=,stat=,args= --ppid $m 2>/dev/null`) {
        my ($pid, $stat, $args) = $line =~ /^\s*(\d+)\s+(\S+)\s+(.*)$/ or next;
        next if $stat =~ /^Z/;
        next unless $args =~ /worker process/;
        push @pids, $pid;
    }
    return @pids;
}

sub kill9_worker {
    my ($self, $pid) = @_;
    unless ($pid) {
        my @w = $self->worker_pids or return undef;
        $pid = $w[int rand @w];
    }
    kill 'KILL', $pid;
    return $pid;
}

# HUP, then wait until none of the old workers is left and a full set of
# new workers runs, then until the store is ready. Emits one test.
sub reload {
    my ($self, %o) = @_;
    my %old = map { $_ => 1 } $self->worker_pids;
    kill 'HUP', $self->{master};
    my $deadline = time + ($o{timeout} // 20);
    my $done = 0;
    while (time < $deadline) {
        my @now = $self->worker_pids;
        if (!grep({ $old{$_} } @now) && @now >= $self->{workers}) { $done = 1; last }
        sleep 0.05;
    }
    my ($ready) = $done ? $self->wait_ready(10) : (0);
    ok($done && $ready, "reload replaced every worker and the store is ready")
        or diag($self->error_log_tail(15));
    return $done && $ready;
}

# ---------------------------------------------------------------------------
# HTTP

# A tiny JSON encoder for request bodies: numbers are written with 17
# significant digits so that the server reads exactly the double the test
# holds (JSON::PP writes only 15). A scalar that has a numeric value is a
# number; a pure string is a string; JSON::PP::true/false are booleans.
sub encode_body {
    my ($v) = @_;
    return 'null' unless defined $v;
    if (ref $v eq 'HASH') {
        return '{' . join(',', map { $JSON->encode("$_") . ':' . encode_body($v->{$_}) }
                                   sort keys %$v) . '}';
    }
    if (ref $v eq 'ARRAY') {
        return '[' . join(',', map { encode_body($_) } @$v) . ']';
    }
    if (JSON::PP::is_bool($v)) {
        return $v ? 'true' : 'false';
    }
    die "cannot encode " . ref($v) if ref $v;
    my $flags = B::svref_2object(\$v)->FLAGS;
    if ($flags & (B::SVp_IOK | B::SVp_NOK)) {
        return sprintf('%d', $v) if $v == int($v) && abs($v) < 2**53;
        for my $p (15, 16) {
            my $s = sprintf("%.${p}g", $v);
            return $s if $s == $v;
        }
        return sprintf('%.17g', $v);
    }
    return $JSON->encode("$v");
}

sub _ua {
    return HTTP::Tiny->new(keep_alive => 0, timeout => 15, agent => 'anomaly-test/1');
}

# request(METHOD, PATH, BODY) -> (status, decoded JSON or undef, raw body, headers)
# BODY: undef (no body), a string (sent as is) or a reference (encoded).
sub request {
    my ($self, $method, $path, $body, %o) = @_;
    my %args = (headers => {});
    if (defined $body) {
        $args{content} = ref $body ? encode_body($body) : $body;
        $args{headers}{'Content-Type'} = 'application/json';
    }
    my $res = _ua()->request($method, "http://127.0.0.1:$self->{port}$path", \%args);
    my $raw = $res->{content} // '';
    my $json;
    $json = eval { $JSON->decode($raw) } if length $raw;
    unless ($o{quiet} || $res->{status} == 599) {
        $self->{requests}++;
        my $ct = $res->{headers}{'content-type'} // '(none)';
        push @{$self->{ctype_bad}}, "$method $path -> $res->{status} Content-Type: $ct"
            unless $ct =~ m{^application/json\s*(;|$)}i;
    }
    return ($res->{status}, $json, $raw, $res->{headers});
}

sub fit {
    my ($self, $series, $body) = @_;
    return $self->request('POST', "/fit/$series", $body // '');
}

sub predict {
    my ($self, $series, $body, $version) = @_;
    my $q = defined $version ? "?version=$version" : '';
    return $self->request('POST', "/predict/$series$q", $body // '');
}

sub healthcheck {
    my ($self) = @_;
    return $self->request('GET', '/healthcheck');
}

# /healthcheck as a hash; when it does not answer, says why and gives one
# with empty zone and streams objects, so that a test's field reads fail.
sub health_json {
    my ($self) = @_;
    my ($st, $j, $raw) = $self->request('GET', '/healthcheck', undef, quiet => 1);
    return $j if $st == 200 && ref $j eq 'HASH';
    Test::More::diag("/healthcheck: $st $raw");
    return { zone => {}, streams => {} };
}

# Every series GET /series lists, page after page: { id => its row }.
sub all_series {
    my ($self) = @_;
    my (@s, $after);
    for (1 .. 100) {
        my ($st, $j, $raw) = $self->request('GET', '/series?limit=1000' . (defined $after ? "&after=$after" : ''));
        do { Test::More::diag("GET /series: $st $raw"); last } unless $st == 200;
        push @s, @{ $j->{series} };
        $after = $j->{next_after};
        last unless defined $after;
    }
    return { map { $_->{series_id} => $_ } @s };
}

# The "store" object of /healthcheck ({} when it does not answer).
sub store_status {
    my ($self) = @_;
    my ($st, $j) = $self->request('GET', '/healthcheck', undef, quiet => 1);
    return ($st == 200 && ref $j eq 'HASH' && ref $j->{store} eq 'HASH') ? $j->{store} : {};
}

# The pid of the worker that owns the store, once the store is ready; dies
# after 10 s without one. Never 0: kill(0) would signal the test itself.
sub owner_pid {
    my ($self) = @_;
    my $ok = wait_until(10, sub {
        my $s = $self->store_status;
        ($s->{owner_pid} // 0) > 1 && ($s->{state} // '') eq 'ready';
    });
    die "the store has no owner\n" unless $ok;
    return $self->store_status->{owner_pid};
}

# ---------------------------------------------------------------------------
# Data and checks

# wait_until(SECONDS, CODE): polls CODE until it is true; false on timeout.
sub wait_until {
    my ($timeout, $cond) = @_;
    my $deadline = time + $timeout;
    until ($cond->()) {
        return 0 if time > $deadline;
        sleep 0.02;
    }
    return 1;
}

# make_series(n, seed => S, base => B, spread => W, start => T, step => D, data => 0|1)
# Deterministic values with three decimals (exactly what the server reads).
# Returns (body, \@values).
sub make_series {
    my ($n, %o) = @_;
    my $seed   = $o{seed}   // 1;
    my $base   = $o{base}   // 100;
    my $spread = $o{spread} // 10;
    my $ts     = $o{start}  // 1_700_000_000;
    my $step   = $o{step}   // 60;
    my $x = $seed * 2654435761 % 4294967291 || 1;
    my (@t, @v);
    for my $i (0 .. $n - 1) {
        $x = ($x * 16807) % 2147483647;
        my $r = $x / 2147483647;                     # in (0, 1)
        push @t, $ts + $i * $step;
        push @v, 0 + sprintf('%.3f', $base + $spread * ($r - 0.5));
    }
    my $body = $o{data}
        ? { data => [ map { { timestamp => $t[$_], value => $v[$_] } } 0 .. $#t ] }
        : { timestamps => \@t, values => \@v };
    return ($body, \@v);
}

# Population mean and standard deviation (two passes).
sub mean_std {
    my ($v) = @_;
    my $n = @$v;
    my $s = 0;
    $s += $_ for @$v;
    my $mean = $s / $n;
    my $q = 0;
    $q += ($_ - $mean) ** 2 for @$v;
    return ($mean, sqrt($q / $n));
}

sub z_score {
    my ($values, $x) = @_;
    my ($m, $s) = mean_std($values);
    return ($x - $m) / $s;
}

# |a - b| <= rel * max(1, |b|)
sub close_enough {
    my ($a, $b, $rel) = @_;
    return 0 unless defined $a && defined $b;
    $rel //= 1e-9;
    my $scale = abs($b) > 1 ? abs($b) : 1;
    return abs($a - $b) <= $rel * $scale;
}

# The raw text of a top-level scalar field in a JSON body ("score":1.25 -> "1.25").
sub raw_field {
    my ($raw, $name) = @_;
    return undef unless defined $raw;
    return $1 if $raw =~ /"\Q$name\E"\s*:\s*("(?:[^"\\]|\\.)*"|[^,}\s]+)/;
    return undef;
}

sub _is_json_string {
    my ($v) = @_;
    return 0 unless defined $v && !ref $v;
    my $f = B::svref_2object(\$v)->FLAGS;
    return ($f & B::SVp_POK) && !($f & (B::SVp_IOK | B::SVp_NOK)) ? 1 : 0;
}

sub _is_json_number {
    my ($v) = @_;
    return 0 unless defined $v && !ref $v;
    my $f = B::svref_2object(\$v)->FLAGS;
    return ($f & (B::SVp_IOK | B::SVp_NOK)) ? 1 : 0;
}

sub json_string_ok { my ($v, $name) = @_; ok(_is_json_string($v), $name) }
sub json_number_ok { my ($v, $name) = @_; ok(_is_json_number($v), $name) }

# error_ok([status, json, raw, headers], status, code, name, detail_re)
# One test: the status, the code, and a body of exactly two string fields
# "detail" (non-empty) and "code"; optionally detail matching detail_re.
sub error_ok {
    my ($res, $status, $code, $name, $detail_re) = @_;
    my ($st, $j, $raw) = @$res;
    my @why;
    push @why, "status $st, expected $status" unless $st == $status;
    if (ref $j ne 'HASH') {
        push @why, "body is not a JSON object";
    } else {
        my $keys = join ',', sort keys %$j;
        push @why, "fields are {$keys}, expected exactly {code,detail}" unless $keys eq 'code,detail';
        push @why, "code is not a string" unless _is_json_string($j->{code});
        push @why, "detail is not a non-empty string"
            unless _is_json_string($j->{detail}) && length $j->{detail};
        push @why, "code " . ($j->{code} // 'undef') . ", expected $code"
            unless ($j->{code} // '') eq $code;
        push @why, "detail does not match $detail_re"
            if $detail_re && !(defined $j->{detail} && $j->{detail} =~ $detail_re);
    }
    my $okk = ok(!@why, $name);
    diag(join("\n", @why) . "\nbody: $raw") unless $okk;
    return $okk;
}

# ---------------------------------------------------------------------------
# Logs, children, the end

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

sub error_log_text { _slurp($_[0]->error_log) }

sub error_log_tail {
    my ($self, $n) = @_;
    my @l = split /\n/, $self->error_log_text;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l);
}

# Lines of error.log that show a failure: [alert], [emerg], a crashed process.
sub bad_log_lines {
    my ($self) = @_;
    my @bad;
    for my $line (split /\n/, $self->error_log_text) {
        next unless $line =~ /\[(?:alert|emerg)\]|exited on signal/;
        next if $self->{log_allow} && $line =~ $self->{log_allow};
        push @bad, $line;
    }
    return @bad;
}

# Runs CODE in a forked child that never returns into the test (no END
# blocks, no Test::Builder output). Returns the child's pid.
sub child {
    my ($code) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    return $pid if $pid;
    my $rc = eval { $code->(); 0 } // do { print STDERR "child $$: $@"; 1 };
    POSIX::_exit($rc);
}

# Background load for the reload and upgrade tests, until the file $o{stop}
# exists. Fitters fit series "$o{prefix}$k", each fit with a distinct mean,
# and log "ok SERIES VERSION MEAN" or "fail STATUS BODY" to $o{dir}/fit.$k.
# Predictors send predictions over fresh connections (so that every worker
# and every nginx generation gets some) to $o{prefix}0 .. $o{series}-1 and
# write "COUNT FAILURES FIRST-FAILURE" to $o{dir}/predict.$k.
# Returns the children's pids.
sub start_load {
    my (%o) = @_;
    my ($port, $dir, $stop, $prefix) = @o{qw(port dir stop prefix)};
    my @kids;
    for my $k (0 .. $o{fitters} - 1) {
        push @kids, child(sub {
            my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => $o{timeout} // 30);
            open my $log, '>', "$dir/fit.$k" or die;
            my $i = 0;
            until (-e $stop) {
                my $base = 1000 * $k + ++$i;
                my @v = map { $base + ($_ % 5) } 1 .. 20;
                my @ts = map { 1700000000 + 60 * $_ } 1 .. 20;
                my $mean = 0;
                $mean += $_ / 20 for @v;
                my $res = $ua->post("http://127.0.0.1:$port/fit/$prefix$k", {
                    headers => { 'Content-Type' => 'application/json' },
                    content => encode_body({ timestamps => \@ts, values => \@v }) });
                my $j = eval { decode_json($res->{content}) };
                if ($res->{status} == 200 && $j) { print $log "ok $prefix$k $j->{version} $mean\n" }
                else { print $log "fail $res->{status} " . substr($res->{content} // '', 0, 200) . "\n" }
                $log->flush;
                sleep $o{fit_pause} if $o{fit_pause};
            }
        });
    }
    for my $k (0 .. $o{predictors} - 1) {
        push @kids, child(sub {
            my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
            my ($n, $bad, $first) = (0, 0, '');
            until (-e $stop) {
                my $res = $ua->post("http://127.0.0.1:$port/predict/$prefix" . ($n % $o{series}), {
                    headers => { 'Content-Type' => 'application/json' },
                    content => '{"timestamp": 1700000000, "value": 10}' });
                $n++;
                next if $res->{status} == 200;
                $first ||= "$res->{status} $res->{content}";
                $bad++;
            }
            open my $out, '>', "$dir/predict.$k" or die;
            print $out "$n $bad $first\n";
        });
    }
    return @kids;
}

# Stops the load of start_load and reads what its clients wrote: predictions
# sent and failed, acknowledged versions ("SERIES VERSION" => mean), failed
# fits, and versions acknowledged twice.
sub stop_load {
    my (%o) = @_;
    open my $fh, '>', $o{stop} or die;
    close $fh;
    waitpid $_, 0 for @{$o{kids}};
    my %r = (predicts => 0, predict_failures => 0, acked => {}, fit_failures => [], dupes => 0);
    for my $k (0 .. $o{predictors} - 1) {
        open my $in, '<', "$o{dir}/predict.$k" or die "no result from predictor $k";
        my ($n, $bad, $first) = split ' ', scalar(<$in>), 3;
        $r{predicts} += $n;
        $r{predict_failures} += $bad;
        diag("predictor $k, first failure: $first") if $bad;
    }
    for my $k (0 .. $o{fitters} - 1) {
        open my $in, '<', "$o{dir}/fit.$k" or die;
        while (<$in>) {
            if (/^ok (\S+) (v\d+) (\S+)/) { $r{dupes}++ if exists $r{acked}{"$1 $2"}; $r{acked}{"$1 $2"} = $3 }
            else { push @{$r{fit_failures}}, $_ }
        }
    }
    return \%r;
}

# The checks every test under start_load makes of what stop_load returned:
# requests were sent and none failed, no version was acknowledged twice, and
# each acknowledged version answers with its own mean. $o{during} names the
# ordeal in the test names ("the reloads"); $o{min_fits} is how many fits
# must have been acknowledged. Returns the acknowledged "SERIES VERSION" keys.
sub check_load {
    my ($t, $r, %o) = @_;
    ok($r->{predicts} > 100, "predictions were sent during $o{during} ($r->{predicts})");
    is($r->{predict_failures}, 0, "no prediction failed during $o{during}");
    my %acked = %{$r->{acked}};
    my @failures = @{$r->{fit_failures}};
    my @versions = keys %acked;
    ok(@versions > $o{min_fits}, "fits were acknowledged during $o{during} (" . scalar(@versions) . ')');
    is(scalar @failures, 0, "no fit failed during $o{during}")
        or diag(join '', @failures[0 .. ($#failures < 9 ? $#failures : 9)]);
    ok(!$r->{dupes}, 'no version was acknowledged twice');

    my $wrong = 0;
    for my $key (@versions) {
        my ($series, $version) = split ' ', $key;
        my ($st, $j) = $t->predict($series, { value => 0 + $acked{$key} }, $version);
        next if $st == 200 && $j->{model_version} eq $version && close_enough($j->{score}, 0, 1e-9);
        diag("$series $version: $st " . encode_json($j // {})) if $wrong++ < 3;
    }
    is($wrong, 0, 'every acknowledged version answers with its own mean' . ($o{after} ? ", $o{after}" : ''));
    return @versions;
}

# Replaces done_testing(): stops every nginx this file started, then checks
# each error.log and the Content-Type of every response, then done_testing.
sub done {
    return unless $$ == $CREATOR;
    $DONE = 1;
    for my $t (@INSTANCES) {
        $t->stop if $t->running;
        my @bad = $t->bad_log_lines;
        ok(!@bad, "error.log of $t->{dir} has no [alert], [emerg] or crashed process")
            or diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
        my @ct = @{$t->{ctype_bad}};
        ok(!@ct, "all $t->{requests} responses had Content-Type application/json")
            or diag(join "\n", @ct[0 .. ($#ct < 9 ? $#ct : 9)]);
    }
    done_testing();
}

END {
    if ($$ == $CREATOR) {
        for my $t (@INSTANCES) {
            next unless $t->running;
            diag("test ended early; error.log tail of $t->{dir}:\n" . $t->error_log_tail(20))
                unless $DONE;
            my $pid = $t->{master};
            kill 'QUIT', $pid;
            _wait_gone($pid, 10) or kill 'KILL', $pid, $t->worker_pids;
        }
    }
}

1;
