// A trained version of a series, whatever its detector, as one immutable
// image: a fixed header, then the detector's numbers and arrays, addressed by
// offsets from the image's first byte (never pointers). The same bytes sit in
// the zone, where every worker judges points with the image in place, in the
// spool, and on disk (model record format 2, little-endian), so loading a
// version is a check and a copy.
//
//   header (ModelHeader, 48 bytes)
//   three_sigma, robust:  f64 centre, f64 spread                  (64 bytes in all)
//   seasonal:             f64 centre, f64 spread (the fallback),
//                         u32 buckets (24 or 168), u32 0,
//                         buckets x (f64 centre, f64 spread)
//   iforest:              see detectors/iforest.hpp
//
// Images are built and judged on little-endian hosts only (checked at
// compile time), which is what makes the disk's bytes the zone's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "detector.hpp"
#include "error.hpp"

namespace anomaly {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "model images are little-endian");

constexpr std::uint8_t kModelImageFormat = 2;  // 1: the three-sigma record that preceded images
// Where a version stores no tail (or sigma 0), the predicting location's
// anomaly_tail (anomaly_sigma) applies, as it did before versions stored them.
constexpr std::uint8_t kTailFromLocation = 0xff;
constexpr std::size_t kMaxImageBytes = 64u << 20;

enum class Season : std::uint8_t {
    none = 0,
    day = 1,   // 24 buckets: hour of the day (UTC)
    week = 2,  // 168 buckets: hour of the week, Monday 00:00 UTC first
};

// What a fit asks of its detector (query arguments, the body's "detector",
// directives), stored with the version.
struct DetectorParams {
    DetectorKind kind = DetectorKind::three_sigma;
    double sigma = 0;                       // k of the band; 0: the predicting location's
    std::uint8_t tail = kTailFromLocation;  // a Tail, or the predicting location's
    Season season = Season::day;            // seasonal
    std::uint32_t trees = 100;              // iforest
    std::uint32_t sample = 256;             // iforest: points drawn for each tree
    double contamination = 0.01;            // iforest: share of training points above the threshold
};

// 48 bytes, so that a sigma detector's image (with its band) is 64: one
// 64-byte chunk of the zone. A forest's own parameters are in its layout.
struct ModelHeader {
    std::uint8_t format;           // kModelImageFormat
    DetectorKind kind;
    std::uint8_t tail;             // a Tail or kTailFromLocation
    Season season;                 // seasonal, none otherwise
    std::uint32_t bytes;           // the whole image, header included, a multiple of 8
    std::uint32_t version;         // 1, 2, 3 ... (0 until the owner assigns it)
    std::uint32_t points;          // training points used (at most anomaly_max_points, 1e8)
    std::int64_t first_timestamp;  // Unix seconds
    std::int64_t last_timestamp;
    std::int64_t trained_at_ms;    // Unix milliseconds, set by the server
    double sigma;                  // k, 0: the predicting location's
};
static_assert(sizeof(ModelHeader) == 48 && std::is_trivially_copyable<ModelHeader>::value &&
                  std::is_standard_layout<ModelHeader>::value,
              "ModelHeader is the first 48 bytes of an image, in the zone and on disk");

// The centre and spread of the sigma detectors, after the header.
struct Band {
    double centre;  // mean (three_sigma) or median (robust, seasonal)
    double spread;  // standard deviation, or its robust estimate
};

// What /series and /dashboard show of a version, copied out of the zone:
// its header and, for the sigma detectors, the overall band (the first 16
// bytes after the header in each of their layouts).
struct VersionSummary {
    ModelHeader header;
    Band band;  // zero for iforest
    // iforest's parameters, 0 for the others
    std::uint32_t trees = 0, sample = 0;
    double contamination = 0;
};
VersionSummary summary_of(const ModelHeader &image) noexcept;
inline bool has_band(DetectorKind kind) { return kind != DetectorKind::iforest; }

// What the predicting location says where a version stores nothing.
struct JudgeDefaults {
    double sigma = 3;        // anomaly_sigma
    Tail tail = Tail::both;  // anomaly_tail
};

// How one point is judged (CONTRACT section 5).
struct Judgement {
    bool anomaly = false;
    double score = 0;          // the detector's own number: the z-score for the sigma detectors
    double anomaly_score = 0;  // 0..100: 0 most typical, 70 at the decision boundary
    // The band for this point's time, for the detectors that have one. A
    // one-sided tail has only the side it judges.
    bool has_expected = false, has_lower = false, has_upper = false;
    double expected_value = 0, lower = 0, upper = 0;
};

const char *detector_name(DetectorKind kind) noexcept;
// False for a name this build does not offer.
bool detector_from_name(std::string_view name, DetectorKind *kind) noexcept;
const char *season_name(Season season) noexcept;

struct DetectorInfo {
    DetectorKind kind;
    const char *name;
    const char *kind_of_learning;  // "batch" (trained by a fit) or "stream"
    const char *learns;            // one line for /healthcheck and the README
};
// The detectors this build offers, in the order /healthcheck lists them.
const DetectorInfo *detectors(std::size_t *count) noexcept;

// Trains params.kind on data (valid, as parse_fit_body leaves it) into
// *image, version and trained_at_ms 0 for the caller to set. Errors:
//   422 constant_series  nothing varies enough to judge a point by
//   422 invalid_value    the values are too large to summarise
Error train(const TrainingData &data, const DetectorParams &params, std::string *image);

// An image's header, read from its first bytes (which must be an image that
// passed check_image, or one train() built).
inline const ModelHeader &header_of(const void *image) { return *static_cast<const ModelHeader *>(image); }

// Whether bytes are an image this build can judge with: its format, a known
// kind, sizes that agree, finite numbers, positive spreads, and for a forest
// nodes that stay inside their tree. Everything read from disk or spool
// passes here first. image must be 8-byte aligned.
bool check_image(std::string_view bytes) noexcept;

// Judges value at timestamp (Unix seconds) with an image in place: reads it,
// never writes it, allocates nothing.
Judgement judge(const ModelHeader &image, double value, std::int64_t timestamp,
                const JudgeDefaults &defaults) noexcept;

// The sigma detectors' 0-100 score from r = |z| / k (or the one-sided
// share): r^2 / (r^2 + 3/7) puts r = 1 at 70 and keeps resolution far out
// (r = 10 gives 99.57, r = 100 gives 99.9957).
double sigma_anomaly_score(double r) noexcept;

// An image of the sigma detectors (three_sigma, robust): header and band.
std::string band_image(const TrainingData &data, const DetectorParams &params, Band band);
// The header every train() starts from: kind, parameters, points, timestamps.
ModelHeader new_header(const TrainingData &data, const DetectorParams &params, std::size_t bytes);

// An old three-sigma record (format 1) as an image: sigma and tail from the
// predicting location, as they were.
std::string image_from_model(const Model &model);

}  // namespace anomaly
