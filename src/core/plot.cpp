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

// The time axis: a timestamp's distance from t0 as a fraction of tspan.
// Differences in doubles are exact for timestamps below 2^53 (all valid
// ones) and cannot overflow for any.
double fraction_of(std::int64_t t, std::int64_t t0, double tspan) {
    return (static_cast<double>(t) - static_cast<double>(t0)) / tspan;
}

double span_of(std::int64_t t0, std::int64_t t1) {
    return std::max(1.0, static_cast<double>(t1) - static_cast<double>(t0));
}

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

// The document's start: white, kWidth wide, height high.
void open_svg(std::string *svg, int height) {
    *svg += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    *svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(kWidth) + "\" height=\"" +
            std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(kWidth) + " " + std::to_string(height) +
            "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    *svg += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
}

// Value labels left of a plot area that maps vmin..vmax to bottom..top.
void append_value_ticks(std::string *svg, double vmin, double vmax, double top, double bottom) {
    auto y_of = [&](double v) { return bottom - (v - vmin) / (vmax - vmin) * (bottom - top); };
    const double vstep = nice_step(vmax - vmin, 6);
    // A spread of a few subnormals has no step to label by (it rounds to 0).
    if (!(vstep > 0) || !std::isfinite(vstep)) return;
    *svg += "<g fill=\"#333\" text-anchor=\"end\">";
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
        *svg += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(y_of(v) + 4) + "\">" + label + "</text>";
        previous_label = std::move(label);
    }
    *svg += "</g>\n";
}

// Seven date labels under the time axis at y = axis (t0 at kLeft, t1 at
// kRight - 1), and where the axis starts, in full.
void append_time_labels(std::string *svg, std::int64_t t0, std::int64_t t1, double axis) {
    const double tspan = span_of(t0, t1);
    *svg += "<g fill=\"#333\" text-anchor=\"middle\">";
    const int date_ticks = 6;
    for (int i = 0; i <= date_ticks; i++) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(tspan * i / date_ticks);
        *svg += "<text x=\"" + num(kLeft + fraction_of(t, t0, tspan) * (kPlotColumns - 1)) + "\" y=\"" +
                num(axis + 18) + "\">" + date_label(t, t1 - t0) + "</text>";
    }
    const time_t first = static_cast<time_t>(t0);
    struct tm first_tm;
    gmtime_r(&first, &first_tm);
    char from[40];
    std::strftime(from, sizeof(from), "time (UTC), from %Y-%m-%d %H:%M:%S", &first_tm);
    *svg += "</g>\n<text x=\"" + num(kRight) + "\" y=\"" + num(axis + 36) +
            "\" text-anchor=\"end\" fill=\"#666\">" + from + "</text>\n";
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

PlotEnvelope summarize_for_plot(const TrainingData &d) {
    PlotEnvelope e;
    const std::size_t n = std::min(d.values.size(), d.timestamps.size());
    if (n == 0) return e;
    e.points = n;
    e.first_timestamp = d.timestamps.front();
    e.last_timestamp = d.timestamps[n - 1];
    const std::int64_t t0 = e.first_timestamp;
    const double tspan = span_of(t0, e.last_timestamp);
    double min[kPlotColumns], max[kPlotColumns];
    std::fill(min, min + kPlotColumns, INFINITY);
    std::fill(max, max + kPlotColumns, -INFINITY);
    for (std::size_t i = 0; i < n; i++) {
        // The column render_plot has always drawn a point in: its x, truncated.
        const double x = kLeft + std::clamp(fraction_of(d.timestamps[i], t0, tspan), 0.0, 1.0) * (kPlotColumns - 1);
        const int c = std::min(static_cast<int>(x) - kLeft, kPlotColumns - 1);
        const double v = d.values[i];
        min[c] = std::min(min[c], v);
        max[c] = std::max(max[c], v);
    }
    for (int c = 0; c < kPlotColumns; c++)
        if (min[c] <= max[c]) e.columns.push_back({static_cast<std::uint16_t>(c), min[c], max[c]});
    return e;
}

std::string render_plot(const PlotInput &in, const TrainingData &data) {
    const PlotEnvelope envelope = summarize_for_plot(data);
    PlotInput from_data = in;
    from_data.envelope = &envelope;
    return render_plot(from_data);
}

std::string render_plot(const PlotInput &in) {
    const PlotEnvelope &e = *in.envelope;
    const ModelHeader &m = *in.model;
    const JudgeDefaults defaults{in.sigma, in.tail};
    const double sigma = m.sigma > 0 ? m.sigma : in.sigma;
    const Tail tail = m.tail == kTailFromLocation ? in.tail : static_cast<Tail>(m.tail);
    const VersionSummary summary = summary_of(m);
    // three_sigma and robust: one band for all times.
    const bool flat = m.kind == DetectorKind::three_sigma || m.kind == DetectorKind::robust;
    const bool banded = has_band(m.kind);
    const double centre = summary.band.centre;
    const double upper = centre + sigma * summary.band.spread;
    const double lower = centre - sigma * summary.band.spread;
    const bool flag_high = tail != Tail::lower;
    const bool flag_low = tail != Tail::upper;

    const bool any = !e.columns.empty();
    const std::int64_t t0 = any ? e.first_timestamp : 0;
    const std::int64_t t1 = any ? e.last_timestamp : 1;
    const double tspan = span_of(t0, t1);
    // The time at the middle of a pixel column.
    auto time_of = [&](int column) {
        return t0 + static_cast<std::int64_t>(std::floor((column + 0.5) / (kPlotColumns - 1) * tspan));
    };

    // A band that moves (seasonal): its edges and centre per column.
    std::vector<double> col_upper, col_lower, col_centre;
    if (banded && !flat) {
        col_upper.resize(kPlotColumns);
        col_lower.resize(kPlotColumns);
        col_centre.resize(kPlotColumns);
        for (int c = 0; c < kPlotColumns; c++) {
            const Judgement j = judge(m, centre, time_of(c), defaults);
            col_centre[c] = j.expected_value;
            col_upper[c] = j.has_upper ? j.upper : j.expected_value;
            col_lower[c] = j.has_lower ? j.lower : j.expected_value;
        }
    }

    double vmin = banded ? std::min(lower, centre) : HUGE_VAL, vmax = banded ? std::max(upper, centre) : -HUGE_VAL;
    for (std::size_t c = 0; c < col_upper.size(); c++) {
        vmin = std::min(vmin, col_lower[c]);
        vmax = std::max(vmax, col_upper[c]);
    }
    if (!banded && !any) vmin = 0, vmax = 1;
    for (const PlotEnvelope::Column &c : e.columns) {
        vmin = std::min(vmin, c.min);
        vmax = std::max(vmax, c.max);
    }
    if (vmax - vmin < 1e-300) vmax = vmin + 1;
    const double pad = (vmax - vmin) * 0.05;
    vmin -= pad;
    vmax += pad;

    auto y_of = [&](double v) { return kBottom - (v - vmin) / (vmax - vmin) * (kBottom - kTop); };

    std::string svg;
    svg.reserve(160 * 1024);
    open_svg(&svg, kHeight);

    // Title: series, version, points, and what the detector learned.
    char stats[200];
    const auto points = static_cast<unsigned long long>(m.points);
    switch (m.kind) {
    case DetectorKind::three_sigma:
        std::snprintf(stats, sizeof(stats), "v%u, %llu points, mean %.6g, std %.6g, band mean \xC2\xB1 %.6g std",
                      m.version, points, centre, summary.band.spread, sigma);
        break;
    case DetectorKind::robust:
        std::snprintf(stats, sizeof(stats),
                      "v%u, %llu points, robust: median %.6g, spread %.6g, band median \xC2\xB1 %.6g spread",
                      m.version, points, centre, summary.band.spread, sigma);
        break;
    case DetectorKind::seasonal:
        std::snprintf(stats, sizeof(stats),
                      "v%u, %llu points, seasonal (hour of the %s): band median \xC2\xB1 %.6g spread of each hour",
                      m.version, points, season_name(m.season), sigma);
        break;
    case DetectorKind::iforest:
        std::snprintf(stats, sizeof(stats),
                      "v%u, %llu points, iforest: %u trees of %u points, contamination %.6g; marked: what it flags",
                      m.version, points, summary.trees, summary.sample, summary.contamination);
        break;
    default:  // streams are drawn by render_stream_plot
        std::snprintf(stats, sizeof(stats), "v%u, %llu points", m.version, points);
        break;
    }
    svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"28\" font-size=\"16\" font-weight=\"bold\">" +
           escape_xml(in.series_id) + "</text>\n";
    svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"46\" fill=\"#444\">" + escape_xml(stats) + "</text>\n";

    // The k-sigma band and the mean.
    if (flat) {
        const double band_top = std::max<double>(kTop, y_of(upper)),
                     band_bottom = std::min<double>(kBottom, y_of(lower));
        svg += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(band_top) + "\" width=\"" + num(kPlotColumns) +
               "\" height=\"" + num(std::max(0.0, band_bottom - band_top)) + "\" fill=\"#dbeafe\"/>\n";
    } else if (banded) {
        svg += "<polygon class=\"band\" fill=\"#dbeafe\" points=\"";
        for (int c = 0; c < kPlotColumns; c++) svg += num(kLeft + c + 0.5) + "," + num(y_of(col_upper[c])) + " ";
        for (int c = kPlotColumns - 1; c >= 0; c--) svg += num(kLeft + c + 0.5) + "," + num(y_of(col_lower[c])) + " ";
        svg += "\"/>\n";
    }

    // Axes, value ticks and date labels.
    svg += "<g stroke=\"#999\"><line x1=\"" + num(kLeft) + "\" y1=\"" + num(kTop) + "\" x2=\"" + num(kLeft) +
           "\" y2=\"" + num(kBottom) + "\"/><line x1=\"" + num(kLeft) + "\" y1=\"" + num(kBottom) + "\" x2=\"" +
           num(kRight) + "\" y2=\"" + num(kBottom) + "\"/></g>\n";
    append_value_ticks(&svg, vmin, vmax, kTop, kBottom);
    append_time_labels(&svg, t0, t1, kBottom);

    // The data: one vertical stroke per column from its min to its max, joined.
    svg += "<polyline fill=\"none\" stroke=\"#374151\" stroke-opacity=\"0.85\" stroke-width=\"1\" points=\"";
    for (const PlotEnvelope::Column &c : e.columns) {
        const double x = kLeft + c.column + 0.5;
        svg += num(x) + "," + num(y_of(c.min)) + " " + num(x) + "," + num(y_of(c.max)) + " ";
    }
    svg += "\"/>\n";

    // The band's edges and the mean, over the data so that dense series do not hide them.
    auto hline = [&](double v, const char *style) {
        if (v < vmin || v > vmax) return;
        svg += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kRight) + "\" y1=\"" + num(y_of(v)) + "\" y2=\"" +
               num(y_of(v)) + "\" " + style + "/>\n";
    };
    if (flat) {
        hline(upper, "stroke=\"#2563eb\" stroke-width=\"1.5\"");
        hline(lower, "stroke=\"#2563eb\" stroke-width=\"1.5\"");
        hline(centre, "stroke=\"#1d4ed8\" stroke-width=\"2\" stroke-dasharray=\"6 4\"");
    } else if (banded) {
        auto path = [&](const std::vector<double> &v, const char *style) {
            svg += "<polyline fill=\"none\" " + std::string(style) + " points=\"";
            for (int c = 0; c < kPlotColumns; c++) svg += num(kLeft + c + 0.5) + "," + num(y_of(v[c])) + " ";
            svg += "\"/>\n";
        };
        if (flag_high) path(col_upper, "stroke=\"#2563eb\" stroke-width=\"1.5\"");
        if (flag_low) path(col_lower, "stroke=\"#2563eb\" stroke-width=\"1.5\"");
        path(col_centre, "stroke=\"#1d4ed8\" stroke-width=\"2\" stroke-dasharray=\"6 4\"");
    }

    // Training points the detector flags, one mark per column and side, at
    // the column's most extreme value. For a flat band, outside it on a side
    // means the extreme on that side is; the others judge both extremes at
    // the column's time.
    svg += "<g fill=\"#dc2626\">";
    for (const PlotEnvelope::Column &c : e.columns) {
        const double x = kLeft + c.column + 0.5;
        bool high, low;
        if (flat) {
            high = flag_high && c.max > upper;
            low = flag_low && c.min < lower;
        } else {
            const std::int64_t t = time_of(c.column);
            high = judge(m, c.max, t, defaults).anomaly;
            low = c.min != c.max && judge(m, c.min, t, defaults).anomaly;
            if (banded) {
                high = high && c.max > col_centre[c.column];
                low = low && c.min < col_centre[c.column];
            }
        }
        if (high)
            svg += "<circle class=\"outlier\" cx=\"" + num(x) + "\" cy=\"" + num(y_of(c.max)) + "\" r=\"3\"/>";
        if (low)
            svg += "<circle class=\"outlier\" cx=\"" + num(x) + "\" cy=\"" + num(y_of(c.min)) + "\" r=\"3\"/>";
    }
    svg += "</g>\n</svg>\n";
    return svg;
}

namespace {

// A stream's plot: the values above, the anomaly_score in a strip below.
constexpr int kStreamHeight = 600;
constexpr int kValueBottom = 380;                   // the values: kTop .. kValueBottom
constexpr int kStripTop = 410, kStripBottom = 530;  // anomaly_score 0 .. 100
constexpr int kEmptyHeight = 140;                   // a stream without recent points
constexpr std::size_t kDottedPoints = 240;          // up to this many, each point is a dot too

double score_of(const StreamRecent &p) {
    return std::isfinite(p.anomaly_score) ? std::clamp(static_cast<double>(p.anomaly_score), 0.0, 100.0) : 0.0;
}

}  // namespace

std::string render_stream_plot(const StreamPlotInput &in) {
    const double threshold = std::isfinite(in.threshold) ? in.threshold : 70;
    // Points with a value to draw (an observed value beyond float's range is kept as inf).
    std::size_t n = 0, anomalies = 0;
    std::int64_t t0 = 0, t1 = 0;
    double vmin = HUGE_VAL, vmax = -HUGE_VAL;
    for (const StreamRecent &p : in.recent) {
        if (!std::isfinite(p.value)) continue;
        t0 = n == 0 ? p.timestamp : std::min(t0, p.timestamp);
        t1 = n == 0 ? p.timestamp : std::max(t1, p.timestamp);
        vmin = std::min<double>(vmin, p.value);
        vmax = std::max<double>(vmax, p.value);
        if (score_of(p) >= threshold) anomalies++;
        n++;
    }

    std::string svg;
    svg.reserve(n == 0 ? 2048 : 64 * 1024);
    open_svg(&svg, n == 0 ? kEmptyHeight : kStreamHeight);
    char stats[200];
    std::snprintf(stats, sizeof(stats), "stream, %.*s, %llu point%s processed", static_cast<int>(in.detector.size()),
                  in.detector.data(), static_cast<unsigned long long>(in.points_processed),
                  in.points_processed == 1 ? "" : "s");
    std::string subtitle = stats;
    if (n > 0) {
        std::snprintf(stats, sizeof(stats), "; the last %zu shown, %zu with anomaly_score \xE2\x89\xA5 %.6g", n,
                      anomalies, threshold);
        subtitle += stats;
    }
    svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"28\" font-size=\"16\" font-weight=\"bold\">" +
           escape_xml(in.series_id) + "</text>\n";
    svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"46\" fill=\"#444\">" + escape_xml(subtitle) + "</text>\n";

    if (n == 0) {
        std::string why, how;
        if (in.recent_capacity == 0) {
            why = "No recent points are kept for this stream, so there is nothing to draw.";
            how = "A stream keeps its last N points for plots when its first observe asks for them: POST /observe/" +
                  std::string(in.series_id) + "?recent=N (1 to 65536).";
        } else {
            why = "No points have been learned yet.";
            how = "This stream keeps its last " + std::to_string(in.recent_capacity) +
                  " points for plots: they are drawn here once observed (POST /observe/" + std::string(in.series_id) +
                  ").";
        }
        svg += "<text class=\"empty\" x=\"" + std::to_string(kLeft) + "\" y=\"84\" fill=\"#111827\">" +
               escape_xml(why) + "</text>\n";
        svg += "<text x=\"" + std::to_string(kLeft) + "\" y=\"106\" fill=\"#444\">" + escape_xml(how) + "</text>\n";
        svg += "</svg>\n";
        return svg;
    }

    // One point, or all at one time: a minute around it, the point in the middle.
    if (t1 == t0 && t0 > INT64_MIN + 30 && t1 < INT64_MAX - 30) t0 -= 30, t1 += 30;
    const double tspan = span_of(t0, t1);
    if (!(vmax > vmin)) {
        const double d = std::max(1.0, std::fabs(vmin) * 1e-6);
        vmin -= d;
        vmax += d;
    }
    const double pad = (vmax - vmin) * 0.05;
    vmin -= pad;
    vmax += pad;

    auto x_of = [&](std::int64_t t) {
        return kLeft + std::clamp(fraction_of(t, t0, tspan), 0.0, 1.0) * (kPlotColumns - 1);
    };
    auto y_of = [&](double v) { return kValueBottom - (v - vmin) / (vmax - vmin) * (kValueBottom - kTop); };
    auto y_score = [&](double score) {
        return kStripBottom - std::clamp(score, 0.0, 100.0) / 100.0 * (kStripBottom - kStripTop);
    };

    // More points than columns: per column, the lowest and highest value, the
    // highest score and the point that has it.
    const bool dense = n > static_cast<std::size_t>(kPlotColumns);
    struct Column {
        double min = HUGE_VAL, max = -HUGE_VAL, top_score = -1, top_value = 0;
    };
    std::vector<Column> columns;
    if (dense) {
        columns.resize(kPlotColumns);
        for (const StreamRecent &p : in.recent) {
            if (!std::isfinite(p.value)) continue;
            const int c = std::min(static_cast<int>(x_of(p.timestamp)) - kLeft, kPlotColumns - 1);
            Column &col = columns[static_cast<std::size_t>(std::max(0, c))];
            col.min = std::min<double>(col.min, p.value);
            col.max = std::max<double>(col.max, p.value);
            if (score_of(p) > col.top_score) {
                col.top_score = score_of(p);
                col.top_value = p.value;
            }
        }
    }

    // Axes: the values' and the strip's.
    svg += "<g stroke=\"#999\"><line x1=\"" + num(kLeft) + "\" y1=\"" + num(kTop) + "\" x2=\"" + num(kLeft) +
           "\" y2=\"" + num(kValueBottom) + "\"/><line x1=\"" + num(kLeft) + "\" y1=\"" + num(kValueBottom) +
           "\" x2=\"" + num(kRight) + "\" y2=\"" + num(kValueBottom) + "\"/></g>\n";
    svg += "<rect class=\"strip\" x=\"" + num(kLeft) + "\" y=\"" + num(kStripTop) + "\" width=\"" +
           num(kRight - kLeft) + "\" height=\"" + num(kStripBottom - kStripTop) +
           "\" fill=\"#f9fafb\" stroke=\"#999\"/>\n";
    append_value_ticks(&svg, vmin, vmax, kTop, kValueBottom);
    svg += "<g fill=\"#333\" text-anchor=\"end\">";
    for (int v : {0, 50, 100})
        svg += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(y_score(v) + 4) + "\">" + std::to_string(v) + "</text>";
    svg += "</g>\n<text x=\"" + num(kLeft + 4) + "\" y=\"" + num(kStripTop - 6) +
           "\" fill=\"#666\">anomaly_score</text>\n";
    append_time_labels(&svg, t0, t1, kStripBottom);

    // The values.
    svg += "<polyline fill=\"none\" stroke=\"#374151\" stroke-opacity=\"0.85\" stroke-width=\"1\" points=\"";
    if (dense) {
        for (int c = 0; c < kPlotColumns; c++) {
            const Column &col = columns[static_cast<std::size_t>(c)];
            if (col.top_score < 0) continue;
            const double x = kLeft + c + 0.5;
            svg += num(x) + "," + num(y_of(col.min)) + " " + num(x) + "," + num(y_of(col.max)) + " ";
        }
    } else {
        for (const StreamRecent &p : in.recent)
            if (std::isfinite(p.value)) svg += num(x_of(p.timestamp)) + "," + num(y_of(p.value)) + " ";
    }
    svg += "\"/>\n";
    // A few points: each a dot too, so that one alone shows.
    if (n <= kDottedPoints) {
        svg += "<g fill=\"#374151\">";
        for (const StreamRecent &p : in.recent)
            if (std::isfinite(p.value))
                svg += "<circle cx=\"" + num(x_of(p.timestamp)) + "\" cy=\"" + num(y_of(p.value)) + "\" r=\"2\"/>";
        svg += "</g>\n<g fill=\"#ea580c\">";
        for (const StreamRecent &p : in.recent)
            if (std::isfinite(p.value))
                svg += "<circle cx=\"" + num(x_of(p.timestamp)) + "\" cy=\"" + num(y_score(score_of(p))) +
                       "\" r=\"1.5\"/>";
        svg += "</g>\n";
    }

    // The anomaly_score and the threshold.
    svg += "<polyline class=\"score\" fill=\"none\" stroke=\"#ea580c\" stroke-width=\"1\" points=\"";
    if (dense) {
        for (int c = 0; c < kPlotColumns; c++) {
            const Column &col = columns[static_cast<std::size_t>(c)];
            if (col.top_score >= 0) svg += num(kLeft + c + 0.5) + "," + num(y_score(col.top_score)) + " ";
        }
    } else {
        for (const StreamRecent &p : in.recent)
            if (std::isfinite(p.value)) svg += num(x_of(p.timestamp)) + "," + num(y_score(score_of(p))) + " ";
    }
    svg += "\"/>\n";
    if (threshold >= 0 && threshold <= 100) {
        svg += "<line class=\"threshold\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kRight) + "\" y1=\"" +
               num(y_score(threshold)) + "\" y2=\"" + num(y_score(threshold)) +
               "\" stroke=\"#dc2626\" stroke-width=\"1\" stroke-dasharray=\"6 4\"/>\n";
        std::snprintf(stats, sizeof(stats), "threshold %.6g", threshold);
        // Above the strip, where no score line runs through it.
        svg += "<text x=\"" + num(kRight) + "\" y=\"" + num(kStripTop - 6) + "\" text-anchor=\"end\" fill=\"#dc2626\">" +
               stats + " (dashed)</text>\n";
    }

    // The anomalous points, over the line: one mark per column when dense.
    svg += "<g fill=\"#dc2626\">";
    if (dense) {
        for (int c = 0; c < kPlotColumns; c++) {
            const Column &col = columns[static_cast<std::size_t>(c)];
            if (col.top_score >= threshold)
                svg += "<circle class=\"anomaly\" cx=\"" + num(kLeft + c + 0.5) + "\" cy=\"" + num(y_of(col.top_value)) +
                       "\" r=\"3\"/>";
        }
    } else {
        for (const StreamRecent &p : in.recent)
            if (std::isfinite(p.value) && score_of(p) >= threshold)
                svg += "<circle class=\"anomaly\" cx=\"" + num(x_of(p.timestamp)) + "\" cy=\"" + num(y_of(p.value)) +
                       "\" r=\"3\"/>";
    }
    svg += "</g>\n</svg>\n";
    return svg;
}

}  // namespace anomaly
