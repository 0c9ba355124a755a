#include "core/request.hpp"

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <simdjson.h>

#include "core/text.hpp"

namespace anomaly {

static_assert(kJsonPadding == simdjson::SIMDJSON_PADDING, "callers pad for simdjson");

namespace {

using simdjson::ondemand::json_type;
namespace od = simdjson::ondemand;

// One parser per thread: fits parse in pool threads, predicts in event loops.
// It keeps its buffers, so a warm parser does not allocate.
od::parser &thread_parser() {
    thread_local od::parser parser;
    return parser;
}

Error malformed(const std::string &detail) { return make_error(400, "malformed_json", detail); }

const char *kFitShape =
    "The body must be {\"timestamps\": [...], \"values\": [...]} or "
    "{\"data\": [{\"timestamp\": ..., \"value\": ...}, ...]}.";

const char *kDetectorShape = "\"detector\" must be a string such as \"robust\".";

enum class Field { ok, bad, broken };  // broken: the JSON itself is damaged

// Number tokens that Python's json module reads but the DOM parser refuses:
// NaN, Infinity, integers beyond 64 bits, 1e999. The slow path blanks them
// out of a copy of the body and asks the DOM parser whether the rest is JSON,
// so that a NaN is invalid_value only in an otherwise well-formed body.
bool python_number(std::string_view s) {
    if (s == "NaN" || s == "Infinity" || s == "-Infinity") return true;
    std::size_t i = 0;
    auto digits = [&] {
        std::size_t start = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') i++;
        return i - start;
    };
    if (i < s.size() && s[i] == '-') i++;
    if (i < s.size() && s[i] == '0') i++;
    else if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
        i++;
        if (digits() == 0) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) i++;
        if (digits() == 0) return false;
    }
    return i == s.size();
}

class Patches {
public:
    Patches(const char *body, std::size_t length) : body_(body), length_(length) {}

    void note(od::value v) {
        std::string_view token = v.raw_json_token();
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\n' ||
                                  token.back() == '\r'))
            token.remove_suffix(1);
        if (python_number(token)) spans_.push_back({token.data() - body_, token.size()});
    }

    bool rest_is_json() const {
        simdjson::padded_string copy(body_, length_);
        for (const auto &[offset, size] : spans_) {
            copy.data()[offset] = '0';
            std::memset(copy.data() + offset + 1, ' ', size - 1);
        }
        simdjson::dom::parser parser;
        simdjson::dom::element root;
        return !parser.parse(copy).get(root);
    }

private:
    const char *body_;
    std::size_t length_;
    std::vector<std::pair<std::ptrdiff_t, std::size_t>> spans_;
};

// A timestamp: a JSON integer or a string of digits, within range.
Field read_timestamp(od::value v, std::int64_t *out, Patches *patches) {
    patches->note(v);
    json_type type;
    if (v.type().get(type)) return Field::bad;
    std::int64_t t = 0;
    if (type == json_type::number) {
        if (v.get_int64().get(t)) return Field::bad;
    } else if (type == json_type::string) {
        std::string_view s;
        if (v.get_string().get(s)) return Field::broken;
        if (s.empty() || s.size() > 18) return Field::bad;
        for (char c : s) {
            if (c < '0' || c > '9') return Field::bad;
            t = t * 10 + (c - '0');
        }
    } else {
        return Field::bad;
    }
    if (t < 0 || t > kMaxTimestamp) return Field::bad;
    *out = t;
    return Field::ok;
}

// A value: a finite JSON number. NaN and Infinity tokens, overflowing
// numbers, null, strings and booleans are all "bad".
Field read_value(od::value v, double *out, Patches *patches) {
    patches->note(v);
    json_type type;
    if (v.type().get(type) || type != json_type::number) return Field::bad;
    double d;
    if (v.get_double().get(d) || !std::isfinite(d)) return Field::bad;
    *out = d;
    return Field::ok;
}

std::string at(const char *array, std::size_t i, const char *member = nullptr) {
    std::string s = std::string(array) + "[" + std::to_string(i) + "]";
    if (member) s += std::string(".") + member;
    return s;
}

// What the body said, before the checks that need all of it.
struct Parsed {
    std::size_t timestamps = 0, values = 0;   // counts seen
    std::string bad_timestamp, bad_value;     // first offender, named
    std::size_t bad_timestamp_index = SIZE_MAX, bad_value_index = SIZE_MAX;
    Patches *patches = nullptr;  // the On Demand path only
};

void note_bad(std::string *name, std::size_t *index, std::size_t i, std::string what) {
    if (i < *index) {
        *index = i;
        *name = std::move(what);
    }
}

// The checks that need the whole body, in the documented order.
Error check_fit(const Parsed &p, const FitLimits &limits, const TrainingData *out) {
    if (p.timestamps != p.values)
        return make_error(422, "length_mismatch",
                          "timestamps has " + std::to_string(p.timestamps) + " items but values has " +
                              std::to_string(p.values) + "; they must be the same length.");
    const std::size_t n = p.values;
    if (n > limits.max_points)
        return make_error(422, "too_many_points",
                          "At most " + std::to_string(limits.max_points) + " points are accepted, got " +
                              std::to_string(n) + " (anomaly_max_points).");
    if (p.bad_timestamp_index != SIZE_MAX) {
        std::string detail = p.bad_timestamp + " is not a Unix timestamp in whole seconds between 0 and 253402300799";
        return make_error(422, "invalid_timestamp", detail + ".");
    }
    if (p.bad_value_index != SIZE_MAX)
        return make_error(422, "invalid_value", p.bad_value + " is not a finite number.");
    for (std::size_t i = 1; i < n && !limits.stream; i++) {
        if (out->timestamps[i] <= out->timestamps[i - 1])
            return make_error(422, "unordered_timestamps",
                              "timestamps[" + std::to_string(i) + "] is not after timestamps[" +
                                  std::to_string(i - 1) + "]; timestamps must be strictly increasing.");
    }
    if (n < limits.min_points)
        return make_error(422, "too_few_points",
                          "At least " + std::to_string(limits.min_points) + " points are needed, got " +
                              std::to_string(n) + " (anomaly_min_points).");
    if (limits.stream || limits.any_spread) return Error();
    bool constant = true;
    for (std::size_t i = 1; i < n && constant; i++) constant = out->values[i] == out->values[0];
    if (constant)
        return make_error(422, "constant_series",
                          "All values are equal, so the standard deviation is 0 and nothing can be anomalous.");
    return Error();
}

Error read_timestamps(od::value v, const FitLimits &limits, TrainingData *out, Parsed *p) {
    od::array arr;
    if (v.get_array().get(arr)) return malformed("\"timestamps\" must be an array.");
    std::size_t n = 0;
    if (!arr.count_elements().get(n)) out->timestamps.reserve(std::min(n, limits.max_points + 1));
    std::size_t i = 0;
    for (auto element : arr) {
        od::value e;
        if (element.get(e)) return malformed("The timestamps array is not valid JSON.");
        std::int64_t t = 0;
        Field f = read_timestamp(e, &t, p->patches);
        if (f == Field::broken) return malformed("The timestamps array is not valid JSON.");
        if (f == Field::bad) note_bad(&p->bad_timestamp, &p->bad_timestamp_index, i, at("timestamps", i));
        if (i <= limits.max_points) out->timestamps.push_back(t);
        i++;
    }
    p->timestamps = i;
    return Error();
}

Error read_values(od::value v, const FitLimits &limits, TrainingData *out, Parsed *p) {
    od::array arr;
    if (v.get_array().get(arr)) return malformed("\"values\" must be an array.");
    std::size_t n = 0;
    if (!arr.count_elements().get(n)) out->values.reserve(std::min(n, limits.max_points + 1));
    std::size_t i = 0;
    for (auto element : arr) {
        od::value e;
        if (element.get(e)) return malformed("The values array is not valid JSON.");
        double d = 0;
        Field f = read_value(e, &d, p->patches);
        if (f == Field::broken) return malformed("The values array is not valid JSON.");
        if (f == Field::bad) note_bad(&p->bad_value, &p->bad_value_index, i, at("values", i));
        if (i <= limits.max_points) out->values.push_back(d);
        i++;
    }
    p->values = i;
    return Error();
}

Error read_data(od::value v, const FitLimits &limits, TrainingData *out, Parsed *p) {
    od::array arr;
    if (v.get_array().get(arr)) return malformed("\"data\" must be an array of {\"timestamp\", \"value\"} objects.");
    std::size_t n = 0;
    if (!arr.count_elements().get(n)) {
        out->timestamps.reserve(std::min(n, limits.max_points + 1));
        out->values.reserve(std::min(n, limits.max_points + 1));
    }
    std::size_t i = 0;
    for (auto element : arr) {
        od::object point;
        if (element.get_object().get(point))
            return malformed("data[" + std::to_string(i) + "] must be an object {\"timestamp\", \"value\"}.");
        bool has_t = false, has_v = false;
        std::int64_t t = 0;
        double d = 0;
        for (auto field : point) {
            std::string_view key;
            od::value fv;
            if (field.unescaped_key().get(key) || field.value().get(fv))
                return malformed("The data array is not valid JSON.");
            Field f = Field::ok;
            if (key == "timestamp" && !has_t) {
                has_t = true;
                f = read_timestamp(fv, &t, p->patches);
                if (f == Field::bad)
                    note_bad(&p->bad_timestamp, &p->bad_timestamp_index, i, at("data", i, "timestamp"));
            } else if (key == "value" && !has_v) {
                has_v = true;
                f = read_value(fv, &d, p->patches);
                if (f == Field::bad) note_bad(&p->bad_value, &p->bad_value_index, i, at("data", i, "value"));
            }
            if (f == Field::broken) return malformed("The data array is not valid JSON.");
        }
        if (!has_t) note_bad(&p->bad_timestamp, &p->bad_timestamp_index, i, at("data", i, "timestamp"));
        if (!has_v) note_bad(&p->bad_value, &p->bad_value_index, i, at("data", i, "value"));
        if (i <= limits.max_points) {
            out->timestamps.push_back(t);
            out->values.push_back(d);
        }
        i++;
    }
    p->timestamps = p->values = i;
    return Error();
}

// The slow path: only after the DOM parser refused the body. On Demand
// walks element by element, so it can name the element that broke it.
Error diagnose_fit_body(const char *body, std::size_t length, const FitLimits &limits, TrainingData *out,
                        std::string *detector) {
    out->timestamps.clear();
    out->values.clear();
    od::document doc;
    if (thread_parser().iterate(simdjson::padded_string_view(body, length, length + kJsonPadding)).get(doc))
        return malformed("The body is not valid JSON.");
    od::object obj;
    if (doc.get_object().get(obj)) return malformed(kFitShape);

    Patches patches(body, length);
    Parsed p;
    p.patches = &patches;
    bool has_ts = false, has_values = false, has_data = false, has_detector = false;
    for (auto field : obj) {
        std::string_view key;
        od::value v;
        if (field.unescaped_key().get(key) || field.value().get(v)) return malformed("The body is not valid JSON.");
        Error e;
        if (key == "detector") {
            if (has_detector) return malformed("The key \"detector\" appears twice.");
            has_detector = true;
            std::string_view name;
            if (v.get_string().get(name)) return malformed(kDetectorShape);
            detector->assign(name);
        } else if (key == "timestamps" || key == "values" || key == "data") {
            bool &seen = key == "timestamps" ? has_ts : key == "values" ? has_values : has_data;
            if (seen) return malformed("The key \"" + std::string(key) + "\" appears twice.");
            seen = true;
            if (key == "timestamps") e = read_timestamps(v, limits, out, &p);
            else if (key == "values") e = read_values(v, limits, out, &p);
            else e = read_data(v, limits, out, &p);
        }
        if (e) return e;
    }
    if (has_data == (has_ts || has_values) || (!has_data && !(has_ts && has_values))) return malformed(kFitShape);

    // The DOM parser refused the body: either for number tokens it does not
    // take (then the checks decide, and big integers are fine) or because the
    // JSON itself is broken.
    if (!patches.rest_is_json()) return malformed("The body is not valid JSON.");
    return check_fit(p, limits, out);
}

Error diagnose_predict_body(const char *body, std::size_t length, PredictInput *out) {
    static const char *kShape = "The body must be a JSON object such as {\"timestamp\": \"1700000000\", \"value\": 42.0}.";
    od::document doc;
    if (thread_parser().iterate(simdjson::padded_string_view(body, length, length + kJsonPadding)).get(doc))
        return malformed("The body is not valid JSON.");
    od::object obj;
    if (doc.get_object().get(obj)) return malformed(kShape);
    bool has_value = false;
    out->has_timestamp = false;
    Error bad_timestamp, bad_value;
    Patches patches(body, length);
    for (auto field : obj) {
        std::string_view key;
        od::value v;
        if (field.unescaped_key().get(key) || field.value().get(v)) return malformed("The body is not valid JSON.");
        if (key == "value") {
            if (has_value) return malformed("The key \"value\" appears twice.");
            has_value = true;
            Field f = read_value(v, &out->value, &patches);
            if (f == Field::broken) return malformed("The body is not valid JSON.");
            if (f == Field::bad) bad_value = make_error(422, "invalid_value", "value is not a finite number.");
        } else if (key == "timestamp") {
            if (out->has_timestamp) return malformed("The key \"timestamp\" appears twice.");
            out->has_timestamp = true;
            Field f = read_timestamp(v, &out->timestamp, &patches);
            if (f == Field::broken) return malformed("The body is not valid JSON.");
            if (f == Field::bad)
                bad_timestamp = make_error(422, "invalid_timestamp",
                                           "timestamp must be Unix seconds, as an integer or a string of digits.");
        }
    }
    if (!has_value) return malformed(kShape);
    if (!patches.rest_is_json()) return malformed("The body is not valid JSON.");
    if (bad_timestamp) return bad_timestamp;
    return bad_value;
}

namespace dom = simdjson::dom;

// Predicts: one parser per thread (event loops), warm after the first call.
dom::parser &reused_parser() {
    thread_local dom::parser parser;
    return parser;
}

// Fits run on whichever pool thread is free, so their parsers are shared: a
// warm parser saves the page faults of a fresh one (16 ms of 34 for a
// 1M-point body). Parsers grown past kKeepCapacity are not kept.
class FitParsers {
public:
    std::unique_ptr<dom::parser> take() {
        std::lock_guard<std::mutex> guard(mutex_);
        if (free_.empty()) return std::make_unique<dom::parser>();
        std::unique_ptr<dom::parser> p = std::move(free_.back());
        free_.pop_back();
        return p;
    }
    void give_back(std::unique_ptr<dom::parser> p) {
        if (p->capacity() > kKeepCapacity) return;
        std::lock_guard<std::mutex> guard(mutex_);
        if (free_.size() < kKeep) free_.push_back(std::move(p));
    }

private:
    static constexpr std::size_t kKeep = 4;
    static constexpr std::size_t kKeepCapacity = std::size_t{64} << 20;
    std::mutex mutex_;
    std::vector<std::unique_ptr<dom::parser>> free_;
};

FitParsers &fit_parsers() {
    static FitParsers parsers;
    return parsers;
}

Field dom_timestamp(dom::element e, std::int64_t *out) {
    std::int64_t t = 0;
    switch (e.type()) {
    case dom::element_type::INT64:
        t = e.get_int64().value_unsafe();
        break;
    case dom::element_type::STRING: {
        std::string_view s = e.get_string().value_unsafe();
        if (s.empty() || s.size() > 18) return Field::bad;
        for (char c : s) {
            if (c < '0' || c > '9') return Field::bad;
            t = t * 10 + (c - '0');
        }
        break;
    }
    default:
        return Field::bad;
    }
    if (t < 0 || t > kMaxTimestamp) return Field::bad;
    *out = t;
    return Field::ok;
}

Field dom_value(dom::element e, double *out) {
    switch (e.type()) {
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE: {
        double d = e.get_double().value_unsafe();
        if (!std::isfinite(d)) return Field::bad;
        *out = d;
        return Field::ok;
    }
    default:
        return Field::bad;
    }
}

Error fit_from_dom(dom::element root, const FitLimits &limits, TrainingData *out, std::string *detector) {
    dom::object obj;
    if (root.get_object().get(obj)) return malformed(kFitShape);
    Parsed p;
    bool has_ts = false, has_values = false, has_data = false, has_detector = false;
    for (dom::key_value_pair kv : obj) {
        const std::string_view key = kv.key;
        if (key == "detector") {
            if (has_detector) return malformed("The key \"detector\" appears twice.");
            has_detector = true;
            std::string_view name;
            if (kv.value.get_string().get(name)) return malformed(kDetectorShape);
            detector->assign(name);
            continue;
        }
        if (key != "timestamps" && key != "values" && key != "data") continue;
        bool &seen = key == "timestamps" ? has_ts : key == "values" ? has_values : has_data;
        if (seen) return malformed("The key \"" + std::string(key) + "\" appears twice.");
        seen = true;
        dom::array arr;
        if (kv.value.get_array().get(arr)) {
            if (key == "data") return malformed("\"data\" must be an array of {\"timestamp\", \"value\"} objects.");
            return malformed("\"" + std::string(key) + "\" must be an array.");
        }
        const std::size_t cap = std::min<std::size_t>(arr.size(), limits.max_points + 1);
        std::size_t i = 0;
        if (key == "timestamps") {
            out->timestamps.reserve(cap);
            for (dom::element e : arr) {
                std::int64_t t = 0;
                if (dom_timestamp(e, &t) == Field::bad)
                    note_bad(&p.bad_timestamp, &p.bad_timestamp_index, i, at("timestamps", i));
                if (i++ <= limits.max_points) out->timestamps.push_back(t);
            }
            p.timestamps = i;
        } else if (key == "values") {
            out->values.reserve(cap);
            for (dom::element e : arr) {
                double d = 0;
                if (dom_value(e, &d) == Field::bad) note_bad(&p.bad_value, &p.bad_value_index, i, at("values", i));
                if (i++ <= limits.max_points) out->values.push_back(d);
            }
            p.values = i;
        } else {
            out->timestamps.reserve(cap);
            out->values.reserve(cap);
            for (dom::element e : arr) {
                dom::object point;
                if (e.get_object().get(point))
                    return malformed("data[" + std::to_string(i) + "] must be an object {\"timestamp\", \"value\"}.");
                std::int64_t t = 0;
                double d = 0;
                dom::element te, ve;
                if (point["timestamp"].get(te) || dom_timestamp(te, &t) == Field::bad)
                    note_bad(&p.bad_timestamp, &p.bad_timestamp_index, i, at("data", i, "timestamp"));
                if (point["value"].get(ve) || dom_value(ve, &d) == Field::bad)
                    note_bad(&p.bad_value, &p.bad_value_index, i, at("data", i, "value"));
                if (i++ <= limits.max_points) {
                    out->timestamps.push_back(t);
                    out->values.push_back(d);
                }
            }
            p.timestamps = p.values = i;
        }
    }
    if (has_data == (has_ts || has_values) || (!has_data && !(has_ts && has_values))) return malformed(kFitShape);
    return check_fit(p, limits, out);
}

Error predict_from_dom(dom::element root, PredictInput *out) {
    static const char *kShape = "The body must be a JSON object such as {\"timestamp\": \"1700000000\", \"value\": 42.0}.";
    dom::object obj;
    if (root.get_object().get(obj)) return malformed(kShape);
    bool has_value = false;
    out->has_timestamp = false;
    Error bad_timestamp, bad_value;
    for (dom::key_value_pair kv : obj) {
        const std::string_view key = kv.key;
        if (key == "value") {
            if (has_value) return malformed("The key \"value\" appears twice.");
            has_value = true;
            if (dom_value(kv.value, &out->value) == Field::bad)
                bad_value = make_error(422, "invalid_value", "value is not a finite number.");
        } else if (key == "timestamp") {
            if (out->has_timestamp) return malformed("The key \"timestamp\" appears twice.");
            out->has_timestamp = true;
            if (dom_timestamp(kv.value, &out->timestamp) == Field::bad)
                bad_timestamp = make_error(422, "invalid_timestamp",
                                           "timestamp must be Unix seconds, as an integer or a string of digits.");
        }
    }
    if (!has_value) return malformed(kShape);
    if (bad_timestamp) return bad_timestamp;
    return bad_value;
}

}  // namespace

// The DOM parser dispatches at run time to the best kernel the CPU has
// (libsimdjson carries them all); On Demand would be fixed at compile time
// to the baseline x86-64 one that nginx's flags select.
Error parse_fit_body(const char *body, std::size_t length, const FitLimits &limits, TrainingData *out,
                     std::string *detector) {
    out->timestamps.clear();
    out->values.clear();
    std::string ignored;
    if (detector == nullptr) detector = &ignored;
    detector->clear();
    std::unique_ptr<dom::parser> parser = fit_parsers().take();
    dom::element root;
    Error result = parser->parse(body, length, false).get(root) ? diagnose_fit_body(body, length, limits, out, detector)
                                                                 : fit_from_dom(root, limits, out, detector);
    fit_parsers().give_back(std::move(parser));
    return result;
}

Error check_model(const Model &model) {
    if (!std::isfinite(model.mean) || !std::isfinite(model.std))
        return make_error(422, "invalid_value",
                          "The values are too large in magnitude: their mean or standard deviation is not a "
                          "finite number.");
    if (!(model.std > 0))
        return make_error(422, "constant_series",
                          "The values vary too little: their standard deviation rounds to 0, so nothing "
                          "could be anomalous.");
    return Error();
}

Error parse_predict_body(const char *body, std::size_t length, PredictInput *out) {
    dom::element root;
    if (!reused_parser().parse(body, length, false).get(root)) return predict_from_dom(root, out);
    return diagnose_predict_body(body, length, out);
}

Error parse_observe_body(const char *body, std::size_t length, std::size_t max_points, ObserveInput *out) {
    static const char *kShape =
        "The body must be one point {\"timestamp\": 1700000000, \"value\": 42.0}, or many as "
        "{\"timestamps\": [...], \"values\": [...]} or {\"data\": [{\"timestamp\": t, \"value\": v}, ...]}.";
    FitLimits limits;
    limits.min_points = 1;
    limits.max_points = max_points;
    limits.stream = true;
    out->points.timestamps.clear();
    out->points.values.clear();
    std::unique_ptr<dom::parser> parser = fit_parsers().take();
    dom::element root;
    Error result;
    dom::object obj;
    if (parser->parse(body, length, false).get(root)) {
        // Not JSON, or a number simdjson cannot hold: the fit shapes' diagnosis
        // names the index; a single point's is the predict body's.
        out->many = true;
        std::string ignored;
        result = diagnose_fit_body(body, length, limits, &out->points, &ignored);
        if (result.status == 400) {
            PredictInput point;
            Error single = diagnose_predict_body(body, length, &point);
            if (single.status == 422) result = single;
            else result = malformed(kShape);
        }
    } else if (!root.get_object().get(obj) && obj["value"].error() == simdjson::SUCCESS) {
        out->many = false;
        PredictInput point;
        result = predict_from_dom(root, &point);
        if (!result && !point.has_timestamp)
            result = make_error(422, "invalid_timestamp",
                                "An observed point needs its timestamp (Unix seconds): a stream learns each "
                                "point once, by its time.");
        if (!result) {
            out->points.timestamps.push_back(point.timestamp);
            out->points.values.push_back(point.value);
        }
    } else {
        out->many = true;
        std::string ignored;
        result = fit_from_dom(root, limits, &out->points, &ignored);
        if (result.status == 400) result = malformed(kShape);
        if (result.status == 422 && std::string_view(result.code) == "too_few_points")
            result.detail = "An observe needs at least one point.";
    }
    fit_parsers().give_back(std::move(parser));
    return result;
}

bool is_json_media_type(std::string_view content_type) noexcept {
    const std::string_view type = trim_blanks(content_type.substr(0, content_type.find(';')));
    constexpr std::string_view kApplication = "application/";
    if (type.size() <= kApplication.size() || !equals_lower(type.substr(0, kApplication.size()), kApplication))
        return false;
    const std::string_view subtype = type.substr(kApplication.size());
    if (equals_lower(subtype, "json")) return true;
    return subtype.size() > 5 && equals_lower(subtype.substr(subtype.size() - 5), "+json") &&
           subtype.find('/') == std::string_view::npos;
}

}  // namespace anomaly
