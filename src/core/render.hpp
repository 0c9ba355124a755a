// JSON responses, rendered into caller-provided buffers (the request pool on
// the predict path): no allocation, no iostreams. Doubles use the shortest
// representation that reads back exactly (std::to_chars).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "detector.hpp"
#include "error.hpp"
#include "model.hpp"
#include "stream.hpp"

namespace anomaly {

// Largest output of render_prediction().
constexpr std::size_t kPredictionMaxLength = 320;
// {"anomaly":true,"model_version":"v3","score":4.2,"detector":"three_sigma",
//  "anomaly_score":93.1,"expected_value":10,"lower":4,"upper":16}
// The challenge's three fields first and unchanged; the band's fields only
// where the detector has them.
std::size_t render_prediction(char *buf, const Judgement &judgement, std::uint32_t version,
                              DetectorKind kind) noexcept;

// {"series_id":"sensor_1","version":"v3","points_used":1000}
std::string render_fit(std::string_view series_id, std::uint32_t version, std::uint64_t points);

// {"detail":"...","code":"..."} with the detail escaped as a JSON string.
std::string render_error(const Error &error);

// Appends a double the way render_prediction writes it (finite values only;
// non-finite values are written as null).
void append_double(std::string *out, double value);
// Writes a double into buf (at least 32 bytes); returns the length.
std::size_t format_double(char *buf, double value) noexcept;

// Appends s as a JSON string literal, quotes included.
void append_json_string(std::string *out, std::string_view s);

// 2023-11-14T22:13:20.000Z
std::string iso8601_ms(std::int64_t unix_ms);
// An ISO 8601 time, read: a date (YYYY-MM-DD), then optionally T (t, or a
// space) HH:MM[:SS[.fraction]] and Z or an offset (+HH, +HHMM, +HH:MM); no
// zone means UTC. *unix_ms gets it to the millisecond, *whole_second whether
// its fraction (if any) was all zeros. False for anything else, a date or
// time that does not exist, or a time outside 0..kMaxTimestamp.
bool parse_iso8601(std::string_view s, std::int64_t *unix_ms, bool *whole_second) noexcept;

// GET /series:
// {"series":[{"series_id":"s1","latest_version":"v3","versions":3,"points":1000,
//   "trained_at":"..."}],"next_after":"s1"|null}
// What /series, /series/{id} and the dashboard show of a stream.
struct StreamSummary {
    StreamParams params;            // resolved
    std::uint64_t points_processed = 0;
    std::int64_t last_timestamp = kNoTimestamp;
    std::int64_t created_ms = 0;
    std::uint32_t warmup = 0;
    std::int64_t checkpoint_ms = 0; // 0: none yet
    std::uint32_t state_bytes = 0;
    std::uint32_t zone_bytes = 0;   // the state and the stream's header in the zone, as allocated
};
// ,"stream":{"detector":"rcf","points_processed":..,"stage":"inference",...}
void append_stream_summary(std::string *out, const StreamSummary &s, std::int64_t now_ms);

struct SeriesEntry {
    std::string_view series_id;
    const VersionSummary *latest;  // nullptr: a series with a stream only
    const StreamSummary *stream;   // nullptr: none
    // The anomaly history's counts: ,"points_scored":..,"anomalies":..,"anomaly_rate":..
    std::uint64_t points_scored = 0;
    std::uint64_t anomalies = 0;
    // How many versions it has: fewer than the latest's number once some
    // were deleted or fell out of anomaly_keep_versions.
    std::uint32_t versions = 0;
};
std::string render_series_list(const std::vector<SeriesEntry> &series, bool more);

// GET /series/{id}:
// {"series_id":"s1","versions":[{"version":"v1","points":10,"mean":..,"std":..,
//   "detector":"three_sigma","first_timestamp":..,"last_timestamp":..,"trained_at":"...",
//   "model_bytes":88}]}
// mean and std for three_sigma, median and spread for robust and seasonal,
// then the parameters stored with the version (sigma and tail only when the
// fit gave them), the image's size in the zone.
// more: another page follows; next_after then names the last version given.
std::string render_versions(std::string_view series_id, const std::vector<VersionSummary> &versions, bool more,
                            const StreamSummary *stream = nullptr, std::int64_t now_ms = 0);

// An observe's answer (CONTRACT section 6): one point's fields, or with
// many the same fields as arrays, plus counts. A point is anomalous when it
// is past the warm-up and its anomaly_score reaches threshold.
inline bool observed_anomaly(const StreamPoint &p, double threshold) {
    return p.stage != StreamStage::learning && p.anomaly_score >= threshold;
}
void render_observation(std::string *out, std::string_view series_id, DetectorKind kind, const StreamPoint *points,
                        std::size_t n, bool many, double threshold);

}  // namespace anomaly
