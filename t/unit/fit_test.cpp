// POST /fit bodies: both shapes, every error code with its HTTP status, the
// documented order of the checks (request.hpp), and a 1,000,000-point body.
#include <gtest/gtest.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/request.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::Body;

namespace {

enum class Shape { arrays, data };
const Shape kShapes[] = {Shape::arrays, Shape::data};
const char *name(Shape s) { return s == Shape::arrays ? "arrays" : "data"; }

// Builds a body of either shape from JSON tokens. For the data shape an
// empty token leaves the member out of that element.
std::string body(Shape shape, const std::vector<std::string> &ts, const std::vector<std::string> &vs) {
    std::string out;
    if (shape == Shape::arrays) {
        out = "{\"timestamps\": [";
        for (std::size_t i = 0; i < ts.size(); i++) out += (i ? ", " : "") + ts[i];
        out += "], \"values\": [";
        for (std::size_t i = 0; i < vs.size(); i++) out += (i ? ", " : "") + vs[i];
        out += "]}";
    } else {
        out = "{\"data\": [";
        const std::size_t n = std::max(ts.size(), vs.size());
        for (std::size_t i = 0; i < n; i++) {
            out += i ? ", {" : "{";
            bool first = true;
            if (i < ts.size() && !ts[i].empty()) {
                out += "\"timestamp\": " + ts[i];
                first = false;
            }
            if (i < vs.size() && !vs[i].empty()) out += std::string(first ? "" : ", ") + "\"value\": " + vs[i];
            out += "}";
        }
        out += "]}";
    }
    return out;
}

// n increasing timestamps and n distinct values as tokens.
std::vector<std::string> timestamps(std::size_t n, std::int64_t t0 = 1700000000) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; i++) out.push_back(std::to_string(t0 + 60 * static_cast<std::int64_t>(i)));
    return out;
}
std::vector<std::string> values(std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; i++) out.push_back(std::to_string(10 + static_cast<int>(i % 7)) + ".5");
    return out;
}

template <class T>
std::vector<T> with(std::vector<T> v, std::size_t i, T token) {
    v.at(i) = std::move(token);
    return v;
}

FitLimits limits(std::size_t min_points, std::size_t max_points = 1000000) {
    FitLimits l;
    l.min_points = min_points;
    l.max_points = max_points;
    return l;
}

Error fit(const std::string &json, const FitLimits &l = limits(3), TrainingData *out = nullptr) {
    Body b(json);
    TrainingData scratch;
    return parse_fit_body(b.data(), b.size(), l, out ? out : &scratch);
}

::testing::AssertionResult is_error(const Error &e, int status, const std::string &code,
                                    const std::string &detail_part = "") {
    if (e.status != status || code != e.code)
        return ::testing::AssertionFailure() << "expected " << status << " " << code << ", got " << e.status << " "
                                             << e.code << " (" << e.detail << ")";
    if (!detail_part.empty() && e.detail.find(detail_part) == std::string::npos)
        return ::testing::AssertionFailure() << "detail \"" << e.detail << "\" does not mention \"" << detail_part
                                             << "\"";
    if (e.detail.empty()) return ::testing::AssertionFailure() << "empty detail";
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult is_ok(const Error &e) {
    if (e.status == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << e.status << " " << e.code << " (" << e.detail << ")";
}

std::string shortest(double d) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof(buf), d);
    return std::string(buf, r.ptr);
}

// How a bad element is named in each shape.
std::string ts_name(Shape s, std::size_t i) {
    return s == Shape::arrays ? "timestamps[" + std::to_string(i) + "]" : "data[" + std::to_string(i) + "].timestamp";
}
std::string value_name(Shape s, std::size_t i) {
    return s == Shape::arrays ? "values[" + std::to_string(i) + "]" : "data[" + std::to_string(i) + "].value";
}

}  // namespace

// ---------------------------------------------------------------- success

TEST(FitBody, ArraysShapeExtractsEverything) {
    TrainingData d;
    const std::string json =
        R"({"timestamps": [0, 1700000000, "1700000060", 1700000120, 253402300799],
            "values": [10.5, -3, 1e-5, 2.5E10, -0.125]})";
    ASSERT_TRUE(is_ok(fit(json, limits(3), &d)));
    EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{0, 1700000000, 1700000060, 1700000120, 253402300799}));
    EXPECT_EQ(d.values, (std::vector<double>{10.5, -3.0, 1e-5, 2.5e10, -0.125}));
}

TEST(FitBody, DataShapeExtractsEverything) {
    TrainingData d;
    const std::string json =
        R"({"data": [{"timestamp": 1700000000, "value": 10.5},
                     {"value": -3, "timestamp": "1700000060"},
                     {"timestamp": 1700000120, "value": 1e-5},
                     {"timestamp": "1700000180", "value": 7}]})";
    ASSERT_TRUE(is_ok(fit(json, limits(3), &d)));
    EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{1700000000, 1700000060, 1700000120, 1700000180}));
    EXPECT_EQ(d.values, (std::vector<double>{10.5, -3.0, 1e-5, 7.0}));
}

TEST(FitBody, KeysInEitherOrderAndWhitespace) {
    TrainingData d;
    ASSERT_TRUE(is_ok(fit(" \n\t{ \"values\" : [ 3 , 2 , 1 ] ,\r\n \"timestamps\" : [ 10 , 20 , 30 ] } \n ",
                          limits(3), &d)));
    EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{10, 20, 30}));
    EXPECT_EQ(d.values, (std::vector<double>{3, 2, 1}));
}

TEST(FitBody, DigitStringTimestampsAccepted) {
    for (Shape s : kShapes) {
        TrainingData d;
        ASSERT_TRUE(is_ok(fit(body(s, {"\"1\"", "\"0002\"", "\"253402300799\""}, {"1", "2", "3"}), limits(3), &d)))
            << name(s);
        EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{1, 2, 253402300799})) << name(s);
    }
}

TEST(FitBody, ValuesRoundTripExactly) {
    const std::vector<double> expected = {0.1, -0.30000000000000004, 1.7976931348623157e308, 4.9406564584124654e-324,
                                          -2.2250738585072014e-308, 123456789.123456789, 1e22, 3.0};
    std::vector<std::string> vs;
    for (double v : expected) vs.push_back(shortest(v));
    vs.back() = "18446744073709551615";  // an unsigned 64-bit integer is a number too
    for (Shape s : kShapes) {
        TrainingData d;
        ASSERT_TRUE(is_ok(fit(body(s, timestamps(expected.size()), vs), limits(3), &d))) << name(s);
        ASSERT_EQ(d.values.size(), expected.size());
        for (std::size_t i = 0; i + 1 < expected.size(); i++) EXPECT_EQ(d.values[i], expected[i]) << name(s) << i;
        EXPECT_EQ(d.values.back(), 18446744073709551615.0);
    }
}

// A finite number is a finite number however it is written: 1e20 written
// as an integer is valid JSON and a finite value (FastAPI accepts it).
TEST(FitBody, BigIntegerValueIsAFiniteNumber) {
    for (Shape s : kShapes) {
        TrainingData d;
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(3), {"1", "2", "100000000000000000000"}), limits(3), &d)))
            << name(s);
        if (d.values.size() == 3) {
            EXPECT_EQ(d.values[2], 1e20);
        }
    }
}

TEST(FitBody, UnknownKeysAreIgnored) {
    TrainingData d;
    ASSERT_TRUE(is_ok(fit(R"({"series": "x", "timestamps": [1, 2, 3], "values": [1, 2, 4], "meta": {"a": [1]}})",
                          limits(3), &d)));
    EXPECT_EQ(d.values, (std::vector<double>{1, 2, 4}));
    ASSERT_TRUE(is_ok(fit(R"({"data": [{"timestamp": 1, "value": 1, "unit": "ms"}, {"timestamp": 2, "value": 2},
                                      {"timestamp": 3, "value": 4}]})",
                          limits(3), &d)));
    EXPECT_EQ(d.values, (std::vector<double>{1, 2, 4}));
}

TEST(FitBody, OutputReplacesWhateverWasThere) {
    TrainingData d;
    d.timestamps.assign(100, 5);
    d.values.assign(100, 5);
    ASSERT_TRUE(is_ok(fit(body(Shape::arrays, {"1", "2", "3"}, {"1", "2", "3"}), limits(3), &d)));
    EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{1, 2, 3}));
    EXPECT_EQ(d.values, (std::vector<double>{1, 2, 3}));
}

TEST(FitBody, MinAndMaxPointsAreInclusive) {
    for (Shape s : kShapes) {
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(10), values(10)), limits(10, 10)))) << name(s);
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(10), values(10)), limits(10, 1000)))) << name(s);
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(10), values(10)), limits(2, 10)))) << name(s);
    }
}

// ---------------------------------------------------------------- malformed_json

TEST(FitBody, MalformedJson) {
    const std::vector<std::string> cases = {
        "",
        "   \n",
        "hello",
        "{",
        "}",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3]",        // truncated
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3",         // truncated
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3]}]",      // one bracket too many
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3]} x",     // trailing garbage
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3],}",      // trailing comma
        "{\"timestamps\": [1, 2, 3,], \"values\": [1, 2, 3]}",
        "{timestamps: [1, 2, 3], values: [1, 2, 3]}",              // JavaScript, not JSON
        "{'timestamps': [1, 2, 3], 'values': [1, 2, 3]}",
        "[1, 2, 3]",                                               // top-level array
        "[{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3]}]",
        "42",
        "\"string\"",
        "null",
        "{}",                                                      // neither shape
        "{\"foo\": [1, 2, 3]}",
        "{\"timestamps\": [1, 2, 3]}",                             // timestamps without values
        "{\"values\": [1, 2, 3]}",                                 // values without timestamps
        "{\"data\": [{\"timestamp\": 1, \"value\": 1}], \"timestamps\": [1], \"values\": [1]}",  // both
        "{\"data\": [{\"timestamp\": 1, \"value\": 1}], \"values\": [1]}",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3], \"timestamps\": [1, 2, 3]}",  // duplicate key
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, 3], \"values\": [1, 2, 3]}",
        "{\"data\": [{\"timestamp\": 1, \"value\": 1}], \"data\": [{\"timestamp\": 1, \"value\": 1}]}",
        "{\"data\": [1, 2, 3]}",                                   // data element not an object
        "{\"data\": [{\"timestamp\": 1, \"value\": 1}, [2, 2], {\"timestamp\": 3, \"value\": 3}]}",
        "{\"data\": [{\"timestamp\": 1, \"value\": 1}, null, {\"timestamp\": 3, \"value\": 3}]}",
        "{\"data\": {\"timestamp\": 1, \"value\": 1}}",            // data not an array
        "{\"timestamps\": 1, \"values\": [1]}",
        "{\"timestamps\": [1, 2, 3], \"values\": \"1, 2, 3\"}",
        "{\"timestamps\": [1, 2, 3], \"values\": null}",
    };
    for (const std::string &c : cases) EXPECT_TRUE(is_error(fit(c), 400, "malformed_json")) << c;
}

// Also through the slow path (the body has a NaN, so the DOM parser refuses it).
TEST(FitBody, MalformedJsonWithANaNInside) {
    const std::vector<std::string> cases = {
        "{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3]",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3], \"data\": [{\"timestamp\": 1, \"value\": 1}]}",
        "{\"timestamps\": [1, 2, 3], \"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3]}",
        "{\"timestamps\": [1, 2, 3]}, \"values\": [1, NaN, 3]}",
        "[{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3]}]",
        "{\"data\": [{\"timestamp\": 1, \"value\": NaN}, 2]}",
        "{\"values\": [1, NaN, 3]}",
    };
    for (const std::string &c : cases) EXPECT_TRUE(is_error(fit(c), 400, "malformed_json")) << c;
}

// "400 malformed_json: not JSON" is first in the documented order, so a body
// that is not JSON is malformed even when one of its elements is also bad.
TEST(FitBody, MalformedJsonWinsOverABadElement) {
    const std::vector<std::string> cases = {
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, null]}}",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, 2, null]}{}",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3]} x",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3], \"x\": tru}",
        "{\"timestamps\": [1, 2, 3], \"values\": [1, NaN, 3], \"x\": \"\\u12\"}",
    };
    for (const std::string &c : cases) EXPECT_TRUE(is_error(fit(c), 400, "malformed_json")) << c;
}

// Every proper prefix of a valid body is not JSON.
TEST(FitBody, EveryTruncationIsMalformed) {
    for (Shape s : kShapes) {
        const std::string full = body(s, {"1700000000", "\"1700000060\"", "1700000120"}, {"10.5", "-2e3", "7"});
        ASSERT_TRUE(is_ok(fit(full)));
        for (std::size_t n = 0; n < full.size(); n++)
            EXPECT_TRUE(is_error(fit(full.substr(0, n)), 400, "malformed_json")) << full.substr(0, n);
    }
}

// ---------------------------------------------------------------- length_mismatch

TEST(FitBody, LengthMismatch) {
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, timestamps(4), values(3))), 422, "length_mismatch"));
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, timestamps(3), values(4))), 422, "length_mismatch"));
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, timestamps(0), values(5))), 422, "length_mismatch"));
    const Error e = fit(body(Shape::arrays, timestamps(12), values(11)));
    EXPECT_TRUE(is_error(e, 422, "length_mismatch", "12"));
    EXPECT_TRUE(is_error(e, 422, "length_mismatch", "11"));
}

// ---------------------------------------------------------------- too_many_points

TEST(FitBody, TooManyPoints) {
    for (Shape s : kShapes) {
        EXPECT_TRUE(is_error(fit(body(s, timestamps(6), values(6)), limits(3, 5)), 422, "too_many_points", "5"))
            << name(s);
        EXPECT_TRUE(is_error(fit(body(s, timestamps(1000), values(1000)), limits(3, 5)), 422, "too_many_points"))
            << name(s);
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(5), values(5)), limits(3, 5)))) << name(s);
    }
}

// ---------------------------------------------------------------- invalid_timestamp

TEST(FitBody, InvalidTimestamp) {
    const std::vector<std::string> bad = {"1.5", "1e9", "1.0", "-1", "\"abc\"", "null", "253402300800",
                                          "\"253402300800\"", "true", "false", "\"\"", "\"-1\"", "\"1.5\"",
                                          "\" 1700000120\"", "\"1700000120 \"", "\"+1700000120\"", "[]", "{}",
                                          "9223372036854775808", "99999999999999999999", "-9223372036854775809",
                                          "\"99999999999999999999\"", "\"0x10\""};
    for (Shape s : kShapes) {
        for (const std::string &token : bad) {
            const Error e = fit(body(s, with(timestamps(5), 2, token), values(5)));
            EXPECT_TRUE(is_error(e, 422, "invalid_timestamp", ts_name(s, 2))) << name(s) << " " << token;
        }
    }
}

TEST(FitBody, TimestampRangeEnds) {
    EXPECT_TRUE(is_ok(fit(body(Shape::arrays, {"0", "1", "253402300799"}, {"1", "2", "3"}))));
    EXPECT_TRUE(is_ok(fit(body(Shape::arrays, {"\"0\"", "\"1\"", "\"253402300799\""}, {"1", "2", "3"}))));
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, {"0", "1", "253402300800"}, {"1", "2", "3"})), 422,
                         "invalid_timestamp", "timestamps[2]"));
}

TEST(FitBody, MissingTimestampInADataElement) {
    const Error e = fit(body(Shape::data, with(timestamps(5), 3, std::string()), values(5)));
    EXPECT_TRUE(is_error(e, 422, "invalid_timestamp", "data[3].timestamp"));
}

TEST(FitBody, FirstBadTimestampIsNamed) {
    for (Shape s : kShapes) {
        std::vector<std::string> ts = timestamps(8);
        ts[6] = "null";
        ts[4] = "1.5";
        ts[7] = "-1";
        EXPECT_TRUE(is_error(fit(body(s, ts, values(8))), 422, "invalid_timestamp", ts_name(s, 4))) << name(s);
        // and through the slow path
        EXPECT_TRUE(is_error(fit(body(s, ts, with(values(8), 1, std::string("NaN")))), 422, "invalid_timestamp",
                             ts_name(s, 4)))
            << name(s);
    }
}

// ---------------------------------------------------------------- invalid_value

// Python's json module reads NaN, Infinity and -Infinity (so they are bad
// values), but nan and inf are not JSON to anyone.
TEST(FitBody, LowercaseNanAndInfAreNotJson) {
    for (Shape s : kShapes)
        for (const char *token : {"nan", "inf", "-inf", "NaNx"})
            EXPECT_TRUE(is_error(fit(body(s, timestamps(5), with(values(5), 3, std::string(token)))), 400, "malformed_json"))
                << name(s) << " " << token;
}

TEST(FitBody, InvalidValue) {
    const std::vector<std::string> bad = {"null",      "\"x\"",  "\"1.5\"", "true", "false", "NaN",
                                          "Infinity",  "-Infinity", "1e400", "-1e400", "[]", "{}",
                                          "[1]",       "{\"v\": 1}"};
    for (Shape s : kShapes) {
        for (const std::string &token : bad) {
            const Error e = fit(body(s, timestamps(5), with(values(5), 3, token)));
            EXPECT_TRUE(is_error(e, 422, "invalid_value", value_name(s, 3))) << name(s) << " " << token;
        }
    }
}

TEST(FitBody, MissingValueInADataElement) {
    const Error e = fit(body(Shape::data, timestamps(5), with(values(5), 3, std::string())));
    EXPECT_TRUE(is_error(e, 422, "invalid_value", "data[3].value"));
}

TEST(FitBody, FirstBadValueIsNamed) {
    for (Shape s : kShapes) {
        std::vector<std::string> vs = values(9);
        vs[8] = "null";
        vs[5] = "\"five\"";
        vs[6] = "NaN";
        EXPECT_TRUE(is_error(fit(body(s, timestamps(9), vs)), 422, "invalid_value", value_name(s, 5))) << name(s);
        vs[2] = "Infinity";
        EXPECT_TRUE(is_error(fit(body(s, timestamps(9), vs)), 422, "invalid_value", value_name(s, 2))) << name(s);
    }
}

// ---------------------------------------------------------------- unordered_timestamps

TEST(FitBody, UnorderedTimestamps) {
    for (Shape s : kShapes) {
        const Error equal = fit(body(s, {"10", "20", "20", "30", "40"}, values(5)));
        EXPECT_TRUE(is_error(equal, 422, "unordered_timestamps", "[2]")) << name(s);
        const Error decreasing = fit(body(s, {"10", "20", "30", "25", "40"}, values(5)));
        EXPECT_TRUE(is_error(decreasing, 422, "unordered_timestamps", "[3]")) << name(s);
        const Error first = fit(body(s, {"50", "20", "30", "25", "40"}, values(5)));
        EXPECT_TRUE(is_error(first, 422, "unordered_timestamps", "[1]")) << name(s);
        // strings and integers compare as numbers
        const Error mixed = fit(body(s, {"10", "\"9\"", "30"}, values(3)));
        EXPECT_TRUE(is_error(mixed, 422, "unordered_timestamps", "[1]")) << name(s);
    }
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, {"10", "20", "20"}, values(3))), 422, "unordered_timestamps",
                         "timestamps[2]"));
}

// ---------------------------------------------------------------- too_few_points

TEST(FitBody, TooFewPoints) {
    for (Shape s : kShapes) {
        EXPECT_TRUE(is_error(fit(body(s, timestamps(9), values(9)), limits(10)), 422, "too_few_points", "10"))
            << name(s);
        EXPECT_TRUE(is_error(fit(body(s, timestamps(1), values(1)), limits(10)), 422, "too_few_points")) << name(s);
        EXPECT_TRUE(is_error(fit(body(s, {}, {}), limits(10)), 422, "too_few_points")) << name(s);
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(10), values(10)), limits(10)))) << name(s);
    }
}

// ---------------------------------------------------------------- constant_series

TEST(FitBody, ConstantSeries) {
    for (Shape s : kShapes) {
        EXPECT_TRUE(is_error(fit(body(s, timestamps(10), std::vector<std::string>(10, "7.25")), limits(10)), 422,
                             "constant_series"))
            << name(s);
        // the same number written three ways
        EXPECT_TRUE(is_error(fit(body(s, timestamps(3), {"7", "7.0", "0.7e1"})), 422, "constant_series")) << name(s);
        EXPECT_TRUE(is_error(fit(body(s, timestamps(3), {"0", "-0", "0.0"})), 422, "constant_series")) << name(s);
        EXPECT_TRUE(is_ok(fit(body(s, timestamps(3), {"7", "7", "7.000000000001"})))) << name(s);
    }
}

// Statistics that cannot predict are refused after training: a spread so
// small (subnormal) that its variance is 0, or a mean or std that is not
// finite. Values near the largest double, or spread by 1e-200, train fine.
TEST(FitModel, UnusableStatisticsAreRefused) {
    auto trained = [](const std::vector<std::string> &vs) {
        TrainingData d;
        Error e = fit(body(Shape::arrays, timestamps(vs.size()), vs), limits(2), &d);
        EXPECT_TRUE(is_ok(e));
        return check_model(train_three_sigma(d));
    };
    std::vector<std::string> tiny(10, "0");
    tiny.back() = "1e-200";
    EXPECT_TRUE(is_ok(trained(tiny)));
    EXPECT_TRUE(is_ok(trained({"1.7e308", "1.6e308", "1.5e308"})));
    EXPECT_TRUE(is_ok(trained({"-1.7e308", "1.7e308"})));
    EXPECT_TRUE(is_error(trained({"0", "5e-324"}), 422, "constant_series"));

    Model m;
    m.mean = 1;
    m.std = 0;
    EXPECT_TRUE(is_error(check_model(m), 422, "constant_series"));
    m.std = std::numeric_limits<double>::infinity();
    EXPECT_TRUE(is_error(check_model(m), 422, "invalid_value"));
    m.std = 1;
    m.mean = std::numeric_limits<double>::quiet_NaN();
    EXPECT_TRUE(is_error(check_model(m), 422, "invalid_value"));
    m.mean = 1;
    EXPECT_TRUE(is_ok(check_model(m)));
}

// ---------------------------------------------------------------- the order of the checks

TEST(FitOrder, MalformedBeatsEverything) {
    // both shapes at once, with a length mismatch and bad elements
    EXPECT_TRUE(is_error(fit(R"({"timestamps": [1, 2, 3, -1], "values": [1, null, 3], "data": []})"), 400,
                         "malformed_json"));
    // a data element that is not an object, after a bad value
    EXPECT_TRUE(is_error(fit(R"({"data": [{"timestamp": 1, "value": null}, 5]})"), 400, "malformed_json"));
}

TEST(FitOrder, LengthMismatchBeatsTooManyPoints) {
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, timestamps(8), values(7)), limits(3, 5)), 422, "length_mismatch"));
}

TEST(FitOrder, LengthMismatchBeatsInvalidValue) {
    // the fast path (null) and the slow path (NaN)
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, timestamps(5), {"1", "null", "3", "4"})), 422, "length_mismatch"));
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, timestamps(5), {"1", "NaN", "3", "4"})), 422, "length_mismatch"));
}

TEST(FitOrder, LengthMismatchBeatsInvalidTimestamp) {
    EXPECT_TRUE(
        is_error(fit(body(Shape::arrays, {"1", "1.5", "3", "4"}, values(3))), 422, "length_mismatch"));
    EXPECT_TRUE(is_error(fit(body(Shape::arrays, {"1", "1.5", "3", "4"}, {"1", "2", "Infinity"})), 422,
                         "length_mismatch"));
}

TEST(FitOrder, TooManyPointsBeatsInvalidElements) {
    for (Shape s : kShapes) {
        EXPECT_TRUE(is_error(fit(body(s, with(timestamps(6), 0, std::string("-5")), with(values(6), 1,
                                                                                          std::string("null"))),
                                 limits(3, 5)),
                             422, "too_many_points"))
            << name(s);
        EXPECT_TRUE(is_error(fit(body(s, timestamps(6), with(values(6), 1, std::string("NaN"))), limits(3, 5)), 422,
                             "too_many_points"))
            << name(s);
    }
}

TEST(FitOrder, InvalidTimestampBeatsInvalidValue) {
    for (Shape s : kShapes) {
        // the bad value comes first in the body and has the lower index
        EXPECT_TRUE(is_error(fit(body(s, with(timestamps(6), 4, std::string("\"abc\"")),
                                      with(values(6), 0, std::string("null")))),
                             422, "invalid_timestamp", ts_name(s, 4)))
            << name(s);
        EXPECT_TRUE(is_error(fit(body(s, with(timestamps(6), 4, std::string("1.5")),
                                      with(values(6), 0, std::string("NaN")))),
                             422, "invalid_timestamp", ts_name(s, 4)))
            << name(s);
    }
    // values before timestamps in the body
    EXPECT_TRUE(is_error(fit(R"({"values": [1, null, 3], "timestamps": [1, 2, null]})"), 422, "invalid_timestamp",
                         "timestamps[2]"));
}

TEST(FitOrder, InvalidValueBeatsUnordered) {
    for (Shape s : kShapes) {
        EXPECT_TRUE(is_error(fit(body(s, {"30", "20", "10"}, {"1", "2", "null"})), 422, "invalid_value",
                             value_name(s, 2)))
            << name(s);
        EXPECT_TRUE(is_error(fit(body(s, {"30", "20", "10"}, {"1", "2", "-Infinity"})), 422, "invalid_value",
                             value_name(s, 2)))
            << name(s);
    }
}

TEST(FitOrder, InvalidTimestampBeatsUnordered) {
    for (Shape s : kShapes)
        EXPECT_TRUE(is_error(fit(body(s, {"30", "20", "-10"}, values(3))), 422, "invalid_timestamp", ts_name(s, 2)))
            << name(s);
}

TEST(FitOrder, UnorderedBeatsTooFew) {
    for (Shape s : kShapes)
        EXPECT_TRUE(is_error(fit(body(s, {"2", "1"}, {"1", "2"}), limits(10)), 422, "unordered_timestamps"))
            << name(s);
}

TEST(FitOrder, UnorderedBeatsConstant) {
    for (Shape s : kShapes)
        EXPECT_TRUE(is_error(fit(body(s, {"1", "3", "2"}, {"5", "5", "5"})), 422, "unordered_timestamps")) << name(s);
}

TEST(FitOrder, TooFewBeatsConstant) {
    for (Shape s : kShapes)
        EXPECT_TRUE(is_error(fit(body(s, {"1", "2"}, {"5", "5"}), limits(3)), 422, "too_few_points")) << name(s);
}

// ---------------------------------------------------------------- concurrency

// Fits parse on whichever thread-pool thread is free, with pooled parsers.
TEST(FitBody, ParsesConcurrently) {
    std::vector<std::string> bodies;
    for (int t = 0; t < 4; t++) {
        std::vector<std::string> vs;
        for (int i = 0; i < 2000 + t * 1000; i++) vs.push_back(std::to_string(t * 1000 + i % 50));
        bodies.push_back(body(t % 2 ? Shape::data : Shape::arrays, timestamps(vs.size()), vs));
    }
    std::vector<int> failures(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 50; round++) {
                TrainingData d;
                Error e = fit(bodies[t], limits(3), &d);
                const std::size_t n = 2000 + t * 1000;
                if (e || d.values.size() != n || d.values[n - 1] != t * 1000 + (n - 1) % 50 ||
                    d.timestamps[n - 1] != 1700000000 + 60 * static_cast<std::int64_t>(n - 1))
                    failures[t]++;
            }
        });
    }
    for (auto &th : threads) th.join();
    EXPECT_EQ(failures, (std::vector<int>{0, 0, 0, 0}));
}

// ---------------------------------------------------------------- a million points

namespace {

std::string million_body(std::size_t nan_at = SIZE_MAX) {
    std::string ts = "{\"timestamps\":[", vs = "],\"values\":[";
    ts.reserve(12 * 1000000 + 32);
    vs.reserve(10 * 1000000 + 32);
    for (std::size_t i = 0; i < 1000000; i++) {
        if (i) {
            ts += ',';
            vs += ',';
        }
        ts += std::to_string(1600000000 + static_cast<std::int64_t>(i));
        if (i == nan_at) vs += "NaN";
        else {
            vs += std::to_string(i % 1000);
            vs += ".25";
        }
    }
    return ts + vs + "]}";
}

}  // namespace

TEST(FitBody, MillionPoints) {
    const std::string json = million_body();
    TrainingData d;
    const auto start = std::chrono::steady_clock::now();
    const Error e = fit(json, limits(10, 1000000), &d);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    std::cout << "[ info     ] 1,000,000 points, " << json.size() / 1000000 << " MB, parsed in " << ms << " ms\n";
    ASSERT_TRUE(is_ok(e));
    ASSERT_EQ(d.timestamps.size(), 1000000u);
    ASSERT_EQ(d.values.size(), 1000000u);
    EXPECT_EQ(d.timestamps[0], 1600000000);
    EXPECT_EQ(d.timestamps[999999], 1600999999);
    EXPECT_EQ(d.values[0], 0.25);
    EXPECT_EQ(d.values[777777], 777.25);
    EXPECT_EQ(d.values[999999], 999.25);
    // one more point is too many
    EXPECT_TRUE(is_error(fit(json, limits(10, 999999)), 422, "too_many_points"));
}

TEST(FitBody, MillionPointsWithOneNaN) {
    const std::string json = million_body(777777);
    const auto start = std::chrono::steady_clock::now();
    const Error e = fit(json, limits(10, 1000000));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    std::cout << "[ info     ] 1,000,000 points with a NaN, diagnosed in " << ms << " ms\n";
    EXPECT_TRUE(is_error(e, 422, "invalid_value", "values[777777]"));
    EXPECT_EQ(e.detail.find("values[77777]"), std::string::npos);
}

TEST(FitBody, MillionPointsDataShapeWithOneNaN) {
    std::string json = "{\"data\":[";
    json.reserve(45 * 1000000);
    for (std::size_t i = 0; i < 1000000; i++) {
        if (i) json += ',';
        json += "{\"timestamp\":" + std::to_string(1600000000 + static_cast<std::int64_t>(i)) + ",\"value\":";
        json += i == 777777 ? std::string("NaN") : std::to_string(i % 1000);
        json += '}';
    }
    json += "]}";
    EXPECT_TRUE(is_error(fit(json, limits(10, 1000000)), 422, "invalid_value", "data[777777].value"));
}
