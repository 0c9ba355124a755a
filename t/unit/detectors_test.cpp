// The detectors behind model images: what each is for, shown on data where
// it matters, and the image format they share (check_image, calibration).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/detector.hpp"
#include "core/detectors/robust.hpp"
#include "core/detectors/seasonal.hpp"
#include "core/model.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::kMonday;
using anomaly_test::noisy;

namespace {

std::string trained(const TrainingData &d, DetectorParams p) {
    std::string image;
    Error e = train(d, p, &image);
    EXPECT_FALSE(e) << e.code << ": " << e.detail;
    EXPECT_TRUE(check_image(image));
    return image;
}

Judgement at(const std::string &image, double value, std::int64_t t = kMonday) {
    return judge(header_of(image.data()), value, t, JudgeDefaults{});
}

DetectorParams of(DetectorKind kind) {
    DetectorParams p;
    p.kind = kind;
    return p;
}

}  // namespace

TEST(ThreeSigma, ImageJudgesAsTheChallengesModel) {
    const TrainingData d = noisy(500, 40, 5, 1);
    const std::string image = trained(d, of(DetectorKind::three_sigma));
    const Model m = train_three_sigma(d);
    EXPECT_EQ(image.size(), 64u) << "three_sigma's image is the header and two doubles";
    for (double v : {-100.0, 0.0, 25.0, 40.0, 54.9, 55.1, 1e300}) {
        for (Tail tail : {Tail::both, Tail::upper, Tail::lower}) {
            const Prediction p = predict(m, v, 3, tail);
            const Judgement j = judge(header_of(image.data()), v, kMonday, JudgeDefaults{3, tail});
            EXPECT_EQ(j.anomaly, p.anomaly) << v;
            EXPECT_EQ(j.score, p.score) << v;
        }
    }
    const Judgement j = at(image, 40);
    EXPECT_EQ(j.expected_value, m.mean);
    EXPECT_EQ(j.lower, m.mean - 3 * m.std);
    EXPECT_EQ(j.upper, m.mean + 3 * m.std);
}

TEST(Calibration, BoundaryAtSeventyForEverySigmaDetector) {
    EXPECT_EQ(sigma_anomaly_score(0), 0);
    EXPECT_NEAR(sigma_anomaly_score(1), 70, 1e-12);
    EXPECT_EQ(sigma_anomaly_score(INFINITY), 100);
    double last = -1;
    for (double r = 0; r < 50; r += 0.01) {
        const double s = sigma_anomaly_score(r);
        EXPECT_GT(s, last);
        EXPECT_LE(s, 100);
        last = s;
    }
    EXPECT_GT(sigma_anomaly_score(100), sigma_anomaly_score(10)) << "resolution far out, for thresholds";
    // k from the version, else from the location.
    const TrainingData d = noisy(500, 0, 1, 2);
    DetectorParams p = of(DetectorKind::robust);
    const std::string loc = trained(d, p);
    const Judgement j = at(loc, 0);
    const double spread = (j.upper - j.expected_value) / 3;
    const double edge = j.expected_value + 3 * spread;
    EXPECT_NEAR(at(loc, edge).anomaly_score, 70, 1e-6);
    EXPECT_NEAR(judge(header_of(loc.data()), j.expected_value + 2 * spread, kMonday, JudgeDefaults{2, Tail::both})
                    .anomaly_score, 70, 1e-6);
    p.sigma = 2;
    const std::string own = trained(d, p);
    EXPECT_NEAR(judge(header_of(own.data()), j.expected_value + 2 * spread, kMonday, JudgeDefaults{5, Tail::both})
                    .anomaly_score, 70, 1e-6)
        << "a sigma stored with the version wins over the location's";
}

// robust is for training data that already holds outliers: 5% spikes widen
// three_sigma's band until a real incident passes as normal.
TEST(Robust, KeepsAUsableBandWhenFivePercentAreSpikes) {
    TrainingData d = noisy(2000, 100, 2, 3);
    for (std::size_t i = 0; i < d.values.size(); i += 20) d.values[i] = 1000;  // 5% spikes
    const std::string sigma = trained(d, of(DetectorKind::three_sigma));
    const std::string robust = trained(d, of(DetectorKind::robust));
    // An incident at 130 (15 of the usual spreads above normal).
    EXPECT_FALSE(at(sigma, 130).anomaly) << "three_sigma's band was widened by the spikes";
    EXPECT_TRUE(at(robust, 130).anomaly);
    EXPECT_FALSE(at(robust, 104).anomaly) << "ordinary noise stays normal";
    EXPECT_NEAR(at(robust, 100).expected_value, 100, 0.5);
    EXPECT_NEAR((at(robust, 100).upper - 100) / 3, 2, 0.3) << "the spread is the noise's, not the spikes'";
}

TEST(Robust, MostlyEqualValuesStillHaveASpread) {
    TrainingData d = noisy(100, 0, 1, 4);
    for (std::size_t i = 0; i < 80; i++) d.values[i] = 7;  // MAD 0
    const std::string image = trained(d, of(DetectorKind::robust));
    EXPECT_GT(at(image, 7).upper, 7);
    EXPECT_TRUE(at(image, 1e6).anomaly);
    TrainingData flat = noisy(10, 0, 1, 5);
    for (double &v : flat.values) v = 3;
    std::string none;
    EXPECT_EQ(train(flat, of(DetectorKind::robust), &none).code, std::string("constant_series"));
}

// seasonal is for data with a daily rhythm: busy at noon, quiet at night.
TEST(Seasonal, QuietHourValueNormalAtNoonIsAnomalous) {
    TrainingData d;
    std::mt19937_64 rng(6);
    std::normal_distribution<double> noise(0, 3);
    for (int i = 0; i < 14 * 24 * 12; i++) {  // two weeks, every 5 minutes
        const std::int64_t t = kMonday + 300 * i;
        const double hour = static_cast<double>((t % 86400)) / 3600;
        d.timestamps.push_back(t);
        d.values.push_back(100 + 80 * std::sin((hour - 6) / 24 * 2 * M_PI) + noise(rng));
    }
    const std::string seasonal = trained(d, of(DetectorKind::seasonal));
    const std::string sigma = trained(d, of(DetectorKind::three_sigma));
    const std::int64_t noon = kMonday + 7 * 86400 + 12 * 3600, three_am = kMonday + 7 * 86400 + 3 * 3600;
    EXPECT_FALSE(at(seasonal, 180, noon).anomaly) << "busy hour, busy value";
    EXPECT_TRUE(at(seasonal, 180, three_am).anomaly) << "the noon value at 3 a.m.";
    EXPECT_FALSE(at(sigma, 180, three_am).anomaly) << "three_sigma cannot tell the hours apart";
    EXPECT_TRUE(at(seasonal, 100, noon).anomaly) << "an outage at noon: a quiet-hour value";
    EXPECT_FALSE(at(sigma, 100, noon).anomaly);
    // The band follows the rhythm.
    EXPECT_GT(at(seasonal, 0, noon).expected_value, at(seasonal, 0, three_am).expected_value + 100);
    EXPECT_NEAR(at(seasonal, 0, noon).expected_value, 180, 8);
}

TEST(Seasonal, ThinBucketsFallBackAndWeeksHaveTheirOwnHours) {
    EXPECT_EQ(seasonal_bucket(Season::day, kMonday + 3600 * 5 + 59), 5u);
    EXPECT_EQ(seasonal_bucket(Season::week, kMonday), 0u);
    EXPECT_EQ(seasonal_bucket(Season::week, kMonday + 86400 * 6 + 3600 * 23), 167u);
    EXPECT_EQ(seasonal_bucket(Season::week, kMonday - 1), 167u) << "Sunday 23:59";
    EXPECT_EQ(seasonal_bucket(Season::day, -1), 23u);
    // One day of data, weekly season: only Monday's hours have points.
    const TrainingData d = noisy(24 * 12, 50, 2, 7);
    DetectorParams p = of(DetectorKind::seasonal);
    p.season = Season::week;
    const std::string image = trained(d, p);
    EXPECT_EQ(image.size(), sizeof(ModelHeader) + sizeof(SeasonalLayout) + 168 * sizeof(Band));
    const Judgement sunday = at(image, 50, kMonday - 3600);
    EXPECT_NEAR(sunday.expected_value, 50, 0.5) << "a thin hour uses the overall band";
    EXPECT_FALSE(sunday.anomaly);
}

TEST(Images, DeterministicAndChecked) {
    const TrainingData d = noisy(300, 10, 1, 8);
    for (DetectorKind kind : {DetectorKind::three_sigma, DetectorKind::robust, DetectorKind::seasonal}) {
        const std::string a = trained(d, of(kind)), b = trained(d, of(kind));
        EXPECT_EQ(a, b) << detector_name(kind);
        EXPECT_EQ(header_of(a.data()).kind, kind);
        EXPECT_EQ(header_of(a.data()).points, 300u);
        // Damage: every truncation and a few corrupted fields are refused.
        for (std::size_t n = 0; n < a.size(); n += 8) {
            alignas(8) char buf[4096];
            std::memcpy(buf, a.data(), n);
            EXPECT_FALSE(check_image(std::string_view(buf, n))) << n;
        }
        std::string bad = a;
        bad[0] = 1;  // format
        EXPECT_FALSE(check_image(bad));
        bad = a;
        bad[1] = 9;  // kind
        EXPECT_FALSE(check_image(bad));
        bad = a;
        const double nan = NAN;
        std::memcpy(&bad[sizeof(ModelHeader) + 8], &nan, 8);  // a spread
        EXPECT_FALSE(check_image(bad));
    }
}

TEST(Images, OldThreeSigmaRecordsBecomeImages) {
    Model m;
    m.version = 4;
    m.points = 12;
    m.mean = 5;
    m.std = 2;
    m.first_timestamp = 100;
    m.last_timestamp = 200;
    m.trained_at_ms = 12345;
    const std::string image = image_from_model(m);
    ASSERT_TRUE(check_image(image));
    const ModelHeader &h = header_of(image.data());
    EXPECT_EQ(h.version, 4u);
    EXPECT_EQ(h.kind, DetectorKind::three_sigma);
    EXPECT_EQ(h.tail, kTailFromLocation);
    EXPECT_EQ(h.sigma, 0);
    EXPECT_EQ(h.trained_at_ms, 12345);
    const Judgement j = judge(h, 11, 0, JudgeDefaults{3, Tail::both});
    EXPECT_EQ(j.score, 3);
    EXPECT_FALSE(j.anomaly);
}

TEST(Detectors, NamesRoundTrip) {
    std::size_t n = 0;
    const DetectorInfo *all = detectors(&n);
    std::size_t batch = 0;
    for (std::size_t i = 0; i < n; i++) batch += std::string(all[i].kind_of_learning) == "batch";
    ASSERT_EQ(batch, 4u);
    for (std::size_t i = 0; i < n; i++) {
        DetectorKind k;
        ASSERT_TRUE(detector_from_name(all[i].name, &k));
        EXPECT_EQ(k, all[i].kind);
        EXPECT_STREQ(detector_name(k), all[i].name);
    }
    DetectorKind k;
    EXPECT_FALSE(detector_from_name("three-sigma", &k));
    EXPECT_FALSE(detector_from_name("", &k));
}
