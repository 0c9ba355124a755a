#include "core/series.hpp"

namespace anomaly {

bool is_valid_series_id(std::string_view id) noexcept {
    if (id.empty() || id.size() > kMaxSeriesIdLength) return false;
    for (char c : id) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool parse_version(std::string_view text, std::uint32_t *version) noexcept {
    if (!text.empty() && (text[0] == 'v' || text[0] == 'V')) text.remove_prefix(1);
    if (text.empty() || text.size() > 10) return false;
    std::uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (v == 0 || v > UINT32_MAX) return false;
    *version = static_cast<std::uint32_t>(v);
    return true;
}

}  // namespace anomaly
