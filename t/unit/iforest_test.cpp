// iforest: an Isolation Forest over value, hour of the day and day of the
// week. What it finds that no band does, how its threshold and 0-100 score
// are calibrated, and that its image is deterministic and checked before any
// worker walks it.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/detector.hpp"
#include "core/detectors/iforest.hpp"
#include "core/model.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::kMonday;
using anomaly_test::noisy;

namespace {

constexpr std::int64_t kDay = 86400;
constexpr std::size_t kNodesAt = sizeof(ModelHeader) + sizeof(ForestLayout);  // + the tree offsets

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// An image's bytes in 8-byte aligned memory, as the zone holds them.
struct Aligned {
    std::vector<std::uint64_t> words;
    std::size_t size = 0;
    explicit Aligned(std::string_view bytes) : words((bytes.size() + 7) / 8), size(bytes.size()) {
        if (size) std::memcpy(words.data(), bytes.data(), size);
    }
    std::string_view view() const { return {reinterpret_cast<const char *>(words.data()), size}; }
    char *data() { return reinterpret_cast<char *>(words.data()); }
};

DetectorParams forest(std::uint32_t trees = 100, std::uint32_t sample = 256, double contamination = 0.01) {
    DetectorParams p;
    p.kind = DetectorKind::iforest;
    p.trees = trees;
    p.sample = sample;
    p.contamination = contamination;
    return p;
}

std::string trained(const TrainingData &d, const DetectorParams &p) {
    std::string image;
    const Error e = train(d, p, &image);
    EXPECT_FALSE(e) << e.code << ": " << e.detail;
    EXPECT_TRUE(check_image(image));
    return image;
}

Judgement at(const std::string &image, double value, std::int64_t t) {
    return judge(header_of(image.data()), value, t, JudgeDefaults{});
}

ForestLayout layout_of(std::string_view image) {
    ForestLayout l;
    std::memcpy(&l, image.data() + sizeof(ModelHeader), sizeof(l));
    return l;
}

std::uint32_t tree_offset(std::string_view image, std::uint32_t t) {
    std::uint32_t o;
    std::memcpy(&o, image.data() + kNodesAt + 4 * t, 4);
    return o;
}

// Four weeks every 5 minutes: about 100 on weekdays, about 10 at weekends.
TrainingData weekdays_and_weekends(unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0, 3);
    TrainingData d;
    for (std::int64_t t = kMonday; t < kMonday + 28 * kDay; t += 300) {
        const bool weekend = (t - kMonday) / kDay % 7 >= 5;
        d.timestamps.push_back(t);
        d.values.push_back((weekend ? 10 : 100) + noise(rng));
    }
    return d;
}

}  // namespace

TEST(IForest, PathNormIsTheAverageUnsuccessfulSearch) {
    EXPECT_EQ(forest_path_norm(0), 0);
    EXPECT_EQ(forest_path_norm(1), 0);
    EXPECT_EQ(forest_path_norm(2), 1);
    // 2 H(n-1) - 2 (n-1) / n, H(i) ~ ln i + gamma: c(256) = 10.2448 (the paper's table).
    EXPECT_NEAR(forest_path_norm(256), 10.2448, 1e-3);
    double exact = 0;
    for (int i = 1; i < 1000; i++) exact += 1.0 / i;
    EXPECT_NEAR(forest_path_norm(1000), 2 * exact - 2 * 999.0 / 1000, 2e-3) << "H(i) - ln i - gamma ~ 1 / 2i";
}

// A point no band describes: 100 is normal on weekdays, 10 at weekends, and
// 100 on a Sunday is neither. Every value is inside three_sigma's band.
TEST(IForest, WeekdayValueOnASundayIsIsolated) {
    const TrainingData d = weekdays_and_weekends(1);
    const std::string image = trained(d, forest());
    const std::string sigma = trained(d, DetectorParams{});
    const std::int64_t sunday = kMonday + 34 * kDay + 14 * 3600, wednesday = kMonday + 30 * kDay + 14 * 3600;
    const Judgement sunday_100 = at(image, 100, sunday), wednesday_100 = at(image, 100, wednesday),
                    sunday_10 = at(image, 10, sunday), wednesday_10 = at(image, 10, wednesday);
    EXPECT_TRUE(sunday_100.anomaly) << sunday_100.score << " threshold " << layout_of(image).threshold;
    EXPECT_TRUE(wednesday_10.anomaly) << wednesday_10.score;
    EXPECT_FALSE(wednesday_100.anomaly) << wednesday_100.score;
    EXPECT_FALSE(sunday_10.anomaly) << sunday_10.score;
    EXPECT_GT(sunday_100.anomaly_score, 70);
    EXPECT_LT(wednesday_100.anomaly_score, 70);
    EXPECT_FALSE(at(sigma, 100, sunday).anomaly) << "three_sigma cannot tell the days apart";
    EXPECT_FALSE(at(sigma, 10, wednesday).anomaly);
    // The forest has no band.
    EXPECT_FALSE(sunday_100.has_expected || sunday_100.has_lower || sunday_100.has_upper);
    EXPECT_EQ(header_of(image.data()).kind, DetectorKind::iforest);
    EXPECT_EQ(layout_of(image).trees, 100u);
    EXPECT_EQ(layout_of(image).sample, 256u);
    EXPECT_EQ(layout_of(image).contamination, 0.01);
}

// Two clusters: a value between them is at the mean, inside any mean +- k std
// band, and yet no training point was ever near it.
TEST(IForest, ValueBetweenTwoClustersIsIsolated) {
    std::mt19937_64 rng(2);
    std::normal_distribution<double> noise(0, 1);
    TrainingData d;
    for (int i = 0; i < 5000; i++) {
        d.timestamps.push_back(kMonday + 60 * i);
        d.values.push_back((i % 2 ? 20 : 0) + noise(rng));
    }
    const std::string image = trained(d, forest());
    const std::string sigma = trained(d, DetectorParams{});
    const std::int64_t t = kMonday + 60 * 5000;
    EXPECT_TRUE(at(image, 10, t).anomaly) << at(image, 10, t).score << " threshold " << layout_of(image).threshold;
    EXPECT_FALSE(at(image, 0, t).anomaly);
    EXPECT_FALSE(at(image, 20, t).anomaly);
    EXPECT_TRUE(at(image, 60, t).anomaly) << "far outside the data too";
    EXPECT_NEAR(at(sigma, 10, t).score, 0, 0.1) << "10 is the mean";
    EXPECT_FALSE(at(sigma, 10, t).anomaly);
}

TEST(IForest, ContaminationIsTheShareOfTrainingPointsAboveTheThreshold) {
    const TrainingData d = noisy(20000, 50, 5, 3, 97);
    for (double c : {0.01, 0.05, 0.2}) {
        const std::string image = trained(d, forest(100, 256, c));
        std::size_t above = 0;
        for (std::size_t i = 0; i < d.values.size(); i++) above += at(image, d.values[i], d.timestamps[i]).anomaly;
        const double share = static_cast<double>(above) / static_cast<double>(d.values.size());
        EXPECT_NEAR(share, c, c * 0.1 + 0.001) << "contamination " << c;
    }
}

TEST(IForest, AnomalyScoreIsSeventyAtTheThresholdZeroAtTheMostTypical) {
    const TrainingData d = weekdays_and_weekends(4);
    const std::string image = trained(d, forest());
    const ForestLayout l = layout_of(image);
    ASSERT_LT(l.typical, l.threshold);
    ASSERT_LT(l.threshold, 1);
    EXPECT_EQ(forest_anomaly_score(l, l.threshold), 70);
    EXPECT_EQ(forest_anomaly_score(l, l.typical), 0);
    EXPECT_EQ(forest_anomaly_score(l, 0), 0);
    EXPECT_EQ(forest_anomaly_score(l, 1), 100);
    double last = 0;
    for (double s = l.typical; s <= 1; s += 1e-4) {
        const double a = forest_anomaly_score(l, s);
        EXPECT_GE(a, last) << s;
        EXPECT_LE(a, 100);
        last = a;
    }
    EXPECT_GT(forest_anomaly_score(l, l.threshold + 1e-3), 70);
    EXPECT_LT(forest_anomaly_score(l, l.threshold - 1e-3), 70);
    // The most typical training point scores 0; its score is the stored one.
    double lowest = 2;
    std::size_t typical = 0;
    for (std::size_t i = 0; i < d.values.size(); i++) {
        const double s = at(image, d.values[i], d.timestamps[i]).score;
        if (s < lowest) lowest = s, typical = i;
    }
    EXPECT_EQ(lowest, l.typical);
    EXPECT_EQ(at(image, d.values[typical], d.timestamps[typical]).anomaly_score, 0);
    // A point judged exactly at the threshold (moved there) scores 70 and is not an anomaly.
    Aligned moved(image);
    const Judgement sunday = at(image, 100, kMonday + 6 * kDay);
    ForestLayout ml = l;
    ml.threshold = sunday.score;
    std::memcpy(moved.data() + sizeof(ModelHeader), &ml, sizeof(ml));
    ASSERT_TRUE(check_image(moved.view()));
    const Judgement on = judge(header_of(moved.data()), 100, kMonday + 6 * kDay, JudgeDefaults{});
    EXPECT_EQ(on.anomaly_score, 70);
    EXPECT_FALSE(on.anomaly);
}

TEST(IForest, SameDataSameBytesOtherDataOtherBytes) {
    const TrainingData d = noisy(3000, 10, 1, 5);
    const std::string a = trained(d, forest()), b = trained(d, forest());
    EXPECT_EQ(a, b);
    TrainingData other = d;
    other.values[1234] += 1e-9;
    EXPECT_NE(trained(other, forest()), a) << "one value";
    other = d;
    for (std::int64_t &t : other.timestamps) t += 1;
    EXPECT_NE(trained(other, forest()), a) << "the timestamps";
    EXPECT_NE(trained(d, forest(100, 256, 0.02)), a) << "the parameters";
    EXPECT_EQ(a.size() % 8, 0u);
    EXPECT_EQ(header_of(a.data()).bytes, a.size());
    // Fewer points than the sample: every tree takes them all.
    const TrainingData few = noisy(40, 10, 1, 6);
    const std::string small = trained(few, forest());
    EXPECT_NEAR(layout_of(small).path_norm, forest_path_norm(40), 1e-12);
}

TEST(IForest, BytesPerVersionAtTheDefaults) {
    const TrainingData d = noisy(10000, 100, 10, 7, 60);
    const std::string image = trained(d, forest());
    const ForestLayout l = layout_of(image);
    std::printf("iforest image at the defaults (100 trees, 256 sample, 10,000 points): %zu bytes, %u nodes, "
                "%.1f nodes a tree\n",
                image.size(), l.nodes, l.nodes / 100.0);
    EXPECT_EQ(image.size(), (kNodesAt + 4 * 100 + 7) / 8 * 8 + sizeof(ForestNode) * static_cast<std::size_t>(l.nodes));
    EXPECT_EQ(l.depth, 8u);
    EXPECT_LE(l.nodes, 100u * 511u) << "8 levels";
}

TEST(IForest, RefusesParametersOutsideTheLimitsAndConstantValues) {
    const TrainingData d = noisy(100, 10, 1, 8);
    std::string image;
    EXPECT_STREQ(train(d, forest(0), &image).code, "invalid_parameter");
    EXPECT_STREQ(train(d, forest(kForestMaxTrees + 1), &image).code, "invalid_parameter");
    EXPECT_STREQ(train(d, forest(100, 1), &image).code, "invalid_parameter");
    EXPECT_STREQ(train(d, forest(100, kForestMaxSample + 1), &image).code, "invalid_parameter");
    for (double c : {0.0, 0.5, -0.1, double(NAN)}) EXPECT_STREQ(train(d, forest(100, 256, c), &image).code, "invalid_parameter");
    EXPECT_FALSE(train(d, forest(1, 2, 0.49), &image));
    EXPECT_TRUE(check_image(image));
    TrainingData flat = d;
    for (double &v : flat.values) v = 3;
    EXPECT_STREQ(train(flat, forest(), &image).code, "constant_series");
    TrainingData huge = d;
    huge.values[0] = -1.7e308;
    huge.values[1] = 1.7e308;
    EXPECT_STREQ(train(huge, forest(), &image).code, "invalid_value");
}

TEST(IForest, ExtremePointsAreJudgedWithoutSurprises) {
    const std::string image = trained(noisy(2000, 0, 1, 9), forest());
    for (double v : {-1.7e308, -1e20, 0.0, 1e20, 1.7e308, 5e-324})
        for (std::int64_t t : {std::int64_t{-1}, std::int64_t{0}, kMonday, kMaxTimestamp, INT64_MIN, INT64_MAX}) {
            const Judgement j = at(image, v, t);
            EXPECT_TRUE(j.score > 0 && j.score <= 1) << v << " " << t;
            EXPECT_TRUE(j.anomaly_score >= 0 && j.anomaly_score <= 100);
        }
    EXPECT_TRUE(at(image, 1e20, kMonday).anomaly);
    EXPECT_TRUE(at(image, -1e20, kMonday).anomaly);
}

// Damage: a record read back from disk or spool that is truncated or has
// its bytes changed never reaches a worker's walk unless it is still a
// forest every walk of which stays inside and ends.
TEST(IForest, CheckRefusesTruncatedAndCorruptedImages) {
    const std::string image = trained(noisy(500, 10, 1, 10), forest(8, 32));
    const ForestLayout l = layout_of(image);
    for (std::size_t n = 0; n < image.size(); n += 8) {
        Aligned cut(std::string_view(image).substr(0, n));
        ModelHeader h;
        if (n >= sizeof(h)) {  // even with a header that agrees
            std::memcpy(&h, cut.data(), sizeof(h));
            h.bytes = static_cast<std::uint32_t>(n);
            std::memcpy(cut.data(), &h, sizeof(h));
        }
        EXPECT_FALSE(check_image(cut.view())) << n;
    }
    auto refused = [&](const char *what, auto damage) {
        Aligned bad(image);
        damage(bad.data());
        EXPECT_FALSE(check_image(bad.view())) << what;
    };
    auto put32 = [](char *at, std::uint32_t v) { std::memcpy(at, &v, 4); };
    auto put64 = [](char *at, double v) { std::memcpy(at, &v, 8); };
    const std::size_t L = sizeof(ModelHeader);
    refused("a sigma on a forest", [&](char *b) { put64(b + offsetof(ModelHeader, sigma), 2); });
    refused("layout trees", [&](char *b) { put32(b + L + offsetof(ForestLayout, trees), 9); });
    refused("layout nodes", [&](char *b) { put32(b + L + offsetof(ForestLayout, nodes), l.nodes - 1); });
    refused("threshold 0", [&](char *b) { put64(b + L + offsetof(ForestLayout, threshold), 0); });
    refused("threshold above 1", [&](char *b) { put64(b + L + offsetof(ForestLayout, threshold), 1.5); });
    refused("typical above threshold", [&](char *b) { put64(b + L + offsetof(ForestLayout, typical), l.threshold * 1.01); });
    refused("depth below the trees'", [&](char *b) { put32(b + L + offsetof(ForestLayout, depth), l.depth - 1); });
    refused("depth beyond any", [&](char *b) { put32(b + L + offsetof(ForestLayout, depth), 17); });
    refused("path norm NaN", [&](char *b) { put64(b + L + offsetof(ForestLayout, path_norm), NAN); });
    refused("scale negative", [&](char *b) { put64(b + L + offsetof(ForestLayout, scale) + 8, -1); });
    refused("offset infinite", [&](char *b) { put64(b + L + offsetof(ForestLayout, offset), INFINITY); });
    refused("contamination", [&](char *b) { put64(b + L + offsetof(ForestLayout, contamination), 0.5); });
    refused("sample", [&](char *b) { put32(b + L + offsetof(ForestLayout, sample), 1); });
    refused("first tree elsewhere", [&](char *b) { put32(b + kNodesAt, tree_offset(image, 0) + 8); });
    refused("tree offset unaligned", [&](char *b) { put32(b + kNodesAt + 4, tree_offset(image, 1) + 4); });
    refused("tree offset backwards", [&](char *b) { put32(b + kNodesAt + 8, tree_offset(image, 0)); });
    refused("tree offset outside", [&](char *b) { put32(b + kNodesAt + 28, static_cast<std::uint32_t>(image.size())); });
    {  // 7 trees: 28 bytes of offsets, then 4 zero bytes to the nodes
        const std::string odd = trained(noisy(500, 10, 1, 10), forest(7, 32));
        Aligned bad(odd);
        ASSERT_TRUE(check_image(bad.view()));
        bad.data()[kNodesAt + 4 * 7 + 3] = 1;
        EXPECT_FALSE(check_image(bad.view())) << "padding";
    }
    // Node by node: indices backwards, onto themselves, past the tree; features; numbers.
    const std::uint32_t first = tree_offset(image, 0), second = tree_offset(image, 1);
    const std::size_t count = (second - first) / sizeof(ForestNode);
    std::size_t inner = 0, leaves = 0;
    for (std::size_t i = 0; i < count; i++) {
        ForestNode node;
        std::memcpy(&node, image.data() + first + sizeof(ForestNode) * i, sizeof(node));
        auto node_refused = [&](const char *what, ForestNode changed) {
            refused(what, [&](char *b) { std::memcpy(b + first + sizeof(ForestNode) * i, &changed, sizeof(changed)); });
        };
        ForestNode c = node;
        c.value = NAN;
        node_refused("NaN", c);
        c = node;
        c.value = INFINITY;
        node_refused("infinity", c);
        if (node.feature == kForestLeaf) {
            leaves++;
            if (i < l.depth) {  // a sink
                c = node;
                c.value += 1;
                node_refused("sink's path length", c);
                continue;
            }
            c = node;
            c.value = -1;
            node_refused("negative path length", c);
            c = node;
            c.right = static_cast<std::uint16_t>(i + 1);
            node_refused("leaf that steps on", c);
            c = node;
            c.reach = 1;
            node_refused("leaf with a range", c);
            c = node;
            c.depth = static_cast<std::uint8_t>(node.depth + 1);
            node_refused("leaf's depth", c);
            continue;
        }
        inner++;
        for (std::uint16_t right : {std::uint16_t(0), std::uint16_t(i), std::uint16_t(i + 1), std::uint16_t(count),
                                    std::uint16_t(0xffff)}) {
            c = node;
            c.right = right;
            node_refused("right index", c);
        }
        c = node;
        c.centre = node.value + node.reach + 1;
        node_refused("split outside the range", c);
        c = node;
        c.reach = -1;
        node_refused("negative reach", c);
        c = node;
        c.depth = static_cast<std::uint8_t>(node.depth + 1);
        node_refused("inner node's depth (its sink)", c);
        c = node;
        c.depth = 200;
        node_refused("inner node's sink outside the tree", c);
        c = node;
        c.feature = kForestLeaf;
        node_refused("a leaf with children after it", c);
        for (std::uint8_t f : {std::uint8_t(3), std::uint8_t(7), std::uint8_t(0xfe)}) {
            c = node;
            c.feature = f;
            node_refused("feature", c);
        }
    }
    EXPECT_GT(inner, 5u);
    EXPECT_GT(leaves, 5u);
    refused("depth above the trees' (their sinks)", [&](char *b) { put32(b + L + offsetof(ForestLayout, depth), l.depth + 1); });
    // The last node of the last tree must be a leaf: an inner node there has no left child.
    refused("inner last node", [&](char *b) {
        ForestNode last{0.5f, 0.5f, 1.0f, 0, 0, 0};
        std::memcpy(b + image.size() - sizeof(last), &last, sizeof(last));
    });
}

// Random damage: whatever check_image lets through, a walk stays inside
// (AddressSanitizer in the sanitizer build) and ends.
TEST(IForest, RandomDamageNeverReachesAWalkThatLeavesTheImage) {
    const std::string image = trained(noisy(500, 10, 1, 11), forest(8, 64));
    std::mt19937_64 rng(12);
    std::size_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        Aligned bad(image);
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; k++) {
            const std::size_t at = rng() % image.size();
            bad.data()[at] = static_cast<char>(bad.data()[at] ^ (1u << (rng() % 8)));
        }
        if (!check_image(bad.view())) continue;
        accepted++;
        for (double v : {-5.0, 10.0, 30.0}) {
            const Judgement j = judge(header_of(bad.data()), v, kMonday + static_cast<std::int64_t>(rng() % 1000000),
                                      JudgeDefaults{});
            EXPECT_TRUE(j.score >= 0 && j.score <= 1);
            EXPECT_TRUE(j.anomaly_score >= 0 && j.anomaly_score <= 100);
        }
    }
    std::printf("random damage: %zu of 20000 damaged images still checked (split values moved, say)\n", accepted);
}

// Prints, asserts nothing: judge on the event loop should cost about 2 us.
TEST(IForest, JudgeSpeed) {
    const TrainingData d = weekdays_and_weekends(13);
    const std::string image = trained(d, forest());
    const ModelHeader &h = header_of(image.data());
    const int calls = kSanitized ? 100000 : 1000000;
    std::mt19937_64 rng(14);
    std::vector<double> values(1024);
    std::vector<std::int64_t> times(1024);
    for (std::size_t i = 0; i < values.size(); i++) {
        values[i] = static_cast<double>(rng() % 120);
        times[i] = kMonday + static_cast<std::int64_t>(rng() % (28 * kDay));
    }
    double sink = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; i++) sink += judge(h, values[i & 1023], times[i & 1023], JudgeDefaults{}).score;
    const double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() / calls;
    std::printf("judge_iforest: %.0f ns a call over %d calls (100 trees, %zu bytes)%s [%g]\n", ns, calls, image.size(),
                kSanitized ? ", sanitizer build" : "", sink / calls);
    const auto t0 = std::chrono::steady_clock::now();
    std::string again;
    ASSERT_FALSE(train(d, forest(), &again));
    std::printf("train_iforest: %.1f ms for %zu points\n",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                d.values.size());
}
