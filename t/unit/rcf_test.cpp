// The streaming Random Cut Forest (src/core/streams/rcf): what it detects,
// that it forgets, that a retried point changes nothing, that the same seed
// gives the same bytes, and that check() tells a whole forest from damage.
#include "core/streams/rcf.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iostream>
#include <random>
#include <vector>

namespace {

using namespace anomaly;

constexpr double kPi = 3.14159265358979323846;

// A forest's bytes, 8-byte aligned as the zone gives them.
struct State {
    explicit State(const rcf::Params &p, std::uint64_t seed = 7)
        : params(p), words(rcf::state_bytes(p) / 8), rng(seed) {
        rcf::init(words.data(), p);
    }
    void *data() { return words.data(); }
    std::size_t bytes() const { return words.size() * 8; }
    rcf::Result feed(double v, bool learn = true) { return rcf::update(words.data(), v, learn, &rng); }
    bool ok() const { return rcf::check(words.data(), bytes()); }

    rcf::Params params;
    std::vector<std::uint64_t> words;
    std::uint64_t rng;
};

// A daily pattern of 5-minute points with a little noise.
double wave(int i, std::mt19937_64 &g) {
    std::normal_distribution<double> noise(0, 0.3);
    return 10 + 5 * std::sin(2 * kPi * i / 288.0) + noise(g);
}

double quantile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(q * (v.size() - 1))];
}

TEST(Rcf, DefaultsFitIn256KB) {
    const rcf::Params p = rcf::default_params();
    EXPECT_FALSE(rcf::check_params(p));
    EXPECT_LE(rcf::state_bytes(p), 256u * 1024);
    EXPECT_EQ(rcf::state_bytes(p) % 8, 0u);
    State s(p);
    EXPECT_TRUE(s.ok());
    const rcf::Params back = rcf::params_of(s.data());
    EXPECT_EQ(back.trees, p.trees);
    EXPECT_EQ(back.sample, p.sample);
    EXPECT_EQ(back.shingle, p.shingle);
    EXPECT_EQ(back.decay, p.decay);
}

// Points per second of update (score and learn) at the defaults, in this
// thread's CPU time; printed, not asserted (sanitizer builds are slower).
TEST(Rcf, Throughput) {
    State s(rcf::default_params());
    std::mt19937_64 g(8);
    std::vector<double> v(25000);
    for (std::size_t i = 0; i < v.size(); i++) v[i] = wave(static_cast<int>(i), g);
    for (std::size_t i = 0; i < 5000; i++) s.feed(v[i]);
    auto cpu = [] {
        timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
    };
    double sum = 0;
    const double start = cpu();
    for (std::size_t i = 5000; i < v.size(); i++) sum += s.feed(v[i]).score;
    const double seconds = cpu() - start;
    std::cout << "rcf update at the defaults (" << s.bytes() << " bytes): " << static_cast<long>(20000 / seconds)
              << " points/s, " << seconds / 20000 * 1e6 << " us a point\n";
    EXPECT_GT(sum, 0);
}

TEST(Rcf, ParamsOutsideTheirRangesAreRefusedByName) {
    const rcf::Params d = rcf::default_params();
    struct Case {
        rcf::Params p;
        const char *name;
    } cases[] = {
        {{0, d.sample, d.shingle, d.decay}, "trees"},
        {{rcf::kMaxTrees + 1, d.sample, d.shingle, d.decay}, "trees"},
        {{d.trees, rcf::kMinSample - 1, d.shingle, d.decay}, "sample"},
        {{d.trees, rcf::kMaxSample + 1, d.shingle, d.decay}, "sample"},
        {{d.trees, d.sample, 0, d.decay}, "shingle"},
        {{d.trees, d.sample, rcf::kMaxShingle + 1, d.decay}, "shingle"},
        {{d.trees, d.sample, d.shingle, 0}, "decay"},
        {{d.trees, d.sample, d.shingle, 1.5}, "decay"},
        {{d.trees, d.sample, d.shingle, std::nan("")}, "decay"},
        {{rcf::kMaxTrees, rcf::kMaxSample, rcf::kMaxShingle, d.decay}, "too large"},
    };
    for (const Case &c : cases) {
        const Error e = rcf::check_params(c.p);
        ASSERT_TRUE(e) << c.name;
        EXPECT_EQ(e.status, 422);
        EXPECT_STREQ(e.code, "invalid_parameter");
        EXPECT_NE(e.detail.find(c.name), std::string::npos) << e.detail;
    }
}

TEST(Rcf, NoScoreBeforeAFullShingle) {
    State s(rcf::default_params());
    for (std::uint32_t i = 0; i + 1 < s.params.shingle; i++) {
        const rcf::Result r = s.feed(1.0 + i);
        EXPECT_EQ(r.score, 0);
        EXPECT_FALSE(r.has_expected);
    }
    EXPECT_TRUE(s.ok());
}

TEST(Rcf, ASpikeInASineWaveScoresFarAboveNormalPoints) {
    State s(rcf::default_params());
    std::mt19937_64 g(1);
    std::vector<double> normal;
    for (int i = 0; i < 3000; i++) {
        const double score = s.feed(wave(i, g)).score;
        if (i >= 1000) normal.push_back(score);
    }
    const double spike = s.feed(wave(3000, g) + 20).score;
    const double typical = quantile(normal, 0.5), high = quantile(normal, 0.99);
    EXPECT_GT(typical, 0.5);
    EXPECT_LT(typical, 2);
    EXPECT_GT(spike, 2 * high) << "typical " << typical << ", 99% " << high;
    EXPECT_TRUE(s.ok());
}

TEST(Rcf, ALevelShiftScoresHighThenBecomesNormal) {
    State s(rcf::default_params());
    std::mt19937_64 g(2);
    std::normal_distribution<double> noise(0, 1);
    std::vector<double> before;
    for (int i = 0; i < 3000; i++) {
        const double score = s.feed(50 + noise(g)).score;
        if (i >= 1000) before.push_back(score);
    }
    const double high = quantile(before, 0.99);
    double first = 0;
    for (int i = 0; i < 5; i++) first = std::max(first, s.feed(80 + noise(g)).score);
    EXPECT_GT(first, 2 * high);
    // After a few thousand points at the new level, the old level has left
    // the samples and the new one is ordinary.
    std::vector<double> after;
    for (int i = 0; i < 4000; i++) {
        const double score = s.feed(80 + noise(g)).score;
        if (i >= 3000) after.push_back(score);
    }
    EXPECT_LT(quantile(after, 0.5), 1.5 * quantile(before, 0.5));
    EXPECT_LT(quantile(after, 0.99), 1.5 * high);
    EXPECT_TRUE(s.ok());
}

// The highest score of a zig-zag stretch played within a slow triangle wave
// (0 to 10 and back every 100 points), over the 99% quantile of the scores
// of the normal points before it.
double zigzag_over_normal(std::uint32_t shingle) {
    rcf::Params p = rcf::default_params();
    p.shingle = shingle;
    State s(p);
    std::mt19937_64 g(3);
    std::normal_distribution<double> noise(0, 0.1);
    auto triangle = [](int i) {
        const int k = i % 100;
        return 10.0 * (k < 50 ? k : 100 - k) / 50;
    };
    std::vector<double> normal;
    for (int i = 0; i < 3000; i++) {
        const double score = s.feed(triangle(i) + noise(g)).score;
        if (i >= 1000) normal.push_back(score);
    }
    double shape = 0;
    for (int i = 0; i < 8; i++) shape = std::max(shape, s.feed(triangle(i * 25 + 12) + noise(g)).score);
    EXPECT_TRUE(s.ok());
    return shape / quantile(normal, 0.99);
}

TEST(Rcf, AChangeOfShapeWithinTheRangeScoresHighThanksToShingles) {
    // No single value of the zig-zag is unusual, consecutive values are: a
    // forest of single values misses it, one of shingles of 4 does not.
    EXPECT_GT(zigzag_over_normal(4), 1.5);
    EXPECT_LT(zigzag_over_normal(1), 1.2);
}

TEST(Rcf, ExpectedValueFollowsThePattern) {
    State s(rcf::default_params());
    std::mt19937_64 g(4);
    for (int i = 0; i < 3000; i++) s.feed(wave(i, g));
    double error = 0;
    int n = 0;
    for (int i = 3000; i < 3300; i++) {
        const double v = wave(i, g);
        const rcf::Result r = s.feed(v);
        ASSERT_TRUE(r.has_expected);
        const double truth = 10 + 5 * std::sin(2 * kPi * i / 288.0);
        error += std::fabs(r.expected - truth);
        n++;
    }
    // The wave spans 10; noise alone is 0.24 on average.
    EXPECT_LT(error / n, 1.0);
    EXPECT_NEAR(s.feed(wave(3300, g)).fill, 1.0, 1e-9);
}

TEST(Rcf, ARetriedPointLeavesTheBytesUnchanged) {
    State s(rcf::default_params());
    std::mt19937_64 g(5);
    for (int i = 0; i < 1500; i++) s.feed(wave(i, g));
    const std::vector<std::uint64_t> before = s.words;
    const std::uint64_t rng = s.rng;
    const rcf::Result a = s.feed(42, false);
    EXPECT_EQ(s.words, before);
    EXPECT_EQ(s.rng, rng);
    const rcf::Result b = s.feed(42, true);
    EXPECT_EQ(a.score, b.score);  // scored the same shingle
    EXPECT_EQ(a.expected, b.expected);
    EXPECT_NE(s.words, before);
}

TEST(Rcf, SameSeedAndValuesGiveTheSameBytes) {
    rcf::Params p = rcf::default_params();
    State a(p, 99), b(p, 99), c(p, 100);
    std::mt19937_64 g(6);
    for (int i = 0; i < 3000; i++) {
        const double v = wave(i, g);
        const double sa = a.feed(v).score, sb = b.feed(v).score;
        c.feed(v);
        ASSERT_EQ(sa, sb);
    }
    EXPECT_EQ(a.words, b.words);
    EXPECT_EQ(a.rng, b.rng);
    EXPECT_NE(a.words, c.words);
    // A copy of the bytes (a checkpoint) continues as the original does.
    State d(p, 0);
    d.words = a.words;
    d.rng = a.rng;
    for (int i = 0; i < 500; i++) {
        const double v = wave(3000 + i, g);
        ASSERT_EQ(a.feed(v).score, d.feed(v).score);
    }
    EXPECT_EQ(a.words, d.words);
}

TEST(Rcf, CheckAcceptsEveryStateAlongAStream) {
    // Small forests so that every step can be checked, over values that
    // repeat exactly (equal points share leaves), a flat line, jumps, and
    // long enough for the ring to wrap and the keys to be rebased.
    for (std::uint32_t shingle : {1u, 3u, 8u}) {
        rcf::Params p{3, 16, shingle, 0.05};
        State s(p, shingle);
        std::mt19937_64 g(shingle);
        for (int i = 0; i < 6000; i++) {
            double v = (i / 7) % 5;                       // repeats
            if (i > 2000) v = 3;                          // flat
            if (i > 3000) v = wave(i, g) * (i % 97 == 0 ? 10 : 1);
            s.feed(v);
            ASSERT_TRUE(s.ok()) << "shingle " << shingle << " after " << i;
        }
    }
}

// A forest with some history, for the damage tests.
State used_forest() {
    State s(rcf::Params{4, 32, 4, 0.01}, 11);
    std::mt19937_64 g(12);
    for (int i = 0; i < 700; i++) s.feed(wave(i, g));
    return s;
}

template <typename T>
T read_at(const State &s, std::size_t at) {
    T v;
    std::memcpy(&v, reinterpret_cast<const unsigned char *>(s.words.data()) + at, sizeof(T));
    return v;
}
template <typename T>
void write_at(State &s, std::size_t at, T v) {
    std::memcpy(reinterpret_cast<unsigned char *>(s.words.data()) + at, &v, sizeof(T));
}

// Offsets of the first tree's parts (rcf.hpp): node i's Inner is at
// node(i), its box (lows, then highs) right after it.
struct TreeAt {
    std::size_t header, entry, nodes, stride, leaf;
    std::size_t node(std::size_t i) const { return nodes + i * stride; }
    std::size_t high(std::size_t i) const { return node(i) + sizeof(rcf::Inner) + (stride - sizeof(rcf::Inner)) / 2; }
};
TreeAt first_tree(const State &s) {
    const auto h = read_at<rcf::ForestHeader>(s, 0);
    TreeAt t;
    t.header = h.trees_at;
    t.entry = t.header + sizeof(rcf::TreeHeader);
    t.nodes = t.entry + h.sample * sizeof(rcf::Entry);
    t.stride = sizeof(rcf::Inner) + 2 * h.shingle * 4;
    t.leaf = t.nodes + (h.sample - 1) * t.stride;
    return t;
}

TEST(Rcf, CheckRejectsAnUpdateLeftHalfway) {
    const State s = used_forest();
    ASSERT_TRUE(s.ok());
    const TreeAt t = first_tree(s);
    const auto root = read_at<std::uint16_t>(s, t.header);
    ASSERT_EQ(root & rcf::kLeaf, 0);
    const std::size_t root_at = t.node(root);
    // The offsets are right: the root holds every sampled point, and its box
    // holds its cut.
    ASSERT_EQ(read_at<std::uint16_t>(s, root_at + offsetof(rcf::Inner, mass)),
              read_at<std::uint16_t>(s, t.header + offsetof(rcf::TreeHeader, entries)));
    const auto root_dim = read_at<std::uint8_t>(s, root_at + offsetof(rcf::Inner, dim));
    const float root_cut = read_at<float>(s, root_at + offsetof(rcf::Inner, cut));
    ASSERT_LE(read_at<float>(s, root_at + sizeof(rcf::Inner) + 4 * root_dim), root_cut);
    ASSERT_GT(read_at<float>(s, t.high(root) + 4 * root_dim), root_cut);

    {  // the writer died while marked busy
        State d = s;
        write_at<std::uint32_t>(d, offsetof(rcf::ForestHeader, busy), 1);
        EXPECT_FALSE(d.ok());
    }
    {  // a mass counted up, the point not yet placed
        State d = s;
        write_at<std::uint16_t>(d, root_at + offsetof(rcf::Inner, mass),
                                static_cast<std::uint16_t>(read_at<std::uint16_t>(s, root_at + offsetof(rcf::Inner, mass)) + 1));
        EXPECT_FALSE(d.ok());
    }
    {  // a box grown for a point that never arrived
        State d = s;
        const std::size_t hi0 = t.high(root);
        write_at<float>(d, hi0, read_at<float>(s, hi0) + 1);
        EXPECT_FALSE(d.ok());
    }
    {  // a child linked twice, its sibling lost
        State d = s;
        write_at<std::uint16_t>(d, root_at + offsetof(rcf::Inner, left),
                                read_at<std::uint16_t>(s, root_at + offsetof(rcf::Inner, right)));
        EXPECT_FALSE(d.ok());
    }
    {  // a child link to a leaf that is still free
        State d = s;
        const auto free_leaf = read_at<std::uint16_t>(s, t.header + offsetof(rcf::TreeHeader, free_leaf));
        if (free_leaf != rcf::kNone) {
            write_at<std::uint16_t>(d, root_at + offsetof(rcf::Inner, left),
                                    static_cast<std::uint16_t>(rcf::kLeaf | free_leaf));
            EXPECT_FALSE(d.ok());
        }
    }
    {  // a link that makes a loop
        State d = s;
        write_at<std::uint16_t>(d, root_at + offsetof(rcf::Inner, right), root);
        EXPECT_FALSE(d.ok());
    }
    {  // a sampled point counted without its leaf
        State d = s;
        const auto entries = read_at<std::uint16_t>(s, t.header + offsetof(rcf::TreeHeader, entries));
        write_at<std::uint16_t>(d, t.header + offsetof(rcf::TreeHeader, entries),
                                static_cast<std::uint16_t>(entries - 1));
        EXPECT_FALSE(d.ok());
    }
    {  // a cut that no longer separates its children
        State d = s;
        write_at<float>(d, root_at + offsetof(rcf::Inner, cut), -1e20f);
        EXPECT_FALSE(d.ok());
    }
    {  // a value that is not a number
        State d = s;
        write_at<float>(d, sizeof(rcf::ForestHeader), std::nanf(""));
        EXPECT_FALSE(d.ok());
    }
}

TEST(Rcf, CheckRejectsALeafNamingAnOlderCopyThanItsPoints) {
    // Equal points share a leaf that names the newest copy's slot: were it
    // an older one, a sweep could evict that copy while the leaf still
    // named its slot, and the ring would overwrite the leaf's values.
    State s(rcf::Params{1, 16, 1, 0.05}, 3);
    for (int i = 0; i < 200; i++) s.feed(i % 4);
    ASSERT_TRUE(s.ok());
    const TreeAt t = first_tree(s);
    const auto h = read_at<rcf::ForestHeader>(s, 0);
    const auto entries = read_at<std::uint16_t>(s, t.header + offsetof(rcf::TreeHeader, entries));
    const std::uint32_t mask = h.ring - 1, newest = static_cast<std::uint32_t>(h.values - 1) & mask;
    bool tried = false;
    for (std::uint32_t i = 0; i < h.sample && !tried; i++) {
        const auto leaf = read_at<rcf::Leaf>(s, t.leaf + i * sizeof(rcf::Leaf));
        if (leaf.mass < 2) continue;
        const float value = read_at<float>(s, h.ring_at + 4 * leaf.slot);
        // The oldest of the leaf's copies (shingle 1: a point is one value).
        std::uint32_t oldest = leaf.slot;
        for (std::uint32_t e = 0; e < entries; e++) {
            const auto entry = read_at<rcf::Entry>(s, t.entry + e * sizeof(rcf::Entry));
            if (read_at<float>(s, h.ring_at + 4 * entry.slot) == value &&
                ((newest - entry.slot) & mask) > ((newest - oldest) & mask))
                oldest = entry.slot;
        }
        ASSERT_NE(oldest, leaf.slot);
        State d = s;
        write_at<rcf::Leaf>(d, t.leaf + i * sizeof(rcf::Leaf), rcf::Leaf{static_cast<std::uint16_t>(oldest), leaf.mass});
        EXPECT_FALSE(d.ok());
        tried = true;
    }
    EXPECT_TRUE(tried) << "no leaf with two copies";
}

TEST(Rcf, CheckRejectsTruncatedFlippedAndRandomBytes) {
    const State s = used_forest();
    ASSERT_TRUE(s.ok());
    EXPECT_FALSE(rcf::check(s.words.data(), s.bytes() - 8));
    EXPECT_FALSE(rcf::check(s.words.data(), 0));
    std::vector<std::uint64_t> longer(s.words);
    longer.push_back(0);
    EXPECT_FALSE(rcf::check(longer.data(), longer.size() * 8));

    // Every header byte matters; elsewhere a flipped bit is mostly caught
    // (a flip in a value the tree never reads, or in a spare key bit, may
    // leave a forest that is still whole). It must never crash.
    std::mt19937_64 g(13);
    int caught = 0, tries = 0;
    for (std::size_t at = 0; at < s.bytes(); at += 1 + g() % 7) {
        State d = s;
        reinterpret_cast<unsigned char *>(d.words.data())[at] ^= static_cast<unsigned char>(1u << (g() % 8));
        const bool ok = d.ok();
        // In the header only the decay, the count of values and the keys'
        // base can change and still describe a whole forest.
        const bool free_field = (at >= offsetof(rcf::ForestHeader, decay) && at < offsetof(rcf::ForestHeader, ring)) ||
                                (at >= offsetof(rcf::ForestHeader, values) && at < offsetof(rcf::ForestHeader, tree_bytes));
        if (at < sizeof(rcf::ForestHeader) && !free_field) {
            EXPECT_FALSE(ok) << "header byte " << at;
        }
        caught += !ok;
        tries++;
    }
    EXPECT_GT(caught, tries / 4);

    // Random bytes, and random bytes behind a valid header.
    for (int i = 0; i < 300; i++) {
        State d = s;
        const std::size_t from = i % 2 ? sizeof(rcf::ForestHeader) : 0;
        for (std::size_t w = from / 8; w < d.words.size(); w++) d.words[w] = g();
        EXPECT_FALSE(d.ok());
    }
}

TEST(Rcf, CheckedForestsKeepWorkingAfterRandomDamageIsRejected) {
    // check() is the gate: a state it passes must run; a mutated forest
    // that still passes is updated under the sanitizers here.
    const State s = used_forest();
    std::mt19937_64 g(14);
    for (int i = 0; i < 2000; i++) {
        State d = s;
        const std::size_t at = g() % d.bytes();
        reinterpret_cast<unsigned char *>(d.words.data())[at] = static_cast<unsigned char>(g());
        if (!d.ok()) continue;
        for (int k = 0; k < 20; k++) d.feed(wave(700 + k, g));
        EXPECT_TRUE(d.ok()) << "byte " << at;
    }
}

}  // namespace
