// /healthcheck and /metrics, and the figures merged from every worker's
// counters that they (and the variables) show.

#include "ngx/http.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include "core/alert.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/render.hpp"
#include "core/stream.hpp"

namespace anomaly {

// ---- healthcheck ----

// Every worker's counters merged, recomputed at most once per millisecond
// (log formats may ask for several variables per request).
const Figures &figures(Zone *zone) {
    static Figures merged;
    static ngx_msec_t computed_at = 0;
    static bool computed = false;
    if (!computed || computed_at != ngx_current_msec) {
        merged = Figures();
        const std::int64_t now = ngx_time();
        for (ngx_uint_t i = 0; i < kStatSlots; i++) {
            const WorkerStats &w = zone->shared()->stats[i];
            merged.predict.add(w.predict, now);
            merged.fit.add(w.fit, now);
            merged.observe.add(w.observe, now);
            merged.score.add(w.score, now);
            merged.points_observed += __atomic_load_n(&w.points_observed, __ATOMIC_RELAXED);
            merged.anomalies += __atomic_load_n(&w.anomalies, __ATOMIC_RELAXED);
            for (std::size_t k = 0; k < kDetectorSlots; k++)
                merged.by_detector[k] += __atomic_load_n(&w.by_detector[k], __ATOMIC_RELAXED);
        }
        computed_at = ngx_current_msec;
        computed = true;
    }
    return merged;
}

namespace {

// The zone's alert counters (alert.cpp), each read whole.
AlertCounts alert_counts(Zone *zone) {
    AlertCounts c;
    const AlertState *st = zone->alerts();
    if (st == nullptr) return c;
    c.sent = __atomic_load_n(&st->sent, __ATOMIC_RELAXED);
    c.delivered = __atomic_load_n(&st->delivered, __ATOMIC_RELAXED);
    c.failed = __atomic_load_n(&st->failed, __ATOMIC_RELAXED);
    c.suppressed = __atomic_load_n(&st->suppressed, __ATOMIC_RELAXED);
    c.untracked = __atomic_load_n(&st->untracked, __ATOMIC_RELAXED);
    c.failing = __atomic_load_n(&st->failing, __ATOMIC_RELAXED) != 0;
    return c;
}

void append_latency(std::string *out, const char *name, const LatencySummary &s) {
    *out += "\"";
    *out += name;
    *out += "\":{\"avg\":";
    append_double(out, s.avg_ms());
    *out += ",\"p95\":";
    append_double(out, s.quantile_ms(0.95));
    *out += ",\"p99\":";
    append_double(out, s.quantile_ms(0.99));
    *out += ",\"count\":";
    *out += std::to_string(s.count());
    *out += "}";
}

void append_load(std::string *out, const char *name, const EndpointFigures &f) {
    *out += "\"";
    *out += name;
    *out += "\":{\"rps_10s\":";
    append_double(out, static_cast<double>(f.last_10s) / 10);
    *out += ",\"rps_60s\":";
    append_double(out, static_cast<double>(f.last_60s) / 60);
    *out += ",\"in_flight\":" + std::to_string(f.in_flight < 0 ? 0 : f.in_flight) + "}";
}

}  // namespace

ngx_int_t healthcheck_handler(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use GET for /healthcheck.");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        Zone *zone = zone_of(r);
        Shared *sh = zone->shared();
        zone->lock();
        std::uint64_t series = sh->series_trained;
        std::uint64_t versions = sh->versions_stored;
        std::uint64_t versions_deleted = sh->versions_deleted, series_deleted = sh->series_deleted;
        ngx_pid_t owner = sh->owner_pid;
        StoreState state = sh->store_state;
        std::string store_error = sh->store_error;
        size_t bytes_free = zone->pool()->pfree << ngx_pagesize_shift;
        zone->unlock();
        std::uint64_t kind_versions[kDetectorSlots], kind_bytes[kDetectorSlots];
        zone->detector_counts(kind_versions, kind_bytes);
        std::uint64_t kind_streams[kDetectorSlots], kind_stream_bytes[kDetectorSlots];
        zone->stream_counts(kind_streams, kind_stream_bytes);
        const Figures &fig = figures(zone);

        std::string out;
        out.reserve(1024);
        out += "{\"series_trained\":" + std::to_string(series);
        out += ",\"versions_stored\":" + std::to_string(versions) + ",";
        append_latency(&out, "inference_latency_ms", fig.predict.latency);
        out += ",";
        append_latency(&out, "training_latency_ms", fig.fit.latency);
        out += ",";
        append_latency(&out, "observe_latency_ms", fig.observe.latency);
        out += ",";
        append_latency(&out, "score_latency_ms", fig.score.latency);
        out += ",\"load\":{";
        append_load(&out, "predict", fig.predict);
        out += ",";
        append_load(&out, "fit", fig.fit);
        out += ",";
        append_load(&out, "observe", fig.observe);
        out += ",";
        append_load(&out, "score", fig.score);
        out += "}";
        out += ",\"streams\":{\"count\":" + std::to_string(sh->stream_count) +
               ",\"points_observed\":" + std::to_string(fig.points_observed) +
               ",\"checkpoints_written\":" + std::to_string(sh->checkpoints_written) + ",\"last_checkpoint_age_seconds\":";
        {
            const std::int64_t last = __atomic_load_n(&sh->last_checkpoint_ms, __ATOMIC_RELAXED);
            ngx_time_t *tp = ngx_timeofday();
            const std::int64_t now_ms = static_cast<std::int64_t>(tp->sec) * 1000 + tp->msec;
            if (last == 0) out += "null";
            else append_double(&out, static_cast<double>(std::max<std::int64_t>(0, now_ms - last)) / 1000);
        }
        out += "}";
        out += ",\"store\":{\"state\":\"";
        out += store_state_name(state);
        out += "\",\"owner_pid\":" + std::to_string(owner);
        out += ",\"fits_waiting\":" + std::to_string(sh->jobs_pending);
        out += ",\"versions_deleted\":" + std::to_string(versions_deleted);
        out += ",\"series_deleted\":" + std::to_string(series_deleted);
        out += ",\"keep_versions\":";
        if (main_conf(r)->keep_versions == 0) out += "null";
        else out += std::to_string(main_conf(r)->keep_versions);
        out += ",\"error\":";
        if (store_error.empty()) out += "null";
        else append_json_string(&out, store_error);
        out += "},\"zone\":{\"name\":";
        append_json_string(&out, std::string_view(reinterpret_cast<char *>(zone->name().data),
                                                  zone->name().len));
        out += ",\"bytes_total\":" + std::to_string(zone->bytes_total());
        out += ",\"bytes_free\":" + std::to_string(bytes_free) + "}";
        // Alerts (CONTRACT section 8)
        append_alert_health(&out, alert_counts(zone));
        // The anomaly history (anomalies.cpp, CONTRACT section 8).
        append_history_health(&out, history_figures(zone, main_conf(r)));
        // The detectors this build offers, what their versions take, and
        // how many predictions each answered (CONTRACT section 5).
        out += ",\"detectors\":[";
        std::size_t n = 0;
        const DetectorInfo *all = detectors(&n);
        for (std::size_t i = 0; i < n; i++) {
            const auto k = static_cast<std::size_t>(all[i].kind);
            if (i) out += ',';
            out += "{\"name\":\"";
            out += all[i].name;
            out += "\",\"kind\":\"";
            out += all[i].kind_of_learning;
            out += "\",\"learns\":";
            append_json_string(&out, all[i].learns);
            if (is_stream_detector(all[i].kind)) {
                out += ",\"streams\":" + std::to_string(kind_streams[k]);
                out += ",\"zone_bytes\":" + std::to_string(kind_stream_bytes[k]);
                out += ",\"zone_bytes_per_stream\":";
                if (kind_streams[k] == 0) out += "null";
                else out += std::to_string(kind_stream_bytes[k] / kind_streams[k]);
                out += ",\"points_observed\":" + std::to_string(fig.by_detector[k]) + "}";
                continue;
            }
            out += ",\"versions\":" + std::to_string(kind_versions[k]);
            out += ",\"zone_bytes\":" + std::to_string(kind_bytes[k]);
            out += ",\"zone_bytes_per_version\":";
            if (kind_versions[k] == 0) out += "null";
            else out += std::to_string(kind_bytes[k] / kind_versions[k]);
            out += ",\"predictions\":" + std::to_string(fig.by_detector[k]) + "}";
        }
        out += "]}";
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// ---- metrics ----

namespace {

void fill_endpoint(EndpointMetrics *m, const char *name, const EndpointFigures &f) {
    static const double kBounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
    m->endpoint = name;
    std::memcpy(m->status_counts, f.statuses, sizeof(f.statuses));
    for (double le : kBounds)
        m->buckets.emplace_back(le, f.latency.count_below(static_cast<std::uint64_t>(le * 1e9)));
    m->count = f.latency.count();
    m->sum_seconds = static_cast<double>(f.latency.sum_ns()) / 1e9;
}

}  // namespace

ngx_int_t metrics_handler(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use GET for /metrics.");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        Zone *zone = zone_of(r);
        Shared *sh = zone->shared();
        Metrics m;
        zone->lock();
        m.series = sh->series_trained;
        m.versions = sh->versions_stored;
        m.versions_deleted = sh->versions_deleted;
        m.series_deleted = sh->series_deleted;
        m.zone_bytes_free = zone->pool()->pfree << ngx_pagesize_shift;
        m.store_ready = sh->store_state == StoreState::ready && sh->owner_pid != 0;
        const std::int64_t last_write = sh->last_write_ms;
        zone->unlock();
        m.zone_bytes_total = zone->bytes_total();
        m.store_queue = sh->jobs_pending;
        if (last_write > 0) {
            ngx_time_t *now = ngx_timeofday();
            const std::int64_t now_ms = static_cast<std::int64_t>(now->sec) * 1000 + now->msec;
            m.last_write_age_seconds = static_cast<double>(now_ms - last_write) / 1000;
            if (m.last_write_age_seconds < 0) m.last_write_age_seconds = 0;
        }
        const Figures &fig = figures(zone);
        m.anomalies = fig.anomalies;
        m.in_flight = static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, fig.predict.in_flight + fig.fit.in_flight + fig.observe.in_flight +
                                       fig.score.in_flight));
        m.endpoints.resize(4);
        fill_endpoint(&m.endpoints[0], "predict", fig.predict);
        fill_endpoint(&m.endpoints[1], "fit", fig.fit);
        fill_endpoint(&m.endpoints[2], "observe", fig.observe);
        fill_endpoint(&m.endpoints[3], "score", fig.score);
        m.streams = sh->stream_count;
        m.checkpoints_written = sh->checkpoints_written;
        if (const std::int64_t last = __atomic_load_n(&sh->last_checkpoint_ms, __ATOMIC_RELAXED)) {
            ngx_time_t *now = ngx_timeofday();
            const std::int64_t now_ms = static_cast<std::int64_t>(now->sec) * 1000 + now->msec;
            m.checkpoint_age_seconds = std::max(0.0, static_cast<double>(now_ms - last) / 1000);
        }
        std::uint64_t kind_versions[kDetectorSlots], kind_bytes[kDetectorSlots];
        zone->detector_counts(kind_versions, kind_bytes);
        std::uint64_t kind_streams[kDetectorSlots], kind_stream_bytes[kDetectorSlots];
        zone->stream_counts(kind_streams, kind_stream_bytes);
        std::size_t n = 0;
        const DetectorInfo *all = detectors(&n);
        for (std::size_t i = 0; i < n; i++) {
            const auto k = static_cast<std::size_t>(all[i].kind);
            DetectorMetrics d{all[i].name, fig.by_detector[k], kind_versions[k], kind_bytes[k]};
            if (is_stream_detector(all[i].kind)) {
                d.stream = true;
                d.points_observed = fig.by_detector[k];
                d.streams = kind_streams[k];
                d.zone_bytes = kind_stream_bytes[k];
            }
            m.detectors.push_back(d);
        }
        std::string out = render_prometheus(m);
        // Alerts (CONTRACT section 8)
        out += render_alert_metrics(alert_counts(zone));
        // The anomaly history (anomalies.cpp, CONTRACT section 8).
        append_history_metrics(&out, history_figures(zone, main_conf(r)));
        return send_body(r, NGX_HTTP_OK, out.data(), out.size(), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace anomaly
