// The anomaly history (CONTRACT section 8): what /predict and /observe
// answered is counted per series and overall, each anomalous point recorded
// in the zone's ring (core/history.hpp); /anomalies and /anomalies/summary
// read them. The owner writes the ring to the store (owner.cpp).

#include "ngx/http.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "core/history.hpp"

namespace anomaly {
namespace {

constexpr std::size_t kDefaultLimit = 100;     // /anomalies
constexpr std::size_t kMaxLimit = 1000;
constexpr std::size_t kDefaultTopSeries = 10;  // /anomalies/summary

std::int64_t cached_now_ms() {
    const ngx_time_t *tp = ngx_timeofday();
    return static_cast<std::int64_t>(tp->sec) * 1000 + static_cast<std::int64_t>(tp->msec);
}

// NGX_DECLINED when the request may go on: a GET (or HEAD), its body discarded.
ngx_int_t get_only(ngx_http_request_t *r, const char *what) {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
        return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", what);
    return ngx_http_discard_request_body(r) == NGX_OK ? NGX_DECLINED : NGX_HTTP_INTERNAL_SERVER_ERROR;
}

// A query argument, %XX decoded; false when absent.
bool query_arg(ngx_http_request_t *r, const char *name, ngx_str_t *out) {
    ngx_str_t raw;
    if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>(name)), ngx_strlen(name), &raw) != NGX_OK)
        return false;
    u_char *dst = static_cast<u_char *>(ngx_pnalloc(r->pool, raw.len + 1));
    if (dst == nullptr) throw std::bad_alloc();
    u_char *src = raw.data, *end = dst;
    ngx_unescape_uri(&end, &src, raw.len, 0);
    out->data = dst;
    out->len = static_cast<size_t>(end - dst);
    return true;
}

// A whole number from lo to hi.
bool whole(const ngx_str_t &s, std::uint64_t lo, std::uint64_t hi, std::uint64_t *out) {
    if (s.len == 0 || s.len > 19) return false;
    std::uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.data[i] < '0' || s.data[i] > '9') return false;
        v = v * 10 + (s.data[i] - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

}  // namespace

HistorySummary history_figures(Zone *zone, const MainConf *mcf) {
    HistorySummary s;
    zone->history_totals(&s.points_scored, &s.anomalies);
    const HistoryRing *ring = zone->history();
    s.recording = ring != nullptr && mcf->history != 0;
    if (ring == nullptr) return s;
    s.capacity = ring->capacity;
    s.recorded = history_head(ring);
    s.dropped = __atomic_load_n(&ring->dropped, __ATOMIC_RELAXED);
    const std::uint64_t tail = history_tail(s.recorded, s.capacity);
    s.held = s.recorded - tail;
    // The newest and oldest whole events, a few slots in at most.
    HistoryEvent e;
    for (std::uint64_t q = s.recorded; q > tail && s.recorded - q < 1000; q--)
        if (history_read(ring, q - 1, &e) == SlotRead::ok) {
            s.newest_ms = e.recorded_ms;
            break;
        }
    for (std::uint64_t q = tail; q < s.recorded && q - tail < 1000; q++)
        if (history_read(ring, q, &e) == SlotRead::ok) {
            s.oldest_ms = e.recorded_ms;
            break;
        }
    s.persisted = zone->history_persisted();
    return s;
}

void history_note(ngx_http_request_t *r, const ScoredAnswer &answer) noexcept {
    Zone *zone = zone_of(r);
    WorkerStats &stats = zone->my_stats();
    __atomic_fetch_add(&stats.history_points, answer.points, __ATOMIC_RELAXED);
    SeriesNode *node = answer.node != nullptr ? answer.node : zone->series_node(answer.series_id);
    if (node != nullptr) zone->count_scored(node, answer.points, answer.anomaly_count);
    if (answer.anomaly_count == 0) return;
    __atomic_fetch_add(&stats.history_anomalies, answer.anomaly_count, __ATOMIC_RELAXED);
    HistoryRing *ring = zone->history();
    if (ring == nullptr || main_conf(r)->history == 0) return;
    const std::int64_t now = cached_now_ms();
    for (std::size_t i = 0; i < answer.anomaly_count; i++) {
        const ScoredPoint &p = answer.anomalies[i];
        history_record(ring, make_event(answer.series_id, p.timestamp, p.value, p.anomaly_score, p.score,
                                        static_cast<std::uint8_t>(answer.detector), answer.version, now));
    }
}

// GET /anomalies?series_id=&since=&limit=&before=: newest first.
ngx_int_t anomalies_handler(ngx_http_request_t *r) noexcept {
    try {
        ngx_int_t rc = get_only(r, "Use GET for /anomalies.");
        if (rc != NGX_DECLINED) return rc;
        HistoryQuery query;
        query.limit = kDefaultLimit;
        ngx_str_t arg;
        if (query_arg(r, "series_id", &arg)) {
            if (!valid_series_id(arg)) return send_error(r, 400, "invalid_series_id", kBadSeriesId);
            query.series_id = view(arg);
        }
        if (query_arg(r, "since", &arg) && !parse_since(view(arg), &query.since_ms))
            return send_error(r, 422, "invalid_parameter",
                              "since must be Unix seconds or an ISO 8601 time such as 2024-01-02T03:04:05Z.");
        std::uint64_t n = 0;
        if (query_arg(r, "limit", &arg)) {
            if (!whole(arg, 1, kMaxLimit, &n))
                return send_error(r, 422, "invalid_limit", "limit must be a whole number from 1 to 1000.");
            query.limit = static_cast<std::size_t>(n);
        }
        if (query_arg(r, "before", &arg)) {
            if (!whole(arg, 0, UINT64_MAX / 4, &n))
                return send_error(r, 422, "invalid_parameter",
                                  "before must be the \"next\" of an earlier answer: a whole number.");
            query.before = n;
        }
        const std::string out = render_anomalies(history_query(zone_of(r)->history(), query));
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// GET /anomalies/summary?limit=: the counts, the ring, the series with the most anomalies.
ngx_int_t anomalies_summary_handler(ngx_http_request_t *r) noexcept {
    try {
        ngx_int_t rc = get_only(r, "Use GET for /anomalies/summary.");
        if (rc != NGX_DECLINED) return rc;
        std::size_t limit = kDefaultTopSeries;
        ngx_str_t arg;
        std::uint64_t n = 0;
        if (query_arg(r, "limit", &arg)) {
            if (!whole(arg, 1, kMaxLimit, &n))
                return send_error(r, 422, "invalid_limit", "limit must be a whole number from 1 to 1000.");
            limit = static_cast<std::size_t>(n);
        }
        Zone *zone = zone_of(r);
        HistorySummary s = history_figures(zone, main_conf(r));
        zone->anomalous_series(&s.series);
        keep_top_series(&s.series, limit);
        const std::string out = render_history_summary(s);
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace anomaly
