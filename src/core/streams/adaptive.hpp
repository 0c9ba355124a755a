// adaptive: an exponentially weighted mean and variance of the values, so the
// band follows a series that drifts or shifts level, forgetting at the rate
// alpha (the weight of the newest point; 1 / alpha points weigh most).
// hourly keeps one mean and variance per UTC hour of the day besides the
// overall one, so noon is judged against noons and 3 a.m. against nights.
//
// Raw score: |value - mean| / standard deviation (of the point's hour once
// that hour has seen kAdaptiveHourMinPoints points, else the overall one),
// computed before the point is learned, 0 for the first kAdaptiveMinPoints.
// Expected value: that mean.
//
// State (little-endian):
//   f64 alpha
//   u8  hourly, 7 bytes 0
//   Moments overall
//   Moments hour[24]   only when hourly
// Moments (24 bytes): f64 mean, f64 var, u64 points.
// 40 bytes, 616 hourly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace anomaly {

constexpr double kAdaptiveAlpha = 0.002;
constexpr double kAdaptiveMinAlpha = 1e-6, kAdaptiveMaxAlpha = 0.5;
constexpr std::uint64_t kAdaptiveHourMinPoints = 8;
constexpr std::uint64_t kAdaptiveMinPoints = 8;  // raw score 0 before

struct AdaptiveMoments {
    double mean;
    double var;
    std::uint64_t points;
};

struct AdaptiveState {
    double alpha;
    std::uint8_t hourly;
    std::uint8_t reserved[7];
    AdaptiveMoments overall;
};
static_assert(sizeof(AdaptiveMoments) == 24 && sizeof(AdaptiveState) == 40 &&
                  std::is_trivially_copyable<AdaptiveState>::value,
              "part of the stream state format");

struct AdaptiveResult {
    double raw;       // |z|
    double expected;  // the mean the point was judged against
};

std::size_t adaptive_state_bytes(bool hourly) noexcept;
void adaptive_init(void *state, double alpha, bool hourly) noexcept;
AdaptiveResult adaptive_update(void *state, std::int64_t timestamp, double value, bool learn) noexcept;
// bytes: the detector's part of a stream state (at least what it says it is).
bool adaptive_check(std::string_view bytes) noexcept;

}  // namespace anomaly
