// The anomaly history ring, its disk encoding and its answers.

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/history.hpp"

namespace anomaly {
namespace {

struct Ring {
    explicit Ring(std::uint64_t capacity) : bytes(history_bytes(capacity) / 8 + 1, 0) {
        history_init(ring(), capacity);
    }
    HistoryRing *ring() { return reinterpret_cast<HistoryRing *>(bytes.data()); }
    std::vector<std::uint64_t> bytes;  // 8-byte aligned, zeroed as the zone's allocation is
};

HistoryEvent event(const std::string &id, std::int64_t ts, double value, std::int64_t recorded_ms = 1700000000000) {
    return make_event(id, ts, value, 90.5, 4.25, 1, 3, recorded_ms);
}

std::vector<std::uint64_t> sequences(const HistoryPage &page) {
    std::vector<std::uint64_t> out;
    for (const HistoryEvent &e : page.events) out.push_back(e.sequence);
    return out;
}

TEST(History, RecordsAndReadsBack) {
    Ring r(8);
    EXPECT_EQ(history_record(r.ring(), event("a", 100, 1.5)), 0u);
    EXPECT_EQ(history_record(r.ring(), event("b", 200, 2.5)), 1u);
    HistoryEvent e;
    ASSERT_EQ(history_read(r.ring(), 1, &e), SlotRead::ok);
    EXPECT_EQ(e.series_id(), "b");
    EXPECT_EQ(e.timestamp, 200);
    EXPECT_EQ(e.value, 2.5);
    EXPECT_EQ(e.anomaly_score, 90.5);
    EXPECT_EQ(e.score, 4.25);
    EXPECT_EQ(e.version, 3u);
    EXPECT_EQ(e.sequence, 1u);
    EXPECT_EQ(history_read(r.ring(), 2, &e), SlotRead::gone);  // not handed out yet
    // Claimed and not written yet (a writer between its add and its slot):
    // the owner waits for it rather than pass it by.
    __atomic_fetch_add(&r.ring()->head, 1, __ATOMIC_RELAXED);
    EXPECT_EQ(history_read(r.ring(), 2, &e), SlotRead::writing);
}

TEST(History, KeepsTheNewestWhenFull) {
    Ring r(4);
    for (int i = 0; i < 10; i++) history_record(r.ring(), event("s" + std::to_string(i), i, i));
    HistoryEvent e;
    EXPECT_EQ(history_read(r.ring(), 5, &e), SlotRead::gone);
    for (std::uint64_t s = 6; s < 10; s++) {
        ASSERT_EQ(history_read(r.ring(), s, &e), SlotRead::ok);
        EXPECT_EQ(e.series_id(), "s" + std::to_string(s));
    }
    HistoryQuery q;
    q.limit = 100;
    const HistoryPage page = history_query(r.ring(), q);
    EXPECT_EQ(sequences(page), (std::vector<std::uint64_t>{9, 8, 7, 6}));
    EXPECT_FALSE(page.more);
}

TEST(History, FiltersAndPages) {
    Ring r(100);
    for (int i = 0; i < 30; i++)
        history_record(r.ring(), event(i % 3 == 0 ? "x" : "y", i, i, 1700000000000 + i * 1000));
    HistoryQuery q;
    q.series_id = "x";
    q.limit = 4;
    HistoryPage page = history_query(r.ring(), q);
    EXPECT_EQ(sequences(page), (std::vector<std::uint64_t>{27, 24, 21, 18}));
    ASSERT_TRUE(page.more);
    std::vector<std::uint64_t> all = sequences(page);
    while (page.more) {
        q.before = page.next;
        page = history_query(r.ring(), q);
        for (std::uint64_t s : sequences(page)) all.push_back(s);
    }
    EXPECT_EQ(all, (std::vector<std::uint64_t>{27, 24, 21, 18, 15, 12, 9, 6, 3, 0}));

    HistoryQuery since;
    since.since_ms = 1700000000000 + 25 * 1000;
    page = history_query(r.ring(), since);
    EXPECT_EQ(sequences(page), (std::vector<std::uint64_t>{29, 28, 27, 26, 25}));
    EXPECT_FALSE(page.more);
}

TEST(History, ExactLimitSaysNothingMore) {
    Ring r(10);
    for (int i = 0; i < 3; i++) history_record(r.ring(), event("a", i, i));
    HistoryQuery q;
    q.limit = 3;
    const HistoryPage page = history_query(r.ring(), q);
    EXPECT_EQ(page.events.size(), 3u);
    EXPECT_FALSE(page.more);
}

TEST(History, APageStopsAfterItsScanBudget) {
    Ring r(1000);
    for (int i = 0; i < 1000; i++) history_record(r.ring(), event(i == 10 ? "rare" : "common", i, i));
    HistoryQuery q;
    q.series_id = "rare";
    q.scan = 400;
    HistoryPage page = history_query(r.ring(), q);
    EXPECT_TRUE(page.events.empty());
    ASSERT_TRUE(page.more);
    EXPECT_EQ(page.next, 600u);
    q.before = page.next;
    page = history_query(r.ring(), q);
    q.before = page.next;
    page = history_query(r.ring(), q);
    ASSERT_EQ(page.events.size(), 1u);
    EXPECT_EQ(page.events[0].sequence, 10u);
    EXPECT_FALSE(page.more);
}

TEST(History, LoadsIntoAnEmptyRingOnly) {
    Ring r(3);
    std::vector<HistoryEvent> stored;
    for (int i = 0; i < 5; i++) stored.push_back(event("d" + std::to_string(i), i, i));
    ASSERT_TRUE(history_load(r.ring(), stored));
    EXPECT_EQ(history_head(r.ring()), 3u);
    HistoryEvent e;
    ASSERT_EQ(history_read(r.ring(), 0, &e), SlotRead::ok);
    EXPECT_EQ(e.series_id(), "d2");  // the newest three
    ASSERT_EQ(history_read(r.ring(), 2, &e), SlotRead::ok);
    EXPECT_EQ(e.series_id(), "d4");
    EXPECT_EQ(history_record(r.ring(), event("new", 9, 9)), 3u);
    EXPECT_FALSE(history_load(r.ring(), stored));
}

// Writers on every core and a reader racing them: every event the reader
// keeps is whole (its fields agree with each other), none is read twice, and
// once the writers are done the ring holds the newest events, newest first:
// all of the last `capacity` but those given up (a writer found its slot
// still being written a lap earlier: counted in `dropped`).
TEST(History, ConcurrentWritersAndAReader) {
    constexpr std::uint64_t kCapacity = 64;
    constexpr int kWriters = 4;
    constexpr int kEach = 20000;
    Ring r(kCapacity);
    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> torn{0}, seen{0};
    std::thread reader([&] {
        while (!done.load()) {
            HistoryQuery q;
            q.limit = 1000;
            const HistoryPage page = history_query(r.ring(), q);
            std::set<std::uint64_t> unique;
            for (const HistoryEvent &e : page.events) {
                seen++;
                const std::string id(e.series_id());
                // value, timestamp and id are written from one number: they agree if whole.
                if (id != "w" + std::to_string(e.timestamp % kWriters) || e.value != static_cast<double>(e.timestamp) ||
                    !unique.insert(e.sequence).second)
                    torn++;
            }
        }
    });
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; w++)
        writers.emplace_back([&, w] {
            for (int i = 0; i < kEach; i++) {
                const std::int64_t n = static_cast<std::int64_t>(i) * kWriters + w;
                history_record(r.ring(), event("w" + std::to_string(w), n, static_cast<double>(n)));
            }
        });
    for (auto &t : writers) t.join();
    done = true;
    reader.join();
    EXPECT_EQ(torn.load(), 0u);
    EXPECT_GT(seen.load(), 0u);
    EXPECT_EQ(history_head(r.ring()), static_cast<std::uint64_t>(kWriters * kEach));
    HistoryQuery q;
    q.limit = 1000;
    const HistoryPage page = history_query(r.ring(), q);
    const std::uint64_t dropped = __atomic_load_n(&r.ring()->dropped, __ATOMIC_RELAXED);
    EXPECT_GE(page.events.size() + dropped, kCapacity);
    EXPECT_GT(page.events.size(), 0u);
    std::uint64_t previous = kWriters * kEach;
    for (const HistoryEvent &e : page.events) {
        EXPECT_LT(e.sequence, previous);
        EXPECT_GE(e.sequence, kWriters * kEach - kCapacity);
        previous = e.sequence;
    }
}

TEST(HistoryEncoding, RoundTrips) {
    HistoryEvent e = make_event("sensor.1:a-b", 1700000123, -3.5, 99.25, -7.125, 5, 0, 1700000123456);
    const std::string bytes = encode_history_event(e);
    EXPECT_EQ(bytes.size(), 48u + 12u);
    EXPECT_EQ(static_cast<unsigned char>(bytes[0]), kHistoryEventFormat);
    HistoryEvent d;
    ASSERT_TRUE(decode_history_event(bytes, &d));
    EXPECT_EQ(d.series_id(), "sensor.1:a-b");
    EXPECT_EQ(d.timestamp, 1700000123);
    EXPECT_EQ(d.value, -3.5);
    EXPECT_EQ(d.anomaly_score, 99.25);
    EXPECT_EQ(d.score, -7.125);
    EXPECT_EQ(d.detector, 5);
    EXPECT_EQ(d.version, 0u);
    EXPECT_EQ(d.recorded_ms, 1700000123456);
    // Little-endian on disk whatever the machine: the version at byte 4.
    e.version = 0x01020304;
    const std::string v = encode_history_event(e);
    EXPECT_EQ(v[4], 4);
    EXPECT_EQ(v[7], 1);
}

TEST(HistoryEncoding, RefusesDamagedRecords) {
    const std::string good = encode_history_event(make_event("abc", 1, 2, 3, 4, 1, 1, 5));
    HistoryEvent d;
    EXPECT_FALSE(decode_history_event(good.substr(0, good.size() - 1), &d));
    EXPECT_FALSE(decode_history_event(good + "x", &d));
    std::string other = good;
    other[0] = 2;
    EXPECT_FALSE(decode_history_event(other, &d));
    std::string no_id = good;
    no_id[2] = 0;
    EXPECT_FALSE(decode_history_event(no_id.substr(0, 48), &d));
    EXPECT_FALSE(decode_history_event("", &d));
    std::string reserved = good;
    reserved[3] = 1;
    EXPECT_FALSE(decode_history_event(reserved, &d));
    EXPECT_FALSE(decode_history_event(encode_history_event(make_event("a", -1, 2, 3, 4, 1, 1, 5)), &d));
    EXPECT_FALSE(decode_history_event(encode_history_event(make_event("a", 1, 2, 3, 4, 1, 1, -5)), &d));
}

TEST(HistoryEncoding, KeysSortBySequence) {
    EXPECT_LT(history_key(255), history_key(256));
    EXPECT_LT(history_key(1), history_key(0x0100000000000000ull));
    std::uint64_t s = 0;
    ASSERT_TRUE(parse_history_key(history_key(123456789), &s));
    EXPECT_EQ(s, 123456789u);
    EXPECT_FALSE(parse_history_key("s/abc", &s));
    EXPECT_FALSE(parse_history_key("h/1234567", &s));
}

TEST(HistoryRender, Anomalies) {
    HistoryPage page;
    page.events.push_back(make_event("a\"b", 1700000000, 42, 88.5, 3.5, 1, 2, 1700000000123));
    page.events.back().sequence = 7;
    page.events.push_back(make_event("s", 1700000001, 1, 75, 0.9, 6, 0, 1700000001000));
    page.events.back().sequence = 6;
    page.more = true;
    page.next = 6;
    EXPECT_EQ(render_anomalies(page),
              "{\"anomalies\":[{\"sequence\":7,\"series_id\":\"a\\\"b\",\"timestamp\":1700000000,\"value\":42,"
              "\"anomaly_score\":88.5,\"score\":3.5,\"detector\":\"three_sigma\",\"version\":\"v2\","
              "\"recorded_at\":\"2023-11-14T22:13:20.123Z\"},{\"sequence\":6,\"series_id\":\"s\","
              "\"timestamp\":1700000001,\"value\":1,\"anomaly_score\":75,\"score\":0.9,\"detector\":\"adaptive\","
              "\"recorded_at\":\"2023-11-14T22:13:21.000Z\"}],\"next\":\"6\"}");
    EXPECT_EQ(render_anomalies(HistoryPage{}), "{\"anomalies\":[],\"next\":null}");
}

TEST(HistoryRender, Summary) {
    HistorySummary s;
    s.points_scored = 200;
    s.anomalies = 5;
    s.capacity = 100;
    s.recorded = 5;
    s.held = 5;
    s.persisted = 3;
    s.oldest_ms = 1700000000000;
    s.newest_ms = 1700000001000;
    s.series = {{"b", 10, 1}, {"a", 100, 4}, {"c", 90, 0}};
    keep_top_series(&s.series, 2);
    EXPECT_EQ(render_history_summary(s),
              "{\"points_scored\":200,\"anomalies\":5,\"anomaly_rate\":0.025,\"history\":{\"capacity\":100,"
              "\"recording\":true,\"recorded\":5,\"events\":5,\"persisted\":3,\"dropped\":0,"
              "\"oldest\":\"2023-11-14T22:13:20.000Z\",\"newest\":\"2023-11-14T22:13:21.000Z\"},"
              "\"series\":[{\"series_id\":\"a\",\"points_scored\":100,\"anomalies\":4,\"anomaly_rate\":0.04},"
              "{\"series_id\":\"b\",\"points_scored\":10,\"anomalies\":1,\"anomaly_rate\":0.1}]}");
    EXPECT_EQ(anomaly_rate(0, 0), 0.0);
}

TEST(HistorySince, UnixSecondsAndIso8601) {
    std::int64_t ms = 0;
    ASSERT_TRUE(parse_since("1700000000", &ms));
    EXPECT_EQ(ms, 1700000000000);
    ASSERT_TRUE(parse_since("2023-11-14T22:13:20Z", &ms));
    EXPECT_EQ(ms, 1700000000000);
    ASSERT_TRUE(parse_since("2023-11-14T22:13:20.250Z", &ms));
    EXPECT_EQ(ms, 1700000000250);
    ASSERT_TRUE(parse_since("2023-11-15T00:13:20+02:00", &ms));
    EXPECT_EQ(ms, 1700000000000);
    ASSERT_TRUE(parse_since("2023-11-14", &ms));
    EXPECT_EQ(ms, 1699920000000);
    ASSERT_TRUE(parse_since("2023-11-14T22:13", &ms));
    EXPECT_EQ(ms, 1700000000000 - 20000);
    for (const char *bad : {"", "abc", "2023-13-01", "2023-11-14T25:00:00Z", "2023-11-14T22:13:20Zx", "-5",
                            "1700000000.5", "99999999999999", "2023-11-14T22:13:20+2"})
        EXPECT_FALSE(parse_since(bad, &ms)) << bad;
}

}  // namespace
}  // namespace anomaly

namespace anomaly {
namespace {

TEST(HistoryRender, HealthAndMetrics) {
    HistorySummary s;
    s.capacity = 100;
    s.held = 7;
    s.recorded = 7;
    s.persisted = 5;
    s.dropped = 1;
    s.points_scored = 300;
    s.anomalies = 7;
    std::string health;
    append_history_health(&health, s);
    EXPECT_EQ(health, ",\"anomaly_history\":{\"capacity\":100,\"events\":7,\"recorded\":7,\"persisted\":5,"
                      "\"dropped\":1,\"points_scored\":300,\"anomalies\":7}");
    std::string metrics;
    append_history_metrics(&metrics, s);
    EXPECT_NE(metrics.find("# TYPE anomaly_points_scored_total counter\nanomaly_points_scored_total 300\n"),
              std::string::npos);
    EXPECT_NE(metrics.find("# TYPE anomaly_history_events gauge\nanomaly_history_events 7\n"), std::string::npos);
    EXPECT_NE(metrics.find("anomaly_history_persisted_total 5\n"), std::string::npos);
    EXPECT_NE(metrics.find("anomaly_history_dropped_total 1\n"), std::string::npos);
}

}  // namespace
}  // namespace anomaly
