// Series ids, versions, the detector, the encoding, histograms, rendering.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "core/detector.hpp"
#include "core/encoding.hpp"
#include "core/histogram.hpp"
#include "core/metrics.hpp"
#include "core/plot.hpp"
#include "core/render.hpp"
#include "core/series.hpp"

using namespace anomaly;

TEST(SeriesId, AcceptsTheDocumentedAlphabet) {
    EXPECT_TRUE(is_valid_series_id("sensor_1"));
    EXPECT_TRUE(is_valid_series_id("A-Z.a:z_0-9"));
    EXPECT_TRUE(is_valid_series_id(std::string(128, 'x')));
    EXPECT_FALSE(is_valid_series_id(std::string(129, 'x')));
    EXPECT_FALSE(is_valid_series_id(""));
    for (const char *bad : {"a/b", "a%2Fb", "a b", "a\"b", "é", "a\\b", "a?b"}) EXPECT_FALSE(is_valid_series_id(bad)) << bad;
    EXPECT_FALSE(is_valid_series_id(std::string_view("a\0b", 3)));
}

TEST(Version, AcceptsV3And3Only) {
    std::uint32_t v = 0;
    EXPECT_TRUE(parse_version("v3", &v));
    EXPECT_EQ(v, 3u);
    EXPECT_TRUE(parse_version("3", &v));
    EXPECT_EQ(v, 3u);
    EXPECT_TRUE(parse_version("V12", &v));
    EXPECT_EQ(v, 12u);
    EXPECT_TRUE(parse_version("v4294967295", &v));
    EXPECT_EQ(v, 4294967295u);
    for (const char *bad : {"", "v", "v0", "0", "-1", "3.0", "v4294967296", " v3", "v3 ", "vv3", "x"})
        EXPECT_FALSE(parse_version(bad, &v)) << bad;
}

TEST(Detector, MeanAndPopulationStd) {
    TrainingData d;
    for (int i = 1; i <= 10; i++) {
        d.timestamps.push_back(1000 + i);
        d.values.push_back(i);
    }
    Model m = train_three_sigma(d);
    EXPECT_DOUBLE_EQ(m.mean, 5.5);
    EXPECT_DOUBLE_EQ(m.std, std::sqrt(8.25));  // sum of squared deviations 82.5, over n = 10
    EXPECT_EQ(m.points, 10u);
    EXPECT_EQ(m.first_timestamp, 1001);
    EXPECT_EQ(m.last_timestamp, 1010);
    EXPECT_EQ(m.kind, DetectorKind::three_sigma);
}

// A one-pass sum of squares computes E[x^2] - E[x]^2 = ~1e18 - ~1e18 in
// doubles with 16 digits: the 1e-6 variance vanishes in the rounding.
TEST(Detector, LargeOffsetTinySpread) {
    TrainingData d;
    for (int i = 0; i < 3000; i++) {
        d.timestamps.push_back(i);
        d.values.push_back(1e9 + 0.001 * (1 + i % 3));
    }
    Model m = train_three_sigma(d);
    // 1e9 + 0.001 is not a double; the exact deviations of the doubles we do
    // hold are v - 1e9 (exact: the two are within a factor of two).
    double dev_mean = 0, dev_sq = 0, sum = 0, sum_sq = 0;
    for (double v : d.values) dev_mean += (v - 1e9) / 3000;
    for (double v : d.values) dev_sq += (v - 1e9 - dev_mean) * (v - 1e9 - dev_mean) / 3000;
    const double expected = std::sqrt(dev_sq);
    EXPECT_NEAR(expected / (std::sqrt(2.0 / 3.0) * 0.001), 1.0, 1e-4) << "the data is what the test means";
    EXPECT_NEAR(m.mean - 1e9, dev_mean, 1.2e-7);  // one ulp of a double near 1e9
    EXPECT_NEAR(m.std / expected, 1.0, 1e-9);
    // The naive formula this guards against:
    for (double v : d.values) {
        sum += v;
        sum_sq += v * v;
    }
    const double naive_var = sum_sq / 3000 - (sum / 3000) * (sum / 3000);
    EXPECT_GT(std::fabs(std::sqrt(std::fabs(naive_var)) / expected - 1.0), 0.1) << "one pass would fail this test";
}

TEST(Detector, ConstantSeriesHasZeroStd) {
    TrainingData d;
    for (int i = 0; i < 100; i++) {
        d.timestamps.push_back(i);
        d.values.push_back(0.1 + 0.2);  // not exactly representable: still identical
    }
    EXPECT_EQ(train_three_sigma(d).std, 0.0);
}

TEST(Detector, TailsAndScore) {
    Model m;
    m.mean = 10;
    m.std = 2;
    Prediction p = predict(m, 17, 3, Tail::both);
    EXPECT_TRUE(p.anomaly);
    EXPECT_DOUBLE_EQ(p.score, 3.5);
    EXPECT_TRUE(predict(m, 3, 3, Tail::both).anomaly);
    EXPECT_DOUBLE_EQ(predict(m, 3, 3, Tail::both).score, -3.5);
    EXPECT_FALSE(predict(m, 16, 3, Tail::both).anomaly);  // exactly k std: not beyond
    EXPECT_FALSE(predict(m, 4, 3, Tail::both).anomaly);
    // upper reproduces value > mean + k * std, one-sided
    EXPECT_FALSE(predict(m, 3, 3, Tail::upper).anomaly);
    EXPECT_FALSE(predict(m, 16, 3, Tail::upper).anomaly);
    EXPECT_TRUE(predict(m, std::nextafter(16.0, 17.0), 3, Tail::upper).anomaly);
    EXPECT_TRUE(predict(m, 3, 3, Tail::lower).anomaly);
    EXPECT_FALSE(predict(m, 17, 3, Tail::lower).anomaly);
    EXPECT_FALSE(predict(m, 17, 4, Tail::both).anomaly);
}

TEST(Encoding, ModelRoundTrip) {
    Model m;
    m.version = 4000000000u;
    m.points = 123456789;
    m.mean = -1.5e-300;
    m.std = 1.7976931348623157e308;
    m.first_timestamp = 0;
    m.last_timestamp = 253402300799;
    m.trained_at_ms = 1764000000123;
    std::string bytes = encode_model(m);
    EXPECT_EQ(bytes[0], 1) << "format version first";
    EXPECT_EQ(bytes[1], 1) << "detector kind three_sigma";
    Model back;
    ASSERT_TRUE(decode_model(bytes, &back));
    EXPECT_EQ(back.version, m.version);
    EXPECT_EQ(back.points, m.points);
    EXPECT_EQ(back.mean, m.mean);
    EXPECT_EQ(back.std, m.std);
    EXPECT_EQ(back.last_timestamp, m.last_timestamp);
    EXPECT_EQ(back.trained_at_ms, m.trained_at_ms);
    for (std::size_t k = 0; k < bytes.size(); k++) EXPECT_FALSE(decode_model(bytes.substr(0, k), &back)) << k;
    EXPECT_FALSE(decode_model(bytes + "x", &back));
    std::string other_format = bytes, other_kind = bytes;
    other_format[0] = 2;
    other_kind[1] = 9;
    EXPECT_FALSE(decode_model(other_format, &back));
    EXPECT_FALSE(decode_model(other_kind, &back));
}

TEST(Encoding, FixedLittleEndianLayout) {
    Model m;
    m.version = 0x01020304;
    std::string b = encode_model(m);
    EXPECT_EQ(static_cast<unsigned char>(b[4]), 0x04);
    EXPECT_EQ(static_cast<unsigned char>(b[7]), 0x01);
}

TEST(Encoding, TrainingDataRoundTrip) {
    for (std::size_t n : {0u, 1u, 2u, 1000u, 100000u}) {
        TrainingData d;
        std::mt19937_64 rng(n);
        std::int64_t t = 1700000000;
        for (std::size_t i = 0; i < n; i++) {
            t += 1 + static_cast<std::int64_t>(rng() % (i % 10 == 0 ? 100000000 : 60));
            d.timestamps.push_back(t);
            d.values.push_back(std::ldexp(static_cast<double>(rng() % 1000000) - 500000, static_cast<int>(rng() % 200) - 100));
        }
        std::string bytes = encode_training_data(d);
        TrainingData back;
        ASSERT_TRUE(decode_training_data(bytes, &back)) << n;
        EXPECT_EQ(back.timestamps, d.timestamps);
        EXPECT_EQ(back.values, d.values);
        if (n <= 1000) {
            for (std::size_t k = 0; k < bytes.size(); k++)
                EXPECT_FALSE(decode_training_data(bytes.substr(0, k), &back)) << n << " cut at " << k;
        }
        EXPECT_FALSE(decode_training_data(bytes + "x", &back));
    }
}

TEST(Encoding, EvenlySpacedTimestampsAreCompact) {
    TrainingData d;
    for (int i = 0; i < 1000; i++) {
        d.timestamps.push_back(1700000000 + 60 * i);
        d.values.push_back(i);
    }
    EXPECT_EQ(encode_training_data(d).size(), 16u + 8000u + 8u + 999u);
}

TEST(Encoding, Keys) {
    EXPECT_EQ(model_key("s1", 3), std::string("m/s1/\0\0\0\x03", 9));
    EXPECT_EQ(training_data_key("s1", 258), std::string("d/s1/\0\0\x01\x02", 9));
    EXPECT_LT(model_key("s", 2), model_key("s", 10)) << "versions sort numerically";
    EXPECT_LT(model_key("s", 255), model_key("s", 256));
    // "a"'s versions never interleave with "a.b"'s: '/' sorts before '.'? no: it is simply never in an id
    EXPECT_NE(model_key("a", 0x2e62), model_key("a.b", 0).substr(0, 8));
    std::string_view series;
    std::uint32_t version = 0;
    ASSERT_TRUE(parse_model_key(model_key("sensor:1", 77), &series, &version));
    EXPECT_EQ(series, "sensor:1");
    EXPECT_EQ(version, 77u);
    EXPECT_FALSE(parse_model_key(training_data_key("x", 1), &series, &version));
    EXPECT_FALSE(parse_model_key("m/", &series, &version));
}

TEST(Histogram, BucketsCoverEveryValue) {
    for (std::uint64_t v : {0ull, 1ull, 15ull, 16ull, 17ull, 31ull, 32ull, 1000ull, 123456789ull, 1ull << 40}) {
        std::size_t b = LatencyHistogram::bucket_of(v);
        EXPECT_LE(LatencyHistogram::bucket_lower(b), v) << v;
        EXPECT_LT(v, LatencyHistogram::bucket_upper(b)) << v;
    }
    EXPECT_EQ(LatencyHistogram::bucket_of(~0ull), LatencyHistogram::kBuckets - 1);
    std::mt19937_64 rng(1);
    for (int i = 0; i < 100000; i++) {
        std::uint64_t v = rng() >> (rng() % 40 + 24);  // below 2^40: larger values clamp to the last bucket
        std::size_t b = LatencyHistogram::bucket_of(v);
        ASSERT_LT(b, LatencyHistogram::kBuckets);
        ASSERT_LE(LatencyHistogram::bucket_lower(b), v);
        ASSERT_LT(v, LatencyHistogram::bucket_upper(b));
    }
}

double exact_quantile(std::vector<std::uint64_t> v, double q) {
    std::sort(v.begin(), v.end());
    std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    return static_cast<double>(v[std::max<std::size_t>(rank, 1) - 1]);
}

TEST(Histogram, QuantilesWithinFivePercent) {
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::uint64_t> uniform(1000, 2000000);
    std::lognormal_distribution<double> lognormal(10, 1.5);
    std::vector<std::vector<std::uint64_t>> sets(4);
    for (int i = 0; i < 200000; i++) {
        sets[0].push_back(uniform(rng));
        sets[1].push_back(static_cast<std::uint64_t>(lognormal(rng)) + 1);
        sets[2].push_back(i % 10 < 9 ? 5000 + rng() % 1000 : 3000000 + rng() % 100000);
        sets[3].push_back(1 + rng() % 1000000000);
    }
    for (auto &values : sets) {
        auto *h = new LatencyHistogram();
        for (std::uint64_t v : values) h->record(v);
        LatencySummary s;
        s.add(*h);
        for (double q : {0.5, 0.95, 0.99}) {
            double exact = exact_quantile(values, q);
            EXPECT_NEAR(s.quantile_ms(q) * 1e6 / exact, 1.0, 0.05) << "q " << q;
        }
        double sum = 0;
        for (std::uint64_t v : values) sum += static_cast<double>(v);
        EXPECT_NEAR(s.avg_ms(), sum / static_cast<double>(values.size()) / 1e6, 1e-9);
        delete h;
    }
}

TEST(Histogram, MergingEqualsOneHistogram) {
    auto *a = new LatencyHistogram(), *b = new LatencyHistogram(), *all = new LatencyHistogram();
    for (std::uint64_t v = 1; v < 100000; v += 7) {
        (v % 2 ? a : b)->record(v * 13);
        all->record(v * 13);
    }
    LatencySummary merged, one;
    merged.add(*a);
    merged.add(*b);
    one.add(*all);
    EXPECT_EQ(merged.count(), one.count());
    EXPECT_EQ(merged.quantile_ms(0.95), one.quantile_ms(0.95));
    EXPECT_EQ(merged.count_below(1000000), one.count_below(1000000));
    EXPECT_EQ(one.count_below(~0ull >> 1), one.count());
    delete a;
    delete b;
    delete all;
}

TEST(Render, Prediction) {
    char buf[kPredictionMaxLength];
    std::size_t n = render_prediction(buf, true, 3, 4.25);
    EXPECT_EQ(std::string(buf, n), "{\"anomaly\":true,\"model_version\":\"v3\",\"score\":4.25}");
    n = render_prediction(buf, false, 4294967295u, -1.0000000000000002e-300);
    EXPECT_EQ(std::string(buf, n),
              "{\"anomaly\":false,\"model_version\":\"v4294967295\",\"score\":-1.0000000000000002e-300}");
    EXPECT_LE(n, kPredictionMaxLength);
}

TEST(Render, ErrorsAndEscaping) {
    EXPECT_EQ(render_error(make_error(422, "invalid_value", "a \"b\" \\ c\n\x01")),
              "{\"detail\":\"a \\\"b\\\" \\\\ c\\n\\u0001\",\"code\":\"invalid_value\"}");
    EXPECT_EQ(render_fit("s1", 2, 1000), "{\"series_id\":\"s1\",\"version\":\"v2\",\"points_used\":1000}");
    std::string out;
    append_double(&out, 0.1);
    EXPECT_EQ(out, "0.1");
    char buf[32];
    EXPECT_EQ(std::string(buf, format_double(buf, NAN)), "null");
    EXPECT_EQ(std::string(buf, format_double(buf, INFINITY)), "null");
    EXPECT_EQ(iso8601_ms(1700000000123), "2023-11-14T22:13:20.123Z");
}

TEST(Metrics, RateWindowCountsWholeSeconds) {
    RateWindow w{};
    for (int i = 0; i < 5; i++) w.add(1000);
    for (int i = 0; i < 3; i++) w.add(1001);
    w.add(1009);
    EXPECT_EQ(w.total(1010, 10), 9u);
    EXPECT_EQ(w.total(1002, 10), 8u);
    EXPECT_EQ(w.total(1001, 10), 5u) << "the current second is not counted";
    EXPECT_EQ(w.total(1011, 10), 4u) << "second 1000 left the window";
    w.add(1000 + RateWindow::kSeconds);  // same slot as second 1000: reused
    EXPECT_EQ(w.total(1000 + RateWindow::kSeconds + 1, 10), 1u);
    EXPECT_EQ(w.total(1000 + RateWindow::kSeconds + 1, 60), 2u) << "1009 and 1064";
    EXPECT_EQ(status_slot(200), 0u);
    EXPECT_EQ(status_slot(507), kStatusSlots - 2);
    EXPECT_EQ(status_slot(418), kStatusSlots - 1);
}

TEST(Metrics, PrometheusFamiliesOnce) {
    Metrics m;
    m.endpoints.resize(2);
    m.endpoints[0].endpoint = "predict";
    m.endpoints[1].endpoint = "fit";
    for (auto &e : m.endpoints) {
        std::fill(std::begin(e.status_counts), std::end(e.status_counts), 1);
        e.buckets = {{0.001, 1}, {0.01, 2}};
        e.count = 3;
        e.sum_seconds = 0.5;
    }
    std::string text = render_prometheus(m);
    for (const char *family : {"anomaly_requests_total", "anomaly_request_duration_seconds", "anomaly_series"}) {
        std::string help = std::string("# HELP ") + family + " ";
        std::string type = std::string("# TYPE ") + family + " ";
        EXPECT_EQ(text.find(help), text.rfind(help)) << family;
        EXPECT_NE(text.find(type), std::string::npos) << family;
    }
    EXPECT_NE(text.find("anomaly_request_duration_seconds_bucket{endpoint=\"fit\",le=\"+Inf\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("anomaly_request_duration_seconds_sum{endpoint=\"predict\"} 0.5\n"), std::string::npos);
    EXPECT_NE(text.find("anomaly_requests_total{endpoint=\"predict\",status=\"other\"} 1\n"), std::string::npos);
}

TEST(Plot, BoundedWellFormedAndMarksOutliers) {
    TrainingData d;
    for (int i = 0; i < 1000000; i++) {
        d.timestamps.push_back(1700000000 + 60LL * i);
        d.values.push_back(50 + (i % 11) - 5 + (i == 500000 ? 1000 : 0));
    }
    Model m = train_three_sigma(d);
    m.version = 2;
    PlotInput in;
    in.series_id = "a<b";
    in.model = &m;
    in.data = &d;
    std::string svg = render_plot(in);
    EXPECT_LT(svg.size(), 300000u);
    EXPECT_EQ(svg.rfind("</svg>\n"), svg.size() - 7);
    EXPECT_NE(svg.find(">a&lt;b</text>"), std::string::npos) << "the id is escaped";
    EXPECT_NE(svg.find("v2, 1000000 points"), std::string::npos);
    std::size_t outliers = 0;
    for (std::size_t p = svg.find("class=\"outlier\""); p != std::string::npos; p = svg.find("class=\"outlier\"", p + 1))
        outliers++;
    EXPECT_EQ(outliers, 1u);
    // every opened element is closed: count < and /> plus </
    std::size_t opens = 0, closes = 0;
    for (std::size_t i = 0; i + 1 < svg.size(); i++) {
        if (svg[i] == '<' && svg[i + 1] != '/' && svg[i + 1] != '?') opens++;
        if ((svg[i] == '/' && svg[i + 1] == '>') || (svg[i] == '<' && svg[i + 1] == '/')) closes++;
    }
    EXPECT_EQ(opens, closes);
    in.tail = Tail::lower;
    std::string lower = render_plot(in);
    EXPECT_EQ(lower.find("class=\"outlier\""), std::string::npos) << "a spike above is not an outlier for tail lower";
}
