// /plot: the envelope a fit stores, the SVG drawn from it (bounded, well
// formed, outliers marked), a stream's plot, and the dashboard page.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/dashboard.hpp"
#include "core/detector.hpp"
#include "core/model.hpp"
#include "core/plot.hpp"
#include "core/render.hpp"

using namespace anomaly;

namespace {

std::size_t count_of(const std::string &s, const std::string &what) {
    std::size_t n = 0;
    for (std::size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
    return n;
}

// Runs render_plot in a child process with a time and memory limit, so that
// a plot that never finishes fails the test instead of hanging the suite.
// Returns "" when it finished, else what happened.
std::string plot_finishes(const TrainingData &d, int seconds) {
    Model m = train_three_sigma(d);
    m.version = 1;
    const pid_t pid = fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
#ifndef __SANITIZE_ADDRESS__  // ASan reserves terabytes of address space for its shadow
        struct rlimit mem = {std::size_t{1} << 30, std::size_t{1} << 30};
        setrlimit(RLIMIT_AS, &mem);
#endif
        alarm(static_cast<unsigned>(seconds));
        PlotInput in;
        in.series_id = "s";
        const std::string m_image = image_from_model(m);
        in.model = &header_of(m_image.data());
        try {
            const std::string svg = render_plot(in, d);
            _exit(svg.size() < 1000000 && svg.rfind("</svg>\n") == svg.size() - 7 ? 0 : 3);
        } catch (...) {
            _exit(4);  // ran out of memory
        }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        return "render_plot did not finish in " + std::to_string(seconds) + " s";
    if (WIFEXITED(status) && WEXITSTATUS(status) == 4) return "render_plot ran out of memory (1 GB)";
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) return "render_plot returned an unbounded or unclosed SVG";
    return "render_plot died, status " + std::to_string(status);
}

// What every SVG the plots answer must look like: an XML document, one svg
// element closed at the end, every element opened closed, no NaN or infinity.
void expect_well_formed(const std::string &svg) {
    EXPECT_EQ(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
    ASSERT_GE(svg.size(), 7u);
    EXPECT_EQ(svg.rfind("</svg>\n"), svg.size() - 7);
    EXPECT_EQ(count_of(svg, "<svg"), 1u);
    std::size_t opens = 0, closes = 0;
    for (std::size_t i = 0; i + 1 < svg.size(); i++) {
        if (svg[i] == '<' && svg[i + 1] != '/' && svg[i + 1] != '?') opens++;
        if ((svg[i] == '/' && svg[i + 1] == '>') || (svg[i] == '<' && svg[i + 1] == '/')) closes++;
    }
    EXPECT_EQ(opens, closes);
    EXPECT_EQ(svg.find("nan"), std::string::npos);
    EXPECT_EQ(svg.find("inf"), std::string::npos);
}

// n recent points a minute apart from 2023-11-14 22:13:20 UTC, values around
// 50 with anomaly_score 10, except every `every`-th (from the 5th), a spike
// scored 95.
StreamPlotInput stream_input(std::size_t n, std::size_t every = 0) {
    StreamPlotInput in;
    in.series_id = "sensor_1";
    in.detector = "adaptive";
    in.points_processed = 123456;
    in.recent_capacity = static_cast<std::uint32_t>(n);
    for (std::size_t i = 0; i < n; i++) {
        const bool spike = every > 0 && i % every == 5;
        in.recent.push_back({1700000000 + 60 * static_cast<std::int64_t>(i),
                             static_cast<float>(spike ? 200 : 50 + static_cast<int>(i % 7) - 3),
                             spike ? 95.0f : 10.0f});
    }
    return in;
}

}  // namespace

TEST(Plot, BoundedWellFormedAndMarksOutliers) {
    TrainingData d;
    for (int i = 0; i < 1000000; i++) {
        d.timestamps.push_back(1700000000 + 60LL * i);
        d.values.push_back(50 + (i % 11) - 5 + (i == 500000 ? 1000 : 0));
    }
    Model m = train_three_sigma(d);
    m.version = 2;
    const PlotEnvelope e = summarize_for_plot(d);
    PlotInput in;
    in.series_id = "a<b";
    const std::string m_image = image_from_model(m);
    in.model = &header_of(m_image.data());
    in.envelope = &e;
    const std::string svg = render_plot(in);
    EXPECT_LT(svg.size(), 300000u);
    EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
    EXPECT_EQ(svg.rfind("</svg>\n"), svg.size() - 7);
    EXPECT_NE(svg.find(">a&lt;b</text>"), std::string::npos) << "the id is escaped";
    EXPECT_EQ(svg.find("a<b"), std::string::npos);
    EXPECT_NE(svg.find("v2, 1000000 points"), std::string::npos);
    EXPECT_EQ(count_of(svg, "class=\"outlier\""), 1u);
    EXPECT_EQ(svg.find("nan"), std::string::npos);
    EXPECT_EQ(svg.find("inf"), std::string::npos);
    // every opened element is closed
    std::size_t opens = 0, closes = 0;
    for (std::size_t i = 0; i + 1 < svg.size(); i++) {
        if (svg[i] == '<' && svg[i + 1] != '/' && svg[i + 1] != '?') opens++;
        if ((svg[i] == '/' && svg[i + 1] == '>') || (svg[i] == '<' && svg[i + 1] == '/')) closes++;
    }
    EXPECT_EQ(opens, closes);
    in.tail = Tail::lower;
    EXPECT_EQ(count_of(render_plot(in), "class=\"outlier\""), 0u) << "a spike above is not an outlier for tail lower";
    in.tail = Tail::upper;
    EXPECT_EQ(count_of(render_plot(in), "class=\"outlier\""), 1u);
}

TEST(Plot, LowOutliersAndFewPoints) {
    TrainingData d;
    for (int i = 0; i < 20; i++) {
        d.timestamps.push_back(1700000000 + i);
        d.values.push_back(i == 7 ? -100 : 10 + i % 2);
    }
    Model m = train_three_sigma(d);
    m.version = 1;
    const PlotEnvelope e = summarize_for_plot(d);
    PlotInput in;
    in.series_id = "s";
    const std::string m_image = image_from_model(m);
    in.model = &header_of(m_image.data());
    in.envelope = &e;
    EXPECT_EQ(count_of(render_plot(in), "class=\"outlier\""), 1u);
    in.tail = Tail::upper;
    EXPECT_EQ(count_of(render_plot(in), "class=\"outlier\""), 0u);
}

// A trained series whose values differ by a few units in the last place:
// 999 times 1e9 and once the next double above it (a valid fit: finite,
// not constant). The value-axis ticks step by less than half an ulp of
// 1e9, so `v += vstep` never moves and the loop appends labels until the
// memory runs out: a /plot request ties up a thread-pool thread for good.
TEST(Plot, FinishesForATinySpreadAtALargeOffset) {
    for (double offset : {1e9, 1e15, 1e16}) {
        TrainingData d;
        for (int i = 0; i < 1000; i++) {
            d.timestamps.push_back(1700000000 + 60LL * i);
            d.values.push_back(i == 500 ? std::nextafter(offset, 2 * offset) : offset);
        }
        EXPECT_EQ(plot_finishes(d, 10), "") << "offset " << offset;
    }
}

TEST(Plot, FinishesForOrdinaryData) {
    TrainingData d;
    for (int i = 0; i < 1000; i++) {
        d.timestamps.push_back(1700000000 + 60LL * i);
        d.values.push_back(1e9 + 0.001 * (i % 3 + 1));
    }
    EXPECT_EQ(plot_finishes(d, 10), "") << "the harness itself works";
}

// ---------------------------------------------------------------- envelope

namespace {

// The series t/12-plot.t fits: 100 hourly points around 50, spikes at 20, 50, 80.
TrainingData three_spikes() {
    TrainingData d;
    for (int i = 0; i < 100; i++) {
        d.timestamps.push_back(1700000000 + 3600LL * i);
        d.values.push_back(50 + (i % 7) - 3 + (i == 20 || i == 50 || i == 80 ? 150 : 0));
    }
    return d;
}

}  // namespace

// Each column keeps the lowest and highest value of the points in it, and
// empty columns are left out.
TEST(PlotEnvelope, SmallSeriesIsPerColumnMinMax) {
    TrainingData d;
    // three points in the first column (3 s of a 9590 s axis, 10 s a column),
    // two in column 480, one in the last
    d.timestamps = {1700000000, 1700000001, 1700000002, 1700004800, 1700004801, 1700009590};
    d.values = {5, -2, 7, 1.5, 1.25, 9};
    const PlotEnvelope e = summarize_for_plot(d);
    EXPECT_EQ(e.points, 6u);
    EXPECT_EQ(e.first_timestamp, 1700000000);
    EXPECT_EQ(e.last_timestamp, 1700009590);
    ASSERT_EQ(e.columns.size(), 3u);
    EXPECT_EQ(e.columns[0].column, 0);
    EXPECT_EQ(e.columns[0].min, -2);
    EXPECT_EQ(e.columns[0].max, 7);
    EXPECT_EQ(e.columns[1].column, 480);
    EXPECT_EQ(e.columns[1].min, 1.25);
    EXPECT_EQ(e.columns[1].max, 1.5);
    EXPECT_EQ(e.columns[2].column, kPlotColumns - 1);
    EXPECT_EQ(e.columns[2].min, 9);
    EXPECT_EQ(e.columns[2].max, 9);

    // fewer points than columns: one column each, spread over the axis
    const PlotEnvelope spikes = summarize_for_plot(three_spikes());
    ASSERT_EQ(spikes.columns.size(), 100u);
    for (std::size_t i = 0; i < 100; i++) {
        EXPECT_EQ(spikes.columns[i].min, three_spikes().values[i]);
        EXPECT_EQ(spikes.columns[i].max, spikes.columns[i].min);
    }
    EXPECT_EQ(spikes.columns.back().column, kPlotColumns - 1);

    // one point, and none
    TrainingData one;
    one.timestamps = {1700000000};
    one.values = {3};
    const PlotEnvelope single = summarize_for_plot(one);
    ASSERT_EQ(single.columns.size(), 1u);
    EXPECT_EQ(single.columns[0].column, 0);
    EXPECT_EQ(single.first_timestamp, single.last_timestamp);
    const PlotEnvelope none = summarize_for_plot(TrainingData());
    EXPECT_EQ(none.points, 0u);
    EXPECT_TRUE(none.columns.empty());
}

// A million points fold into at most kPlotColumns columns, keeping the
// extremes; the fit thread pays this once per fit, so it must stay cheap.
TEST(PlotEnvelope, MillionPointsFoldIntoColumns) {
    TrainingData d;
    for (int i = 0; i < 1000000; i++) {
        d.timestamps.push_back(1600000000 + 60LL * i);
        d.values.push_back(static_cast<double>((i * 7919LL) % 1000) + (i == 123456 ? 1e6 : 0) - (i == 654321 ? 1e6 : 0));
    }
    const auto start = std::chrono::steady_clock::now();
    const PlotEnvelope e = summarize_for_plot(d);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("summarize_for_plot: 1M points in %.2f ms, %zu columns\n", ms, e.columns.size());
    RecordProperty("summarize_1m_ms", std::to_string(ms));
    EXPECT_EQ(e.points, 1000000u);
    EXPECT_EQ(e.columns.size(), static_cast<std::size_t>(kPlotColumns)) << "evenly spaced: every column used";
    double lowest = INFINITY, highest = -INFINITY;
    for (const PlotEnvelope::Column &c : e.columns) {
        lowest = std::min(lowest, c.min);
        highest = std::max(highest, c.max);
    }
    EXPECT_EQ(highest, 1e6 + (123456LL * 7919 % 1000));
    EXPECT_EQ(lowest, -1e6 + (654321LL * 7919 % 1000));
    EXPECT_LT(ms, 1000) << "one pass, even unoptimised or sanitised";
}

// The drawing marks a column's extreme when it lies outside the band: one
// mark per spike when spikes fall in different columns, as t/12-plot.t checks.
TEST(PlotEnvelope, RenderMarksColumnsOutsideTheBand) {
    const TrainingData d = three_spikes();
    Model m = train_three_sigma(d);
    m.version = 1;
    const PlotEnvelope e = summarize_for_plot(d);
    PlotInput in;
    in.series_id = "plotted";
    const std::string m_image = image_from_model(m);
    in.model = &header_of(m_image.data());
    in.envelope = &e;
    const std::string svg = render_plot(in);
    EXPECT_EQ(count_of(svg, "class=\"outlier\""), 3u);
    EXPECT_NE(svg.find(">plotted</text>"), std::string::npos);
    EXPECT_NE(svg.find("v1, 100 points"), std::string::npos);
    EXPECT_NE(svg.find(">11-14 22:13</text>"), std::string::npos) << "date labels from the envelope's time range";
    EXPECT_EQ(svg, render_plot(in, d)) << "drawing from the data is drawing from its envelope";

    // v2 of t/12-plot.t: nothing outside its band
    TrainingData flat;
    for (int i = 0; i < 100; i++) {
        flat.timestamps.push_back(1700000000 + 3600LL * i);
        flat.values.push_back(10 + i % 3);
    }
    Model fm = train_three_sigma(flat);
    const PlotEnvelope fe = summarize_for_plot(flat);
    const std::string fm_image = image_from_model(fm);
    in.model = &header_of(fm_image.data());
    in.envelope = &fe;
    EXPECT_EQ(count_of(render_plot(in), "class=\"outlier\""), 0u);

    // two spikes in one column are one mark, at the higher
    TrainingData dense = three_spikes();
    for (int i = 0; i < 2000; i++) {
        dense.timestamps.push_back(dense.timestamps.back() + 1);
        dense.values.push_back(50 + (i == 1000 ? 300 : i == 1001 ? 250 : 0));
    }
    Model dm = train_three_sigma(dense);
    const PlotEnvelope de = summarize_for_plot(dense);
    const std::string dm_image = image_from_model(dm);
    in.model = &header_of(dm_image.data());
    in.envelope = &de;
    EXPECT_EQ(count_of(render_plot(in), "class=\"outlier\""), 4u);
}

TEST(Dashboard, SelfContained) {
    const std::string_view html = dashboard_html();
    ASSERT_GT(html.size(), 100u);
    EXPECT_NE(html.find("<html"), std::string_view::npos);
    EXPECT_NE(html.find("</html>"), std::string_view::npos);
    EXPECT_EQ(html.find("src=\"http"), std::string_view::npos) << "no external scripts or images";
    EXPECT_EQ(html.find("href=\"http"), std::string_view::npos) << "no external styles";
    EXPECT_EQ(html.find("@import"), std::string_view::npos);
}

TEST(StreamPlot, WellFormedAndMarksAnomalousPoints) {
    StreamPlotInput in = stream_input(300, 100);  // spikes at 5, 105, 205
    const std::string svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_LT(svg.size(), 150000u);
    EXPECT_NE(svg.find(">sensor_1</text>"), std::string::npos) << "the title names the series";
    EXPECT_NE(svg.find("stream, adaptive, 123456 points processed; the last 300 shown, 3 with anomaly_score"),
              std::string::npos);
    EXPECT_EQ(count_of(svg, "class=\"anomaly\""), 3u) << "the three spikes are marked, nothing else";
    EXPECT_EQ(count_of(svg, "class=\"score\""), 1u) << "the anomaly_score strip";
    EXPECT_NE(svg.find("class=\"threshold\""), std::string::npos);
    EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos) << "the threshold is dashed";
    EXPECT_NE(svg.find(">threshold 70 (dashed)</text>"), std::string::npos);
    EXPECT_NE(svg.find(">11-14 22:13</text>"), std::string::npos) << "readable date labels";
    EXPECT_NE(svg.find("time (UTC), from 2023-11-14 22:13:20"), std::string::npos);

    // The mark is where the point is drawn: the spike at 200 is the highest value.
    in.threshold = 96;
    EXPECT_EQ(count_of(render_stream_plot(in), "class=\"anomaly\""), 0u) << "95 is below a threshold of 96";
    in.threshold = 10;
    EXPECT_EQ(count_of(render_stream_plot(in), "class=\"anomaly\""), 300u) << "a score at the threshold is anomalous";
}

TEST(StreamPlot, ZeroPointsSaysHowToKeepThem) {
    StreamPlotInput in = stream_input(0);
    in.recent_capacity = 0;
    std::string svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_LT(svg.size(), 4000u);
    EXPECT_NE(svg.find("No recent points are kept"), std::string::npos);
    EXPECT_NE(svg.find("POST /observe/sensor_1?recent=N"), std::string::npos) << "how to keep them";
    EXPECT_NE(svg.find("stream, adaptive, 123456 points processed"), std::string::npos);
    EXPECT_EQ(count_of(svg, "class=\"anomaly\""), 0u);

    // A stream that keeps points but has learned none yet.
    in.recent_capacity = 64;
    in.points_processed = 0;
    svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_NE(svg.find("No points have been learned yet"), std::string::npos);
    EXPECT_NE(svg.find("keeps its last 64 points"), std::string::npos);

    // Points whose value cannot be drawn count as none.
    in.recent.push_back({1700000000, INFINITY, 99});
    svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_NE(svg.find("No points have been learned yet"), std::string::npos);
}

TEST(StreamPlot, OnePoint) {
    for (float score : {0.0f, 99.0f}) {
        StreamPlotInput in = stream_input(1);
        in.recent[0].anomaly_score = score;
        const std::string svg = render_stream_plot(in);
        expect_well_formed(svg);
        EXPECT_NE(svg.find("the last 1 shown"), std::string::npos);
        EXPECT_EQ(count_of(svg, "class=\"anomaly\""), score >= 70 ? 1u : 0u);
        EXPECT_NE(svg.find("<circle cx=\"569.5\""), std::string::npos) << "one point: a dot in the middle";
    }
    // Many points of one value, and values at the ends of float's range.
    StreamPlotInput flat = stream_input(50);
    for (StreamRecent &p : flat.recent) p.value = 1e30f;
    expect_well_formed(render_stream_plot(flat));
    flat.recent[3].value = -3e38f;
    flat.recent[4].value = 3e38f;
    flat.recent[5].value = NAN;
    flat.recent[6].anomaly_score = NAN;
    expect_well_formed(render_stream_plot(flat));
}

TEST(StreamPlot, EscapesTheSeriesId) {
    StreamPlotInput in = stream_input(10);
    in.series_id = "a<b&c\"";
    std::string svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_NE(svg.find(">a&lt;b&amp;c&quot;</text>"), std::string::npos);
    EXPECT_EQ(svg.find("a<b"), std::string::npos);
    in.recent.clear();
    in.recent_capacity = 0;
    svg = render_stream_plot(in);  // the id is in the hint too
    expect_well_formed(svg);
    EXPECT_EQ(svg.find("a<b"), std::string::npos);
    EXPECT_NE(svg.find("/observe/a&lt;b&amp;c&quot;?recent=N"), std::string::npos);
}

TEST(StreamPlot, BoundedForManyPoints) {
    // 10,000 points, a spike every 200: each in a column of its own.
    StreamPlotInput in = stream_input(10000, 200);
    std::string svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_LT(svg.size(), 150000u);
    EXPECT_NE(svg.find("the last 10000 shown, 50 with anomaly_score"), std::string::npos);
    EXPECT_EQ(count_of(svg, "class=\"anomaly\""), 50u);
    // Every point anomalous: one mark per pixel column at most.
    in.threshold = 5;
    svg = render_stream_plot(in);
    expect_well_formed(svg);
    EXPECT_LT(svg.size(), 150000u);
    EXPECT_LE(count_of(svg, "class=\"anomaly\""), static_cast<std::size_t>(kPlotColumns));
    // As many as a stream keeps at most.
    const std::string most = render_stream_plot(stream_input(65536, 3));
    expect_well_formed(most);
    EXPECT_LT(most.size(), 150000u);
}

TEST(Dashboard, ShowsStreams) {
    const std::string_view html = dashboard_html();
    EXPECT_NE(html.find("&stream=1"), std::string_view::npos) << "a stream's plot";
    EXPECT_NE(html.find("points processed"), std::string_view::npos);
    EXPECT_NE(html.find("s.stream"), std::string_view::npos) << "the list says which series have a stream";
}

namespace anomaly {
namespace {

TEST(Dashboard, RecentAnomaliesPanel) {
    DashboardData data;
    const std::string empty = render_dashboard(data);
    EXPECT_NE(empty.find("Recent anomalies"), std::string::npos);
    EXPECT_NE(empty.find("No anomaly recorded yet."), std::string::npos);
    EXPECT_EQ(empty.find("<!--anomalies-->"), std::string::npos) << "the marker is replaced";

    data.points_scored = 400;
    data.anomalies = 2;
    data.recent.push_back(make_event("web<1>", 1700000000, 99.5, 88.25, 4.5, 1, 3, 1700000100000));
    data.recent.push_back(make_event("db.2", 1700000060, -1.5, 71, -3.1, 6, 0, 1700000050000));
    const std::string html = render_dashboard(data);
    EXPECT_NE(html.find("400 points scored, 2 anomalies (anomaly rate 0.5%)"), std::string::npos);
    const std::size_t first = html.find("<tr><td>2023-11-14 22:15:00</td><td>web&lt;1&gt;</td><td>2023-11-14 22:13:20</td>"
                                        "<td class=\"num\">99.5</td><td class=\"num\">88.25</td><td>three_sigma v3</td></tr>");
    const std::size_t second = html.find("<td>db.2</td>");
    ASSERT_NE(first, std::string::npos) << "escaped, newest first";
    ASSERT_NE(second, std::string::npos);
    EXPECT_LT(first, second);
    EXPECT_NE(html.find("<td>adaptive</td>"), std::string::npos) << "a stream's event has no version";
    EXPECT_NE(html.find("s.anomaly_rate"), std::string::npos) << "the series list shows each series' anomaly rate";
}

TEST(Dashboard, SeriesListCarriesTheCounts) {
    std::vector<SeriesEntry> entries{{"a", nullptr, nullptr, 200, 3}, {"b", nullptr, nullptr, 0, 0}};
    EXPECT_EQ(render_series_list(entries, false),
              "{\"series\":[{\"series_id\":\"a\",\"latest_version\":null,\"versions\":0,\"points_scored\":200,"
              "\"anomalies\":3,\"anomaly_rate\":0.015},{\"series_id\":\"b\",\"latest_version\":null,\"versions\":0,"
              "\"points_scored\":0,\"anomalies\":0,\"anomaly_rate\":0}],\"next_after\":null}");
}

}  // namespace
}  // namespace anomaly
