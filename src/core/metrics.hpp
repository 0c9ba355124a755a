// Load and Prometheus metrics: request rates over sliding windows and the
// text exposition format. No nginx here; the zone holds the counters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace anomaly {

// Requests per second over the last seconds, from per-second counters that
// wrap every kSeconds. Fixed layout: lives in shared memory, one per worker
// and endpoint. Several processes may write one window (workers sharing a
// statistics slot), so a slot holds its second and its count in one word:
// starting a new second and counting in it is a single atomic step, and no
// count is lost when two writers start the same second together.
struct RateWindow {
    static constexpr int kSeconds = 64;
    // The low 32 bits of the Unix second in the high half, the count in the
    // low half.
    std::uint64_t slots[kSeconds];

    void add(std::int64_t now_s) noexcept;
    // Requests in the `window` whole seconds before now_s.
    std::uint64_t total(std::int64_t now_s, int window) const noexcept;
};
static_assert(std::is_trivially_copyable<RateWindow>::value && std::is_standard_layout<RateWindow>::value,
              "lives in shared memory");

// The statuses counted one by one; anything else counts as "other".
constexpr int kCountedStatuses[] = {200, 400, 404, 405, 413, 422, 500, 503, 507};
constexpr std::size_t kStatusSlots = sizeof(kCountedStatuses) / sizeof(int) + 1;
std::size_t status_slot(int status) noexcept;

// One endpoint as the exposition shows it.
struct EndpointMetrics {
    std::string endpoint;                       // "predict", "fit"
    std::uint64_t status_counts[kStatusSlots];  // by status_slot()
    std::vector<std::pair<double, std::uint64_t>> buckets;  // (le seconds, cumulative count)
    std::uint64_t count = 0;
    double sum_seconds = 0;
};

// One detector as the exposition shows it.
struct DetectorMetrics {
    std::string detector;          // "three_sigma", ...
    std::uint64_t predictions = 0; // answered by versions of this detector
    std::uint64_t versions = 0;    // its versions in the zone
    std::uint64_t zone_bytes = 0;  // the zone memory they take (versions, or streams)
    bool stream = false;           // a stream detector: the two below instead of predictions and versions
    std::uint64_t points_observed = 0;
    std::uint64_t streams = 0;
};

struct Metrics {
    std::vector<EndpointMetrics> endpoints;
    std::vector<DetectorMetrics> detectors;
    std::uint64_t series = 0;
    std::uint64_t versions = 0;
    std::uint64_t versions_deleted = 0;  // by DELETE and anomaly_keep_versions, since the zone began
    std::uint64_t series_deleted = 0;
    std::uint64_t zone_bytes_total = 0;
    std::uint64_t zone_bytes_free = 0;
    std::uint64_t store_queue = 0;
    double last_write_age_seconds = -1;  // < 0: nothing written since start
    bool store_ready = false;
    std::uint64_t anomalies = 0;
    std::uint64_t in_flight = 0;
    std::uint64_t streams = 0;
    std::uint64_t checkpoints_written = 0;    // stream states written by checkpoints
    double checkpoint_age_seconds = -1;       // < 0: none written since the zone was created
};

// The Prometheus text format (version 0.0.4): HELP and TYPE once per family.
std::string render_prometheus(const Metrics &m);

}  // namespace anomaly
