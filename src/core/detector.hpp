// Detectors: what a version of a series learned, and how a point is judged.
// Everything here is trivially copyable so that it can sit in shared memory.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

namespace anomaly {

// Stored on disk as a tag: never renumber, only add.
enum class DetectorKind : std::uint8_t {
    three_sigma = 1,  // mean and population standard deviation (the challenge's model)
    robust = 2,       // median and scaled MAD
    seasonal = 3,     // a robust band per hour of the day or of the week
    iforest = 4,      // an Isolation Forest over value, time of day and day of week
    // Stream detectors (stream.hpp): they learn online, from /observe.
    rcf = 5,          // a streaming Random Cut Forest over shingles of recent values
    adaptive = 6,     // exponentially weighted mean and variance
    pattern = 7,      // a bounded memory of the shapes of recent values; new shapes are anomalies
};

// Which side of the mean counts as anomalous (directive anomaly_tail).
enum class Tail : std::uint8_t {
    both = 0,   // |value - mean| > k * std
    upper = 1,  // value > mean + k * std   (the challenge's rule, exactly)
    lower = 2,  // value < mean - k * std
};

// The latest timestamp a fit accepts: 9999-12-31T23:59:59Z (the earliest is 0).
constexpr std::int64_t kMaxTimestamp = 253402300799;

struct TrainingData {
    std::vector<std::int64_t> timestamps;  // Unix seconds, 0..kMaxTimestamp, strictly increasing
    std::vector<double> values;            // finite
};

// One trained version of one series.
struct Model {
    std::uint32_t version = 0;        // 1, 2, 3 ...
    DetectorKind kind = DetectorKind::three_sigma;
    std::uint8_t reserved[3] = {0, 0, 0};
    std::uint64_t points = 0;         // training points used
    double mean = 0;
    double std = 0;                   // population standard deviation (divides by n)
    std::int64_t first_timestamp = 0; // Unix seconds
    std::int64_t last_timestamp = 0;  // Unix seconds
    std::int64_t trained_at_ms = 0;   // Unix milliseconds, set by the server
};
static_assert(std::is_trivially_copyable<Model>::value, "Model lives in shared memory");

struct Prediction {
    bool anomaly = false;
    double score = 0;  // z-score: (value - mean) / std
};

// Trains the three-sigma detector. Accurate for values with a large offset
// and a tiny spread (two passes, compensated sums). data must be non-empty.
// version and trained_at_ms are left 0 for the caller to fill.
Model train_three_sigma(const TrainingData &data);

// Judges one value. sigma is k (directive anomaly_sigma).
Prediction predict(const Model &model, double value, double sigma, Tail tail) noexcept;

}  // namespace anomaly
