// Series ids and version names as they appear in URLs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace anomaly {

constexpr std::size_t kMaxSeriesIdLength = 128;

// True when id matches [A-Za-z0-9._:-]{1,128}.
bool is_valid_series_id(std::string_view id) noexcept;

// Accepts "v3", "V3" and "3"; versions start at 1 and fit in 32 bits.
// Returns false for anything else ("", "v", "v0", "-1", "3.0", "v99999999999").
bool parse_version(std::string_view text, std::uint32_t *version) noexcept;

}  // namespace anomaly
