#include "core/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace anomaly {

namespace {
constexpr std::uint64_t kSub = 1u << LatencyHistogram::kSubBits;
}

std::size_t LatencyHistogram::bucket_of(std::uint64_t ns) noexcept {
    if (ns < kSub) return static_cast<std::size_t>(ns);
    const int e = 63 - __builtin_clzll(ns);
    if (e > kMaxExponent) return kBuckets - 1;
    const std::uint64_t sub = (ns >> (e - kSubBits)) & (kSub - 1);
    return (static_cast<std::size_t>(e - kSubBits + 1) << kSubBits) + static_cast<std::size_t>(sub);
}

std::uint64_t LatencyHistogram::bucket_lower(std::size_t b) noexcept {
    if (b < kSub) return b;
    const int e = static_cast<int>(b >> kSubBits) + kSubBits - 1;
    const std::uint64_t sub = b & (kSub - 1);
    return (kSub + sub) << (e - kSubBits);
}

std::uint64_t LatencyHistogram::bucket_upper(std::size_t b) noexcept {
    if (b < kSub) return b + 1;
    const int e = static_cast<int>(b >> kSubBits) + kSubBits - 1;
    return bucket_lower(b) + (std::uint64_t{1} << (e - kSubBits));
}

void LatencyHistogram::record(std::uint64_t ns) noexcept {
    __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sum_ns, ns, __ATOMIC_RELAXED);
    __atomic_fetch_add(&buckets[bucket_of(ns)], 1, __ATOMIC_RELAXED);
}

LatencySummary::LatencySummary() noexcept : count_(0), sum_ns_(0) {
    std::memset(buckets_, 0, sizeof(buckets_));
}

void LatencySummary::add(const LatencyHistogram &h) noexcept {
    count_ += __atomic_load_n(&h.count, __ATOMIC_RELAXED);
    sum_ns_ += __atomic_load_n(&h.sum_ns, __ATOMIC_RELAXED);
    for (std::size_t i = 0; i < LatencyHistogram::kBuckets; i++)
        buckets_[i] += __atomic_load_n(&h.buckets[i], __ATOMIC_RELAXED);
}

double LatencySummary::avg_ms() const noexcept {
    return count_ == 0 ? 0 : static_cast<double>(sum_ns_) / static_cast<double>(count_) / 1e6;
}

double LatencySummary::quantile_ms(double q) const noexcept {
    // Count from the buckets, not count_: the copies are read without a lock.
    std::uint64_t total = 0;
    for (std::uint64_t c : buckets_) total += c;
    if (total == 0) return 0;
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total))));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < LatencyHistogram::kBuckets; b++) {
        seen += buckets_[b];
        if (seen >= rank) {
            const double lo = static_cast<double>(LatencyHistogram::bucket_lower(b));
            const double hi = static_cast<double>(LatencyHistogram::bucket_upper(b));
            const double mid = b < kSub ? lo : (lo + hi) / 2;
            return mid / 1e6;
        }
    }
    return 0;
}

std::uint64_t LatencySummary::count_below(std::uint64_t ns) const noexcept {
    std::uint64_t n = 0;
    for (std::size_t b = 0; b < LatencyHistogram::kBuckets && LatencyHistogram::bucket_upper(b) <= ns; b++)
        n += buckets_[b];
    return n;
}

}  // namespace anomaly
