// GET /dashboard: one self-contained HTML page (no external scripts, fonts
// or styles) that lists the series and shows a version's plot. It calls
// series, series/{id}, plot and healthcheck relative to its own URL.
#pragma once

#include <string_view>

namespace anomaly {

std::string_view dashboard_html() noexcept;

}  // namespace anomaly
