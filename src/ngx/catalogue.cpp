// The catalogue: /series (the series trained), /series/{id} (a series'
// versions) and /dashboard.

#include "ngx/http.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "core/dashboard.hpp"
#include "core/render.hpp"
#include "core/series.hpp"

namespace anomaly {
namespace {

// ---- catalogue: /series, /series/{id}, /dashboard ----

constexpr std::size_t kDashboardAnomalies = 20;  // the dashboard's panel of recent anomalies

// NGX_DECLINED when the request may go on: a GET (or HEAD), its body
// discarded. Anything else is what the handler returns: the 405 it sent
// (NGX_OK once sent) or an error.
ngx_int_t get_only(ngx_http_request_t *r, const char *what) {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
        return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", what);
    return ngx_http_discard_request_body(r) == NGX_OK ? NGX_DECLINED : NGX_HTTP_INTERNAL_SERVER_ERROR;
}

// ?limit= of /series and /series/{id}: 1 to 1000, 100 by default.
bool page_limit(ngx_http_request_t *r, std::size_t *limit) {
    *limit = 100;
    ngx_str_t arg;
    if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("limit")), 5, &arg) != NGX_OK) return true;
    ngx_int_t n = ngx_atoi(arg.data, arg.len);
    if (n < 1 || n > 1000) return false;
    *limit = static_cast<std::size_t>(n);
    return true;
}

}  // namespace

ngx_int_t series_handler(ngx_http_request_t *r) noexcept {
    try {
        ngx_int_t rc = get_only(r, "Use GET for /series.");
        if (rc != NGX_DECLINED) return rc;
        std::size_t limit;
        if (!page_limit(r, &limit))
            return send_error(r, 422, "invalid_limit", "limit must be a whole number from 1 to 1000.");
        std::string_view after;
        ngx_str_t arg;
        if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("after")), 5, &arg) == NGX_OK) {
            if (!valid_series_id(arg)) return send_error(r, 400, "invalid_series_id", kBadSeriesId);
            after = std::string_view(reinterpret_cast<char *>(arg.data), arg.len);
        }
        std::vector<Zone::SeriesSummary> found;
        bool more = false;
        Lookup lookup = zone_of(r)->list_series(after, limit, &found, &more);
        if (lookup != Lookup::found) return lookup_error(r, lookup);
        std::vector<SeriesEntry> entries;
        entries.reserve(found.size());
        for (const Zone::SeriesSummary &s : found)
            entries.push_back(SeriesEntry{s.series_id(), s.has_versions ? &s.latest : nullptr,
                                          s.has_stream ? &s.stream : nullptr, s.points_scored, s.anomalies});
        std::string out = render_series_list(entries, more);
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// A page of versions: ?limit= (100 by default, at most 1000) from the
// oldest, ?after=vN for the next page; ?order=newest from the latest down,
// ?after=vN then gives the versions before vN. A page costs the same however
// many versions the series has.
ngx_int_t versions_handler(ngx_http_request_t *r) noexcept {
    try {
        if (r->method == NGX_HTTP_DELETE) return delete_series(r);  // lifecycle.cpp
        ngx_int_t rc = get_only(r, "Use GET for /series/{series_id}.");
        if (rc != NGX_DECLINED) return rc;
        ngx_str_t id;
        if (!series_id_of(r, &id)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!valid_series_id(id)) return send_error(r, 400, "invalid_series_id", kBadSeriesId);
        std::size_t limit;
        if (!page_limit(r, &limit))
            return send_error(r, 422, "invalid_limit", "limit must be a whole number from 1 to 1000.");
        ngx_str_t arg;
        std::uint32_t after = 0;
        if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("after")), 5, &arg) == NGX_OK &&
            !parse_version(std::string_view(reinterpret_cast<char *>(arg.data), arg.len), &after))
            return send_error(r, 422, "invalid_version", "after must be a version such as v3 or 3.");
        bool newest = false;
        if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("order")), 5, &arg) == NGX_OK) {
            const std::string_view order(reinterpret_cast<char *>(arg.data), arg.len);
            if (order == "newest") newest = true;
            else if (order != "oldest")
                return send_error(r, 422, "invalid_order", "order must be oldest (the default) or newest.");
        }
        std::string_view series(reinterpret_cast<char *>(id.data), id.len);
        std::vector<VersionSummary> versions;
        bool more = false;
        Zone *zone = zone_of(r);
        Lookup lookup = zone->versions(series, after, limit, newest, &versions, &more);
        StreamSummary stream;
        const bool has_stream = zone->stream_summary(series, &stream);
        if (lookup == Lookup::series_not_found && has_stream) lookup = Lookup::found;  // a stream, no versions
        if (lookup != Lookup::found) return lookup_error(r, lookup);
        using namespace std::chrono;
        const std::int64_t now = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
        std::string out = render_versions(series, versions, more, has_stream ? &stream : nullptr, now);
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

ngx_int_t dashboard_handler(ngx_http_request_t *r) noexcept {
    try {
        ngx_int_t rc = get_only(r, "Use GET for /dashboard.");
        if (rc != NGX_DECLINED) return rc;
        // The recent anomalies, read from the zone's ring without any lock.
        DashboardData data;
        HistoryQuery query;
        query.limit = kDashboardAnomalies;
        data.recent = history_query(zone_of(r)->history(), query).events;
        zone_of(r)->history_totals(&data.points_scored, &data.anomalies);
        const std::string page = render_dashboard(data);
        return send_body(r, NGX_HTTP_OK, page.data(), page.size(), "text/html; charset=utf-8");
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace anomaly
