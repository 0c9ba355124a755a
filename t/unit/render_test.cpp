// JSON responses: exact bytes, escaping, doubles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "core/render.hpp"

using namespace anomaly;

namespace {

std::string rendered(const Judgement &j, std::uint32_t version, DetectorKind kind) {
    char buf[kPredictionMaxLength + 16];
    std::memset(buf, 'X', sizeof(buf));
    const std::size_t n = render_prediction(buf, j, version, kind);
    EXPECT_LE(n, kPredictionMaxLength);
    EXPECT_EQ(buf[n], 'X') << "nothing written past the returned length";
    return std::string(buf, n);
}

// The challenge's part of an answer: its three fields come first, unchanged,
// and what section 5 added follows them.
std::string prediction(bool anomaly, std::uint32_t version, double score) {
    Judgement j;
    j.anomaly = anomaly;
    j.score = score;
    j.anomaly_score = 12.5;
    std::string s = rendered(j, version, DetectorKind::three_sigma);
    const std::string added = R"(,"detector":"three_sigma","anomaly_score":12.5})";
    EXPECT_EQ(s.substr(s.size() - std::min(s.size(), added.size())), added);
    return s.substr(0, s.size() - std::min(s.size(), added.size())) + "}";
}

std::string fmt(double d) {
    char buf[40];
    std::memset(buf, 'X', sizeof(buf));
    const std::size_t n = format_double(buf, d);
    EXPECT_LE(n, 32u);
    return std::string(buf, n);
}

}  // namespace

TEST(RenderPrediction, ExactBytes) {
    EXPECT_EQ(prediction(true, 3, 4.25), R"({"anomaly":true,"model_version":"v3","score":4.25})");
    EXPECT_EQ(prediction(false, 1, 0), R"({"anomaly":false,"model_version":"v1","score":0})");
    EXPECT_EQ(prediction(false, 12, -0.5), R"({"anomaly":false,"model_version":"v12","score":-0.5})");
    EXPECT_EQ(prediction(true, 4294967295u, -3.5e-7),
              R"({"anomaly":true,"model_version":"v4294967295","score":-3.5e-07})");
    EXPECT_EQ(prediction(true, 7, std::numeric_limits<double>::infinity()),
              R"({"anomaly":true,"model_version":"v7","score":null})");
    EXPECT_EQ(prediction(false, 7, std::nan("")), R"({"anomaly":false,"model_version":"v7","score":null})");
}

TEST(RenderPrediction, DetectorFields) {
    Judgement j;
    j.anomaly = true;
    j.score = 4.25;
    j.anomaly_score = 93.5;
    j.has_expected = j.has_lower = j.has_upper = true;
    j.expected_value = 10;
    j.lower = 4;
    j.upper = 16;
    EXPECT_EQ(rendered(j, 3, DetectorKind::seasonal),
              R"({"anomaly":true,"model_version":"v3","score":4.25,"detector":"seasonal","anomaly_score":93.5,)"
              R"("expected_value":10,"lower":4,"upper":16})");
    j.has_lower = false;
    EXPECT_EQ(rendered(j, 3, DetectorKind::robust),
              R"({"anomaly":true,"model_version":"v3","score":4.25,"detector":"robust","anomaly_score":93.5,)"
              R"("expected_value":10,"upper":16})");
    Judgement forest;
    forest.score = 0.61;
    forest.anomaly_score = 71.25;
    forest.anomaly = true;
    EXPECT_EQ(rendered(forest, 1, DetectorKind::iforest),
              R"({"anomaly":true,"model_version":"v1","score":0.61,"detector":"iforest","anomaly_score":71.25})");
}

TEST(RenderPrediction, LongestWithEveryField) {
    Judgement j;
    j.score = j.expected_value = j.lower = j.upper = j.anomaly_score = -2.2250738585072014e-308;
    j.has_expected = j.has_lower = j.has_upper = true;
    EXPECT_LE(rendered(j, 4294967295u, DetectorKind::three_sigma).size(), kPredictionMaxLength);
}

TEST(RenderPrediction, LongestFits) {
    const std::string s = prediction(false, 4294967295u, -2.2250738585072014e-308);
    EXPECT_EQ(s, R"({"anomaly":false,"model_version":"v4294967295","score":-2.2250738585072014e-308})");
    EXPECT_LE(s.size(), kPredictionMaxLength);
}

TEST(RenderFit, ExactBytes) {
    EXPECT_EQ(render_fit("sensor_1", 3, 1000), R"({"series_id":"sensor_1","version":"v3","points_used":1000})");
    EXPECT_EQ(render_fit("a.b:c-d", 4294967295u, 18446744073709551615ull),
              R"({"series_id":"a.b:c-d","version":"v4294967295","points_used":18446744073709551615})");
    // an id is escaped if it ever needs to be
    EXPECT_EQ(render_fit("a\"b", 1, 10), R"({"series_id":"a\"b","version":"v1","points_used":10})");
}

TEST(RenderError, ExactBytes) {
    EXPECT_EQ(render_error(make_error(422, "invalid_value", "values[3] is not a finite number.")),
              R"({"detail":"values[3] is not a finite number.","code":"invalid_value"})");
    EXPECT_EQ(render_error(make_error(404, "series_not_found", "")), R"({"detail":"","code":"series_not_found"})");
}

TEST(RenderError, Escaping) {
    EXPECT_EQ(render_error(make_error(400, "malformed_json", "The key \"value\" appears twice.")),
              R"({"detail":"The key \"value\" appears twice.","code":"malformed_json"})");
    EXPECT_EQ(render_error(make_error(400, "x", "a\\b")), R"({"detail":"a\\b","code":"x"})");
    EXPECT_EQ(render_error(make_error(400, "x", "l1\nl2\r\tend")), R"({"detail":"l1\nl2\r\tend","code":"x"})");
    EXPECT_EQ(render_error(make_error(400, "x", std::string("\x01\x1f\x00\b\f", 5))),
              R"({"detail":"\u0001\u001f\u0000\u0008\u000c","code":"x"})");
    // DEL and UTF-8 pass through unchanged (JSON allows them)
    EXPECT_EQ(render_error(make_error(400, "x", "\x7f caf\xc3\xa9")), "{\"detail\":\"\x7f caf\xc3\xa9\",\"code\":\"x\"}");
}

TEST(RenderError, EveryControlCharacterEscaped) {
    for (int c = 0; c < 0x20; c++) {
        std::string out;
        append_json_string(&out, std::string(1, static_cast<char>(c)));
        ASSERT_GE(out.size(), 4u) << c;
        EXPECT_EQ(out.front(), '"');
        EXPECT_EQ(out.back(), '"');
        EXPECT_EQ(out[1], '\\') << c;
        for (char ch : out) EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << "raw control byte " << c;
        if (c != '\n' && c != '\r' && c != '\t') {
            char expected[8];
            std::snprintf(expected, sizeof(expected), "\\u%04x", c);
            EXPECT_EQ(out, std::string("\"") + expected + "\"") << c;
        }
    }
}

TEST(FormatDouble, NonFiniteIsNull) {
    EXPECT_EQ(fmt(std::numeric_limits<double>::infinity()), "null");
    EXPECT_EQ(fmt(-std::numeric_limits<double>::infinity()), "null");
    EXPECT_EQ(fmt(std::nan("")), "null");
    EXPECT_EQ(fmt(-std::nan("")), "null");
    std::string s = "x=";
    append_double(&s, std::numeric_limits<double>::quiet_NaN());
    EXPECT_EQ(s, "x=null");
}

TEST(FormatDouble, Shortest) {
    EXPECT_EQ(fmt(0.1), "0.1");
    EXPECT_EQ(fmt(0.1 + 0.2), "0.30000000000000004");
    EXPECT_EQ(fmt(4.25), "4.25");
    EXPECT_EQ(fmt(0), "0");
    EXPECT_EQ(fmt(-1), "-1");
    EXPECT_EQ(fmt(100), "100");
    EXPECT_EQ(fmt(1e21), "1e+21");
    EXPECT_EQ(fmt(1.5e-7), "1.5e-07");
    EXPECT_EQ(fmt(std::sqrt(8.25)), "2.8722813232690143");
    EXPECT_EQ(fmt(5e-324), "5e-324");
    EXPECT_EQ(fmt(1.7976931348623157e308), "1.7976931348623157e+308");
    std::string s;
    append_double(&s, 0.1);
    append_double(&s, -2.5);
    EXPECT_EQ(s, "0.1-2.5");
}

TEST(FormatDouble, RoundTripsAndIsJson) {
    std::mt19937_64 rng(8);
    for (int i = 0; i < 200000; i++) {
        std::uint64_t bits = rng();
        double d;
        std::memcpy(&d, &bits, sizeof(d));
        if (!std::isfinite(d)) continue;
        const std::string s = fmt(d);
        ASSERT_EQ(std::strtod(s.c_str(), nullptr), d) << s;
        // JSON number grammar: -?digits[.digits][e[+-]digits], no leading '+', no "inf"
        ASSERT_TRUE(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) << s;
        ASSERT_EQ(s.find_first_not_of("0123456789.-+e"), std::string::npos) << s;
    }
}

TEST(Iso8601, Milliseconds) {
    EXPECT_EQ(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(iso8601_ms(1700000000123), "2023-11-14T22:13:20.123Z");
    EXPECT_EQ(iso8601_ms(253402300799999), "9999-12-31T23:59:59.999Z");
}
