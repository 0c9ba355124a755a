// /fit: the body read, then parsed, validated and trained in a pool thread,
// handed to the store's owner and answered once it is durable. Also the
// worker's fit budget and the trim of the memory fits leave behind.

#include "ngx/http.hpp"

#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <malloc.h>
#include <unistd.h>
#include <vector>

#include "core/encoding.hpp"
#include "core/model.hpp"
#include "core/parameters.hpp"
#include "core/plot.hpp"
#include "core/request.hpp"
#include "core/series.hpp"
#include "ngx/owner.hpp"

namespace anomaly {

ngx_queue_t fits_for_threads;     // fits waiting for a thread slot
ngx_uint_t fit_threads_max = 1;   // the CPUs of the machine: more parse no faster
std::uint64_t fit_budget_used = 0;  // body bytes of the fits this worker holds

namespace {

ngx_uint_t fit_threads_busy = 0;  // fit tasks posted and not yet done

}  // namespace

// A worker keeps the memory its fits freed, for the next fit (see
// keep_fit_memory). Once it has had no fit for a second, it gives back what
// it holds beyond kKeptFitMemory: a burst of large fits must not leave a
// worker at its peak for good.
namespace {

constexpr size_t kKeptFitMemory = 256 * 1024 * 1024;
constexpr ngx_msec_t kIdleBeforeTrim = 1000;
bool trim_running = false;
bool trimmed_since_fit = true;

}  // namespace

ngx_event_t trim_timer;
ngx_thread_task_t trim_task;

void trim_thread(void *, ngx_log_t *) {
    BackgroundPriority background;
    malloc_trim(kKeptFitMemory);
}

void trim_done(ngx_event_t *) noexcept { trim_running = false; }

void trim_timer_handler(ngx_event_t *) noexcept {
    if (fits_in_progress > 0 || trimmed_since_fit || trim_running || process_pool == nullptr) return;
    if (ngx_thread_task_post(process_pool, &trim_task) != NGX_OK) return;
    trim_running = true;
    trimmed_since_fit = true;
}

void leave_progress(RequestCtx *ctx) {
    if (!ctx->in_progress) return;
    ctx->in_progress = false;
    fits_in_progress--;
    trimmed_since_fit = false;
    if (fits_in_progress == 0 && trim_timer.handler != nullptr) ngx_add_timer(&trim_timer, kIdleBeforeTrim);
}

namespace {

// Holds `bytes` of this worker's fit budget for the request until it ends.
// A fit alone is always admitted, so that one larger than the budget can
// still be trained.
bool take_budget(ngx_http_request_t *r, RequestCtx *ctx, std::uint64_t bytes) {
    const std::uint64_t limit = main_conf(r)->fit_memory;
    if (fit_budget_used > 0 && fit_budget_used + bytes > limit) return false;
    fit_budget_used += bytes;
    ctx->budget += bytes;
    return true;
}

// ---- fit ----

void fit_thread(void *data, ngx_log_t *);
void fit_parsed(ngx_event_t *ev) noexcept;

bool post_fit(ngx_http_request_t *r, RequestCtx *ctx, FitWork *work) {
    work->request = r;
    work->task.ctx = work;
    work->task.handler = fit_thread;
    work->task.event.handler = fit_parsed;
    work->task.event.data = work;
    work->task.event.log = r->connection->log;
    if (ngx_thread_task_post(process_pool, &work->task) != NGX_OK) return false;
    r->main->blocked++;
    ctx->wait = RequestCtx::Wait::task;
    fit_threads_busy++;
    return true;
}

// A thread slot is free: the fit that waited longest for one takes it.
void start_queued_fits() {
    while (fit_threads_busy < fit_threads_max && !ngx_queue_empty(&fits_for_threads)) {
        ngx_queue_t *q = ngx_queue_head(&fits_for_threads);
        RequestCtx *ctx = ngx_queue_data(q, RequestCtx, link);
        ngx_queue_remove(q);
        FitWork *work = ctx->queued_fit;
        ctx->queued_fit = nullptr;
        ctx->wait = RequestCtx::Wait::none;
        if (post_fit(ctx->request, ctx, work)) continue;
        delete work;
        fit_finish(ctx->request, ctx, send_busy(ctx->request, "The thread pool queue is full; try again.", false));
    }
}

void fit_parsed(ngx_event_t *ev) noexcept {
    FitWork *work = static_cast<FitWork *>(ev->data);
    ngx_http_request_t *r = work->request;
    RequestCtx *ctx = get_ctx(r);
    fit_threads_busy--;
    try {
        start_queued_fits();
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly: %s", e.what());
    }
    if (!task_done_for(r, ctx)) {
        if (!work->error) discard_handed_over(work->spool_seq, work->in_memory);
        delete work;
        return;
    }
    ngx_int_t rc;
    try {
        if (work->error) {
            // Validation errors are the client's; a failure to hand the fit
            // to the store (a full disk under spool/) is the operator's, and
            // only the log names files.
            if (work->error.status >= 500)
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly: %s",
                              work->log_detail.empty() ? work->error.detail.c_str() : work->log_detail.c_str());
            rc = send_error(r, work->error);
        } else {
            Zone *zone = zone_of(r);
            Job *job = zone->add_job(
                std::string_view(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len),
                work->points, work->spool_seq, work->in_memory);
            if (job == nullptr) {
                discard_handed_over(work->spool_seq, work->in_memory);
                u_char detail[200];
                u_char *end = ngx_snprintf(detail, sizeof(detail) - 1,
                                           "The shared zone \"%V\" is full; raise its size in the "
                                           "anomaly_zone directive.%Z",
                                           &zone->name());
                (void)end;
                rc = send_error(r, 507, "zone_full", reinterpret_cast<char *>(detail));
            } else {
                ctx->spool_seq = work->spool_seq;
                ctx->in_memory = work->in_memory;
                delete work;
                wait_for_owner(r, ctx, job);
                return;
            }
        }
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    delete work;
    fit_finish(r, ctx, rc);
}

// Never throws: an exception leaving a pool thread would end the worker.
void fit_failed(FitWork *work, const std::exception &e) noexcept {
    try {
        if (dynamic_cast<const std::bad_alloc *>(&e) != nullptr) {
            work->error = make_error(507, "out_of_memory", "The server has no memory for this fit.");
        } else {
            work->error = make_error(500, "internal_error", "The fit failed on the server; the error log says why.");
            work->log_detail = std::string("fit failed: ") + e.what();
        }
    } catch (const std::exception &) {
        work->error.status = 507;
        work->error.code = "out_of_memory";
        work->error.detail.clear();
    }
}

// Pool thread: gathers the body, parses, validates, trains and writes the
// spool file, so that a 25 MB fit never stalls an event loop.
void fit_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    FitWork *work = static_cast<FitWork *>(data);
    try {
        std::string body = gather_body(work->pieces, work->length);
        TrainingData training;
        std::string detector;
        work->error = parse_fit_body(body.data(), work->length, work->limits, &training, &detector);
        if (work->error) return;
        std::string().swap(body);  // free the copy before training
        // The query was checked before the body was read; the body's
        // "detector" is new here, and the query still wins over it.
        work->error = apply_fit_arguments(work->args, detector, &work->params);
        if (work->error) return;
        std::string model;
        work->error = train(training, work->params, &model);
        if (work->error) return;
        work->points = training.values.size();
        std::string error;
        if (!hand_over(work->spool_seq, std::move(model), encode_plot_envelope(summarize_for_plot(training)),
                       encode_training_data(training), &work->in_memory, &error)) {
            const std::string_view reason = public_reason(error);
            work->error = make_error(503, "store_unavailable",
                                     reason.empty() ? std::string("The fit could not be handed to the store; the error log says why.")
                                                    : "The fit could not be handed to the store (" + std::string(reason) +
                                                          "); the error log says more.");
            work->log_detail = "the fit could not be handed to the store: " + error;
        }
    } catch (const std::exception &e) {
        fit_failed(work, e);
    }
}

void fit_body_read(ngx_http_request_t *r) noexcept {
    RequestCtx *ctx = get_ctx(r);
    ctx->started_ns = monotonic_ns();
    ctx->in_progress = true;
    fits_in_progress++;
    ngx_int_t rc;
    FitWork *work = nullptr;
    try {
        ngx_http_request_body_t *rb = r->request_body;
        if (rb == nullptr || rb->bufs == nullptr) {
            rc = send_error(r, 400, "malformed_json",
                            "The body must be JSON: {\"timestamps\": [...], \"values\": [...]}.");
            fit_finish(r, ctx, rc);
            return;
        }
        LocConf *lcf = loc_conf(r);
        work = new FitWork();
        bool in_file = false;
        work->length = body_pieces(rb, &work->pieces, &in_file);
        // A body sent without a length (chunked) is counted once it is read.
        if (ctx->budget == 0 && !take_budget(r, ctx, work->length)) {
            delete work;
            fit_finish(r, ctx, send_busy(r, "The fits in progress hold this worker's memory budget "
                                            "(anomaly_fit_memory); try again shortly.", false));
            return;
        }
        work->limits.min_points = lcf->min_points;
        work->limits.max_points = lcf->max_points;
        work->params = location_params(lcf);
        work->args.assign(reinterpret_cast<char *>(r->args.data), r->args.len);
        work->spool_seq = next_spool_seq();
        if (fit_threads_busy >= fit_threads_max) {
            ctx->queued_fit = work;
            ctx->wait = RequestCtx::Wait::thread_slot;
            ngx_queue_insert_tail(&fits_for_threads, &ctx->link);
            fit_timer_arm();
            return;  // start_queued_fits goes on
        }
        if (!post_fit(r, ctx, work)) {
            delete work;
            fit_finish(r, ctx, send_busy(r, "The thread pool queue is full; try again.", false));
            return;
        }
        fit_timer_arm();
        return;  // fit_parsed goes on
    } catch (const std::exception &e) {
        delete work;
        rc = internal_error(r, e.what());
    }
    fit_finish(r, ctx, rc);
}

const char *kNotJson =
    "Send the body as JSON, with Content-Type: application/json (curl: -H 'Content-Type: application/json').";

ngx_int_t fit_start(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & NGX_HTTP_POST))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use POST for /fit.");
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr || !watch_end(r, ctx)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        count_in_flight(r, zone_of(r)->my_stats().fit);
        if (!series_id_of(r, &ctx->series_id)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!valid_series_id(ctx->series_id))
            return reject(r, 400, "invalid_series_id", kBadSeriesId);
        // A bad detector or parameter is refused before the body is read.
        DetectorParams params = location_params(loc_conf(r));
        Error bad = apply_fit_arguments(std::string_view(reinterpret_cast<char *>(r->args.data), r->args.len), "",
                                        &params);
        if (bad) return reject(r, bad.status, bad.code, bad.detail.c_str());
        const ngx_table_elt_t *type = r->headers_in.content_type;
        if (type == nullptr ||
            !is_json_media_type(std::string_view(reinterpret_cast<char *>(type->value.data), type->value.len)))
            return reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", kNotJson);
        Shared *sh = zone_of(r)->shared();
        if (sh->store_state == StoreState::unavailable && sh->owner_pid == 0)
            return reject(r, 503, "store_unavailable", "The store is unavailable; /healthcheck and the error log say why.");
        if (int status = sh->load_incomplete) {
            return reject(r, status, status == 507 ? "zone_full" : "store_unavailable",
                          status == 507 ? "Fits are refused until every stored version is in the zone: raise the "
                                          "anomaly_zone size and reload nginx."
                                        : "Fits are refused: not every stored version could be read; the error "
                                          "log says why.");
        }
        // Refused before nginx reads (and buffers) the body.
        if (r->headers_in.content_length_n > 0 &&
            !take_budget(r, ctx, static_cast<std::uint64_t>(r->headers_in.content_length_n)))
            return send_busy(r, "The fits in progress hold this worker's memory budget (anomaly_fit_memory); "
                                "try again shortly.", true);
        ngx_int_t rc = ngx_http_read_client_request_body(r, fit_body_read);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace

ngx_int_t fit_handler(ngx_http_request_t *r) noexcept {
    return counted(r, zone_of(r)->my_stats().fit, fit_start(r));
}

}  // namespace anomaly
