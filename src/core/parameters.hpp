// A fit's detector and its parameters (CONTRACT section 5), from the
// location's directives, the body's "detector" and the query arguments, in
// that order, each later one overriding. The directives check their values
// with the same functions, so a value nginx -t accepts is one a query may
// send and the other way round.
#pragma once

#include <string>
#include <string_view>

#include "error.hpp"
#include "model.hpp"
#include "stream.hpp"

namespace anomaly {

// One parameter by its query name: detector, sigma, tail, season, trees,
// sample, contamination. 422 invalid_detector or invalid_parameter with a
// detail naming the parameter and what it accepts; 0 status when applied.
// A name that is none of these is not an error here (is_detector_parameter).
Error set_detector_parameter(std::string_view name, std::string_view value, DetectorParams *params);
bool is_detector_parameter(std::string_view name) noexcept;

// The query string of a fit (what follows '?', undecoded), after the body's
// detector (empty: none). Other arguments are left alone. A parameter given
// twice is refused: which one was meant cannot be told.
Error apply_fit_arguments(std::string_view args, std::string_view body_detector, DetectorParams *params);

// The names this build offers, for details: "three_sigma, robust, ...";
// learning "batch" or "stream" lists only those.
std::string detector_names(std::string_view learning = {});

// A stream's parameters (CONTRACT section 6), from the observe location's
// directives, then its query at the series' first observe: detector,
// trees, sample, shingle, decay, alpha, hourly, warmup, recent, hold. The syntax
// is checked here (422 invalid_detector, invalid_parameter), the ranges of
// each detector by resolve_stream_params.
Error set_stream_parameter(std::string_view name, std::string_view value, StreamParams *params);
bool is_stream_parameter(std::string_view name) noexcept;
Error apply_observe_arguments(std::string_view args, StreamParams *params);

}  // namespace anomaly
