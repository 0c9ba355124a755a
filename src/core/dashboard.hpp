// GET /dashboard: one self-contained HTML page (no external scripts, fonts
// or styles) that lists the series and shows a version's plot. It calls
// series, series/{id}, plot and healthcheck relative to its own URL.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/history.hpp"

namespace anomaly {

// The page without data: its panel of recent anomalies says there are none.
std::string_view dashboard_html() noexcept;

// What the page shows of the anomaly history, gathered by /dashboard.
struct DashboardData {
    std::vector<HistoryEvent> recent;   // newest first
    std::uint64_t points_scored = 0;
    std::uint64_t anomalies = 0;
};
// The page with its panel of recent anomalies filled in.
std::string render_dashboard(const DashboardData &data);

}  // namespace anomaly
