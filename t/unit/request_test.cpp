// Fit and predict bodies: both shapes, every error code, the checking order.
#include <gtest/gtest.h>

#include <string>

#include "core/request.hpp"

using namespace anomaly;

namespace {

// The server hands the parser a body followed by kJsonPadding readable bytes.
struct Body {
    std::string text;
    explicit Body(std::string s) : text(std::move(s)) { text.append(kJsonPadding, ' '); }
    const char *data() const { return text.data(); }
    std::size_t size() const { return text.size() - kJsonPadding; }
};

Error fit(const std::string &json, TrainingData *out = nullptr, std::size_t min = 3, std::size_t max = 1000) {
    Body b(json);
    FitLimits limits;
    limits.min_points = min;
    limits.max_points = max;
    TrainingData scratch;
    return parse_fit_body(b.data(), b.size(), limits, out ? out : &scratch);
}

Error predict(const std::string &json, PredictInput *out = nullptr) {
    Body b(json);
    PredictInput scratch;
    return parse_predict_body(b.data(), b.size(), out ? out : &scratch);
}

void expect(const Error &e, int status, const char *code, const char *detail_part = nullptr) {
    EXPECT_EQ(e.status, status) << e.detail;
    EXPECT_STREQ(e.code, code) << e.detail;
    if (detail_part) {
        EXPECT_NE(e.detail.find(detail_part), std::string::npos) << e.detail;
    }
}

}  // namespace

TEST(Fit, ArraysShape) {
    TrainingData d;
    Error e = fit(R"({"timestamps": [1700000000, "1700000060", 1700000120], "values": [1.5, -2, 3e2]})", &d);
    EXPECT_FALSE(e) << e.detail;
    EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{1700000000, 1700000060, 1700000120}));
    EXPECT_EQ(d.values, (std::vector<double>{1.5, -2, 300}));
}

TEST(Fit, DataShape) {
    TrainingData d;
    Error e = fit(R"({"data": [{"timestamp": 1, "value": 10}, {"value": 11.25, "timestamp": "2"}, {"timestamp": 3, "value": 9}]})", &d);
    EXPECT_FALSE(e) << e.detail;
    EXPECT_EQ(d.timestamps, (std::vector<std::int64_t>{1, 2, 3}));
    EXPECT_EQ(d.values, (std::vector<double>{10, 11.25, 9}));
}

TEST(Fit, UnknownKeysIgnored) {
    EXPECT_FALSE(fit(R"({"model": "x", "timestamps": [1,2,3], "values": [1,2,4]})"));
}

TEST(Fit, MalformedJson) {
    for (const char *bad : {"", "nope", "{", "[1,2]", "{\"timestamps\": [1,2,3], \"values\": [1,2,3]",
                            "{\"timestamps\": [1,2,3]}", "{\"values\": [1,2,3]}", "{}",
                            "{\"timestamps\": [1,2,3], \"values\": [1,2,3], \"data\": []}",
                            "{\"timestamps\": [1,2,3], \"timestamps\": [1,2,3], \"values\": [1,2,3]}",
                            "{\"data\": [1, 2, 3]}", "{\"timestamps\": 5, \"values\": [1]}",
                            "{\"timestamps\": [1,2,3], \"values\": [1,2,3]} trailing",
                            "{\"timestamps\": [1,2,3], \"values\": [1,2,3]}}",  // once read as too_few_points
                            "{\"timestamps\": [1,2,3], \"values\": [1,2,3],}"})
        expect(fit(bad), 400, "malformed_json");
}

TEST(Fit, LengthMismatch) { expect(fit(R"({"timestamps": [1,2,3,4], "values": [1,2,3]})"), 422, "length_mismatch", "4"); }

TEST(Fit, TooManyPoints) {
    expect(fit(R"({"timestamps": [1,2,3,4,5], "values": [1,2,3,4,5]})", nullptr, 2, 4), 422, "too_many_points",
           "anomaly_max_points");
}

TEST(Fit, InvalidTimestampNamesTheIndex) {
    for (const char *t : {"1.5", "1e9", "-1", "\"abc\"", "null", "true", "253402300800", "\"\"", "[]"}) {
        std::string body = std::string(R"({"timestamps": [1, 2, )") + t + R"(], "values": [1, 2, 3]})";
        expect(fit(body), 422, "invalid_timestamp", "timestamps[2]");
    }
    expect(fit(R"({"data": [{"timestamp": 1, "value": 1}, {"value": 2}, {"timestamp": 3, "value": 3}]})"), 422,
           "invalid_timestamp", "data[1].timestamp");
}

TEST(Fit, InvalidValueNamesTheIndex) {
    for (const char *v : {"null", "\"x\"", "true", "NaN", "Infinity", "-Infinity", "1e400", "{}", "nan"}) {
        std::string body = std::string(R"({"timestamps": [1, 2, 3, 4], "values": [1, 2, 3, )") + v + "]}";
        expect(fit(body), 422, "invalid_value", "values[3]");
    }
    expect(fit(R"({"data": [{"timestamp": 1, "value": 1}, {"timestamp": 2, "value": 2}, {"timestamp": 3, "value": NaN}]})"),
           422, "invalid_value", "data[2].value");
}

TEST(Fit, UnorderedTimestampsNameTheIndex) {
    expect(fit(R"({"timestamps": [1, 2, 2, 4], "values": [1, 2, 3, 4]})"), 422, "unordered_timestamps", "timestamps[2]");
    expect(fit(R"({"timestamps": [5, 6, 7, 1], "values": [1, 2, 3, 4]})"), 422, "unordered_timestamps", "timestamps[3]");
}

TEST(Fit, TooFewPoints) {
    expect(fit(R"({"timestamps": [1, 2], "values": [1, 2]})"), 422, "too_few_points", "anomaly_min_points");
    expect(fit(R"({"timestamps": [], "values": []})"), 422, "too_few_points");
}

TEST(Fit, ConstantSeries) { expect(fit(R"({"timestamps": [1, 2, 3], "values": [7, 7, 7.0]})"), 422, "constant_series"); }

TEST(Fit, CheckingOrder) {
    // length_mismatch before invalid_value
    expect(fit(R"({"timestamps": [1, 2, 3], "values": [1, null]})"), 422, "length_mismatch");
    // too_many_points before invalid_timestamp
    expect(fit(R"({"timestamps": [1, 2, "x", 4, 5], "values": [1, 2, 3, 4, 5]})", nullptr, 2, 4), 422, "too_many_points");
    // invalid_timestamp before invalid_value, whatever their positions
    expect(fit(R"({"timestamps": [1, 2, 3, "x"], "values": [null, 2, 3, 4]})"), 422, "invalid_timestamp");
    // invalid_value before unordered_timestamps
    expect(fit(R"({"timestamps": [3, 2, 1], "values": [1, 2, "x"]})"), 422, "invalid_value");
    // unordered before too_few
    expect(fit(R"({"timestamps": [2, 1], "values": [1, 2]})"), 422, "unordered_timestamps");
    // too_few before constant
    expect(fit(R"({"timestamps": [1, 2], "values": [5, 5]})"), 422, "too_few_points");
    // the first offending index wins
    expect(fit(R"({"timestamps": [1, 2, 3, 4], "values": [1, "a", 3, null]})"), 422, "invalid_value", "values[1]");
}

TEST(Fit, MillionPoints) {
    std::string body = "{\"timestamps\":[";
    for (int i = 0; i < 1000000; i++) body += (i ? "," : "") + std::to_string(1600000000 + i);
    body += "],\"values\":[";
    std::string values;
    for (int i = 0; i < 1000000; i++) values += (i ? "," : "") + std::to_string(i % 1000);
    TrainingData d;
    Error e = fit(body + values + "]}", &d, 10, 1000000);
    EXPECT_FALSE(e) << e.detail;
    EXPECT_EQ(d.values.size(), 1000000u);
    EXPECT_EQ(d.values[999999], 999);
    // one NaN deep inside: named, even though the fast parser refuses the whole body
    std::size_t at = 0;
    for (int i = 0; i < 777777; i++) at = values.find(',', at) + 1;
    std::string broken = values.substr(0, at) + "NaN" + values.substr(values.find(',', at));
    expect(fit(body + broken + "]}", nullptr, 10, 1000000), 422, "invalid_value", "values[777777]");
}

TEST(Predict, Shapes) {
    PredictInput in;
    EXPECT_FALSE(predict(R"({"timestamp": "1700000000", "value": 42.5})", &in));
    EXPECT_TRUE(in.has_timestamp);
    EXPECT_EQ(in.timestamp, 1700000000);
    EXPECT_EQ(in.value, 42.5);
    EXPECT_FALSE(predict(R"({"timestamp": 1700000000, "value": -3})", &in));
    EXPECT_EQ(in.value, -3);
    EXPECT_FALSE(predict(R"({"value": 1})", &in));
    EXPECT_FALSE(in.has_timestamp);
}

TEST(Predict, Errors) {
    for (const char *bad : {"", "[]", "{}", "{\"timestamp\": 1}", "nope", "{\"value\": 1", "{\"value\": 1} x",
                            "{\"value\": 1, \"value\": 2}"})
        expect(predict(bad), 400, "malformed_json");
    for (const char *bad : {"null", "\"1\"", "true", "NaN", "Infinity", "1e999", "[1]"})
        expect(predict(std::string("{\"value\": ") + bad + "}"), 422, "invalid_value");
    for (const char *bad : {"1.5", "\"17x\"", "null", "-5", "{}"})
        expect(predict(std::string("{\"timestamp\": ") + bad + ", \"value\": 1}"), 422, "invalid_timestamp");
}
