#!/usr/bin/perl
# Validation: every error code with its status and body shape; nothing is
# stored by a rejected fit.

use strict;
use warnings;
use Test::More;
use AnomalyTest qw(make_series mean_std close_enough error_ok);

my $t = AnomalyTest->new(
    workers   => 2,
    locations => <<'LOC',
        location /fitsmall/ {
            anomaly_fit;
            anomaly_max_points 100;
        }
LOC
);

my $ts0 = 1_700_000_000;
sub ts { my ($n) = @_; return [ map { $ts0 + 60 * $_ } 0 .. $n - 1 ] }
sub vals { my ($n) = @_; return [ map { 10 + ($_ * 7 % 5) + $_ / 10 } 0 .. $n - 1 ] }

sub fit_err {
    my ($series, $body, $status, $code, $name, $detail_re) = @_;
    error_ok([ $t->fit($series, $body) ], $status, $code, "fit: $name -> $status $code", $detail_re);
}

# A series with one good version, used to show that rejected fits change nothing.
my ($good1, $vals1) = make_series(20, seed => 5, base => 100, spread => 10);
my ($st, $j, $raw) = $t->fit('keep', $good1);
is($j && $j->{version}, 'v1', 'first good fit of "keep" is v1') or diag("$st $raw");

# --- point counts --------------------------------------------------------------

fit_err('keep', { timestamps => ts(9), values => vals(9) }, 422, 'too_few_points',
        '9 points (default anomaly_min_points 10)');
fit_err('keep', { timestamps => [], values => [] }, 422, 'too_few_points', 'no points');
fit_err('keep', { data => [] }, 422, 'too_few_points', 'empty data array');
fit_err('keep', { data => [ map { { timestamp => $ts0 + $_, value => $_ * 1.5 } } 0 .. 8 ] },
        422, 'too_few_points', '9 points in the data shape');
{
    my ($s, $jj, $r) = $t->fit('ten', { timestamps => ts(10), values => vals(10) });
    is($s, 200, 'exactly 10 points is enough') or diag($r);
}

error_ok([ $t->request('POST', '/fitsmall/big', { timestamps => ts(101), values => vals(101) }) ],
         422, 'too_many_points', 'fit: 101 points with anomaly_max_points 100 -> 422 too_many_points');
{
    my ($s, $jj, $r) = $t->request('POST', '/fitsmall/big', { timestamps => ts(100), values => vals(100) });
    is($s, 200, 'exactly 100 points with anomaly_max_points 100 is accepted') or diag($r);
    is($jj && $jj->{series_id}, 'big', 'series id is the URI after the /fitsmall/ prefix');
}

fit_err('keep', { timestamps => ts(15), values => [ (42.5) x 15 ] }, 422, 'constant_series',
        'all values equal');

# --- values ------------------------------------------------------------------

for my $case ([ 'null', undef ], [ 'a string', 'abc' ], [ 'a numeric string', '12.5' ],
              [ 'true', JSON::PP::true ], [ 'false', JSON::PP::false ]) {
    my ($what, $bad) = @$case;
    my $v = vals(12);
    $v->[7] = $bad;
    fit_err('keep', { timestamps => ts(12), values => $v }, 422, 'invalid_value',
            "value $what at index 7 (detail names 7)", qr/\b7\b/);
}
{
    my $v = vals(12);
    my $list = join ',', map { $_ == 4 ? 'NaN' : $v->[$_] } 0 .. 11;
    fit_err('keep', qq({"timestamps":[${\join ',', @{ts(12)}}],"values":[$list]}), 422,
            'invalid_value', 'raw NaN token at index 4 (detail names 4)', qr/\b4\b/);
    $list = join ',', map { $_ == 11 ? 'Infinity' : $v->[$_] } 0 .. 11;
    fit_err('keep', qq({"timestamps":[${\join ',', @{ts(12)}}],"values":[$list]}), 422,
            'invalid_value', 'raw Infinity token at index 11 (detail names 11)', qr/\b11\b/);
    $list = join ',', map { $_ == 2 ? '-Infinity' : $v->[$_] } 0 .. 11;
    fit_err('keep', qq({"timestamps":[${\join ',', @{ts(12)}}],"values":[$list]}), 422,
            'invalid_value', 'raw -Infinity token at index 2 (detail names 2)', qr/\b2\b/);
    $list = join ',', map { $_ == 9 ? '1e400' : $v->[$_] } 0 .. 11;
    fit_err('keep', qq({"timestamps":[${\join ',', @{ts(12)}}],"values":[$list]}), 422,
            'invalid_value', 'overflowing 1e400 at index 9 (detail names 9)', qr/\b9\b/);
}
{
    my $data = [ map { { timestamp => $ts0 + 60 * $_, value => 1 + $_ } } 0 .. 11 ];
    $data->[6]{value} = undef;
    fit_err('keep', { data => $data }, 422, 'invalid_value',
            'null value at index 6 in the data shape (detail names 6)', qr/\b6\b/);
}

fit_err('keep', { timestamps => ts(12), values => vals(11) }, 422, 'length_mismatch',
        '12 timestamps, 11 values');
fit_err('keep', { timestamps => ts(11), values => vals(12) }, 422, 'length_mismatch',
        '11 timestamps, 12 values');

# --- timestamps ----------------------------------------------------------------

{
    my $t1 = ts(12);
    $t1->[5] = $t1->[4];
    fit_err('keep', { timestamps => $t1, values => vals(12) }, 422, 'unordered_timestamps',
            'repeated timestamp at index 5 (detail names 5)', qr/\b5\b/);
    my $t2 = ts(12);
    $t2->[8] = $t2->[7] - 1;
    fit_err('keep', { timestamps => $t2, values => vals(12) }, 422, 'unordered_timestamps',
            'decreasing timestamp at index 8 (detail names 8)', qr/\b8\b/);
    my $data = [ map { { timestamp => $ts0 + 60 * $_, value => 1 + $_ } } 0 .. 11 ];
    $data->[10]{timestamp} = $ts0;
    fit_err('keep', { data => $data }, 422, 'unordered_timestamps',
            'unordered timestamp at index 10 in the data shape (detail names 10)', qr/\b10\b/);
}

for my $case ([ 'a fraction', 1_700_000_000.5 ], [ 'letters', 'yesterday' ],
              [ 'null', undef ], [ 'true', JSON::PP::true ]) {
    my ($what, $bad) = @$case;
    my $tt = ts(12);
    $tt->[3] = $bad;
    fit_err('keep', { timestamps => $tt, values => vals(12) }, 422, 'invalid_timestamp',
            "timestamp $what");
}

# --- malformed bodies ----------------------------------------------------------

my $tl = join ',', @{ts(12)};
my $vl = join ',', @{vals(12)};
for my $case ([ 'not JSON', 'this is not json' ],
              [ 'truncated JSON', qq({"timestamps":[$tl],"values":[$vl]) ],
              [ 'an empty body', '' ],
              [ 'a JSON array', "[$vl]" ],
              [ 'a JSON string', '"hello"' ],
              [ 'an object of neither shape', '{"foo":1}' ],
              [ 'timestamps without values', qq({"timestamps":[$tl]}) ],
              [ 'values without timestamps', qq({"values":[$vl]}) ],
              [ 'timestamps not an array', qq({"timestamps":5,"values":[$vl]}) ],
              [ 'data not an array', '{"data":{"timestamp":1,"value":2}}' ],
              [ 'trailing garbage', qq({"timestamps":[$tl],"values":[$vl]} xyz) ]) {
    fit_err('keep', $case->[1], 400, 'malformed_json', $case->[0]);
}

# --- series ids ----------------------------------------------------------------

my $ok_body = { timestamps => ts(12), values => vals(12) };
fit_err('a' x 129, $ok_body, 400, 'invalid_series_id', '129-character id');
fit_err('a%20b', $ok_body, 400, 'invalid_series_id', 'id with a space (a%20b)');
fit_err('a/b', $ok_body, 400, 'invalid_series_id', 'id with a slash (a/b)');
fit_err('caf%C3%A9', $ok_body, 400, 'invalid_series_id', 'id with a non-ASCII letter');
fit_err('', $ok_body, 400, 'invalid_series_id', 'empty id (/fit/)');
{
    my ($s, $jj, $r) = $t->fit('b' x 128, $ok_body);
    is($s, 200, '128-character id is accepted') or diag($r);
    ($s, $jj, $r) = $t->fit('A-Z.a_z:0-9', $ok_body);
    is($s, 200, 'id with every allowed punctuation (A-Z.a_z:0-9) is accepted') or diag($r);
    is($jj && $jj->{series_id}, 'A-Z.a_z:0-9', '... and echoed unchanged');
}

# --- predict errors ------------------------------------------------------------

sub pred_err {
    my ($series, $body, $version, $status, $code, $name) = @_;
    error_ok([ $t->predict($series, $body, $version) ], $status, $code, "predict: $name -> $status $code");
}

my $pbody = { timestamp => '1700100000', value => 100 };
pred_err('nosuch', $pbody, undef, 404, 'series_not_found', 'unknown series');
pred_err('nosuch', $pbody, 'v1', 404, 'series_not_found', 'unknown series with a version');
pred_err('keep', $pbody, 'v99', 404, 'version_not_found', 'v99 of a series with one version');
pred_err('keep', $pbody, '2', 404, 'version_not_found', 'version 2 of a series with one version');
for my $bad ('abc', 'v0', '0', 'v', 'v1.5', '-1', 'v99999999999') {
    pred_err('keep', $pbody, $bad, 422, 'invalid_version', "?version=$bad");
}
pred_err('keep', { timestamp => '1700100000', value => 'abc' }, undef, 422, 'invalid_value', 'value a string');
pred_err('keep', { timestamp => '1700100000', value => undef }, undef, 422, 'invalid_value', 'value null');
pred_err('keep', { timestamp => '1700100000', value => JSON::PP::true }, undef, 422, 'invalid_value', 'value true');
pred_err('keep', '{"timestamp":"1700100000","value":NaN}', undef, 422, 'invalid_value', 'value NaN');
pred_err('keep', '{"timestamp":"1700100000","value":1e999}', undef, 422, 'invalid_value', 'value 1e999');
pred_err('keep', 'not json', undef, 400, 'malformed_json', 'not JSON');
pred_err('keep', '', undef, 400, 'malformed_json', 'empty body');
pred_err('keep', '[1,2]', undef, 400, 'malformed_json', 'a JSON array');
pred_err('keep', '{"timestamp":"1700100000"}', undef, 400, 'malformed_json', 'no value');
pred_err('keep', { timestamp => 'noon', value => 1 }, undef, 422, 'invalid_timestamp', 'timestamp "noon"');

# --- nothing stored by the rejected fits -----------------------------------------

{
    my ($s, $jj, $r) = $t->predict('keep', $pbody);
    is($jj && $jj->{model_version}, 'v1', '"keep" still answers from v1 after the rejected fits')
        or diag("$s $r");
    ($s, $jj, $r) = $t->predict('keep', $pbody, 'v2');
    is($s, 404, '"keep" has no v2 after the rejected fits');

    my ($good2, $vals2) = make_series(30, seed => 6, base => 500, spread => 20);
    ($s, $jj, $r) = $t->fit('keep', $good2);
    is($jj && $jj->{version}, 'v2', 'next good fit of "keep" is v2: no rejected fit took a version')
        or diag("$s $r");
    my ($mean, $std) = mean_std($vals2);
    ($s, $jj, $r) = $t->predict('keep', { timestamp => '1700100000', value => $mean + $std });
    ok($jj && $jj->{model_version} eq 'v2' && close_enough($jj->{score}, 1, 1e-9),
       'latest of "keep" is v2 with the second data') or diag("$s $r");

    # Series that only ever had rejected fits do not exist.
    for my $id ('nosuch', 'a' x 129) {
        ($s, $jj, $r) = $t->predict(substr($id, 0, 128), $pbody);
        is($s, 404, "series " . substr($id, 0, 20) . " was never created") or diag($r);
    }
    my ($hs, $hj, $hr) = $t->healthcheck;
    # keep, ten, big, bbb..b (128), A-Z.a_z:0-9
    is($hj && $hj->{series_trained}, 5, 'series_trained counts only the 5 series with a good fit')
        or diag($hr);
}

AnomalyTest::done();
