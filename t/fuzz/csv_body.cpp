// libFuzzer target: CSV bodies of /score, and the answers rendered from
// what parses. What parses must hold its promises (a field per column,
// timestamps in range and increasing, finite values), and the CSV answer
// must read back as the same rows with two more columns.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "core/csv.hpp"
#include "core/request.hpp"
#include "core/score.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    using namespace anomaly;
    const std::string_view body(reinterpret_cast<const char *>(data), size);
    FitLimits limits;
    limits.min_points = 1;
    limits.max_points = 1000;
    CsvTable table;
    TrainingData points;
    Error e = parse_csv_body(body, limits, true, &table, &points);
    if (e && e.status != 400 && e.status != 422) __builtin_trap();
    if (e) {
        if (e.detail.empty()) __builtin_trap();
        return 0;
    }
    const std::size_t n = points.values.size();
    const std::size_t columns = table.header.size();
    if (n == 0 || n > 1000 || points.timestamps.size() != n || table.fields.size() != n * columns) __builtin_trap();
    if (table.timestamp_column >= columns || table.value_column >= columns ||
        table.timestamp_column == table.value_column)
        __builtin_trap();
    for (std::size_t i = 0; i < n; i++) {
        if (!std::isfinite(points.values[i]) || points.timestamps[i] < 0 || points.timestamps[i] > kMaxTimestamp)
            __builtin_trap();
        if (i > 0 && points.timestamps[i] <= points.timestamps[i - 1]) __builtin_trap();
    }

    // Scores of every kind of point, as a stream would give them.
    std::vector<PointScore> scores(n);
    for (std::size_t i = 0; i < n; i++)
        scores[i] = PointScore{i % 3 == 0, static_cast<double>(i % 101), points.values[i], i % 2 == 0, 1.5};
    ScoreSummary summary;
    summary.series_id = "fuzz";
    std::string json;
    render_score_json(&json, summary, points, scores);
    // The JSON answer is JSON, and its values read back as the values parsed.
    json.append(kJsonPadding, '\0');
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(json.data(), json.size() - kJsonPadding, false).get(root)) __builtin_trap();
    simdjson::dom::array values;
    if (root["values"].get_array().get(values) || values.size() != n) __builtin_trap();
    // Read back with strtod: a whole number beyond 64 bits is valid JSON
    // that simdjson leaves to the caller.
    const char *p = json.c_str() + json.find("\"values\":[") + 10;
    for (std::size_t i = 0; i < n; i++) {
        char *end = nullptr;
        const double d = std::strtod(p, &end);
        if (end == p || d != points.values[i] || std::signbit(d) != std::signbit(points.values[i])) __builtin_trap();
        p = end + 1;
    }

    std::string csv;
    render_score_csv(&csv, summary, &table, points, scores);
    CsvTable again;
    TrainingData points_again;
    if (parse_csv_body(csv, limits, true, &again, &points_again)) __builtin_trap();
    if (again.header.size() != columns + 2 || points_again.timestamps != points.timestamps ||
        points_again.values != points.values)
        __builtin_trap();
    // A field that starts with a byte order mark of its own loses it on the
    // way back (the mark is skipped before the header): compare the rest.
    const bool bom = table.header[0].rfind("\xEF\xBB\xBF", 0) == 0;
    for (std::size_t c = bom ? 1 : 0; c < columns; c++)
        if (again.header[c] != table.header[c]) __builtin_trap();
    for (std::size_t i = 0; i < n; i++)
        for (std::size_t c = 0; c < columns; c++)
            if (again.fields[i * (columns + 2) + c] != table.fields[i * columns + c]) __builtin_trap();
    return 0;
}
