#include "core/score.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/render.hpp"
#include "core/text.hpp"

namespace anomaly {

void score_with_image(const ModelHeader &image, const TrainingData &points, const JudgeDefaults &defaults,
                      std::vector<PointScore> *out) {
    const std::size_t n = points.values.size();
    out->resize(n);
    for (std::size_t i = 0; i < n; i++) {
        const Judgement j = judge(image, points.values[i], points.timestamps[i], defaults);
        (*out)[i] = PointScore{j.anomaly, j.anomaly_score, j.score, j.has_expected, j.expected_value};
    }
}

Error score_with_training(const TrainingData &points, const DetectorParams &params, std::size_t min_points,
                          const JudgeDefaults &defaults, std::vector<PointScore> *out) {
    if (points.values.size() < min_points)
        return make_error(422, "too_few_points",
                          "At least " + std::to_string(min_points) + " points are needed to train " +
                              detector_name(params.kind) + ", got " + std::to_string(points.values.size()) +
                              " (anomaly_min_points).");
    std::string image;
    if (Error e = train(points, params, &image)) return e;
    // judge() reads the image's doubles in place: copied to 8-byte aligned memory.
    std::unique_ptr<std::uint64_t[]> aligned(new std::uint64_t[(image.size() + 7) / 8]);
    std::memcpy(aligned.get(), image.data(), image.size());
    score_with_image(header_of(aligned.get()), points, defaults, out);
    return Error();
}

Error score_with_stream(StreamParams params, const TrainingData &points, double threshold, std::uint64_t seed,
                        std::int64_t now_ms, std::vector<PointScore> *out) {
    if (Error e = resolve_stream_params(&params)) return e;
    const std::size_t bytes = stream_state_bytes(params);
    std::unique_ptr<std::uint64_t[]> state(new std::uint64_t[bytes / 8 + 1]());
    init_stream(state.get(), params, now_ms, seed);
    StreamHeader &header = *reinterpret_cast<StreamHeader *>(state.get());
    const std::size_t n = points.values.size();
    out->resize(n);
    for (std::size_t i = 0; i < n; i++) {
        const StreamPoint p = observe(header, points.timestamps[i], points.values[i]);
        (*out)[i] = PointScore{observed_anomaly(p, threshold), p.anomaly_score, p.score, p.has_expected,
                               p.expected_value};
    }
    return Error();
}

std::uint64_t stream_seed(std::string_view series_id) noexcept {
    // CRC-32 (IEEE, as nginx's ngx_crc32_short), mixed as the zone mixes it.
    std::uint32_t crc = 0xffffffffu;
    for (char c : series_id) {
        crc ^= static_cast<unsigned char>(c);
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xffffffffu;
    return crc * 0x9e3779b97f4a7c15ull + series_id.size();
}

namespace {

std::size_t count_anomalies(const std::vector<PointScore> &scores) {
    std::size_t k = 0;
    for (const PointScore &s : scores) k += s.anomaly ? 1 : 0;
    return k;
}

// A value, exactly, faster than format_double for what metrics mostly are:
// a decimal with at most 6 digits after the point. When m / 10^k (m whole,
// below 2^53) is exactly v, the decimal m * 10^-k reads back as v (division
// by an exact power of ten is correctly rounded, as a parser's reading is),
// so the digits of m with a point k places from the right are a correct
// (if not always the shortest) representation.
std::size_t format_value(char *buf, double v) noexcept {
    static const double kPow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    const double a = std::fabs(v);
    if (a < 1e9 && a >= 1e-6) {
        for (int k = 0; k <= 6; k++) {
            const double scaled = a * kPow10[k];
            const double m = std::nearbyint(scaled);
            if (m >= 9007199254740992.0) break;
            if (m / kPow10[k] != a) continue;
            char digits[24];
            char *end = std::to_chars(digits, digits + sizeof(digits), static_cast<std::uint64_t>(m)).ptr;
            std::size_t nd = static_cast<std::size_t>(end - digits);
            char *p = buf;
            if (std::signbit(v)) *p++ = '-';
            if (k == 0) {
                std::memcpy(p, digits, nd);
                return static_cast<std::size_t>(p + nd - buf);
            }
            // Trailing zeros of the fraction cannot occur: k is the first that fits.
            if (nd <= static_cast<std::size_t>(k)) {
                *p++ = '0';
                *p++ = '.';
                for (std::size_t z = nd; z < static_cast<std::size_t>(k); z++) *p++ = '0';
                std::memcpy(p, digits, nd);
                return static_cast<std::size_t>(p + nd - buf);
            }
            const std::size_t whole = nd - static_cast<std::size_t>(k);
            std::memcpy(p, digits, whole);
            p += whole;
            *p++ = '.';
            std::memcpy(p, digits + whole, static_cast<std::size_t>(k));
            return static_cast<std::size_t>(p + k - buf);
        }
    }
    // Far from 1 in scientific notation: format_double may write a whole
    // number of 22 digits, valid JSON that many parsers (simdjson among
    // them) refuse beyond 64 bits.
    if (a >= 1e15 && std::isfinite(v))
        return static_cast<std::size_t>(std::to_chars(buf, buf + 32, v, std::chars_format::scientific).ptr - buf);
    return format_double(buf, v);
}

void append_integer(std::string *out, std::int64_t v) {
    char buf[24];
    const auto res = std::to_chars(buf, buf + sizeof(buf), v);
    out->append(buf, res.ptr);
}

}  // namespace

void render_score_json(std::string *out, const ScoreSummary &summary, const TrainingData &points,
                       const std::vector<PointScore> &scores) {
    const std::size_t n = scores.size();
    const std::size_t anomalies = count_anomalies(scores);
    const std::size_t shown = summary.only_anomalies ? anomalies : n;
    out->clear();
    *out += "{\"series_id\":";
    append_json_string(out, summary.series_id);
    if (summary.version != 0) {
        *out += ",\"version\":\"v";
        append_integer(out, summary.version);
        *out += '"';
    }
    *out += ",\"detector\":\"";
    *out += detector_name(summary.kind);
    *out += "\",\"points\":";
    append_integer(out, static_cast<std::int64_t>(n));
    *out += ",\"anomalies\":";
    append_integer(out, static_cast<std::int64_t>(anomalies));
    // The arrays are most of the answer (100k points are megabytes): written
    // straight into memory sized for the longest a point can take, then cut.
    constexpr std::size_t kNames = 128;                  // the array names and brackets
    constexpr std::size_t kPerPoint = 21 + 3 * 25 + 6 + 5;  // a timestamp, 3 doubles, a bool, commas
    const std::size_t head = out->size();
    out->resize(head + kNames + shown * kPerPoint + 2);
    char *p = &(*out)[head];
    auto put = [&p](const char *s, std::size_t len) {
        std::memcpy(p, s, len);
        p += len;
    };
    auto array = [&](const char *name, auto field) {
        put(",\"", 2);
        put(name, std::strlen(name));
        put("\":[", 3);
        bool first = true;
        for (std::size_t i = 0; i < n; i++) {
            if (summary.only_anomalies && !scores[i].anomaly) continue;
            if (!first) *p++ = ',';
            first = false;
            field(i);
        }
        *p++ = ']';
    };
    array("timestamps", [&](std::size_t i) { p = std::to_chars(p, p + 21, points.timestamps[i]).ptr; });
    array("values", [&](std::size_t i) { p += format_value(p, points.values[i]); });
    array("anomaly", [&](std::size_t i) {
        if (scores[i].anomaly) put("true", 4);
        else put("false", 5);
    });
    array("anomaly_score", [&](std::size_t i) { p += format_double(p, scores[i].anomaly_score); });
    // A band's centre is the same for long runs of points (for every point
    // with three_sigma and robust): written once, copied after.
    char last[32];
    std::size_t last_len = 0;
    double last_value = 0;
    bool has_last = false;
    array("expected_value", [&](std::size_t i) {
        if (!scores[i].has_expected) {
            put("null", 4);
            return;
        }
        const double v = scores[i].expected_value;
        if (!has_last || !(v == last_value) || std::signbit(v) != std::signbit(last_value)) {
            last_len = format_value(last, v);
            last_value = v;
            has_last = true;
        }
        put(last, last_len);
    });
    *p++ = '}';
    out->resize(static_cast<std::size_t>(p - out->data()));
}

void render_score_csv(std::string *out, const ScoreSummary &summary, const CsvTable *table,
                      const TrainingData &points, const std::vector<PointScore> &scores) {
    const std::size_t n = scores.size();
    const bool from_csv = table != nullptr && !table->header.empty() && table->fields.size() == n * table->header.size();
    out->clear();
    out->reserve(64 + (summary.only_anomalies ? count_anomalies(scores) : n) * (from_csv ? 64 : 40));
    if (from_csv) {
        for (const std::string &name : table->header) {
            append_csv_field(out, name);
            *out += ',';
        }
    } else {
        *out += "timestamp,value,";
    }
    *out += "anomaly,anomaly_score\r\n";
    const std::size_t columns = from_csv ? table->header.size() : 0;
    for (std::size_t i = 0; i < n; i++) {
        if (summary.only_anomalies && !scores[i].anomaly) continue;
        if (from_csv) {
            for (std::size_t c = 0; c < columns; c++) {
                append_csv_field(out, table->fields[i * columns + c]);
                *out += ',';
            }
        } else {
            append_integer(out, points.timestamps[i]);
            *out += ',';
            append_double(out, points.values[i]);
            *out += ',';
        }
        *out += scores[i].anomaly ? "true," : "false,";
        append_double(out, scores[i].anomaly_score);
        *out += "\r\n";
    }
}

namespace {

// The q parameter of a media range (1 when absent, 0 when unreadable).
double quality(std::string_view params) {
    while (!params.empty()) {
        const std::size_t semi = params.find(';');
        const std::string_view param = trim_blanks(params.substr(0, semi));
        params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
        const std::size_t eq = param.find('=');
        if (eq == std::string_view::npos || !equals_lower(trim_blanks(param.substr(0, eq)), "q")) continue;
        const std::string_view v = trim_blanks(param.substr(eq + 1));
        // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
        if (v.empty() || (v[0] != '0' && v[0] != '1')) return 0;
        double q = v[0] - '0';
        double scale = 0.1;
        for (std::size_t i = 2; i < v.size() && i < 5; i++, scale /= 10) {
            if (v[1] != '.' || v[i] < '0' || v[i] > '9') return 0;
            q += (v[i] - '0') * scale;
        }
        return q > 1 ? 1 : q;
    }
    return 1;
}

}  // namespace

bool is_csv_media_type(std::string_view content_type) noexcept {
    return equals_lower(trim_blanks(content_type.substr(0, content_type.find(';'))), "text/csv");
}

bool accepts_csv(std::string_view accept) noexcept {
    double csv = 0, json = 0;
    while (!accept.empty()) {
        const std::size_t comma = accept.find(',');
        const std::string_view range = accept.substr(0, comma);
        accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
        const std::size_t semi = range.find(';');
        const std::string_view type = trim_blanks(range.substr(0, semi));
        const double q = semi == std::string_view::npos ? 1 : quality(range.substr(semi + 1));
        if (equals_lower(type, "text/csv")) {
            if (q > csv) csv = q;
        } else if (equals_lower(type, "application/json") || equals_lower(type, "application/*") ||
                   type == "*/*") {
            if (q > json) json = q;
        }
    }
    return csv > 0 && csv >= json;
}

}  // namespace anomaly
