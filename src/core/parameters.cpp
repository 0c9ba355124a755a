#include "core/parameters.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace anomaly {

namespace {

constexpr const char *kNames[] = {"detector", "sigma", "tail", "season", "trees", "sample", "contamination"};

Error invalid(std::string_view name, const char *accepts, std::string_view value) {
    std::string shown(value.substr(0, 40));
    return make_error(422, "invalid_parameter",
                      std::string(name) + " must be " + accepts + ", not \"" + shown + "\".");
}

// A plain decimal number: what strtod reads in full, finite, no hex, no
// "inf" or "nan" spelled out.
bool number(std::string_view text, double *out) {
    if (text.empty() || text.size() > 32) return false;
    for (char c : text)
        if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E')) return false;
    char buf[40];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    char *end = nullptr;
    errno = 0;
    const double d = std::strtod(buf, &end);
    if (end != buf + text.size() || errno != 0 || !std::isfinite(d)) return false;
    *out = d;
    return true;
}

bool whole(std::string_view text, std::uint32_t lo, std::uint32_t hi, std::uint32_t *out) {
    if (text.empty() || text.size() > 9) return false;
    std::uint32_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

}  // namespace

std::string detector_names(std::string_view learning) {
    std::size_t n = 0;
    const DetectorInfo *all = detectors(&n);
    std::string names;
    for (std::size_t i = 0; i < n; i++) {
        if (!learning.empty() && learning != all[i].kind_of_learning) continue;
        if (!names.empty()) names += ", ";
        names += all[i].name;
    }
    return names;
}

bool is_detector_parameter(std::string_view name) noexcept {
    for (const char *n : kNames)
        if (name == n) return true;
    return false;
}

Error set_detector_parameter(std::string_view name, std::string_view value, DetectorParams *params) {
    if (name == "detector") {
        DetectorKind kind;
        if (!detector_from_name(value, &kind))
            return make_error(422, "invalid_detector",
                              "detector must be one of " + detector_names("batch") + ", not \"" +
                                  std::string(value.substr(0, 40)) + "\".");
        if (is_stream_detector(kind))
            return make_error(422, "invalid_detector",
                              std::string(value) + " learns online from POST /observe; a fit trains one of " +
                                  detector_names("batch") + ".");
        params->kind = kind;
    } else if (name == "sigma") {
        double k = 0;
        if (!number(value, &k) || !(k > 0) || k > 1000)
            return invalid(name, "a number above 0 and at most 1000, such as 3 or 2.5", value);
        params->sigma = k;
    } else if (name == "tail") {
        if (value == "both") params->tail = static_cast<std::uint8_t>(Tail::both);
        else if (value == "upper") params->tail = static_cast<std::uint8_t>(Tail::upper);
        else if (value == "lower") params->tail = static_cast<std::uint8_t>(Tail::lower);
        else return invalid(name, "both, upper or lower", value);
    } else if (name == "season") {
        if (value == "day") params->season = Season::day;
        else if (value == "week") params->season = Season::week;
        else return invalid(name, "day or week", value);
    } else if (name == "trees") {
        if (!whole(value, 1, 1000, &params->trees)) return invalid(name, "a whole number from 1 to 1000", value);
    } else if (name == "sample") {
        if (!whole(value, 2, 1024, &params->sample)) return invalid(name, "a whole number from 2 to 1024", value);
    } else if (name == "contamination") {
        double c = 0;
        if (!number(value, &c) || !(c > 0) || !(c < 0.5))
            return invalid(name, "a share above 0 and below 0.5, such as 0.01", value);
        params->contamination = c;
    }
    return Error();
}

namespace {

// Calls set(name, value) for each argument of the query string whose name
// is one of names (N of them), refusing one given twice.
template <std::size_t N, typename Set>
Error apply_arguments(std::string_view args, const char *const (&names)[N], Set set) {
    bool seen[N] = {};
    while (!args.empty()) {
        const std::size_t amp = args.find('&');
        const std::string_view arg = args.substr(0, amp);
        args = amp == std::string_view::npos ? std::string_view() : args.substr(amp + 1);
        const std::size_t eq = arg.find('=');
        const std::string_view name = arg.substr(0, eq);
        const std::string_view value = eq == std::string_view::npos ? std::string_view() : arg.substr(eq + 1);
        for (std::size_t i = 0; i < N; i++) {
            if (name != names[i]) continue;
            if (seen[i])
                return make_error(422, "invalid_parameter", std::string(name) + " is given more than once.");
            seen[i] = true;
            if (Error e = set(name, value)) return e;
        }
    }
    return Error();
}

}  // namespace

Error apply_fit_arguments(std::string_view args, std::string_view body_detector, DetectorParams *params) {
    if (!body_detector.empty()) {
        if (Error e = set_detector_parameter("detector", body_detector, params)) return e;
    }
    return apply_arguments(args, kNames, [params](std::string_view name, std::string_view value) {
        return set_detector_parameter(name, value, params);
    });
}

namespace {

constexpr const char *kStreamNames[] = {"detector", "trees", "sample", "shingle", "decay",
                                        "alpha", "hourly", "warmup", "recent", "hold"};

}  // namespace

bool is_stream_parameter(std::string_view name) noexcept {
    for (const char *n : kStreamNames)
        if (name == n) return true;
    return false;
}

Error set_stream_parameter(std::string_view name, std::string_view value, StreamParams *params) {
    if (name == "detector") {
        DetectorKind kind;
        if (!detector_from_name(value, &kind) || !is_stream_detector(kind))
            return make_error(422, "invalid_detector",
                              "detector must be one of the stream detectors " + detector_names("stream") +
                                  ", not \"" + std::string(value.substr(0, 40)) + "\".");
        params->kind = kind;
    } else if (name == "trees" || name == "sample" || name == "shingle" || name == "warmup" || name == "recent" ||
               name == "hold") {
        std::uint32_t v = 0;
        if (!whole(value, 0, 100000000, &v)) return invalid(name, "a whole number", value);
        if (name == "trees") params->trees = v;
        else if (name == "sample") params->sample = v;
        else if (name == "shingle") params->shingle = v;
        else if (name == "warmup") params->warmup = v;
        else if (name == "hold") params->hold = v == 0 ? kNoHold : v;
        else params->recent = v == 0 ? kNoRecent : v;
    } else if (name == "decay" || name == "alpha") {
        double d = 0;
        if (!number(value, &d) || !(d > 0) || !(d < 1))
            return invalid(name, "a number above 0 and below 1, such as 0.01", value);
        if (name == "decay") params->decay = d;
        else params->alpha = d;
    } else if (name == "hourly") {
        if (value == "on" || value == "true" || value == "1") params->hourly = 1;
        else if (value == "off" || value == "false" || value == "0") params->hourly = 0;
        else return invalid(name, "on or off", value);
    }
    return Error();
}

Error apply_observe_arguments(std::string_view args, StreamParams *params) {
    Error e = apply_arguments(args, kStreamNames, [params](std::string_view name, std::string_view value) {
        return set_stream_parameter(name, value, params);
    });
    return e ? e : resolve_stream_params(params);
}

}  // namespace anomaly
