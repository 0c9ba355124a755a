// Latency histograms: bucket arithmetic, quantiles within 5%, merging.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "core/histogram.hpp"

using namespace anomaly;
using H = LatencyHistogram;

namespace {

std::unique_ptr<H> fresh() { return std::unique_ptr<H>(new H()); }  // value-initialised: all zero

// Exact nearest-rank quantile: the smallest value with at least ceil(q * n) values at or below it.
std::uint64_t exact_quantile(std::vector<std::uint64_t> v, double q) {
    std::sort(v.begin(), v.end());
    std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    if (rank < 1) rank = 1;
    return v[rank - 1];
}

void check_consistent(std::uint64_t v) {
    const std::size_t b = H::bucket_of(v);
    ASSERT_LT(b, H::kBuckets) << v;
    ASSERT_LE(H::bucket_lower(b), v) << "v " << v << " bucket " << b;
    ASSERT_LT(v, H::bucket_upper(b)) << "v " << v << " bucket " << b;
}

}  // namespace

TEST(HistogramBuckets, Layout) {
    EXPECT_EQ(H::kBuckets, 608u);  // (40 - 4 + 2) * 16
    EXPECT_EQ(H::bucket_lower(0), 0u);
    EXPECT_EQ(H::bucket_upper(H::kBuckets - 1), std::uint64_t{1} << 41) << "the last bucket ends at 2^41 ns";
    for (std::size_t b = 0; b + 1 < H::kBuckets; b++) {
        ASSERT_EQ(H::bucket_upper(b), H::bucket_lower(b + 1)) << "buckets are contiguous at " << b;
        ASSERT_LT(H::bucket_lower(b), H::bucket_upper(b)) << b;
        ASSERT_EQ(H::bucket_of(H::bucket_lower(b)), b);
        ASSERT_EQ(H::bucket_of(H::bucket_upper(b) - 1), b);
    }
}

TEST(HistogramBuckets, SmallValuesAreExact) {
    for (std::uint64_t v = 0; v < 32; v++) {
        EXPECT_EQ(H::bucket_of(v), v);
        EXPECT_EQ(H::bucket_lower(v), v);
        EXPECT_EQ(H::bucket_upper(v), v + 1);
    }
}

TEST(HistogramBuckets, SixteenPerPowerOfTwo) {
    // [2^e, 2^(e+1)) for e >= 4 is cut into 16 equal buckets of 2^(e-4).
    for (int e = 4; e <= 40; e++) {
        const std::uint64_t p = std::uint64_t{1} << e;
        const std::size_t b = H::bucket_of(p);
        EXPECT_EQ(H::bucket_lower(b), p) << e;
        EXPECT_EQ(H::bucket_upper(b), p + (p >> 4)) << e;
        EXPECT_EQ(H::bucket_of(2 * p - 1), b + 15) << e;
        EXPECT_EQ(H::bucket_upper(b + 15), 2 * p) << e;
    }
}

TEST(HistogramBuckets, LowerAtMostValueBelowUpper) {
    for (std::uint64_t v = 0; v < 100000; v++) check_consistent(v);
    for (int e = 0; e <= 40; e++) {
        const std::uint64_t p = std::uint64_t{1} << e;
        check_consistent(p);
        check_consistent(p - 1);
        check_consistent(p + 1);
        if (e < 40) check_consistent(2 * p - 1);
    }
    std::mt19937_64 rng(3);
    for (int i = 0; i < 1000000; i++) check_consistent(rng() >> (23 + rng() % 41));  // < 2^41
    // relative width: at most 1/16 above 16 ns
    for (std::size_t b = 16; b < H::kBuckets; b++)
        ASSERT_LE(16 * (H::bucket_upper(b) - H::bucket_lower(b)), H::bucket_lower(b)) << b;
}

TEST(HistogramBuckets, HugeValuesClampToTheLastBucket) {
    for (std::uint64_t v : {std::uint64_t{1} << 41, (std::uint64_t{1} << 41) + 1, std::uint64_t{1} << 50,
                            std::uint64_t{1} << 63, UINT64_MAX})
        EXPECT_EQ(H::bucket_of(v), H::kBuckets - 1) << v;
    EXPECT_EQ(H::bucket_of((std::uint64_t{1} << 41) - 1), H::kBuckets - 1);
    EXPECT_EQ(H::bucket_of(std::uint64_t{1} << 40), H::kBuckets - 16);
}

TEST(HistogramRecord, CountsSumAndAverage) {
    auto h = fresh();
    for (std::uint64_t ms : {1, 2, 3, 4}) h->record(ms * 1000000);
    EXPECT_EQ(h->count, 4u);
    EXPECT_EQ(h->sum_ns, 10000000u);
    LatencySummary s;
    s.add(*h);
    EXPECT_EQ(s.count(), 4u);
    EXPECT_EQ(s.sum_ns(), 10000000u);
    EXPECT_EQ(s.avg_ms(), 2.5);
    std::uint64_t in_buckets = 0;
    for (std::size_t b = 0; b < H::kBuckets; b++) in_buckets += h->buckets[b];
    EXPECT_EQ(in_buckets, 4u);
}

TEST(HistogramRecord, AverageIsExactNotFromBuckets) {
    auto h = fresh();
    // 1000 + 1001 + ... + 1999 ns: the buckets cannot tell these apart finely, the sum can.
    std::uint64_t sum = 0;
    for (std::uint64_t v = 1000; v < 2000; v++) {
        h->record(v);
        sum += v;
    }
    ASSERT_EQ(sum, 1499500u);
    LatencySummary s;
    s.add(*h);
    EXPECT_EQ(s.avg_ms(), 1499.5 / 1e6);
    // and huge values are summed in full, not clamped
    auto g = fresh();
    g->record(std::uint64_t{1} << 50);
    g->record(0);
    LatencySummary t;
    t.add(*g);
    EXPECT_EQ(t.avg_ms(), static_cast<double>(std::uint64_t{1} << 49) / 1e6);
}

TEST(HistogramRecord, EmptySummary) {
    LatencySummary s;
    EXPECT_EQ(s.count(), 0u);
    EXPECT_EQ(s.avg_ms(), 0.0);
    EXPECT_EQ(s.quantile_ms(0.95), 0.0);
    EXPECT_EQ(s.count_below(UINT64_MAX), 0u);
    auto h = fresh();
    s.add(*h);
    EXPECT_EQ(s.quantile_ms(0.5), 0.0);
}

namespace {

void check_quantiles(const char *what, const std::vector<std::uint64_t> &values) {
    auto h = fresh();
    for (std::uint64_t v : values) h->record(v);
    LatencySummary s;
    s.add(*h);
    for (double q : {0.5, 0.9, 0.95, 0.99}) {
        const double exact = static_cast<double>(exact_quantile(values, q));
        const double got = s.quantile_ms(q) * 1e6;
        EXPECT_NEAR(got, exact, exact * 0.05) << what << " q " << q;
    }
}

}  // namespace

TEST(HistogramQuantiles, Uniform) {
    std::mt19937_64 rng(1);
    std::uniform_int_distribution<std::uint64_t> d(1000000, 50000000);  // 1..50 ms
    std::vector<std::uint64_t> v;
    for (int i = 0; i < 200000; i++) v.push_back(d(rng));
    check_quantiles("uniform", v);
}

TEST(HistogramQuantiles, LogNormal) {
    std::mt19937_64 rng(2);
    std::lognormal_distribution<double> d(std::log(200000.0), 1.5);  // median 0.2 ms, heavy tail
    std::vector<std::uint64_t> v;
    for (int i = 0; i < 200000; i++) v.push_back(static_cast<std::uint64_t>(d(rng)));
    check_quantiles("lognormal", v);
}

TEST(HistogramQuantiles, Bimodal) {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> fast(50000, 5000), slow(20000000, 2000000);  // 50 us and 20 ms
    std::bernoulli_distribution is_slow(0.07);  // p95 and p99 fall in the slow mode, p50 and p90 in the fast one
    std::vector<std::uint64_t> v;
    for (int i = 0; i < 200000; i++)
        v.push_back(static_cast<std::uint64_t>(std::max(1.0, is_slow(rng) ? slow(rng) : fast(rng))));
    check_quantiles("bimodal", v);
}

TEST(HistogramQuantiles, OneNanosecondToOneSecond) {
    std::mt19937_64 rng(4);
    std::uniform_real_distribution<double> exponent(0, 9);  // log-uniform over 1 ns .. 1e9 ns
    std::vector<std::uint64_t> v;
    for (int i = 0; i < 200000; i++) v.push_back(static_cast<std::uint64_t>(std::pow(10.0, exponent(rng))));
    v.push_back(1);
    v.push_back(1000000000);
    check_quantiles("1ns..1e9ns", v);
    // and every single value on its own, as the only sample
    for (std::uint64_t x : {1ull, 7ull, 15ull, 16ull, 17ull, 31ull, 33ull, 100ull, 1000ull, 12345ull, 999999ull,
                            1000000ull, 123456789ull, 1000000000ull}) {
        check_quantiles("single", std::vector<std::uint64_t>(10, x));
    }
}

TEST(HistogramMerge, TwoHistogramsEqualOne) {
    auto a = fresh(), b = fresh(), all = fresh();
    std::mt19937_64 rng(9);
    std::lognormal_distribution<double> d(std::log(1e6), 2);
    for (int i = 0; i < 100000; i++) {
        const auto v = static_cast<std::uint64_t>(d(rng));
        (i % 3 ? a : b)->record(v);
        all->record(v);
    }
    LatencySummary merged, one;
    merged.add(*a);
    merged.add(*b);
    one.add(*all);
    EXPECT_EQ(merged.count(), 100000u);
    EXPECT_EQ(merged.count(), one.count());
    EXPECT_EQ(merged.sum_ns(), one.sum_ns());
    EXPECT_EQ(merged.avg_ms(), one.avg_ms());
    for (double q : {0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0}) EXPECT_EQ(merged.quantile_ms(q), one.quantile_ms(q));
    for (std::size_t bucket = 0; bucket < H::kBuckets; bucket++) {
        ASSERT_EQ(a->buckets[bucket] + b->buckets[bucket], all->buckets[bucket]) << bucket;
        const std::uint64_t edge = H::bucket_upper(bucket);
        ASSERT_EQ(merged.count_below(edge), one.count_below(edge)) << bucket;
    }
}

TEST(HistogramMerge, ConcurrentRecordingLosesNothing) {
    auto h = fresh();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&h, t] {
            for (std::uint64_t i = 0; i < 100000; i++) h->record(1000 * (t + 1) + i % 100);
        });
    for (auto &th : threads) th.join();
    LatencySummary s;
    s.add(*h);
    EXPECT_EQ(s.count(), 400000u);
    // sum over t of 100000 * 1000 (t + 1) + 1000 * (0 + ... + 99)
    EXPECT_EQ(s.sum_ns(), 100000ull * 1000 * (1 + 2 + 3 + 4) + 4ull * 1000 * 4950);
}

TEST(HistogramCountBelow, AtBucketEdges) {
    auto h = fresh();
    const std::vector<std::uint64_t> values = {0, 5, 10, 15, 16, 100, 1000, 1023, 1024, 999999, 1000000,
                                               5000000, 1ull << 45};
    for (std::uint64_t v : values) h->record(v);
    LatencySummary s;
    s.add(*h);
    // At every bucket edge, exactly the values below the edge (the last
    // bucket also holds the clamped values, so its edge is not a real one).
    for (std::size_t b = 0; b + 1 < H::kBuckets; b++) {
        const std::uint64_t edge = H::bucket_upper(b);
        const auto below = static_cast<std::uint64_t>(
            std::count_if(values.begin(), values.end(), [edge](std::uint64_t v) { return v < edge; }));
        ASSERT_EQ(s.count_below(edge), below) << "edge " << edge;
    }
    // hand-checked points
    EXPECT_EQ(s.count_below(0), 0u);
    EXPECT_EQ(s.count_below(1), 1u);     // 0
    EXPECT_EQ(s.count_below(11), 3u);    // 0, 5, 10
    EXPECT_EQ(s.count_below(1024), 8u);  // ... 100, 1000 (bucket [992, 1024)), 1023
    EXPECT_EQ(s.count_below(1025), 8u) << "1024 sits in [1024, 1088)";
    EXPECT_EQ(s.count_below(1088), 9u);
    EXPECT_EQ(s.count_below(std::uint64_t{1} << 40), values.size() - 1);
    EXPECT_EQ(s.count_below(UINT64_MAX), values.size()) << "the clamped value is counted at the top";
}
