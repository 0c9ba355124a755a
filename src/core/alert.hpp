// Alerts (CONTRACT section 8), without nginx: which point of an answer an
// alert describes, its JSON body, and whether it goes out or is suppressed
// (at most one per series per interval, decided across processes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/model.hpp"

namespace anomaly {

// What an alert describes: one anomalous point of an answer.
struct AlertEvent {
    std::string_view series_id;
    std::int64_t timestamp = 0;     // Unix seconds
    double value = 0;
    double anomaly_score = 0;       // 0-100
    double score = 0;               // the detector's own number
    DetectorKind detector = DetectorKind::three_sigma;
    std::uint32_t version = 0;      // 0 for a stream
    std::uint64_t anomalies = 0;    // anomalous points in that answer
    std::uint64_t suppressed = 0;   // alerts of this series suppressed since the last one sent
};

// {"series_id":"s1","timestamp":1700000000,"time":"2023-11-14T22:13:20Z",
//  "value":42,"anomaly_score":93.1,"score":4.2,"detector":"three_sigma",
//  "version":"v3"|null,"anomalies":1,"suppressed":0}
std::string render_alert_body(const AlertEvent &event);
// 2023-11-14T22:13:20Z: what Alertmanager's startsAt takes.
std::string iso8601_seconds(std::int64_t unix_seconds);

// Of the anomalous points of an answer (count > 0, in order), the one an
// alert describes: the highest anomaly_score, the latest of equals.
template <typename Point>
std::size_t alert_point(const Point *points, std::size_t count) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < count; i++)
        if (points[i].anomaly_score >= points[best].anomaly_score) best = i;
    return best;
}

// The zone's alert counters, as /metrics and /healthcheck show them.
struct AlertCounts {
    std::uint64_t sent = 0;        // subrequests issued
    std::uint64_t delivered = 0;   // of those, answered 2xx
    std::uint64_t failed = 0;      // deliveries failed, and alerts that could not be issued
    std::uint64_t suppressed = 0;  // within their series' interval
    std::uint64_t untracked = 0;   // of suppressed: no room in the suppression table
    bool failing = false;          // the last delivery failed
};
// The Prometheus lines: anomaly_alerts_total{outcome="sent|delivered|failed|suppressed"},
// anomaly_alerts_untracked_total and anomaly_alerts_failing.
std::string render_alert_metrics(const AlertCounts &c);
// ,"alerts":{"sent":1,"delivered":1,"failed":0,"suppressed":3,"untracked":0,"failing":false}
void append_alert_health(std::string *out, const AlertCounts &c);

// A series' place in the suppression table, in shared memory: updated with
// atomic operations only, by any process, without a lock.
struct AlertSlot {
    std::uint64_t key;          // alert_key of the series, 0 when free
    std::int64_t last_sent_ms;  // monotonic ms of its last alert sent, 0 none
    std::uint64_t suppressed;   // its alerts suppressed since then
};
static_assert(std::is_trivially_copyable<AlertSlot>::value && std::is_standard_layout<AlertSlot>::value,
              "lives in shared memory");

// The series' key in the table: a 64-bit hash, never 0.
std::uint64_t alert_key(std::string_view series_id) noexcept;

// Slots a series may take, from its hash on: beyond them the table counts as full.
constexpr std::size_t kAlertProbe = 16;

struct AlertDecision {
    bool send = false;
    std::uint64_t suppressed = 0;  // when sent: the series' alerts suppressed before this one
    bool untracked = false;        // no slot could be found or freed for the series: suppressed
};

// Whether an alert of the series with `key` goes out now (now_ms, monotonic,
// > 0), at most one per interval_ms. Two processes deciding at once for one
// series never both send (compare-and-swap on the slot's time). A free slot
// or one whose series was last alerted an interval ago or more is taken; when
// the series' kAlertProbe slots all hold series alerted within the interval,
// the alert is suppressed (untracked). slot_count is a power of two.
AlertDecision decide_alert(AlertSlot *slots, std::size_t slot_count, std::uint64_t key, std::int64_t now_ms,
                           std::int64_t interval_ms) noexcept;

}  // namespace anomaly
