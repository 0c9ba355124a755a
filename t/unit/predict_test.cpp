// POST /predict bodies: {"timestamp": "1700000000" | 1700000000, "value": 42.0}.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "core/request.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::Body;

namespace {

Error predict(const std::string &json, PredictInput *out) {
    Body b(json);
    return parse_predict_body(b.data(), b.size(), out);
}

Error predict(const std::string &json) {
    PredictInput scratch;
    return predict(json, &scratch);
}

::testing::AssertionResult is_error(const Error &e, int status, const std::string &code) {
    if (e.status == status && code == e.code && !e.detail.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "expected " << status << " " << code << ", got " << e.status << " "
                                         << e.code << " (" << e.detail << ")";
}

}  // namespace

TEST(PredictBody, StringTimestamp) {
    PredictInput in;
    const Error e = predict(R"({"timestamp": "1700000000", "value": 42.0})", &in);
    ASSERT_FALSE(e) << e.detail;
    EXPECT_TRUE(in.has_timestamp);
    EXPECT_EQ(in.timestamp, 1700000000);
    EXPECT_EQ(in.value, 42.0);
}

TEST(PredictBody, IntegerTimestamp) {
    PredictInput in;
    const Error e = predict(R"({"value": -0.125, "timestamp": 1700000123})", &in);
    ASSERT_FALSE(e) << e.detail;
    EXPECT_TRUE(in.has_timestamp);
    EXPECT_EQ(in.timestamp, 1700000123);
    EXPECT_EQ(in.value, -0.125);
}

TEST(PredictBody, MissingTimestampIsFine) {
    PredictInput in;
    in.has_timestamp = true;
    in.timestamp = 99;
    const Error e = predict(R"({"value": 7})", &in);
    ASSERT_FALSE(e) << e.detail;
    EXPECT_FALSE(in.has_timestamp);
    EXPECT_EQ(in.value, 7.0);
}

TEST(PredictBody, ValuesReadExactly) {
    for (const auto &c : std::vector<std::pair<std::string, double>>{{"0.1", 0.1},
                                                                     {"-3", -3.0},
                                                                     {"1e-300", 1e-300},
                                                                     {"1.7976931348623157e308", 1.7976931348623157e308},
                                                                     {"123456789012", 123456789012.0},
                                                                     {"18446744073709551615", 18446744073709551615.0},
                                                                     {"2.5E3", 2500.0}}) {
        PredictInput in;
        const Error e = predict("{\"value\": " + c.first + "}", &in);
        EXPECT_FALSE(e) << c.first << ": " << e.detail;
        EXPECT_EQ(in.value, c.second) << c.first;
    }
}

TEST(PredictBody, UnknownKeysIgnored) {
    PredictInput in;
    const Error e = predict(R"({"series_id": "x", "value": 1.5, "extra": [1, {"a": null}]})", &in);
    ASSERT_FALSE(e) << e.detail;
    EXPECT_EQ(in.value, 1.5);
}

// 1e20 written as an integer is valid JSON and a finite number.
TEST(PredictBody, BigIntegerValueIsAFiniteNumber) {
    PredictInput in;
    const Error e = predict(R"({"value": 100000000000000000000})", &in);
    EXPECT_FALSE(e) << e.status << " " << e.code << " (" << e.detail << ")";
    EXPECT_EQ(in.value, 1e20);
}

TEST(PredictBody, MissingValueIsMalformed) {
    EXPECT_TRUE(is_error(predict(R"({"timestamp": "1700000000"})"), 400, "malformed_json"));
    EXPECT_TRUE(is_error(predict(R"({})"), 400, "malformed_json"));
    EXPECT_TRUE(is_error(predict(R"({"Value": 1})"), 400, "malformed_json"));
    // a bad timestamp does not make a missing value less missing
    EXPECT_TRUE(is_error(predict(R"({"timestamp": 1.5})"), 400, "malformed_json"));
}

TEST(PredictBody, NotAnObjectIsMalformed) {
    for (const char *c : {"[1, 2]", "[{\"value\": 1}]", "42", "\"value\"", "null", "true"})
        EXPECT_TRUE(is_error(predict(c), 400, "malformed_json")) << c;
}

TEST(PredictBody, NotJsonIsMalformed) {
    for (const char *c : {"", " ", "{", "{\"value\": 1", "{\"value\": }", "{\"value\": 1,}", "{value: 1}",
                          "{\"value\": 1} x", "{\"value\": 1}}", "value=1", "{\"value\": 1, \"value\": 2}"})
        EXPECT_TRUE(is_error(predict(c), 400, "malformed_json")) << c;
}

TEST(PredictBody, InvalidValue) {
    for (const char *v : {"null", "\"x\"", "\"42\"", "true", "false", "NaN", "Infinity", "-Infinity", "1e400",
                          "-1e400", "[1]", "{}"}) {
        EXPECT_TRUE(is_error(predict(std::string("{\"timestamp\": 1700000000, \"value\": ") + v + "}"), 422,
                             "invalid_value"))
            << v;
        EXPECT_TRUE(is_error(predict(std::string("{\"value\": ") + v + "}"), 422, "invalid_value")) << v;
    }
}

TEST(PredictBody, InvalidTimestamp) {
    for (const char *t : {"1.5", "1e9", "-1", "\"-1\"", "\"abc\"", "\"\"", "\"17e8\"", "null", "true", "[]", "{}",
                          "253402300800", "\"253402300800\"", "99999999999999999999"}) {
        EXPECT_TRUE(is_error(predict(std::string("{\"timestamp\": ") + t + ", \"value\": 1}"), 422,
                             "invalid_timestamp"))
            << t;
    }
    PredictInput in;
    EXPECT_FALSE(predict(R"({"timestamp": 253402300799, "value": 1})", &in));
    EXPECT_EQ(in.timestamp, 253402300799);
    EXPECT_FALSE(predict(R"({"timestamp": "0", "value": 1})", &in));
    EXPECT_EQ(in.timestamp, 0);
}

TEST(PredictBody, InvalidTimestampBeatsInvalidValue) {
    EXPECT_TRUE(is_error(predict(R"({"value": null, "timestamp": "abc"})"), 422, "invalid_timestamp"));
    EXPECT_TRUE(is_error(predict(R"({"value": NaN, "timestamp": 1.5})"), 422, "invalid_timestamp"));
}

TEST(PredictBody, MalformedWinsOverABadValue) {
    EXPECT_TRUE(is_error(predict(R"({"value": NaN} x)"), 400, "malformed_json"));
    EXPECT_TRUE(is_error(predict(R"({"value": NaN}})"), 400, "malformed_json"));
    EXPECT_TRUE(is_error(predict(R"({"value": NaN, "x": tru})"), 400, "malformed_json"));
}

// Event loops parse with a parser per thread.
TEST(PredictBody, ParsesConcurrently) {
    std::vector<int> failures(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 2000; i++) {
                PredictInput in;
                const std::string json = "{\"timestamp\": \"" + std::to_string(1700000000 + i) +
                                         "\", \"value\": " + std::to_string(t * 10000 + i) + "}";
                if (predict(json, &in) || in.timestamp != 1700000000 + i || in.value != t * 10000 + i)
                    failures[t]++;
            }
        });
    }
    for (auto &th : threads) th.join();
    EXPECT_EQ(failures, (std::vector<int>{0, 0, 0, 0}));
}

// Only a body declared as JSON may change state: a page on another origin
// can send text/plain or a form to a server its visitor reaches, but not JSON.
TEST(MediaType, JsonAndItsSuffixAreJson) {
    EXPECT_TRUE(is_json_media_type("application/json"));
    EXPECT_TRUE(is_json_media_type("Application/JSON"));
    EXPECT_TRUE(is_json_media_type("application/json; charset=utf-8"));
    EXPECT_TRUE(is_json_media_type(" application/json ;charset=UTF-8"));
    EXPECT_TRUE(is_json_media_type("application/vnd.api+json"));
    EXPECT_TRUE(is_json_media_type("application/merge-patch+JSON; q=1"));
}

TEST(MediaType, WhatAFormOrAPageCanSendIsNot) {
    EXPECT_FALSE(is_json_media_type(""));
    EXPECT_FALSE(is_json_media_type("text/plain"));
    EXPECT_FALSE(is_json_media_type("text/plain; charset=utf-8"));
    EXPECT_FALSE(is_json_media_type("application/x-www-form-urlencoded"));
    EXPECT_FALSE(is_json_media_type("multipart/form-data; boundary=x"));
    EXPECT_FALSE(is_json_media_type("text/json"));
    EXPECT_FALSE(is_json_media_type("application/"));
    EXPECT_FALSE(is_json_media_type("application/+json"));
    EXPECT_FALSE(is_json_media_type("application/jsonx"));
    EXPECT_FALSE(is_json_media_type("application/json5"));
    EXPECT_FALSE(is_json_media_type("application/x/+json"));
}

// 5xx details reach unauthenticated clients: the system's reason, no paths.
TEST(PublicReason, KeepsTheReasonDropsThePath) {
    EXPECT_EQ(public_reason("IO error: /var/lib/anomaly/000005.log: No space left on device"),
              "No space left on device");
    EXPECT_EQ(public_reason("cannot write /x/spool/12.3: Permission denied"), "Permission denied");
    EXPECT_EQ(public_reason("Permission denied."), "Permission denied");
    EXPECT_EQ(public_reason("Corruption: /x/MANIFEST-000001"), "");
    EXPECT_EQ(public_reason(""), "");
}
