#include "core/render.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace anomaly {

std::size_t format_double(char *buf, double value) noexcept {
    if (!std::isfinite(value)) {
        std::memcpy(buf, "null", 4);
        return 4;
    }
    auto res = std::to_chars(buf, buf + 32, value);
    return static_cast<std::size_t>(res.ptr - buf);
}

void append_double(std::string *out, double value) {
    char buf[32];
    out->append(buf, format_double(buf, value));
}

std::size_t render_prediction(char *buf, const Judgement &j, std::uint32_t version, DetectorKind kind) noexcept {
    char *p = buf;
    auto put = [&p](const char *s, std::size_t n) {
        std::memcpy(p, s, n);
        p += n;
    };
    if (j.anomaly) put("{\"anomaly\":true,\"model_version\":\"v", 34);
    else put("{\"anomaly\":false,\"model_version\":\"v", 35);
    p = std::to_chars(p, p + 10, version).ptr;
    put("\",\"score\":", 10);
    p += format_double(p, j.score);
    put(",\"detector\":\"", 13);
    const char *name = detector_name(kind);
    put(name, std::strlen(name));  // at most 16
    put("\",\"anomaly_score\":", 18);
    p += format_double(p, j.anomaly_score);
    if (j.has_expected) {
        put(",\"expected_value\":", 18);
        p += format_double(p, j.expected_value);
    }
    if (j.has_lower) {
        put(",\"lower\":", 9);
        p += format_double(p, j.lower);
    }
    if (j.has_upper) {
        put(",\"upper\":", 9);
        p += format_double(p, j.upper);
    }
    *p++ = '}';
    return static_cast<std::size_t>(p - buf);
}

std::string render_fit(std::string_view series_id, std::uint32_t version, std::uint64_t points) {
    std::string out = "{\"series_id\":";
    append_json_string(&out, series_id);
    out += ",\"version\":\"v" + std::to_string(version) + "\",\"points_used\":" + std::to_string(points) + "}";
    return out;
}

std::string render_error(const Error &error) {
    std::string out = "{\"detail\":";
    append_json_string(&out, error.detail);
    out += ",\"code\":";
    append_json_string(&out, error.code);
    out += '}';
    return out;
}

void append_json_string(std::string *out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    out->push_back('"');
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': *out += "\\\""; break;
        case '\\': *out += "\\\\"; break;
        case '\n': *out += "\\n"; break;
        case '\r': *out += "\\r"; break;
        case '\t': *out += "\\t"; break;
        default:
            if (c < 0x20) {
                *out += "\\u00";
                out->push_back(hex[c >> 4]);
                out->push_back(hex[c & 15]);
            } else {
                out->push_back(ch);
            }
        }
    }
    out->push_back('"');
}

namespace {

// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t at, std::size_t n, unsigned *out) noexcept {
    if (at + n > s.size()) return false;
    unsigned v = 0;
    for (std::size_t i = at; i < at + n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + static_cast<unsigned>(s[i] - '0');
    }
    *out = v;
    return true;
}

}  // namespace

std::string iso8601_ms(std::int64_t unix_ms) {
    const time_t secs = static_cast<time_t>(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[40];
    const std::size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(unix_ms % 1000));
    return buf;
}

bool parse_iso8601(std::string_view s, std::int64_t *unix_ms, bool *whole_second) noexcept {
    *whole_second = true;
    unsigned millis = 0;
    unsigned year, month, day, hour = 0, minute = 0, second = 0;
    if (!digits(s, 0, 4, &year) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, &month) || s[7] != '-' ||
        !digits(s, 8, 2, &day))
        return false;
    if (month < 1 || month > 12 || day < 1) return false;
    static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > kDays[month - 1] + (month == 2 && leap ? 1 : 0)) return false;
    std::size_t i = 10;
    std::int64_t offset = 0;
    if (i < s.size()) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return false;
        if (!digits(s, i + 1, 2, &hour) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(s, i + 4, 2, &minute))
            return false;
        i += 6;
        if (i < s.size() && s[i] == ':') {
            if (!digits(s, i + 1, 2, &second)) return false;
            i += 3;
            if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
                std::size_t j = i + 1;
                unsigned scale = 100;
                for (; j < s.size() && s[j] >= '0' && s[j] <= '9'; j++) {
                    if (s[j] != '0') *whole_second = false;
                    millis += static_cast<unsigned>(s[j] - '0') * scale;
                    scale /= 10;
                }
                if (j == i + 1) return false;
                i = j;
            }
        }
        if (hour > 23 || minute > 59 || second > 59) return false;
        if (i < s.size()) {
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == s.size()) {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                unsigned oh = 0, om = 0;
                const std::size_t rest = s.size() - i - 1;
                if (rest == 2) {
                    if (!digits(s, i + 1, 2, &oh)) return false;
                } else if (rest == 4) {
                    if (!digits(s, i + 1, 2, &oh) || !digits(s, i + 3, 2, &om)) return false;
                } else if (rest == 5) {
                    if (!digits(s, i + 1, 2, &oh) || s[i + 3] != ':' || !digits(s, i + 4, 2, &om)) return false;
                } else {
                    return false;
                }
                if (oh > 23 || om > 59) return false;
                offset = (s[i] == '+' ? 1 : -1) * static_cast<std::int64_t>(oh * 3600 + om * 60);
                i = s.size();
            } else {
                return false;
            }
        }
    }
    if (i != s.size()) return false;
    const std::int64_t t = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    if (t < 0 || t > kMaxTimestamp) return false;
    *unix_ms = t * 1000 + millis;
    return true;
}

std::string render_series_list(const std::vector<SeriesEntry> &series, bool more) {
    std::string out = "{\"series\":[";
    for (std::size_t i = 0; i < series.size(); i++) {
        if (i) out += ',';
        out += "{\"series_id\":";
        append_json_string(&out, series[i].series_id);
        if (series[i].latest != nullptr) {
            const ModelHeader &m = series[i].latest->header;
            out += ",\"latest_version\":\"v" + std::to_string(m.version) + "\",\"versions\":" +
                   std::to_string(series[i].versions) + ",\"points\":" + std::to_string(m.points) + ",\"detector\":\"" +
                   detector_name(m.kind) + "\",\"trained_at\":\"" + iso8601_ms(m.trained_at_ms) + "\"";
        } else {
            out += ",\"latest_version\":null,\"versions\":0";
        }
        if (series[i].stream != nullptr) {
            const StreamSummary &st = *series[i].stream;
            out += ",\"stream\":{\"detector\":\"";
            out += detector_name(st.params.kind);
            out += "\",\"points_processed\":" + std::to_string(st.points_processed) + "}";
        }
        const SeriesEntry &e = series[i];
        out += ",\"points_scored\":" + std::to_string(e.points_scored) + ",\"anomalies\":" +
               std::to_string(e.anomalies) + ",\"anomaly_rate\":";
        append_double(&out, e.points_scored == 0 ? 0.0
                                                 : static_cast<double>(e.anomalies) / static_cast<double>(e.points_scored));
        out += '}';
    }
    out += "],\"next_after\":";
    if (more && !series.empty()) append_json_string(&out, series.back().series_id);
    else out += "null";
    out += '}';
    return out;
}

std::string render_versions(std::string_view series_id, const std::vector<VersionSummary> &versions, bool more,
                            const StreamSummary *stream, std::int64_t now_ms) {
    std::string out = "{\"series_id\":";
    append_json_string(&out, series_id);
    out += ",\"versions\":[";
    bool first = true;
    for (const VersionSummary &v : versions) {
        const ModelHeader &m = v.header;
        if (m.version == 0) continue;
        if (!first) out += ',';
        first = false;
        out += "{\"version\":\"v" + std::to_string(m.version) + "\",\"points\":" + std::to_string(m.points);
        if (has_band(m.kind)) {
            const bool mean = m.kind == DetectorKind::three_sigma;
            out += mean ? ",\"mean\":" : ",\"median\":";
            append_double(&out, v.band.centre);
            out += mean ? ",\"std\":" : ",\"spread\":";
            append_double(&out, v.band.spread);
        }
        out += ",\"detector\":\"";
        out += detector_name(m.kind);
        out += '"';
        if (m.sigma > 0) {
            out += ",\"sigma\":";
            append_double(&out, m.sigma);
        }
        if (m.tail != kTailFromLocation) {
            static const char *const tails[] = {"both", "upper", "lower"};
            out += ",\"tail\":\"";
            out += tails[m.tail <= 2 ? m.tail : 0];
            out += '"';
        }
        if (m.kind == DetectorKind::seasonal) out += ",\"season\":\"" + std::string(season_name(m.season)) + "\"";
        if (m.kind == DetectorKind::iforest) {
            out += ",\"trees\":" + std::to_string(v.trees) + ",\"sample\":" + std::to_string(v.sample) +
                   ",\"contamination\":";
            append_double(&out, v.contamination);
        }
        out += ",\"first_timestamp\":" + std::to_string(m.first_timestamp) +
               ",\"last_timestamp\":" + std::to_string(m.last_timestamp) + ",\"trained_at\":\"" +
               iso8601_ms(m.trained_at_ms) + "\",\"model_bytes\":" + std::to_string(m.bytes) + "}";
    }
    out += "],\"next_after\":";
    if (more && !versions.empty()) out += "\"v" + std::to_string(versions.back().header.version) + "\"";
    else out += "null";
    if (stream != nullptr) append_stream_summary(&out, *stream, now_ms);
    out += '}';
    return out;
}

void append_stream_summary(std::string *out, const StreamSummary &s, std::int64_t now_ms) {
    const StreamParams &p = s.params;
    *out += ",\"stream\":{\"detector\":\"";
    *out += detector_name(p.kind);
    *out += "\",\"points_processed\":" + std::to_string(s.points_processed) + ",\"stage\":\"" +
            (s.points_processed < s.warmup ? "learning" : "inference") + "\",\"warmup\":" + std::to_string(s.warmup) +
            ",\"hold\":" + std::to_string(p.hold == kNoHold ? 0 : p.hold);
    *out += ",\"last_timestamp\":";
    *out += s.last_timestamp == kNoTimestamp ? std::string("null") : std::to_string(s.last_timestamp);
    *out += ",\"created_at\":\"" + iso8601_ms(s.created_ms) + "\"";
    *out += ",\"checkpoint_age_seconds\":";
    if (s.checkpoint_ms == 0) *out += "null";
    else append_double(out, static_cast<double>(std::max<std::int64_t>(0, now_ms - s.checkpoint_ms)) / 1000.0);
    switch (p.kind) {
    case DetectorKind::adaptive:
        *out += ",\"alpha\":";
        append_double(out, p.alpha);
        *out += p.hourly ? ",\"hourly\":true" : ",\"hourly\":false";
        break;
    case DetectorKind::rcf:
        *out += ",\"trees\":" + std::to_string(p.trees) + ",\"sample\":" + std::to_string(p.sample) +
                ",\"shingle\":" + std::to_string(p.shingle) + ",\"decay\":";
        append_double(out, p.decay);
        break;
    default:
        break;
    }
    *out += ",\"state_bytes\":" + std::to_string(s.state_bytes) + ",\"zone_bytes\":" + std::to_string(s.zone_bytes) + "}";
}

void render_observation(std::string *out, std::string_view series_id, DetectorKind kind, const StreamPoint *points,
                        std::size_t n, bool many, double threshold) {
    out->clear();
    out->reserve(160 + (many ? n * 96 : 0));
    *out += "{\"series_id\":";
    append_json_string(out, series_id);
    *out += ",\"detector\":\"";
    *out += detector_name(kind);
    *out += '"';
    if (!many) {
        const StreamPoint &p = points[0];
        *out += observed_anomaly(p, threshold) ? ",\"anomaly\":true" : ",\"anomaly\":false";
        *out += ",\"anomaly_score\":";
        append_double(out, p.anomaly_score);
        *out += ",\"score\":";
        append_double(out, p.score);
        if (p.has_expected) {
            *out += ",\"expected_value\":";
            append_double(out, p.expected_value);
        }
        *out += ",\"stage\":\"";
        *out += stream_stage_name(p.stage);
        *out += "\",\"confidence\":";
        append_double(out, p.confidence);
        *out += ",\"points_processed\":";
        *out += std::to_string(p.points_processed);
        *out += '}';
        return;
    }
    std::size_t learned = 0, skipped = 0, anomalies = 0;
    for (std::size_t i = 0; i < n; i++) {
        if (points[i].stage == StreamStage::skipped) skipped++;
        else learned++;
        if (observed_anomaly(points[i], threshold)) anomalies++;
    }
    *out += ",\"points\":" + std::to_string(n) + ",\"learned\":" + std::to_string(learned) +
            ",\"skipped\":" + std::to_string(skipped) + ",\"anomalies\":" + std::to_string(anomalies);
    auto array = [&](const char *name, auto field) {
        *out += ",\"";
        *out += name;
        *out += "\":[";
        for (std::size_t i = 0; i < n; i++) {
            if (i > 0) *out += ',';
            field(points[i]);
        }
        *out += ']';
    };
    array("anomaly", [&](const StreamPoint &p) { *out += observed_anomaly(p, threshold) ? "true" : "false"; });
    array("anomaly_score", [&](const StreamPoint &p) { append_double(out, p.anomaly_score); });
    array("score", [&](const StreamPoint &p) { append_double(out, p.score); });
    array("expected_value", [&](const StreamPoint &p) {
        if (p.has_expected) append_double(out, p.expected_value);
        else *out += "null";
    });
    array("stage", [&](const StreamPoint &p) {
        *out += '"';
        *out += stream_stage_name(p.stage);
        *out += '"';
    });
    array("confidence", [&](const StreamPoint &p) { append_double(out, p.confidence); });
    array("points_processed", [&](const StreamPoint &p) { *out += std::to_string(p.points_processed); });
    *out += '}';
}

}  // namespace anomaly
