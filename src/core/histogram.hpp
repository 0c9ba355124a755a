// Latency histograms: fixed layout, no pointers, updated with relaxed atomic
// adds so that each worker writes its own copy in shared memory and readers
// merge the copies. Buckets are log-linear (16 per power of two of
// nanoseconds), so any quantile read from a bucket midpoint is within 3.2%.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace anomaly {

struct LatencyHistogram {
    static constexpr int kSubBits = 4;                     // 16 buckets per power of two
    static constexpr int kMaxExponent = 40;                // ~1100 s; larger values clamp
    static constexpr std::size_t kBuckets = (kMaxExponent - kSubBits + 2) << kSubBits;

    std::uint64_t count;
    std::uint64_t sum_ns;
    std::uint64_t buckets[kBuckets];

    // Safe from any process or thread at once (relaxed atomics).
    void record(std::uint64_t ns) noexcept;

    static std::size_t bucket_of(std::uint64_t ns) noexcept;
    static std::uint64_t bucket_lower(std::size_t bucket) noexcept;  // inclusive
    static std::uint64_t bucket_upper(std::size_t bucket) noexcept;  // exclusive
};
static_assert(std::is_trivially_copyable<LatencyHistogram>::value, "lives in shared memory");

// A plain (non-atomic) sum of histograms, read once and then queried.
class LatencySummary {
public:
    LatencySummary() noexcept;
    void add(const LatencyHistogram &h) noexcept;  // relaxed atomic loads
    std::uint64_t count() const noexcept { return count_; }
    double avg_ms() const noexcept;                // 0 when empty
    double quantile_ms(double q) const noexcept;   // bucket midpoint; 0 when empty
    std::uint64_t sum_ns() const noexcept { return sum_ns_; }
    // Requests in buckets that end at or below ns (Prometheus `le` buckets).
    std::uint64_t count_below(std::uint64_t ns) const noexcept;

private:
    std::uint64_t count_;
    std::uint64_t sum_ns_;
    std::uint64_t buckets_[LatencyHistogram::kBuckets];
};

}  // namespace anomaly
