// RateWindow, status slots and the Prometheus text exposition.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <pthread.h>
#include <sys/time.h>

#include "core/metrics.hpp"

using namespace anomaly;

namespace {

std::unique_ptr<RateWindow> fresh() { return std::unique_ptr<RateWindow>(new RateWindow()); }  // all zero

void add(RateWindow *w, std::int64_t second, int times) {
    for (int i = 0; i < times; i++) w->add(second);
}

}  // namespace

TEST(RateWindow, CountsPerSecond) {
    auto w = fresh();
    const std::int64_t t = 1700000000;
    add(w.get(), t, 3);
    add(w.get(), t + 1, 1);
    add(w.get(), t + 5, 2);
    add(w.get(), t + 6, 4);  // the current second: not yet whole
    EXPECT_EQ(w->total(t + 6, 6), 6u) << "seconds t .. t+5";
    EXPECT_EQ(w->total(t + 6, 1), 2u) << "second t+5 only";
    EXPECT_EQ(w->total(t + 6, 5), 3u) << "seconds t+1 .. t+5";
    EXPECT_EQ(w->total(t + 5, 5), 4u) << "seconds t .. t+4";
    EXPECT_EQ(w->total(t + 2, 2), 4u);
    EXPECT_EQ(w->total(t + 7, 1), 4u);
    EXPECT_EQ(w->total(t + 7, 60), 10u);
    EXPECT_EQ(w->total(t, 60), 0u) << "nothing before t";
    EXPECT_EQ(w->total(t + 6, 0), 0u);
}

TEST(RateWindow, WrapsAfter64Seconds) {
    auto w = fresh();
    const std::int64_t t = 1700000000;  // t % 64 == 0
    add(w.get(), t, 5);
    EXPECT_EQ(w->total(t + 64, 64), 5u) << "64 seconds later it is still inside a 64 s window";
    EXPECT_EQ(w->total(t + 65, 64), 0u) << "and then it has left";
    EXPECT_EQ(w->total(t + 1000, 64), 0u) << "a stale slot is not counted";
    EXPECT_EQ(w->total(t + 1, 64), 5u);
    // t + 64 reuses t's slot: the old count is dropped, not added to
    add(w.get(), t + 64, 2);
    EXPECT_EQ(w->total(t + 65, 64), 2u);
    EXPECT_EQ(w->total(t + 65, 1), 2u);
    EXPECT_EQ(w->total(t + 65, 65), 2u) << "second t is gone from the slot";
    // a full minute of traffic, one request per second for 200 seconds
    auto m = fresh();
    for (std::int64_t s = t; s < t + 200; s++) add(m.get(), s, static_cast<int>(s - t) % 3 + 1);
    // seconds t+140 .. t+199: (s - t) % 3 cycles 2,0,1... sum over 60 seconds = 20 * (1 + 2 + 3)
    EXPECT_EQ(m->total(t + 200, 60), 120u);
    std::uint64_t expected = 0;
    for (std::int64_t s = t + 136; s < t + 200; s++) expected += static_cast<std::uint64_t>((s - t) % 3 + 1);
    EXPECT_EQ(m->total(t + 200, 64), expected);
}

TEST(RateWindow, SkippedSecondsDoNotLeak) {
    auto w = fresh();
    const std::int64_t t = 1700000003;
    add(w.get(), t, 7);
    // 128 seconds later, the same slot is written again for the first time
    add(w.get(), t + 128, 1);
    EXPECT_EQ(w->total(t + 129, 64), 1u);
    EXPECT_EQ(w->total(t + 129, 1), 1u);
}

namespace {

// A second writer that interrupts the first one anywhere, even between two
// of its instructions: a signal handler, run by a timer every 20 us.
RateWindow *interrupted_window = nullptr;
std::atomic<std::int64_t> interrupted_second{0};
std::atomic<std::uint64_t> interrupting_adds[RateWindow::kSeconds];

void interrupting_writer(int) {
    const std::int64_t s = interrupted_second.load(std::memory_order_relaxed);
    interrupted_window->add(s);
    interrupting_adds[s % RateWindow::kSeconds].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

// Workers can share a window (a statistics slot). When one of them starts a
// new second, another may do the same between its steps: no request may be
// lost then. The first writer runs through new seconds, one request each,
// and the timer's writer adds to whichever second the first one is in.
TEST(RateWindow, WritersSharingAWindowLoseNothingAtSecondBoundaries) {
    auto w = fresh();
    interrupted_window = w.get();
    struct sigaction action {}, previous {};
    action.sa_handler = interrupting_writer;
    sigemptyset(&action.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &action, &previous), 0);
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    constexpr std::int64_t t = 1700000000;
    interrupted_second.store(t);  // before the first interruption
    for (auto &n : interrupting_adds) n.store(0);
    const itimerval every_20us{{0, 20}, {0, 20}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &every_20us, nullptr), 0);

    // A loss needs an interruption at one of a few instructions: thousands.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    std::uint64_t lost = 0, seconds = 0, interruptions = 0;
    for (std::int64_t first = t; interruptions < 8000 && std::chrono::steady_clock::now() < until;
         first += RateWindow::kSeconds) {
        for (int i = 0; i < RateWindow::kSeconds; i++) {
            interrupted_second.store(first + i, std::memory_order_relaxed);
            w->add(first + i);
        }
        // Counted with the timer's writer held off.
        pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
        std::uint64_t expected = RateWindow::kSeconds;
        for (auto &n : interrupting_adds) expected += n.exchange(0, std::memory_order_relaxed);
        interruptions += expected - RateWindow::kSeconds;
        lost += expected - w->total(first + RateWindow::kSeconds, RateWindow::kSeconds);
        seconds += RateWindow::kSeconds;
        interrupted_second.store(first + RateWindow::kSeconds, std::memory_order_relaxed);
        pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
    }
    const itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    sigaction(SIGALRM, &previous, nullptr);
    EXPECT_GT(interruptions, 1000u);
    EXPECT_EQ(lost, 0u) << "requests lost in " << seconds << " new seconds, with " << interruptions
                        << " requests added by the interrupting writer";
}

TEST(StatusSlot, CountedAndOther) {
    const int counted[] = {200, 400, 404, 405, 413, 422, 500, 503, 507};
    std::set<std::size_t> slots;
    for (int s : counted) {
        const std::size_t slot = status_slot(s);
        ASSERT_LT(slot, kStatusSlots - 1) << s;
        EXPECT_EQ(kCountedStatuses[slot], s);
        slots.insert(slot);
    }
    EXPECT_EQ(slots.size(), 9u) << "distinct slots";
    EXPECT_EQ(kStatusSlots, 10u);
    for (int s : {0, 100, 201, 204, 301, 401, 403, 499, 502, 504, 599, -1})
        EXPECT_EQ(status_slot(s), kStatusSlots - 1) << s;
    EXPECT_EQ(status_slot(200), 0u);
    EXPECT_EQ(status_slot(507), 8u);
}

namespace {

Metrics sample_metrics() {
    Metrics m;
    for (const char *name : {"predict", "fit"}) {
        EndpointMetrics e;
        e.endpoint = name;
        for (std::size_t i = 0; i < kStatusSlots; i++) e.status_counts[i] = 0;
        e.status_counts[status_slot(200)] = std::string(name) == "predict" ? 90 : 5;
        e.status_counts[status_slot(422)] = 3;
        e.status_counts[status_slot(418)] = 1;
        e.buckets = {{0.0005, 10}, {0.001, 50}, {0.005, 90}, {0.25, 93}};
        e.count = 94;
        e.sum_seconds = std::string(name) == "predict" ? 0.5 : 12.25;
        m.endpoints.push_back(e);
    }
    m.series = 12;
    m.versions = 30;
    m.zone_bytes_total = 67108864;
    m.zone_bytes_free = 1048576;
    m.store_queue = 2;
    m.last_write_age_seconds = 1.5;
    m.store_ready = true;
    m.anomalies = 17;
    m.in_flight = 3;
    m.detectors = {{"three_sigma", 80, 25, 3400}, {"iforest", 10, 5, 1600000}};
    DetectorMetrics rcf{"rcf", 0, 0, 400000};
    rcf.stream = true;
    rcf.points_observed = 5000;
    rcf.streams = 4;
    m.detectors.push_back(rcf);
    m.streams = 4;
    m.checkpoints_written = 9;
    m.checkpoint_age_seconds = 2.5;
    return m;
}

std::vector<std::string> lines_of(const std::string &text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

bool has_line(const std::string &text, const std::string &line) {
    for (const std::string &l : lines_of(text))
        if (l == line) return true;
    return false;
}

std::string family_of(const std::string &sample_name, const std::map<std::string, std::string> &types) {
    for (const char *suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s = suffix;
        if (sample_name.size() > s.size() && sample_name.compare(sample_name.size() - s.size(), s.size(), s) == 0) {
            const std::string base = sample_name.substr(0, sample_name.size() - s.size());
            auto it = types.find(base);
            if (it != types.end() && it->second == "histogram") return base;
        }
    }
    return sample_name;
}

}  // namespace

TEST(Prometheus, HelpAndTypeOncePerFamily) {
    const std::string text = render_prometheus(sample_metrics());
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    std::map<std::string, int> help, type;
    std::map<std::string, std::string> types;
    std::set<std::string> families_with_samples;
    std::string current;  // the family whose TYPE came last
    for (const std::string &line : lines_of(text)) {
        ASSERT_FALSE(line.empty()) << "no blank lines";
        if (line.rfind("# HELP ", 0) == 0) {
            const std::string rest = line.substr(7);
            const std::string name = rest.substr(0, rest.find(' '));
            help[name]++;
            EXPECT_GT(rest.size(), name.size() + 1) << "HELP has text: " << line;
        } else if (line.rfind("# TYPE ", 0) == 0) {
            std::istringstream in(line.substr(7));
            std::string name, t, extra;
            in >> name >> t >> extra;
            type[name]++;
            types[name] = t;
            EXPECT_TRUE(t == "counter" || t == "gauge" || t == "histogram") << line;
            EXPECT_TRUE(extra.empty()) << line;
            EXPECT_EQ(help.count(name), 1u) << "HELP before TYPE: " << line;
            current = name;
        } else {
            ASSERT_NE(line[0], '#') << line;
            const std::string name = line.substr(0, line.find_first_of("{ "));
            const std::string family = family_of(name, types);
            EXPECT_EQ(family, current) << "a sample outside its family's block: " << line;
            families_with_samples.insert(family);
            // "name{labels} value" or "name value"
            const std::string value = line.substr(line.rfind(' ') + 1);
            char *end = nullptr;
            std::strtod(value.c_str(), &end);
            EXPECT_EQ(*end, '\0') << "not a number: " << line;
        }
    }
    const std::set<std::string> expected = {"anomaly_requests_total",
                                            "anomaly_request_duration_seconds",
                                            "anomaly_series",
                                            "anomaly_versions",
                                            "anomaly_versions_deleted_total",
                                            "anomaly_series_deleted_total",
                                            "anomaly_zone_bytes",
                                            "anomaly_zone_free_bytes",
                                            "anomaly_store_queue_fits",
                                            "anomaly_store_up",
                                            "anomaly_store_last_write_age_seconds",
                                            "anomaly_anomalies_total",
                                            "anomaly_requests_in_flight",
                                            "anomaly_predictions_total",
                                            "anomaly_detector_versions",
                                            "anomaly_detector_zone_bytes",
                                            "anomaly_observed_points_total",
                                            "anomaly_streams",
                                            "anomaly_checkpoints_written_total",
                                            "anomaly_checkpoint_age_seconds"};
    for (const std::string &f : expected) {
        EXPECT_EQ(help[f], 1) << f;
        EXPECT_EQ(type[f], 1) << f;
        EXPECT_EQ(families_with_samples.count(f), 1u) << f;
    }
    EXPECT_EQ(help.size(), expected.size());
    EXPECT_EQ(type.size(), expected.size());
    EXPECT_EQ(types["anomaly_request_duration_seconds"], "histogram");
    EXPECT_EQ(types["anomaly_requests_total"], "counter");
    EXPECT_EQ(types["anomaly_anomalies_total"], "counter");
    EXPECT_TRUE(has_line(text, "anomaly_observed_points_total{detector=\"rcf\"} 5000"));
    EXPECT_TRUE(has_line(text, "anomaly_streams{detector=\"rcf\"} 4"));
    EXPECT_TRUE(has_line(text, "anomaly_detector_zone_bytes{detector=\"rcf\"} 400000"));
    EXPECT_EQ(text.find("anomaly_predictions_total{detector=\"rcf\"}"), std::string::npos)
        << "a stream detector answers no predictions";
    EXPECT_EQ(types["anomaly_series"], "gauge");
    EXPECT_EQ(types["anomaly_predictions_total"], "counter");
    EXPECT_NE(text.find("anomaly_predictions_total{detector=\"iforest\"} 10\n"), std::string::npos);
    EXPECT_NE(text.find("anomaly_detector_zone_bytes{detector=\"three_sigma\"} 3400\n"), std::string::npos);
}

TEST(Prometheus, HistogramLines) {
    const std::string text = render_prometheus(sample_metrics());
    for (const char *e : {"predict", "fit"}) {
        const std::string l = std::string("{endpoint=\"") + e + "\"";
        EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_bucket" + l + ",le=\"0.0005\"} 10")) << e;
        EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_bucket" + l + ",le=\"0.001\"} 50")) << e;
        EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_bucket" + l + ",le=\"0.005\"} 90")) << e;
        EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_bucket" + l + ",le=\"0.25\"} 93")) << e;
        EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_bucket" + l + ",le=\"+Inf\"} 94")) << e;
        EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_count" + l + "} 94")) << e;
    }
    EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_sum{endpoint=\"predict\"} 0.5"));
    EXPECT_TRUE(has_line(text, "anomaly_request_duration_seconds_sum{endpoint=\"fit\"} 12.25"));
    // +Inf comes after the finite buckets of its endpoint, then _sum, then _count
    const std::size_t inf = text.find("anomaly_request_duration_seconds_bucket{endpoint=\"fit\",le=\"+Inf\"}");
    const std::size_t last = text.find("anomaly_request_duration_seconds_bucket{endpoint=\"fit\",le=\"0.25\"}");
    const std::size_t sum = text.find("anomaly_request_duration_seconds_sum{endpoint=\"fit\"}");
    const std::size_t count = text.find("anomaly_request_duration_seconds_count{endpoint=\"fit\"}");
    EXPECT_LT(last, inf);
    EXPECT_LT(inf, sum);
    EXPECT_LT(sum, count);
    // exactly 5 bucket lines per endpoint
    int buckets = 0;
    for (const std::string &line : lines_of(text))
        if (line.rfind("anomaly_request_duration_seconds_bucket{", 0) == 0) buckets++;
    EXPECT_EQ(buckets, 10);
}

TEST(Prometheus, CountersAndGauges) {
    const std::string text = render_prometheus(sample_metrics());
    EXPECT_TRUE(has_line(text, "anomaly_requests_total{endpoint=\"predict\",status=\"200\"} 90"));
    EXPECT_TRUE(has_line(text, "anomaly_requests_total{endpoint=\"fit\",status=\"200\"} 5"));
    EXPECT_TRUE(has_line(text, "anomaly_requests_total{endpoint=\"fit\",status=\"422\"} 3"));
    EXPECT_TRUE(has_line(text, "anomaly_requests_total{endpoint=\"fit\",status=\"other\"} 1"));
    EXPECT_TRUE(has_line(text, "anomaly_requests_total{endpoint=\"predict\",status=\"507\"} 0"));
    int request_lines = 0;
    for (const std::string &line : lines_of(text))
        if (line.rfind("anomaly_requests_total{", 0) == 0) request_lines++;
    EXPECT_EQ(request_lines, 2 * 10);
    EXPECT_TRUE(has_line(text, "anomaly_series 12"));
    EXPECT_TRUE(has_line(text, "anomaly_versions 30"));
    EXPECT_TRUE(has_line(text, "anomaly_zone_bytes 67108864"));
    EXPECT_TRUE(has_line(text, "anomaly_zone_free_bytes 1048576"));
    EXPECT_TRUE(has_line(text, "anomaly_store_queue_fits 2"));
    EXPECT_TRUE(has_line(text, "anomaly_store_up 1"));
    EXPECT_TRUE(has_line(text, "anomaly_store_last_write_age_seconds 1.5"));
    EXPECT_TRUE(has_line(text, "anomaly_anomalies_total 17"));
    EXPECT_TRUE(has_line(text, "anomaly_requests_in_flight 3"));
}

TEST(Prometheus, NoEndpointsStillDeclaresFamilies) {
    Metrics m;
    const std::string text = render_prometheus(m);
    EXPECT_TRUE(has_line(text, "# TYPE anomaly_request_duration_seconds histogram"));
    EXPECT_TRUE(has_line(text, "anomaly_store_up 0"));
    EXPECT_TRUE(has_line(text, "anomaly_store_last_write_age_seconds -1"));
    EXPECT_EQ(text.find("{endpoint="), std::string::npos);
}
