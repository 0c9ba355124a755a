#!/usr/bin/perl
# Hostile input: a corpus of bad requests, each with the status and code it
# must get. While it runs no worker may restart, and what was stored before
# must answer exactly as before.

use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use AnomalyTest qw(make_series);

my $t = AnomalyTest->new(workers => 2,
    locations => 'location /fit-small/ { anomaly_max_points 1000; anomaly_fit; }
                  location /fit-slow/ { client_body_timeout 1s; anomaly_fit; }');
my $port = $t->port;

my ($good) = make_series(20, seed => 7);
is(($t->fit('keep', $good))[0], 200, 'a series stored before the corpus');
my (undef, $before) = $t->predict('keep', { timestamp => 1700000000, value => 123.456 });
my @workers = sort $t->worker_pids;

# Raw HTTP, so that any bytes can be sent. Returns (status, body).
sub raw {
    my ($request, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10) or die "connect: $!";
    if ($o{trickle}) {
        for my $chunk (@$request) { print $s $chunk; $s->flush; sleep $o{trickle} }
    } else {
        print $s $request;
    }
    shutdown($s, 1) if $o{half_close};
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d{3})};
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return ($status // 0, $body // '');
}

sub post {
    my ($path, $body, %h) = @_;
    my $ct = exists $h{ct} ? $h{ct} : 'application/json';
    my $req = "POST $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            . (defined $ct ? "Content-Type: $ct\r\n" : '')
            . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return raw($req);
}

my $requests_checked = 0;
sub check {
    my ($name, $got_status, $got_body, $status, $code) = @_;
    $requests_checked++;
    my $j = eval { JSON::PP::decode_json($got_body) };
    my $ok = $got_status == $status && (!defined $code || ($j && ($j->{code} // '') eq $code && length($j->{detail} // '')));
    ok($ok, "$name: $status" . ($code ? " $code" : ''))
        or diag("got $got_status " . substr($got_body, 0, 300));
}

my $valid = '{"timestamps":[1700000000,1700000060,1700000120,1700000180,1700000240,1700000300,1700000360,1700000420,1700000480,1700000540],"values":[1.5,2.5,1.25,3,2,1.75,2.25,3.5,1,2.75]}';
my @cases;   # [name, path, body, status, code, headers]

# Truncated JSON: every 7th prefix of a valid body.
for (my $i = 1; $i < length($valid); $i += 7) {
    push @cases, ["truncated at $i", '/fit/h', substr($valid, 0, $i), 400, 'malformed_json'];
}
# Malformed
push @cases, map { ["malformed: $_", '/fit/h', $_, 400, 'malformed_json'] }
    ('', ' ', 'null', 'true', '42', '"text"', '[]', '{}', '{"timestamps"}', '{"timestamps":}', "{'timestamps':[1]}",
     '{"timestamps":[1,2,],"values":[1,2]}', '{"timestamps":[1 2],"values":[1,2]}', $valid . 'x', $valid . $valid,
     "\x00\x01\x02", "\xff\xfe{}", '{"timestamps":[1,2,3],"values":[1,2,3],"timestamps":[4,5,6]}',
     '{"data":{"timestamp":1,"value":2}}', '{"data":[[1,2],[3,4]]}', '{"data":"x"}', '{"timestamps":"1,2,3","values":[1,2,3]}',
     '{"timestamps":[1,2,3],"values":{"a":1}}', '{"timestamps":[1,2,3],"values":[1,2,3],"data":[]}',
     '{"timestamps":[1,2,3]}', '{"values":[1,2,3]}', '{"Timestamps":[1,2,3],"Values":[1,2,3]}',
     '{"timestamps":[1,2,3],"values":[1,2,3]', '{"timestamps":[1,2,3],"values":[1,2,3]}}', '{"a":"\u12"}',
     '{"timestamps":[1,2,3],"values":[1,2,3],}');
# Deep nesting
push @cases, ["nested $_ deep", '/fit/h', ('[' x $_) . (']' x $_), 400, 'malformed_json'] for 10, 1000, 5000;
push @cases, ["nested object $_ deep", '/fit/h', ('{"a":' x $_) . '1' . ('}' x $_), 400, 'malformed_json'] for 10, 2000;
# deeper than the parser's limit of 1024 levels: not JSON that anyone reads
push @cases, ['values nested deep', '/fit/h', '{"timestamps":[1,2,3],"values":[1,2,' . ('[' x 3000) . (']' x 3000) . ']}', 400, 'malformed_json'];
# Wrong types and tokens in values: NaN and Infinity as Python's json module reads them
for my $v ('NaN', 'Infinity', '-Infinity', 'null', 'true', 'false', '"1"', '{}', '[]', '1e400', '-1e400', '1e99999') {
    (my $body = $valid) =~ s/,3,/,$v,/;
    push @cases, ["value $v", '/fit/h', $body, 422, 'invalid_value'];
}
# tokens that are not JSON numbers, nor anything else: the body is not JSON
for my $v ('nan', 'inf', '0x10', '01', '+1', '.5', '1.', '--1') {
    (my $body = $valid) =~ s/,3,/,$v,/;
    push @cases, ["value $v", '/fit/h', $body, 400, 'malformed_json'];
}
# Timestamps
for my $ts ('1.5', '1e9', '-1', '"abc"', '"-5"', '" 1"', 'null', 'true', '{}', '[]', '253402300800', '1700000000000',
            '99999999999999999999', '"99999999999999999999"', '1700000000.0') {
    (my $body = $valid) =~ s/1700000120/$ts/;
    push @cases, ["timestamp $ts", '/fit/h', $body, 422, 'invalid_timestamp'];
}
push @cases, ['timestamps repeated', '/fit/h', do { (my $b = $valid) =~ s/1700000120/1700000060/; $b }, 422, 'unordered_timestamps'];
push @cases, ['timestamps decreasing', '/fit/h', do { (my $b = $valid) =~ s/1700000540/1700000000/; $b }, 422, 'unordered_timestamps'];
push @cases, ['length mismatch', '/fit/h', '{"timestamps":[1,2,3],"values":[1,2]}', 422, 'length_mismatch'];
push @cases, ['constant', '/fit/h', '{"timestamps":[1,2,3,4,5,6,7,8,9,10],"values":[5,5,5,5,5,5,5,5,5,5]}', 422, 'constant_series'];
push @cases, ['too few', '/fit/h', '{"timestamps":[1,2],"values":[1,2]}', 422, 'too_few_points'];
push @cases, ['empty arrays', '/fit/h', '{"timestamps":[],"values":[]}', 422, 'too_few_points'];
push @cases, ['huge array', '/fit-small/h', '{"timestamps":[' . join(',', 1 .. 5000) . '],"values":[' . join(',', map { $_ % 7 } 1 .. 5000) . ']}', 422, 'too_many_points'];
push @cases, ['huge array of nulls', '/fit-small/h', '{"timestamps":[' . join(',', 1 .. 2000) . '],"values":[' . join(',', ('null') x 2000) . ']}', 422, 'too_many_points'];
# Series ids
# nginx itself normalises and refuses some paths before any location: as JSON too.
for my $c (['%2E%2E', 404, 'not_found'], ['..%2F..%2Fetc', 400, 'bad_request'], ['a%00b', 400, 'bad_request'],
           ['%00', 400, 'bad_request']) {
    push @cases, ["fit path /fit/$c->[0]", "/fit/$c->[0]", $valid, $c->[1], $c->[2]];
    push @cases, ["predict path /predict/$c->[0]", "/predict/$c->[0]", '{"value":1}', $c->[1], $c->[2]];
}
for my $id ('a%2Fb', 'a%2fb', 'a%20b', 'a+b', 'a%C3%A9', 'a;b', 'a,b', 'a*b', 'a@b',
            'x' x 129, 'x' x 1000, 'a/b', 'a/', '') {
    push @cases, ["fit id '" . substr($id, 0, 30) . "'", "/fit/$id", $valid, 400, 'invalid_series_id'];
    push @cases, ["predict id '" . substr($id, 0, 30) . "'", "/predict/$id", '{"value":1}', 400, 'invalid_series_id'];
}
# Versions
for my $v ('v0', '0', '-1', 'abc', 'v', 'V', 'v1.5', '1.0', '99999999999', 'v4294967296', '%20v1', 'v1%00', 'vv1') {
    push @cases, ["version $v", "/predict/keep?version=$v", '{"value":1}', 422, 'invalid_version'];
}
push @cases, ['version v999', '/predict/keep?version=v999', '{"value":1}', 404, 'version_not_found'];
push @cases, ['unknown series', '/predict/never_fitted', '{"value":1}', 404, 'series_not_found'];
# Predict bodies
push @cases, map { ["predict body $_->[0]", '/predict/keep', $_->[0], $_->[1], $_->[2]] }
    (['', 400, 'malformed_json'], ['{}', 400, 'malformed_json'], ['{"timestamp":1}', 400, 'malformed_json'],
     ['{"value":NaN}', 422, 'invalid_value'], ['{"value":"1"}', 422, 'invalid_value'], ['{"value":null}', 422, 'invalid_value'],
     ['{"value":1e400}', 422, 'invalid_value'], ['{"value":1,"timestamp":"x"}', 422, 'invalid_timestamp'],
     ['{"value":1,"timestamp":-1}', 422, 'invalid_timestamp'], ['[1]', 400, 'malformed_json'], ['{"value":1}}', 400, 'malformed_json'],
     ['{"value":' . ('[' x 2000) . ']}', 400, 'malformed_json'], ['{"value":1,"value":2}', 400, 'malformed_json'],
     ['x' x 100000, 413, 'body_too_large']);

for my $c (@cases) {
    my ($name, $path, $body, $status, $code) = @$c;
    check($name, post($path, $body), $status, $code);
}

# A fit changes state: only a body declared as JSON trains a model, so that
# no web page (which can post text/plain or a form anywhere) can. Predictions
# change nothing and read any content type as JSON.
check('fit as text/plain', post('/fit/ct1', $valid, ct => 'text/plain'), 415, 'unsupported_media_type');
check('fit without a content type', post('/fit/ct2', $valid, ct => undef), 415, 'unsupported_media_type');
check('fit as form', post('/fit/ct3', $valid, ct => 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type');
check('fit as multipart', post('/fit/ct4', $valid, ct => 'multipart/form-data; boundary=x'), 415, 'unsupported_media_type');
check('fit as text/csv', post('/fit/ct5', $valid, ct => 'text/csv'), 415, 'unsupported_media_type');
check('fit as application/json; charset=utf-8', post('/fit/ct6', $valid, ct => 'application/json; charset=utf-8'), 200);
check('fit as application/vnd.metrics+json', post('/fit/ct7', $valid, ct => 'application/vnd.metrics+json'), 200);
check('predict as text/plain', post('/predict/keep', '{"value":1}', ct => 'text/plain'), 200);

# Methods
for my $m ('GET', 'PUT', 'DELETE', 'PATCH', 'HEAD') {
    my ($st, $body) = raw("$m /fit/keep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    is($st, 405, "$m /fit: 405");
    ($st, $body) = raw("$m /predict/keep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    is($st, 405, "$m /predict: 405");
}
check('POST /healthcheck', post('/healthcheck', '{}'), 405, 'method_not_allowed');

# Chunked bodies work; a slow body that still arrives in time works.
my $chunked = "POST /fit/chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            . sprintf("%x\r\n%s\r\n0\r\n\r\n", length $valid, $valid);
check('chunked fit', raw($chunked), 200);
my @pieces = ("POST /fit-slow/trickle HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " . length($valid) . "\r\n\r\n",
              map { substr($valid, $_ * 60, 60) } 0 .. int(length($valid) / 60));
check('slow but complete body', raw(\@pieces, trickle => 0.2), 200);
# A body that stops arriving: nginx's client_body_timeout, as JSON.
my ($st, $body) = raw("POST /fit-slow/stalled HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"timestamps\":[1,", half_close => 0);
ok($st == 408 || $st == 0, "stalled body: 408 or closed (got $st)");
# A body shorter than its Content-Length, then the client goes away.
($st) = raw("POST /fit/partial HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"timestamps\":[1,2", half_close => 1);
ok($st == 400 || $st == 0, "partial body then close: 400 or closed (got $st)");

ok($requests_checked >= 150, "$requests_checked bad requests, each with its expected status and code");

is_deeply([sort $t->worker_pids], \@workers, 'no worker restarted');
my (undef, $after) = $t->predict('keep', { timestamp => 1700000000, value => 123.456 });
is_deeply($after, $before, 'the stored series answers exactly as before');
my (undef, $h) = $t->healthcheck;
is($h->{store}{state}, 'ready', 'store still ready');
ok(!-e $t->dir . '/never', 'nothing odd written');

AnomalyTest::done();
