// The on-disk encoding (LevelDB keys and values). Fixed little-endian
// integers and IEEE-754 doubles, a format version first and a detector-kind
// tag, so that old stores stay readable when new detectors arrive.
//
// Keys (series ids never contain '/'):
//   "m/<series_id>/" + 4-byte big-endian version   -> encode_model()
//   "d/<series_id>/" + 4-byte big-endian version   -> encode_training_data()
//   "c/commits"                                    -> u64 little-endian: batches written
// Big-endian versions make LevelDB iterate a series' versions in order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "detector.hpp"

namespace anomaly {

constexpr std::uint8_t kModelFormat = 1;
constexpr std::uint8_t kTrainingDataFormat = 1;

std::string model_key(std::string_view series_id, std::uint32_t version);
std::string training_data_key(std::string_view series_id, std::uint32_t version);
// Splits a model key; false when key is not one.
bool parse_model_key(std::string_view key, std::string_view *series_id,
                     std::uint32_t *version) noexcept;
constexpr std::string_view kModelKeyPrefix = "m/";
// How many batches the store has committed, written with each batch: a zone
// that kept its models across owners compares it with its own count.
constexpr std::string_view kCommitCountKey = "c/commits";
std::string encode_u64(std::uint64_t v);
// False unless bytes is exactly 8 bytes.
bool decode_u64(std::string_view bytes, std::uint64_t *v) noexcept;

// Model record, format 1:
//   u8 format (1) | u8 detector kind | u16 parameter count | u32 version
//   u64 points | i64 first_timestamp | i64 last_timestamp | i64 trained_at_ms
//   f64 parameters[count]            (three_sigma: mean, std)
std::string encode_model(const Model &model);
// False on a wrong format, an unknown kind, a wrong parameter count or a short record.
bool decode_model(std::string_view bytes, Model *model) noexcept;

// Training data, format 1:
//   u8 format (1) | u8 0 | u16 0 | u32 0 | u64 n | f64 values[n]
//   | i64 timestamps[0] | varint (timestamps[i] - timestamps[i-1]) for i in 1..n-1
// Timestamps strictly increase, so the deltas are positive; evenly spaced
// series take one or two bytes a point instead of eight.
std::string encode_training_data(const TrainingData &data);
bool decode_training_data(std::string_view bytes, TrainingData *data);

}  // namespace anomaly
