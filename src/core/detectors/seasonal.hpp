// seasonal: a robust centre and spread for each hour of the day (or of the
// week), so that a value normal at noon can be anomalous at 3 a.m. A bucket
// with too few training points falls back to the robust band of all points;
// a bucket's spread is never below a floor taken from all points, so a quiet
// hour with nearly identical values does not flag every small wobble.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.hpp"
#include "core/model.hpp"

namespace anomaly {

// A bucket with fewer training points than this uses the overall band.
constexpr std::uint32_t kSeasonalMinBucketPoints = 6;

struct SeasonalLayout {
    Band fallback;
    std::uint32_t buckets;
    std::uint32_t zero;
    // Band bucket[buckets] follows.
};
static_assert(sizeof(SeasonalLayout) == 24, "part of the image format");

// The bucket of a timestamp: hour of the day, or hour of the week from
// Monday 00:00 UTC.
std::uint32_t seasonal_bucket(Season season, std::int64_t timestamp) noexcept;
std::uint32_t seasonal_buckets(Season season) noexcept;

Error train_seasonal(const TrainingData &data, const DetectorParams &params, std::string *image);
bool check_seasonal(std::string_view image) noexcept;
// The band of the bucket timestamp falls in.
Band seasonal_band(const ModelHeader &image, std::int64_t timestamp) noexcept;

}  // namespace anomaly
