// Streams (CONTRACT section 6): a series that learns online from every point
// it is shown. Its whole state is one fixed-size, position-independent block
// of bytes: a header, the score post-processing's state, the detector's state
// and a ring of recent points for /plot, addressed by offsets from the first
// byte (never pointers). The same bytes sit in the zone, where a worker
// updates them in place under the stream's own lock, and on disk (a stream
// checkpoint, little-endian), so resuming a stream is a check and a copy.
//
//   header (StreamHeader, 64 bytes)
//   post-processing state (at post_offset): raw score -> 0..100
//   detector state (at detector_offset): see streams/<detector>.hpp
//   recent points (at recent_offset): recent_capacity x StreamRecent
//
// Everything random is drawn from the state's own generator, so a stream
// resumed from its checkpoint answers what the uninterrupted one would have.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "detector.hpp"
#include "error.hpp"

namespace anomaly {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "stream states are little-endian");

constexpr std::uint8_t kStreamFormat = 1;
constexpr std::int64_t kNoTimestamp = INT64_MIN;  // a stream that has learned nothing yet
constexpr std::size_t kMaxStreamBytes = 4u << 20;
// Values beyond +-1e30 are learned and scored as +-1e30: every detector's
// sums and squares then stay finite (a forest keeps f32), whatever a client sends.
constexpr double kMaxStreamValue = 1e30;

enum class StreamStage : std::uint8_t {
    learning = 0,   // the warm-up: scored 0, never anomalous, learned
    inference = 1,  // scored and learned
    skipped = 2,    // at or before the last learned timestamp: scored, not learned
};
const char *stream_stage_name(StreamStage stage) noexcept;

// Whether a detector learns online (created by /observe) rather than from a fit.
bool is_stream_detector(DetectorKind kind) noexcept;

// What a stream is created with (query arguments at its first observe, then
// directives). 0 means the detector's default; resolve_stream_params fills
// them in, so a stored state always holds the numbers it runs with.
struct StreamParams {
    DetectorKind kind = DetectorKind::pattern;
    std::uint32_t warmup = 0;   // points scored 0 (stage learning) before inference
    std::uint32_t recent = 0;   // recent points kept for /plot (0 default; kNoRecent: none)
    // rcf
    std::uint32_t trees = 0;    // trees in the forest
    std::uint32_t sample = 0;   // points each tree keeps (its reservoir)
    std::uint32_t shingle = 0;  // consecutive values that make one point
    double decay = 0;           // time decay per point of the reservoir's weights
    // adaptive
    double alpha = 0;           // weight of the newest point in the moving mean and variance
    std::uint8_t hourly = 0;    // 1: a mean and variance per UTC hour of the day
    // After an alarm, the scores of this many learned points are halved, so
    // that one event is one alarm (0 default 288; kNoHold: none). At most 65535.
    std::uint32_t hold = 0;
};
constexpr std::uint32_t kNoRecent = 0xffffffffu;
constexpr std::uint32_t kNoHold = 0xffffffffu;

// Fills in the defaults of params.kind and checks every number:
// 422 invalid_detector (not a stream detector), 422 invalid_parameter.
Error resolve_stream_params(StreamParams *params);

// The size of a stream's state with resolved params, a multiple of 8.
std::size_t stream_state_bytes(const StreamParams &params) noexcept;

// 64 bytes, the first of every state.
struct StreamHeader {
    std::uint8_t format;             // kStreamFormat
    DetectorKind kind;
    std::uint16_t hold;              // points whose scores are halved after an alarm (StreamParams::hold)
    std::uint32_t bytes;             // the whole state, header included, a multiple of 8
    std::uint64_t points_processed;  // points learned
    std::int64_t last_timestamp;     // Unix seconds of the last point learned, kNoTimestamp before
    std::int64_t created_ms;         // Unix milliseconds, when the first observe created it
    std::uint32_t warmup;            // points of the learning stage
    std::uint32_t post_offset;       // the score post-processing's state
    std::uint32_t detector_offset;   // the detector's state
    std::uint32_t recent_offset;     // the ring of recent points
    std::uint32_t recent_capacity;   // points the ring holds (0: none)
    std::uint32_t recent_next;       // where the next recent point goes
    std::uint64_t rng;               // the state's random generator
};
static_assert(sizeof(StreamHeader) == 64 && std::is_trivially_copyable<StreamHeader>::value &&
                  std::is_standard_layout<StreamHeader>::value,
              "StreamHeader is the first 64 bytes of a stream state, in the zone and on disk");

// One point of the /plot ring.
struct StreamRecent {
    std::int64_t timestamp;
    float value;
    float anomaly_score;
};
static_assert(sizeof(StreamRecent) == 16, "StreamRecent is part of the disk format");

// Writes a new stream's state into state (stream_state_bytes(params) bytes,
// 8-byte aligned) with resolved params. seed: a per-series number (a hash of
// the id), so that two streams do not draw the same cuts.
void init_stream(void *state, const StreamParams &params, std::int64_t created_ms, std::uint64_t seed) noexcept;

// What one observed point answers.
struct StreamPoint {
    double anomaly_score = 0;      // 0..100, 0 while learning
    double score = 0;              // the detector's own number (rcf: its displacement score)
    bool has_expected = false;
    double expected_value = 0;
    StreamStage stage = StreamStage::learning;
    double confidence = 0;         // 0..100, grows as the state matures
    std::uint64_t points_processed = 0;  // after this point
};

// Scores one point against the state, then learns it, unless its timestamp
// is at or before the last learned one (stage skipped: scored, not learned,
// the state unchanged). value is finite. Allocates nothing, throws nothing.
StreamPoint observe(StreamHeader &state, std::int64_t timestamp, double value) noexcept;

// Whether bytes are a state this build can run: format, kind, sizes and
// offsets that agree, finite numbers, and for a forest every tree's
// structure whole (each node reached once, masses and boxes that agree with
// the children). Run on everything read from disk, and on a stream whose
// lock holder died in the middle of an update. bytes must be 8-byte aligned.
bool check_stream(std::string_view bytes) noexcept;

// The resolved parameters a state runs with (for /series and the dashboard).
StreamParams stream_params_of(const StreamHeader &state) noexcept;

// The recent points, oldest first, at most max; returns how many were written.
std::size_t stream_recent(const StreamHeader &state, StreamRecent *out, std::size_t max) noexcept;

}  // namespace anomaly
