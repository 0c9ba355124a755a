// /plot: the owner reads what a version's plot draws, a pool thread draws
// the SVG. A stream's plot (?stream=1, or a series with a stream and no
// versions) is drawn on the event loop from the recent points the stream
// keeps in the zone: at most 65536 points, copied under the stream's lock.

#include "ngx/http.hpp"

#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include "core/encoding.hpp"
#include "core/plot.hpp"
#include "core/series.hpp"
#include "core/stream.hpp"
#include "ngx/owner.hpp"

namespace anomaly {
namespace {

// A /plot being drawn in a pool thread from what the owner read.
struct PlotWork {
    ngx_thread_task_t task{};
    ngx_http_request_t *request = nullptr;
    std::string data;                 // the owner's answer (see read_plot_data)
    std::string model;                // the version's image, copied out of the zone
    std::string series_id;
    double sigma = 3;
    Tail tail = Tail::both;
    std::string svg;
    Error error;
    std::string log_detail;           // what the error log says of a 5xx
};

// ---- plot ----

void plot_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    PlotWork *work = static_cast<PlotWork *>(data);
    try {
        PlotEnvelope envelope;
        if (!decode_plot_envelope(work->data, &envelope)) {
            work->error = make_error(503, "store_unavailable", "The plot's data does not decode; the error log says why.");
            work->log_detail = "the data read from the store does not decode";
            return;
        }
        PlotInput in;
        in.series_id = work->series_id;
        in.model = &header_of(work->model.data());
        in.envelope = &envelope;
        in.sigma = work->sigma;
        in.tail = work->tail;
        work->svg = render_plot(in);
    } catch (const std::exception &e) {
        work->error = make_error(500, "internal_error", "The plot could not be drawn; the error log says why.");
        try {
            work->log_detail = e.what();
        } catch (...) {
        }
    }
}

void plot_drawn(ngx_event_t *ev) noexcept {
    PlotWork *work = static_cast<PlotWork *>(ev->data);
    ngx_http_request_t *r = work->request;
    RequestCtx *ctx = get_ctx(r);
    if (!task_done_for(r, ctx)) {
        delete work;
        return;
    }
    ngx_int_t rc;
    try {
        if (work->error && work->error.status >= 500)
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly: plot of \"%s\": %s",
                          work->series_id.c_str(), work->log_detail.c_str());
        rc = work->error ? send_error(r, work->error)
                         : send_body(r, NGX_HTTP_OK, work->svg.data(), work->svg.size(), "image/svg+xml");
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    delete work;
    fit_finish(r, ctx, rc);
}

// A stream's lock held by another worker (an observe holds it for
// microseconds): lock_stream spins a little; try again this many times.
constexpr int kStreamLockTries = 4;

// The stream's recent points, copied under its lock, drawn and answered.
ngx_int_t stream_plot(ngx_http_request_t *r, Zone *zone, StreamSlot *s, std::string_view series) {
    StreamPlotInput in;
    in.series_id = series;
    in.detector = detector_name(s->kind());
    in.threshold = loc_conf(r)->threshold;
    // Allocated before the lock: nothing under it may throw. The ring's
    // capacity is fixed when the stream is created; stream_recent is given
    // the room there is in any case.
    in.recent.resize(__atomic_load_n(&s->state()->recent_capacity, __ATOMIC_RELAXED));
    Zone::StreamAccess access = Zone::StreamAccess::busy;
    for (int i = 0; i < kStreamLockTries; i++) {
        if (i > 0) ngx_sched_yield();
        access = zone->lock_stream(s);
        if (access != Zone::StreamAccess::busy) break;
    }
    if (access == Zone::StreamAccess::broken)
        return send_error(r, 503, "stream_unavailable",
                          "This stream is being restored from its checkpoint after a worker died while updating it; "
                          "try again in a few seconds.");
    if (access != Zone::StreamAccess::locked)
        return send_error(r, 503, "stream_unavailable", "This stream is busy; try again.");
    const StreamHeader &state = *s->state();
    const std::size_t got = stream_recent(state, in.recent.data(), in.recent.size());
    in.points_processed = state.points_processed;
    in.recent_capacity = state.recent_capacity;
    zone->unlock_stream(s);
    in.recent.resize(got);
    const std::string svg = render_stream_plot(in);
    return send_body(r, NGX_HTTP_OK, svg.data(), svg.size(), "image/svg+xml");
}

}  // namespace

// The owner read what the plot draws: draw it off the event loop.
void draw_plot(ngx_http_request_t *r, RequestCtx *ctx, std::string data) noexcept {
    PlotWork *work = nullptr;
    ngx_int_t rc;
    try {
        LocConf *lcf = loc_conf(r);
        work = new PlotWork();
        work->request = r;
        work->data = std::move(data);
        work->model.assign(reinterpret_cast<const char *>(ctx->model), ctx->model->bytes);
        work->series_id.assign(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len);
        work->sigma = lcf->sigma;
        work->tail = static_cast<Tail>(lcf->tail);
        work->task.ctx = work;
        work->task.handler = plot_thread;
        work->task.event.handler = plot_drawn;
        work->task.event.data = work;
        work->task.event.log = r->connection->log;
        if (ngx_thread_task_post(process_pool, &work->task) == NGX_OK) {
            r->main->blocked++;
            ctx->wait = RequestCtx::Wait::task;
            return;
        }
        rc = send_busy(r, "The thread pool queue is full; try again.", false);
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    delete work;
    fit_finish(r, ctx, rc);
}

ngx_int_t plot_handler(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use GET for /plot.");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr || !watch_end(r, ctx)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ctx->plot = true;
        ngx_str_t arg;
        if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("series_id")), 9, &arg) != NGX_OK)
            return send_error(r, 400, "invalid_series_id", "Name the series: /plot?series_id=sensor_1&version=v3.");
        // Query arguments arrive escaped; ids have no characters that need it,
        // so an escaped id is refused like any other bad one.
        ctx->series_id = arg;
        if (!valid_series_id(ctx->series_id)) return send_error(r, 400, "invalid_series_id", kBadSeriesId);
        std::uint32_t version = 0;
        if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("version")), 7, &arg) == NGX_OK &&
            !parse_version(std::string_view(reinterpret_cast<char *>(arg.data), arg.len), &version))
            return send_error(r, 422, "invalid_version", "The version must look like v3 or 3 (versions start at v1).");

        // stream=1: the series' stream, whether or not it has versions too.
        bool want_stream = false;
        if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("stream")), 6, &arg) == NGX_OK) {
            const std::string_view value(reinterpret_cast<char *>(arg.data), arg.len);
            if (value == "1" || value == "true") want_stream = true;
            else if (value != "0" && value != "false")
                return send_error(r, 422, "invalid_stream",
                                  "stream must be 1 (the series' stream) or 0 (a version, the default).");
        }

        Zone *zone = zone_of(r);
        const ModelHeader *model = nullptr;
        const std::string_view series(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len);
        StreamSlot *stream = zone->find_stream(series);
        if (want_stream) {
            if (stream != nullptr) return stream_plot(r, zone, stream, series);
            if (!__atomic_load_n(&zone->shared()->loaded, __ATOMIC_ACQUIRE)) return not_loaded_error(r);
            return send_error(r, 404, "series_not_found",
                              "This series has no stream: POST /observe/{series_id} starts one.");
        }
        const Lookup lookup = zone->find_model(series, version, &model);
        if (lookup == Lookup::series_not_found && stream != nullptr) {
            // A stream and no versions: the stream is what there is to draw.
            if (version == 0) return stream_plot(r, zone, stream, series);
            return send_error(r, 404, "version_not_found",
                              "This series has a stream and no versions: /plot?series_id=...&stream=1 draws it.");
        }
        if (lookup != Lookup::found) return lookup_error(r, lookup);
        ctx->version = model->version;
        // A copy: a delete while the owner reads must not free what is drawn.
        void *copy = ngx_palloc(r->pool, model->bytes);
        if (copy == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        std::memcpy(copy, model, model->bytes);
        ctx->model = static_cast<const ModelHeader *>(copy);
        bool busy = false;
        Job *job = zone->add_read(series, model->version, &busy);
        if (job == nullptr && busy)
            return send_busy(r, "Too many plots are being read from the store; try again shortly.", false);
        if (job == nullptr)
            return send_error(r, 507, "zone_full", "The shared zone is full; raise its size in the anomaly_zone directive.");
        ctx->started_ns = monotonic_ns();
        r->main->count++;  // answered later, from fits_check or plot_drawn
        ctx->in_progress = true;
        fits_in_progress++;
        wait_for_owner(r, ctx, job);
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace anomaly
