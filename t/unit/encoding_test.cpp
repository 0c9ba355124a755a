// The on-disk encoding: LevelDB keys, model records, training data records,
// plot envelope records.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/encoding.hpp"
#include "support.hpp"

using namespace anomaly;

namespace {

Model sample_model() {
    Model m;
    m.version = 3;
    m.kind = DetectorKind::three_sigma;
    m.points = 1000;
    m.mean = 12.5;
    m.std = 0.75;
    m.first_timestamp = 1700000000;
    m.last_timestamp = 1700059940;
    m.trained_at_ms = 1764000000123;
    return m;
}

bool bits_equal(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

::testing::AssertionResult same_model(const Model &a, const Model &b) {
    if (a.version != b.version || a.kind != b.kind || a.points != b.points || !bits_equal(a.mean, b.mean) ||
        !bits_equal(a.std, b.std) || a.first_timestamp != b.first_timestamp ||
        a.last_timestamp != b.last_timestamp || a.trained_at_ms != b.trained_at_ms)
        return ::testing::AssertionFailure()
               << "v" << a.version << "/" << b.version << " points " << a.points << "/" << b.points << " mean "
               << a.mean << "/" << b.mean << " std " << a.std << "/" << b.std << " first " << a.first_timestamp
               << "/" << b.first_timestamp << " last " << a.last_timestamp << "/" << b.last_timestamp
               << " trained " << a.trained_at_ms << "/" << b.trained_at_ms;
    return ::testing::AssertionSuccess();
}

std::string le(std::uint64_t v, int bytes) {
    std::string s;
    for (int i = 0; i < bytes; i++) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return s;
}

std::string le_double(double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, 8);
    return le(bits, 8);
}

TrainingData points(std::size_t n, std::int64_t t0, std::int64_t step, std::uint64_t seed = 1) {
    TrainingData d;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> dist(-1e6, 1e6);
    for (std::size_t i = 0; i < n; i++) {
        d.timestamps.push_back(t0 + step * static_cast<std::int64_t>(i));
        d.values.push_back(dist(rng));
    }
    return d;
}

::testing::AssertionResult same_data(const TrainingData &a, const TrainingData &b) {
    if (a.timestamps != b.timestamps) return ::testing::AssertionFailure() << "timestamps differ";
    if (a.values.size() != b.values.size()) return ::testing::AssertionFailure() << "value counts differ";
    for (std::size_t i = 0; i < a.values.size(); i++)
        if (!bits_equal(a.values[i], b.values[i])) return ::testing::AssertionFailure() << "values[" << i << "]";
    return ::testing::AssertionSuccess();
}

}  // namespace

// ---------------------------------------------------------------- keys

TEST(Keys, ExactBytes) {
    EXPECT_EQ(model_key("sensor_1", 3), std::string("m/sensor_1/\x00\x00\x00\x03", 15));
    EXPECT_EQ(training_data_key("sensor_1", 3), std::string("d/sensor_1/\x00\x00\x00\x03", 15));
    EXPECT_EQ(plot_envelope_key("sensor_1", 3), std::string("p/sensor_1/\x00\x00\x00\x03", 15));
    EXPECT_EQ(plot_envelope_key("a", 0x01020304), std::string("p/a/\x01\x02\x03\x04", 8));
    EXPECT_EQ(model_key("a", 0x01020304), std::string("m/a/\x01\x02\x03\x04", 8));
    EXPECT_EQ(model_key("a", 0xffffffffu), std::string("m/a/\xff\xff\xff\xff", 8));
    EXPECT_EQ(model_key("a", 256), std::string("m/a/\x00\x00\x01\x00", 8));
    const std::string id(128, 'z');
    EXPECT_EQ(model_key(id, 1), "m/" + id + "/" + std::string("\0\0\0\1", 4));
}

TEST(Keys, ParseModelKeyRoundTrip) {
    for (const std::string &id : std::vector<std::string>{"a", "sensor_1", "a.b", "x:y-z_0", std::string(128, 'q')}) {
        for (std::uint32_t v : {1u, 2u, 10u, 47u /* '/' */, 256u, 0x2f2f2f2fu, 65535u, 4294967295u}) {
            std::string_view got_id;
            std::uint32_t got_v = 0;
            const std::string key = model_key(id, v);
            ASSERT_TRUE(parse_model_key(key, &got_id, &got_v)) << id << " " << v;
            EXPECT_EQ(got_id, id);
            EXPECT_EQ(got_v, v);
        }
    }
}

TEST(Keys, ParseModelKeyRejects) {
    std::string_view id;
    std::uint32_t v = 0;
    EXPECT_FALSE(parse_model_key(training_data_key("a", 1), &id, &v)) << "not a model key";
    EXPECT_FALSE(parse_model_key("", &id, &v));
    EXPECT_FALSE(parse_model_key("m/", &id, &v));
    EXPECT_FALSE(parse_model_key(std::string("m//\0\0\0\1", 7), &id, &v)) << "empty id";
    EXPECT_FALSE(parse_model_key(std::string("m/a\0\0\0\1", 7), &id, &v)) << "no separator";
    EXPECT_FALSE(parse_model_key(std::string("m/ab/\0\0\1", 8), &id, &v)) << "3-byte version";
    EXPECT_FALSE(parse_model_key(std::string("x/a/\0\0\0\1", 8), &id, &v));
}

TEST(Keys, VersionsSortNumericallyByteWise) {
    EXPECT_LT(model_key("s", 2), model_key("s", 10));
    EXPECT_LT(model_key("s", 9), model_key("s", 10));
    EXPECT_LT(model_key("s", 255), model_key("s", 256));
    EXPECT_LT(model_key("s", 65535), model_key("s", 65536));
    EXPECT_LT(model_key("s", 1), model_key("s", 4294967295u));
    EXPECT_LT(training_data_key("s", 2), training_data_key("s", 10));
    std::vector<std::uint32_t> versions = {1, 2, 3, 9, 10, 11, 99, 100, 255, 256, 257, 1000, 65536, 16777216};
    std::vector<std::string> keys;
    for (auto v : versions) keys.push_back(model_key("series", v));
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));  // std::string compares bytes as unsigned char
}

TEST(Keys, SeriesNeverCollide) {
    // "a" and "a.b", and every other pair: distinct keys, and neither series'
    // keys are a prefix of the other's (no range scan of one picks up the other).
    const std::vector<std::string> ids = {"a", "a.b", "a.", "ab", "a-", "a:b", "a_b", "b", "A"};
    std::vector<std::string> keys;
    for (const auto &id : ids)
        for (std::uint32_t v : {1u, 2u, 0x2e2e2e2eu, 0x2f620000u})
            keys.push_back(model_key(id, v)), keys.push_back(training_data_key(id, v));
    std::vector<std::string> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "two keys are equal";
    const std::string a_prefix = "m/a/";
    for (std::uint32_t v : {1u, 2u, 0x2e2e2e2eu, 0x2f620000u}) {
        const std::string k = model_key("a.b", v);
        EXPECT_NE(k.compare(0, a_prefix.size(), a_prefix), 0);
        std::string_view id;
        std::uint32_t got = 0;
        ASSERT_TRUE(parse_model_key(k, &id, &got));
        EXPECT_EQ(id, "a.b");
        EXPECT_EQ(got, v);
    }
}

// ---------------------------------------------------------------- models

TEST(ModelRecord, Format1ExactLayout) {
    const Model m = sample_model();
    const std::string expected = le(1, 1) + le(1, 1) + le(2, 2) + le(3, 4) + le(1000, 8) + le(1700000000, 8) +
                                 le(1700059940, 8) + le(1764000000123, 8) + le_double(12.5) + le_double(0.75);
    EXPECT_EQ(encode_model_format1(m), expected);
    EXPECT_EQ(expected.size(), 56u);
}

// A store written before model images opens unchanged: its records become
// three-sigma images with the location's sigma and tail.
TEST(ModelRecord, Format1BecomesAnImage) {
    std::vector<Model> models;
    models.push_back(sample_model());
    for (double d : {-1e300, 1e300, -0.0, 4.9406564584124654e-324, -2.2250738585072014e-308,
                     std::numeric_limits<double>::max(), -std::numeric_limits<double>::max()}) {
        Model m = sample_model();
        m.mean = d;
        m.std = std::fabs(d) > 0 ? std::fabs(d) : 1;
        models.push_back(m);
    }
    Model big = sample_model();
    big.version = 4294967295u;
    big.points = 100000000;
    big.last_timestamp = kMaxTimestamp;
    big.trained_at_ms = -1;
    models.push_back(big);
    for (const Model &m : models) {
        std::string image;
        ASSERT_TRUE(decode_model(encode_model_format1(m), &image));
        EXPECT_TRUE(same_model(anomaly_test::three_sigma_model_of(image), m));
        EXPECT_EQ(header_of(image.data()).tail, kTailFromLocation);
        EXPECT_EQ(header_of(image.data()).sigma, 0);
        // Written again, it is the image itself (format 2), and reads back the same.
        std::string again;
        ASSERT_TRUE(decode_model(encode_model(image), &again));
        EXPECT_EQ(again, image);
    }
    // A mean or std no fit could give is refused, not judged with.
    for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), 0.0, -1.0}) {
        Model m = sample_model();
        m.std = bad;
        std::string image;
        EXPECT_FALSE(decode_model(encode_model_format1(m), &image)) << bad;
    }
}

TEST(ModelRecord, EveryTruncationRejected) {
    TrainingData d;
    for (int i = 0; i < 100; i++) {
        d.timestamps.push_back(1700000000 + 300 * i);
        d.values.push_back(i % 7);
    }
    std::vector<std::string> records = {encode_model_format1(sample_model())};
    for (DetectorKind kind : {DetectorKind::three_sigma, DetectorKind::robust, DetectorKind::seasonal}) {
        DetectorParams p;
        p.kind = kind;
        std::string image;
        ASSERT_FALSE(train(d, p, &image));
        records.push_back(encode_model(image));
    }
    for (const std::string &bytes : records) {
        for (std::size_t n = 0; n < bytes.size(); n++) {
            std::string out = "untouched";
            EXPECT_FALSE(decode_model(std::string_view(bytes.data(), n), &out)) << n;
            EXPECT_EQ(out, "untouched") << "a rejected record leaves the output alone";
        }
        std::string out;
        EXPECT_FALSE(decode_model(bytes + '\0', &out));
        EXPECT_FALSE(decode_model(bytes + le_double(1.0), &out));
    }
}

TEST(ModelRecord, WrongFormatRejected) {
    for (int f : {0, 3, 255}) {
        std::string bytes = encode_model_format1(sample_model());
        bytes[0] = static_cast<char>(f);
        std::string out;
        EXPECT_FALSE(decode_model(bytes, &out)) << f;
    }
}

TEST(ModelRecord, UnknownDetectorKindRejected) {
    for (int k : {0, 2, 3, 127, 255}) {
        std::string bytes = encode_model_format1(sample_model());
        bytes[1] = static_cast<char>(k);
        std::string out;
        EXPECT_FALSE(decode_model(bytes, &out)) << k;
    }
}

TEST(ModelRecord, WrongParameterCountRejected) {
    for (int c : {0, 1, 3, 0x0102}) {
        std::string bytes = encode_model_format1(sample_model());
        bytes[2] = static_cast<char>(c & 0xff);
        bytes[3] = static_cast<char>(c >> 8);
        std::string out;
        EXPECT_FALSE(decode_model(bytes, &out)) << c;
    }
    // three parameters and room for them: still not a three_sigma record
    std::string bytes = encode_model_format1(sample_model());
    bytes[2] = 3;
    std::string out;
    EXPECT_FALSE(decode_model(bytes + le_double(2.0), &out));
}

// ---------------------------------------------------------------- training data

TEST(TrainingDataRecord, ExactLayout) {
    TrainingData d;
    d.timestamps = {1700000000, 1700000060, 1700000060 + 300};
    d.values = {1.5, -2.0, 1e9};
    // header, values, first timestamp, varint deltas 60 (1 byte) and 300 (0xac 0x02)
    const std::string expected = le(1, 1) + le(0, 1) + le(0, 2) + le(0, 4) + le(3, 8) + le_double(1.5) +
                                 le_double(-2.0) + le_double(1e9) + le(1700000000, 8) + "\x3c" + "\xac\x02";
    EXPECT_EQ(encode_training_data(d), expected);
}

TEST(TrainingDataRecord, Empty) {
    const TrainingData d;
    const std::string bytes = encode_training_data(d);
    EXPECT_EQ(bytes, le(1, 1) + le(0, 1) + le(0, 2) + le(0, 4) + le(0, 8));
    TrainingData out = points(3, 1, 1);
    ASSERT_TRUE(decode_training_data(bytes, &out));
    EXPECT_TRUE(out.timestamps.empty());
    EXPECT_TRUE(out.values.empty());
}

TEST(TrainingDataRecord, OnePoint) {
    TrainingData d;
    d.timestamps = {253402300799};
    d.values = {-0.0};
    TrainingData out;
    ASSERT_TRUE(decode_training_data(encode_training_data(d), &out));
    EXPECT_TRUE(same_data(out, d));
    EXPECT_EQ(encode_training_data(d).size(), 16u + 8 + 8);
}

TEST(TrainingDataRecord, HundredThousandPoints) {
    TrainingData d = points(100000, 1600000000, 60, 11);
    TrainingData out;
    const std::string bytes = encode_training_data(d);
    EXPECT_EQ(bytes.size(), 16u + 100000 * 8 + 8 + 99999 * 1) << "a delta of 60 takes one byte";
    ASSERT_TRUE(decode_training_data(bytes, &out));
    EXPECT_TRUE(same_data(out, d));
}

TEST(TrainingDataRecord, IrregularAndHugeGaps) {
    TrainingData d;
    std::mt19937_64 rng(5);
    std::int64_t t = 0;
    for (int i = 0; i < 10000; i++) {
        d.timestamps.push_back(t);
        d.values.push_back(static_cast<double>(rng()) * (i % 2 ? -1 : 1));
        const int kind = i % 4;
        t += kind == 0 ? 1 : kind == 1 ? 127 : kind == 2 ? 128 : static_cast<std::int64_t>(rng() % 100000000);
        t += 1;
    }
    d.timestamps.push_back(INT64_MAX);  // the largest possible gap still decodes
    d.values.push_back(std::numeric_limits<double>::max());
    TrainingData out;
    ASSERT_TRUE(decode_training_data(encode_training_data(d), &out));
    EXPECT_TRUE(same_data(out, d));
}

TEST(TrainingDataRecord, EveryTruncationRejected) {
    for (std::int64_t step : {1, 60, 1000000}) {
        const std::string bytes = encode_training_data(points(20, 1700000000, step));
        for (std::size_t n = 0; n < bytes.size(); n++) {
            TrainingData out;
            EXPECT_FALSE(decode_training_data(std::string_view(bytes.data(), n), &out)) << step << " " << n;
        }
    }
    const std::string one = encode_training_data(points(1, 5, 1));
    for (std::size_t n = 0; n < one.size(); n++) {
        TrainingData out;
        EXPECT_FALSE(decode_training_data(std::string_view(one.data(), n), &out)) << n;
    }
}

TEST(TrainingDataRecord, ExtendedRejected) {
    for (std::size_t n : {0u, 1u, 5u}) {
        const std::string bytes = encode_training_data(points(n, 1700000000, 60));
        TrainingData out;
        EXPECT_FALSE(decode_training_data(bytes + '\x01', &out)) << n;
        EXPECT_FALSE(decode_training_data(bytes + std::string(8, '\0'), &out)) << n;
    }
}

TEST(TrainingDataRecord, WrongFormatRejected) {
    for (int f : {0, 2, 255}) {
        std::string bytes = encode_training_data(points(5, 1, 1));
        bytes[0] = static_cast<char>(f);
        TrainingData out;
        EXPECT_FALSE(decode_training_data(bytes, &out)) << f;
    }
}

TEST(TrainingDataRecord, DamageRejected) {
    TrainingData out;
    // a count far larger than the record
    std::string bytes = encode_training_data(points(5, 1, 1));
    std::string huge = bytes;
    for (int i = 8; i < 16; i++) huge[i] = '\xff';
    EXPECT_FALSE(decode_training_data(huge, &out));
    std::string more = bytes;
    more[8] = 6;
    EXPECT_FALSE(decode_training_data(more, &out));
    std::string fewer = bytes;
    fewer[8] = 4;
    EXPECT_FALSE(decode_training_data(fewer, &out));
    // a zero delta (timestamps must strictly increase)
    TrainingData d = points(3, 100, 1);
    std::string zero = encode_training_data(d);
    zero[zero.size() - 1] = 0;
    EXPECT_FALSE(decode_training_data(zero, &out));
    // a delta that overflows int64
    TrainingData big;
    big.timestamps = {INT64_MAX - 10, INT64_MAX};
    big.values = {1, 2};
    std::string overflow = encode_training_data(big);
    overflow[overflow.size() - 1] = static_cast<char>(overflow[overflow.size() - 1] + 1);  // delta 10 -> 11
    EXPECT_FALSE(decode_training_data(overflow, &out));
    // a varint that never ends
    std::string endless = encode_training_data(points(2, 1, 1));
    endless.back() = '\x81';
    endless += std::string(12, '\x80');
    EXPECT_FALSE(decode_training_data(endless, &out));
}

// ---------------------------------------------------------------- plot envelopes

namespace {

PlotEnvelope sample_envelope() {
    PlotEnvelope e;
    e.points = 1000;
    e.first_timestamp = 1700000000;
    e.last_timestamp = 1700059940;
    e.columns = {{0, -1.5, 2.0}, {7, 1e9, 1e9 + 0.25}, {959, -0.0, 0.0}};
    return e;
}

::testing::AssertionResult same_envelope(const PlotEnvelope &a, const PlotEnvelope &b) {
    if (a.points != b.points || a.first_timestamp != b.first_timestamp || a.last_timestamp != b.last_timestamp ||
        a.columns.size() != b.columns.size())
        return ::testing::AssertionFailure() << "header differs";
    for (std::size_t i = 0; i < a.columns.size(); i++)
        if (a.columns[i].column != b.columns[i].column || !bits_equal(a.columns[i].min, b.columns[i].min) ||
            !bits_equal(a.columns[i].max, b.columns[i].max))
            return ::testing::AssertionFailure() << "columns[" << i << "] differs";
    return ::testing::AssertionSuccess();
}

// Sets the u16 column, f64 min and f64 max of the i-th column in a record.
std::string with_column(std::string bytes, std::size_t i, int column, double min, double max) {
    return bytes.replace(32 + 18 * i, 18, le(static_cast<std::uint64_t>(column), 2) + le_double(min) + le_double(max));
}

}  // namespace

TEST(PlotEnvelopeRecord, ExactLayout) {
    const std::string expected = le(1, 1) + le(0, 1) + le(3, 2) + le(0, 4) + le(1000, 8) + le(1700000000, 8) +
                                 le(1700059940, 8) + le(0, 2) + le_double(-1.5) + le_double(2.0) + le(7, 2) +
                                 le_double(1e9) + le_double(1e9 + 0.25) + le(959, 2) + le_double(-0.0) +
                                 le_double(0.0);
    EXPECT_EQ(encode_plot_envelope(sample_envelope()), expected);
}

TEST(PlotEnvelopeRecord, RoundTrip) {
    std::vector<PlotEnvelope> envelopes = {sample_envelope(), summarize_for_plot(points(1, 0, 1)),
                                           summarize_for_plot(points(5000, 1600000000, 7, 3)), PlotEnvelope()};
    TrainingData last;  // the latest timestamps a fit accepts
    last.timestamps = {kMaxTimestamp - 1, kMaxTimestamp};
    last.values = {-std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
    envelopes.push_back(summarize_for_plot(last));
    for (const PlotEnvelope &e : envelopes) {
        PlotEnvelope out;
        out.points = 42;
        ASSERT_TRUE(decode_plot_envelope(encode_plot_envelope(e), &out)) << e.points;
        EXPECT_TRUE(same_envelope(out, e));
    }
}

// What /plot reads of a 1M-point version instead of its 16 MB of training data.
TEST(PlotEnvelopeRecord, MillionPointsTakeAFewKilobytes) {
    const PlotEnvelope e = summarize_for_plot(points(1000000, 1600000000, 60, 9));
    const std::string bytes = encode_plot_envelope(e);
    EXPECT_EQ(bytes.size(), 32u + 18 * kPlotColumns);
    std::printf("plot envelope of 1M points: %zu bytes\n", bytes.size());
    PlotEnvelope out;
    ASSERT_TRUE(decode_plot_envelope(bytes, &out));
    EXPECT_TRUE(same_envelope(out, e));
}

TEST(PlotEnvelopeRecord, EveryTruncationAndExtensionRejected) {
    for (const PlotEnvelope &e : {sample_envelope(), PlotEnvelope()}) {
        const std::string bytes = encode_plot_envelope(e);
        for (std::size_t n = 0; n < bytes.size(); n++) {
            PlotEnvelope out = sample_envelope();
            EXPECT_FALSE(decode_plot_envelope(std::string_view(bytes.data(), n), &out)) << n;
            EXPECT_TRUE(same_envelope(out, sample_envelope())) << "a rejected record leaves the output alone";
        }
        PlotEnvelope out;
        EXPECT_FALSE(decode_plot_envelope(bytes + '\0', &out));
        EXPECT_FALSE(decode_plot_envelope(bytes + std::string(18, '\0'), &out)) << "a column more than counted";
    }
}

TEST(PlotEnvelopeRecord, DamageRejected) {
    const std::string good = encode_plot_envelope(sample_envelope());
    PlotEnvelope out;
    ASSERT_TRUE(decode_plot_envelope(good, &out));
    auto patched = [&](std::size_t at, const std::string &bytes) { return std::string(good).replace(at, bytes.size(), bytes); };
    const std::vector<std::pair<std::string, std::string>> damaged = {
        {"format 0", patched(0, le(0, 1))},
        {"format 2", patched(0, le(2, 1))},
        {"reserved byte", patched(1, le(1, 1))},
        {"reserved word", patched(4, le(1, 4))},
        {"count one more", patched(2, le(4, 2))},
        {"count one less", patched(2, le(2, 2))},
        {"count beyond the columns", patched(2, le(0xffff, 2))},
        {"more columns than points", patched(8, le(2, 8))},
        {"points but no columns", encode_plot_envelope([] { PlotEnvelope e; e.points = 5; return e; }())},
        {"negative first timestamp", patched(16, le(static_cast<std::uint64_t>(-1), 8))},
        {"last beyond year 9999", patched(24, le(kMaxTimestamp + 1, 8))},
        {"last before first", patched(24, le(1699999999, 8))},
        {"the largest span", patched(16, le(static_cast<std::uint64_t>(INT64_MIN), 8)).replace(24, 8, le(INT64_MAX, 8))},
        {"column beyond the plot", with_column(good, 2, kPlotColumns, 0, 0)},
        {"columns out of order", with_column(good, 1, 0, 1, 2)},
        {"column repeated", with_column(good, 2, 7, 1, 2)},
        {"min above max", with_column(good, 1, 7, 2, 1)},
        {"NaN min", with_column(good, 1, 7, std::nan(""), 1)},
        {"NaN max", with_column(good, 1, 7, 1, std::nan(""))},
        {"infinite max", with_column(good, 1, 7, 1, std::numeric_limits<double>::infinity())},
        {"infinite min", with_column(good, 1, 7, -std::numeric_limits<double>::infinity(), 1)},
    };
    for (const auto &[what, bytes] : damaged) EXPECT_FALSE(decode_plot_envelope(bytes, &out)) << what;
    PlotEnvelope empty_with_time;
    empty_with_time.first_timestamp = empty_with_time.last_timestamp = 5;
    EXPECT_FALSE(decode_plot_envelope(encode_plot_envelope(empty_with_time), &out));
}

// Random bytes and random damage to a good record never decode into
// something out of range (the fuzz target in t/fuzz/records.cpp goes further).
TEST(PlotEnvelopeRecord, RandomDamageNeverDecodesOutOfRange) {
    const std::string good = encode_plot_envelope(summarize_for_plot(points(3000, 1700000000, 13, 4)));
    std::mt19937_64 rng(17);
    for (int round = 0; round < 20000; round++) {
        std::string bytes = good;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int f = 0; f < flips; f++) bytes[rng() % bytes.size()] = static_cast<char>(rng());
        if (round % 4 == 0) bytes.resize(rng() % (bytes.size() + 40), '\x5a');
        PlotEnvelope out;
        if (!decode_plot_envelope(bytes, &out)) continue;
        ASSERT_LE(out.columns.size(), static_cast<std::size_t>(kPlotColumns));
        ASSERT_LE(out.columns.size(), out.points);
        ASSERT_LE(0, out.first_timestamp);
        ASSERT_LE(out.first_timestamp, out.last_timestamp);
        ASSERT_LE(out.last_timestamp, kMaxTimestamp);
        for (std::size_t i = 0; i < out.columns.size(); i++) {
            ASSERT_LT(out.columns[i].column, kPlotColumns);
            ASSERT_TRUE(i == 0 || out.columns[i - 1].column < out.columns[i].column);
            ASSERT_TRUE(std::isfinite(out.columns[i].min) && out.columns[i].min <= out.columns[i].max);
        }
        ASSERT_EQ(encode_plot_envelope(out), bytes) << "what decodes is what the encoder writes";
    }
}
