// The on-disk encoding (LevelDB keys and values). Fixed little-endian
// integers and IEEE-754 doubles, a format version first and a detector-kind
// tag, so that old stores stay readable when new detectors arrive.
//
// Keys (series ids never contain '/'):
//   "m/<series_id>/" + 4-byte big-endian version   -> encode_model()
//   "d/<series_id>/" + 4-byte big-endian version   -> encode_training_data()
//   "p/<series_id>/" + 4-byte big-endian version   -> encode_plot_envelope()
//        (absent for versions fitted before plots were summarised)
//   "c/commits"                                    -> u64 little-endian: batches written
//   "s/<series_id>"                                -> encode_checkpoint(): a stream's state
//   "x/" + 8-byte big-endian commit + "<series_id>/" + 4-byte big-endian version
//                                                  -> empty: the commit index, so that an
//        export ?since=N reads the versions committed after commit N, in commit order,
//        without reading every model (absent for versions committed before it was kept)
//   "y/<series_id>/" + 4-byte big-endian version   -> u64 little-endian: the commit that
//        wrote the version, written with its "x/" key, so that removing the version
//        finds that key
// Big-endian versions make LevelDB iterate a series' versions in order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "detector.hpp"
#include "model.hpp"
#include "plot.hpp"

namespace anomaly {

constexpr std::uint8_t kModelFormatThreeSigma = 1;  // written before model images
constexpr std::uint8_t kTrainingDataFormat = 1;
constexpr std::uint8_t kPlotEnvelopeFormat = 1;

std::string model_key(std::string_view series_id, std::uint32_t version);
std::string training_data_key(std::string_view series_id, std::uint32_t version);
std::string plot_envelope_key(std::string_view series_id, std::uint32_t version);
// Splits a model key; false when key is not one.
bool parse_model_key(std::string_view key, std::string_view *series_id,
                     std::uint32_t *version) noexcept;
constexpr std::string_view kModelKeyPrefix = "m/";
// How many batches the store has committed, written with each batch: a zone
// that kept its models across owners compares it with its own count.
constexpr std::string_view kCommitCountKey = "c/commits";
// The commit index ("x/" and "y/" keys above).
constexpr std::string_view kCommitIndexPrefix = "x/";
std::string commit_index_key(std::uint64_t commit, std::string_view series_id, std::uint32_t version);
// Splits a commit index key; false when key is not one.
bool parse_commit_index_key(std::string_view key, std::uint64_t *commit, std::string_view *series_id,
                            std::uint32_t *version) noexcept;
std::string version_commit_key(std::string_view series_id, std::uint32_t version);
std::string encode_u64(std::uint64_t v);
// False unless bytes is exactly 8 bytes.
bool decode_u64(std::string_view bytes, std::uint64_t *v) noexcept;

// Model record. Format 2 (written since there is more than one detector):
// the model image itself, little-endian (layout in model.hpp), its first
// byte the format and its second the detector kind.
// Format 1 (three_sigma only, still read):
//   u8 format (1) | u8 detector kind | u16 parameter count | u32 version
//   u64 points | i64 first_timestamp | i64 last_timestamp | i64 trained_at_ms
//   f64 parameters[count]            (three_sigma: mean, std)
std::string encode_model(std::string_view image);
// Any format into an image that passed check_image(). False on a wrong
// format, an unknown kind, sizes that disagree or a short record.
bool decode_model(std::string_view bytes, std::string *image);
// The format 1 record of a three-sigma model: for tests of old stores.
std::string encode_model_format1(const Model &model);

// The version an image carries, and setting it (the owner assigns it).
inline std::uint32_t image_version(std::string_view image) { return header_of(image.data()).version; }
void set_image_version(std::string *image, std::uint32_t version, std::int64_t trained_at_ms);

// Training data, format 1:
//   u8 format (1) | u8 0 | u16 0 | u32 0 | u64 n | f64 values[n]
//   | i64 timestamps[0] | varint (timestamps[i] - timestamps[i-1]) for i in 1..n-1
// Timestamps strictly increase, so the deltas are positive; evenly spaced
// series take one or two bytes a point instead of eight.
std::string encode_training_data(const TrainingData &data);
bool decode_training_data(std::string_view bytes, TrainingData *data);

// Plot envelope (what /plot draws), format 1:
//   u8 format (1) | u8 0 | u16 column count | u32 0 | u64 points
//   | i64 first_timestamp | i64 last_timestamp
//   | column count x (u16 column | f64 min | f64 max), columns ascending
// 32 + 18 bytes a non-empty column: at most 17,312 bytes however many points.
// Values stay f64: f32 would move a value across the band's edge and flatten
// a series with a large offset (at 1e9 its step is 64).
std::string encode_plot_envelope(const PlotEnvelope &envelope);
// False on a damaged, short or overlong record, and on one that valid
// training data cannot give: columns not ascending or beyond kPlotColumns,
// more columns than points, min > max or not finite, timestamps outside
// 0..kMaxTimestamp or out of order.
bool decode_plot_envelope(std::string_view bytes, PlotEnvelope *envelope);

// Stream checkpoint, format 1:
//   u8 format (1) | 7 bytes 0 | i64 written_ms (Unix ms) | the state (stream.hpp)
constexpr std::uint8_t kCheckpointFormat = 1;
constexpr std::string_view kStreamKeyPrefix = "s/";
std::string stream_key(std::string_view series_id);
// Splits a stream key; false when key is not one.
bool parse_stream_key(std::string_view key, std::string_view *series_id) noexcept;
std::string encode_checkpoint(std::string_view state, std::int64_t written_ms);
// The state (8-byte aligned in *state's buffer, checked by check_stream) and
// when it was written; false on any record this build cannot run.
bool decode_checkpoint(std::string_view bytes, std::string *state, std::int64_t *written_ms);

}  // namespace anomaly
