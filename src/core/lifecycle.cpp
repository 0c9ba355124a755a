#include "core/lifecycle.hpp"

#include "core/render.hpp"
#include "core/series.hpp"
#include "core/text.hpp"

namespace anomaly {

std::string render_removed(std::string_view series_id, std::uint32_t version, std::uint32_t versions,
                           bool stream) {
    std::string out = "{\"series_id\":";
    append_json_string(&out, series_id);
    if (version != 0) out += ",\"version\":\"v" + std::to_string(version) + "\"";
    out += ",\"deleted_versions\":" + std::to_string(versions);
    out += stream ? ",\"stream_deleted\":true}" : ",\"stream_deleted\":false}";
    return out;
}

std::string render_imported(const ImportFigures &f, std::string_view code, std::string_view detail) {
    std::string out = "{";
    if (!code.empty()) {
        out += "\"detail\":";
        append_json_string(&out, detail);
        out += ",\"code\":";
        append_json_string(&out, code);
        out += ",";
    }
    out += "\"versions_imported\":" + std::to_string(f.versions_imported);
    out += ",\"versions_present\":" + std::to_string(f.versions_present);
    out += ",\"streams_imported\":" + std::to_string(f.streams_imported);
    out += ",\"streams_kept\":" + std::to_string(f.streams_kept);
    out += ",\"source_commits\":" + std::to_string(f.source_commits);
    out += ",\"series\":[";
    for (std::size_t i = 0; i < f.series.size(); i++) {
        if (i > 0) out += ',';
        append_json_string(&out, f.series[i]);
    }
    out += "]}";
    return out;
}

bool is_export_media_type(std::string_view content_type) noexcept {
    const std::string_view type = trim_blanks(content_type.substr(0, content_type.find(';')));
    return equals_lower(type, "application/octet-stream") || equals_lower(type, "application/vnd.anomaly-export");
}

bool parse_commit_count(std::string_view text, std::uint64_t *count) {
    if (text.empty() || text.size() > 19) return false;
    std::uint64_t n = 0;
    for (char ch : text) {
        if (ch < '0' || ch > '9') return false;
        n = n * 10 + static_cast<std::uint64_t>(ch - '0');
    }
    *count = n;
    return true;
}

bool valid_series_prefix(std::string_view prefix) {
    if (prefix.size() > kMaxSeriesIdLength) return false;
    for (char ch : prefix) {
        const bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                        ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

}  // namespace anomaly
