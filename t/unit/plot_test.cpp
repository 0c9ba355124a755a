// /plot's SVG (bounded, well formed, outliers marked) and the dashboard page.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/dashboard.hpp"
#include "core/detector.hpp"
#include "core/plot.hpp"

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
        in.model = &m;
        in.data = &d;
        try {
            const std::string svg = render_plot(in);
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

}  // namespace

TEST(Plot, BoundedWellFormedAndMarksOutliers) {
    TrainingData d;
    for (int i = 0; i < 1000000; i++) {
        d.timestamps.push_back(1700000000 + 60LL * i);
        d.values.push_back(50 + (i % 11) - 5 + (i == 500000 ? 1000 : 0));
    }
    Model m = train_three_sigma(d);
    m.version = 2;
    PlotInput in;
    in.series_id = "a<b";
    in.model = &m;
    in.data = &d;
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
    PlotInput in;
    in.series_id = "s";
    in.model = &m;
    in.data = &d;
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

TEST(Dashboard, SelfContained) {
    const std::string_view html = dashboard_html();
    ASSERT_GT(html.size(), 100u);
    EXPECT_NE(html.find("<html"), std::string_view::npos);
    EXPECT_NE(html.find("</html>"), std::string_view::npos);
    EXPECT_EQ(html.find("src=\"http"), std::string_view::npos) << "no external scripts or images";
    EXPECT_EQ(html.find("href=\"http"), std::string_view::npos) << "no external styles";
    EXPECT_EQ(html.find("@import"), std::string_view::npos);
}
