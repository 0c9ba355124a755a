// Parsing and validation of request bodies (simdjson On Demand). Bodies come
// with padding: the caller guarantees kJsonPadding readable bytes after the
// last byte of the body, so the parser never copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "detector.hpp"
#include "error.hpp"

namespace anomaly {

// Equal to simdjson::SIMDJSON_PADDING (checked in request.cpp).
constexpr std::size_t kJsonPadding = 64;

struct FitLimits {
    std::size_t min_points = 10;        // anomaly_min_points
    std::size_t max_points = 1000000;   // anomaly_max_points
    // Points for a stream (observe): timestamps in any order (a repeated or
    // earlier one is skipped, not refused) and equal values allowed.
    bool stream = false;
    // Points to score (/score): equal values allowed, since nothing is
    // trained from them (a detector that trains checks its own spread).
    bool any_spread = false;
};

// Parses {"timestamps": [...], "values": [...]} or
// {"data": [{"timestamp": t, "value": v}, ...]} and validates it.
// Timestamps: JSON integers (or strings of digits), 0 <= t <= 253402300799
// (year 9999), strictly increasing. Values: finite JSON numbers.
// Checks, first failure wins, in this order:
//   400 malformed_json        not JSON, or neither shape, or extra/missing keys
//   422 length_mismatch       timestamps and values differ in length
//   422 too_many_points       more than limits.max_points
//   422 invalid_timestamp     detail names the index
//   422 invalid_value         NaN, Infinity, null, string, bool, overflow; detail names the index
//   422 unordered_timestamps  detail names the first index not after its predecessor
//   422 too_few_points        fewer than limits.min_points
//   422 constant_series       standard deviation 0
// On success fills *out and returns an Error with status 0.
// A "detector" key with a string value is returned in *detector (cleared
// when absent; nullptr: not wanted); one that is not a string is 400.
Error parse_fit_body(const char *body, std::size_t length, const FitLimits &limits,
                     TrainingData *out, std::string *detector = nullptr);

// After training: a model predicts only with a finite mean and a finite,
// positive standard deviation. Values that are not all equal can still give
// std 0 (a spread below 1e-154 underflows when squared), and values near the
// largest double overflow the sums.
//   422 constant_series  std is 0
//   422 invalid_value    mean or std is not finite
Error check_model(const Model &model);

struct PredictInput {
    bool has_timestamp = false;
    std::int64_t timestamp = 0;  // Unix seconds
    double value = 0;
};

// An observe's body (CONTRACT section 6): one point
// {"timestamp": t, "value": v} (timestamp required: a stream learns a point
// once, by its time), or many in either fit shape, at least one and at most
// max_points, timestamps in any order. Errors as for predict and fit.
struct ObserveInput {
    TrainingData points;
    bool many = false;  // the answer's fields are arrays
};
Error parse_observe_body(const char *body, std::size_t length, std::size_t max_points, ObserveInput *out);

// Whether a Content-Type header declares JSON: application/json or any
// application/...+json, parameters (charset) allowed, case-insensitive. A
// body that changes state must say so: a web page can post text/plain or a
// form to any server its visitor reaches, but not JSON without the server's
// consent (CORS preflight).
bool is_json_media_type(std::string_view content_type) noexcept;

// Parses {"timestamp": "1700000000" | 1700000000, "value": 42.0}.
// "timestamp" is optional; "value" is required.
//   400 malformed_json     not JSON, not an object, no "value"
//   422 invalid_timestamp  timestamp neither an integer nor a string of digits
//   422 invalid_value      value not a finite number
Error parse_predict_body(const char *body, std::size_t length, PredictInput *out);

}  // namespace anomaly
