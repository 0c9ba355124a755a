#include "core/metrics.hpp"

#include <charconv>

#include "core/render.hpp"

namespace anomaly {

namespace {

std::uint64_t second_tag(std::int64_t s) { return static_cast<std::uint32_t>(s); }

}  // namespace

void RateWindow::add(std::int64_t now_s) noexcept {
    std::uint64_t *slot = &slots[now_s % kSeconds];
    const std::uint64_t tag = second_tag(now_s);
    std::uint64_t seen = __atomic_load_n(slot, __ATOMIC_RELAXED);
    for (;;) {
        const std::uint64_t next = seen >> 32 == tag ? seen + 1 : (tag << 32 | 1);
        if (__atomic_compare_exchange_n(slot, &seen, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return;
    }
}

std::uint64_t RateWindow::total(std::int64_t now_s, int window) const noexcept {
    std::uint64_t sum = 0;
    for (std::int64_t s = now_s - window; s < now_s; s++) {
        const std::uint64_t v = __atomic_load_n(&slots[s % kSeconds], __ATOMIC_RELAXED);
        if (v >> 32 == second_tag(s)) sum += v & 0xffffffffu;
    }
    return sum;
}

std::size_t status_slot(int status) noexcept {
    for (std::size_t i = 0; i < kStatusSlots - 1; i++)
        if (kCountedStatuses[i] == status) return i;
    return kStatusSlots - 1;
}

namespace {

void family(std::string *out, const char *name, const char *type, const char *help) {
    *out += "# HELP ";
    *out += name;
    *out += ' ';
    *out += help;
    *out += "\n# TYPE ";
    *out += name;
    *out += ' ';
    *out += type;
    *out += '\n';
}

void sample(std::string *out, const char *name, double value) {
    *out += name;
    *out += ' ';
    append_double(out, value);
    *out += '\n';
}

void sample_u(std::string *out, const std::string &name_and_labels, std::uint64_t value) {
    *out += name_and_labels;
    *out += ' ';
    *out += std::to_string(value);
    *out += '\n';
}

// Endpoint names are ours (no quotes or backslashes), so they need no escaping.
std::string label(const std::string &endpoint) { return "endpoint=\"" + endpoint + "\""; }

}  // namespace

std::string render_prometheus(const Metrics &m) {
    std::string out;
    out.reserve(8192);

    family(&out, "anomaly_requests_total", "counter", "Requests answered, by endpoint and HTTP status.");
    for (const EndpointMetrics &e : m.endpoints) {
        for (std::size_t i = 0; i < kStatusSlots; i++) {
            std::string status = i + 1 < kStatusSlots ? std::to_string(kCountedStatuses[i]) : "other";
            sample_u(&out, "anomaly_requests_total{" + label(e.endpoint) + ",status=\"" + status + "\"}",
                     e.status_counts[i]);
        }
    }

    family(&out, "anomaly_request_duration_seconds", "histogram",
           "Time from the request body being read to the response handed to nginx.");
    for (const EndpointMetrics &e : m.endpoints) {
        for (const auto &b : e.buckets) {
            // Fixed notation, as Prometheus clients write it: le="0.0005", not "5e-04".
            char le_buf[64];
            const std::string le(le_buf, std::to_chars(le_buf, le_buf + sizeof le_buf, b.first,
                                                       std::chars_format::fixed).ptr);
            sample_u(&out, "anomaly_request_duration_seconds_bucket{" + label(e.endpoint) + ",le=\"" + le + "\"}",
                     b.second);
        }
        sample_u(&out, "anomaly_request_duration_seconds_bucket{" + label(e.endpoint) + ",le=\"+Inf\"}", e.count);
        out += "anomaly_request_duration_seconds_sum{" + label(e.endpoint) + "} ";
        append_double(&out, e.sum_seconds);
        out += '\n';
        sample_u(&out, "anomaly_request_duration_seconds_count{" + label(e.endpoint) + "}", e.count);
    }

    family(&out, "anomaly_series", "gauge", "Series with at least one trained version.");
    sample(&out, "anomaly_series", static_cast<double>(m.series));
    family(&out, "anomaly_versions", "gauge", "Trained versions held in the shared zone.");
    sample(&out, "anomaly_versions", static_cast<double>(m.versions));
    family(&out, "anomaly_versions_deleted_total", "counter",
           "Versions deleted (DELETE /series, anomaly_keep_versions) since the zone was created.");
    sample_u(&out, "anomaly_versions_deleted_total", m.versions_deleted);
    family(&out, "anomaly_series_deleted_total", "counter", "Series deleted whole since the zone was created.");
    sample_u(&out, "anomaly_series_deleted_total", m.series_deleted);
    family(&out, "anomaly_zone_bytes", "gauge", "Size of the anomaly_zone shared memory.");
    sample(&out, "anomaly_zone_bytes", static_cast<double>(m.zone_bytes_total));
    family(&out, "anomaly_zone_free_bytes", "gauge", "Free pages of the anomaly_zone shared memory.");
    sample(&out, "anomaly_zone_free_bytes", static_cast<double>(m.zone_bytes_free));
    family(&out, "anomaly_store_queue_fits", "gauge", "Fits waiting for the store owner to make them durable.");
    sample(&out, "anomaly_store_queue_fits", static_cast<double>(m.store_queue));
    family(&out, "anomaly_store_up", "gauge", "1 when the store is open and the models are loaded.");
    sample(&out, "anomaly_store_up", m.store_ready ? 1 : 0);
    family(&out, "anomaly_store_last_write_age_seconds", "gauge",
           "Seconds since the last durable write; -1 when none since the zone was created.");
    sample(&out, "anomaly_store_last_write_age_seconds", m.last_write_age_seconds);
    family(&out, "anomaly_anomalies_total", "counter", "Predictions and observed points answered with anomaly true.");
    sample(&out, "anomaly_anomalies_total", static_cast<double>(m.anomalies));
    family(&out, "anomaly_requests_in_flight", "gauge", "Fit, predict, observe and score requests being handled now.");
    sample(&out, "anomaly_requests_in_flight", static_cast<double>(m.in_flight));
    // Detector names are ours too: no escaping.
    family(&out, "anomaly_predictions_total", "counter", "Predictions answered, by the detector of the version.");
    for (const DetectorMetrics &d : m.detectors)
        if (!d.stream) sample_u(&out, "anomaly_predictions_total{detector=\"" + d.detector + "\"}", d.predictions);
    family(&out, "anomaly_detector_versions", "gauge", "Versions in the shared zone, by detector.");
    for (const DetectorMetrics &d : m.detectors)
        if (!d.stream) sample_u(&out, "anomaly_detector_versions{detector=\"" + d.detector + "\"}", d.versions);
    family(&out, "anomaly_detector_zone_bytes", "gauge",
           "Shared zone memory each detector takes: versions (images and their slots) or streams (their states).");
    for (const DetectorMetrics &d : m.detectors)
        sample_u(&out, "anomaly_detector_zone_bytes{detector=\"" + d.detector + "\"}", d.zone_bytes);
    family(&out, "anomaly_observed_points_total", "counter", "Points observed by streams, by the stream's detector.");
    for (const DetectorMetrics &d : m.detectors)
        if (d.stream) sample_u(&out, "anomaly_observed_points_total{detector=\"" + d.detector + "\"}", d.points_observed);
    family(&out, "anomaly_streams", "gauge", "Streams in the shared zone, by detector.");
    for (const DetectorMetrics &d : m.detectors)
        if (d.stream) sample_u(&out, "anomaly_streams{detector=\"" + d.detector + "\"}", d.streams);
    family(&out, "anomaly_checkpoints_written_total", "counter", "Stream states written to the store by checkpoints.");
    sample_u(&out, "anomaly_checkpoints_written_total", m.checkpoints_written);
    family(&out, "anomaly_checkpoint_age_seconds", "gauge",
           "Seconds since the last stream checkpoint was written; -1 when none since the zone was created.");
    sample(&out, "anomaly_checkpoint_age_seconds", m.checkpoint_age_seconds);
    return out;
}

}  // namespace anomaly
