#include "core/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "core/render.hpp"

namespace anomaly {

namespace {

constexpr int kWidth = 1100, kHeight = 520;
constexpr int kLeft = 90, kRight = kLeft + kPlotColumns, kTop = 60, kBottom = 450;

struct Column {
    double min = INFINITY, max = -INFINITY;
    bool outside_low = false, outside_high = false;
    double low_value = 0, high_value = 0;  // the most extreme point outside the band
};

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
}

// Axis values people read: 1, 2 or 5 times a power of ten.
double nice_step(double span, int ticks) {
    const double raw = span / ticks;
    const double power = std::pow(10, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (raw <= m * power) return m * power;
    return 10 * power;
}

std::string value_label(double v, double step) {
    char buf[32];
    const int decimals = step >= 1 ? 0 : std::min(6, static_cast<int>(std::ceil(-std::log10(step))));
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
    return buf;
}

std::string date_label(std::int64_t t, std::int64_t span) {
    const time_t tt = static_cast<time_t>(t);
    struct tm tm;
    gmtime_r(&tt, &tm);
    char buf[32];
    // Precise enough that no two of the seven labels read the same.
    if (span >= 2 * 365 * 86400) std::strftime(buf, sizeof(buf), "%Y-%m", &tm);
    else if (span >= 60 * 86400) std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
    else if (span >= 600) std::strftime(buf, sizeof(buf), "%m-%d %H:%M", &tm);
    else std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
    return buf;
}

std::string escape_xml(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '&': out += "&amp;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

}  // namespace

std::string render_plot(const PlotInput &in) {
    const TrainingData &d = *in.data;
    const Model &m = *in.model;
    const std::size_t n = d.values.size();
    const double upper = m.mean + in.sigma * m.std;
    const double lower = m.mean - in.sigma * m.std;
    const bool flag_high = in.tail != Tail::lower;
    const bool flag_low = in.tail != Tail::upper;

    const std::int64_t t0 = n ? d.timestamps.front() : 0;
    const std::int64_t t1 = n ? d.timestamps.back() : 1;
    const double tspan = std::max<double>(1, static_cast<double>(t1 - t0));

    double vmin = std::min(lower, m.mean), vmax = std::max(upper, m.mean);
    for (double v : d.values) {
        vmin = std::min(vmin, v);
        vmax = std::max(vmax, v);
    }
    if (vmax - vmin < 1e-300) vmax = vmin + 1;
    const double pad = (vmax - vmin) * 0.05;
    vmin -= pad;
    vmax += pad;

    auto x_of = [&](std::int64_t t) { return kLeft + (static_cast<double>(t - t0) / tspan) * (kPlotColumns - 1); };
    auto y_of = [&](double v) { return kBottom - (v - vmin) / (vmax - vmin) * (kBottom - kTop); };

    std::vector<Column> cols(kPlotColumns);
    for (std::size_t i = 0; i < n; i++) {
        const int c = std::clamp(static_cast<int>(x_of(d.timestamps[i])) - kLeft, 0, kPlotColumns - 1);
        Column &col = cols[c];
        const double v = d.values[i];
        col.min = std::min(col.min, v);
        col.max = std::max(col.max, v);
        if (flag_high && v > upper && (!col.outside_high || v > col.high_value)) {
            col.outside_high = true;
            col.high_value = v;
        }
        if (flag_low && v < lower && (!col.outside_low || v < col.low_value)) {
            col.outside_low = true;
            col.low_value = v;
        }
    }

    std::string svg;
    svg.reserve(160 * 1024);
    svg += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(kWidth) + "\" height=\"" +
           std::to_string(kHeight) + "\" viewBox=\"0 0 " + std::to_string(kWidth) + " " + std::to_string(kHeight) +
           "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";

    // Title: series, version, points, mean, std.
    char stats[160];
    std::snprintf(stats, sizeof(stats), "v%u, %llu points, mean %.6g, std %.6g, band mean \xC2\xB1 %.6g std",
                  m.version, static_cast<unsigned long long>(m.points), m.mean, m.std, in.sigma);
    svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"28\" font-size=\"16\" font-weight=\"bold\">" +
           escape_xml(in.series_id) + "</text>\n";
    svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"46\" fill=\"#444\">" + escape_xml(stats) + "</text>\n";

    // The k-sigma band and the mean.
    const double band_top = std::max<double>(kTop, y_of(upper)), band_bottom = std::min<double>(kBottom, y_of(lower));
    svg += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(band_top) + "\" width=\"" + num(kPlotColumns) +
           "\" height=\"" + num(std::max(0.0, band_bottom - band_top)) + "\" fill=\"#dbeafe\"/>\n";

    // Axes, value ticks and date labels.
    svg += "<g stroke=\"#999\"><line x1=\"" + num(kLeft) + "\" y1=\"" + num(kTop) + "\" x2=\"" + num(kLeft) +
           "\" y2=\"" + num(kBottom) + "\"/><line x1=\"" + num(kLeft) + "\" y1=\"" + num(kBottom) + "\" x2=\"" +
           num(kRight) + "\" y2=\"" + num(kBottom) + "\"/></g>\n";
    const double vstep = nice_step(vmax - vmin, 6);
    svg += "<g fill=\"#333\" text-anchor=\"end\">";
    // Ticks counted, not stepped: at 1e9 a step below half an ulp would never
    // move `v += vstep`. Labels that print alike (the spread is below what
    // six decimals show) are drawn once.
    const double first_tick = std::ceil(vmin / vstep);
    std::string previous_label;
    for (int i = 0; i <= 12; i++) {
        const double v = (first_tick + i) * vstep;
        if (v > vmax) break;
        std::string label = value_label(v, vstep);
        if (label == previous_label) continue;
        svg += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(y_of(v) + 4) + "\">" + label + "</text>";
        previous_label = std::move(label);
    }
    svg += "</g>\n<g fill=\"#333\" text-anchor=\"middle\">";
    const int date_ticks = 6;
    for (int i = 0; i <= date_ticks; i++) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(tspan * i / date_ticks);
        svg += "<text x=\"" + num(x_of(t)) + "\" y=\"" + num(kBottom + 18) + "\">" + date_label(t, t1 - t0) +
               "</text>";
    }
    const time_t first = static_cast<time_t>(t0);
    struct tm first_tm;
    gmtime_r(&first, &first_tm);
    char from[40];
    std::strftime(from, sizeof(from), "time (UTC), from %Y-%m-%d %H:%M:%S", &first_tm);
    svg += "</g>\n<text x=\"" + num(kRight) + "\" y=\"" + num(kBottom + 36) +
           "\" text-anchor=\"end\" fill=\"#666\">" + from + "</text>\n";

    // The data: one vertical stroke per column from its min to its max, joined.
    svg += "<polyline fill=\"none\" stroke=\"#374151\" stroke-opacity=\"0.85\" stroke-width=\"1\" points=\"";
    for (int c = 0; c < kPlotColumns; c++) {
        if (cols[c].min > cols[c].max) continue;
        const double x = kLeft + c + 0.5;
        svg += num(x) + "," + num(y_of(cols[c].min)) + " " + num(x) + "," + num(y_of(cols[c].max)) + " ";
    }
    svg += "\"/>\n";

    // The band's edges and the mean, over the data so that dense series do not hide them.
    auto hline = [&](double v, const char *style) {
        if (v < vmin || v > vmax) return;
        svg += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kRight) + "\" y1=\"" + num(y_of(v)) + "\" y2=\"" +
               num(y_of(v)) + "\" " + style + "/>\n";
    };
    hline(upper, "stroke=\"#2563eb\" stroke-width=\"1.5\"");
    hline(lower, "stroke=\"#2563eb\" stroke-width=\"1.5\"");
    hline(m.mean, "stroke=\"#1d4ed8\" stroke-width=\"2\" stroke-dasharray=\"6 4\"");

    // Training points outside the band, one mark per column and side.
    svg += "<g fill=\"#dc2626\">";
    for (int c = 0; c < kPlotColumns; c++) {
        const double x = kLeft + c + 0.5;
        if (cols[c].outside_high)
            svg += "<circle class=\"outlier\" cx=\"" + num(x) + "\" cy=\"" + num(y_of(cols[c].high_value)) + "\" r=\"3\"/>";
        if (cols[c].outside_low)
            svg += "<circle class=\"outlier\" cx=\"" + num(x) + "\" cy=\"" + num(y_of(cols[c].low_value)) + "\" r=\"3\"/>";
    }
    svg += "</g>\n</svg>\n";
    return svg;
}

}  // namespace anomaly
