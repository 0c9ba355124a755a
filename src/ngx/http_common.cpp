// The helpers every endpoint family shares: answering, errors, counting,
// series ids, and the wait of a fit or a plot on a pool task or the store's
// owner (fits_check answers them). Also nginx's own errors as JSON.

#include "ngx/http.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <unistd.h>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include "core/render.hpp"
#include "core/series.hpp"
#include "ngx/owner.hpp"

namespace anomaly {
namespace {

constexpr ngx_msec_t kFitPoll = 20;           // fallback when a wake-up is lost

}  // namespace

// ---- process state ----
ngx_queue_t owner_waits;          // fits and plots waiting on the owner
ngx_uint_t fits_in_progress = 0;  // parsing or waiting: keeps an exiting worker alive
ngx_event_t fit_timer;
Zone *process_zone = nullptr;
ngx_thread_pool_t *process_pool = nullptr;

std::uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

MainConf *main_conf(ngx_http_request_t *r) {
    return static_cast<MainConf *>(ngx_http_get_module_main_conf(r, ngx_http_anomaly_module));
}

LocConf *loc_conf(ngx_http_request_t *r) {
    return static_cast<LocConf *>(ngx_http_get_module_loc_conf(r, ngx_http_anomaly_module));
}

Zone *zone_of(ngx_http_request_t *r) {
    MainConf *mcf = main_conf(r);
    return mcf->shm_zone != nullptr ? Zone::from(mcf->shm_zone) : nullptr;
}

RequestCtx *get_ctx(ngx_http_request_t *r) {
    return static_cast<RequestCtx *>(ngx_http_get_module_ctx(r, ngx_http_anomaly_module));
}

RequestCtx *create_ctx(ngx_http_request_t *r) {
    void *mem = ngx_pcalloc(r->pool, sizeof(RequestCtx));
    if (mem == nullptr) return nullptr;
    RequestCtx *ctx = new (mem) RequestCtx();  // trivially destructible: no cleanup needed
    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_anomaly_module);
    return ctx;
}

// ---- responses ----

ngx_int_t send_body(ngx_http_request_t *r, ngx_uint_t status, const char *data, size_t len,
                    const char *content_type) {
    ngx_buf_t *b = ngx_create_temp_buf(r->pool, len == 0 ? 1 : len);
    if (b == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    b->last = ngx_cpymem(b->pos, data, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = static_cast<off_t>(len);
    r->headers_out.content_type.data = reinterpret_cast<u_char *>(const_cast<char *>(content_type));
    r->headers_out.content_type.len = std::strlen(content_type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = nullptr;

    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;
    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}

ngx_int_t send_error(ngx_http_request_t *r, const Error &error) {
    if (error.status == NGX_HTTP_NOT_ALLOWED) {
        ngx_table_elt_t *allow = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
        if (allow != nullptr) {
            allow->hash = 1;
            ngx_str_set(&allow->key, "Allow");
            switch (static_cast<Endpoint>(loc_conf(r)->endpoint)) {
            case Endpoint::fit:
            case Endpoint::predict:
            case Endpoint::observe:
            case Endpoint::importing:
            case Endpoint::score: ngx_str_set(&allow->value, "POST"); break;
            case Endpoint::exporting: ngx_str_set(&allow->value, "GET"); break;
            case Endpoint::versions:
                if (loc_conf(r)->delete_series == 1) {
                    ngx_str_set(&allow->value, "GET, HEAD, DELETE");
                } else {
                    ngx_str_set(&allow->value, "GET, HEAD");
                }
                break;
            default: ngx_str_set(&allow->value, "GET, HEAD"); break;
            }
        }
    }
    std::string body = render_error(error);
    return send_body(r, error.status, body.data(), body.size());
}

ngx_int_t send_error(ngx_http_request_t *r, int status, const char *code, const char *detail) {
    return send_error(r, make_error(status, code, detail));
}

// Answers without reading the body (it is discarded).
ngx_int_t reject(ngx_http_request_t *r, int status, const char *code, const char *detail) {
    if (ngx_http_discard_request_body(r) != NGX_OK) r->keepalive = 0;
    return send_error(r, status, code, detail);
}

ngx_int_t lookup_error(ngx_http_request_t *r, Lookup lookup) {
    switch (lookup) {
    case Lookup::not_loaded: return not_loaded_error(r);
    case Lookup::version_not_found:
        return send_error(r, 404, "version_not_found", "This series has no such version.");
    default: return send_error(r, 404, "series_not_found", "No model has been trained for this series.");
    }
}

// The zone has no models yet: they are being read, or the store cannot be
// opened (then the detail says why, so that a broken store is not mistaken
// for a slow one).
ngx_int_t not_loaded_error(ngx_http_request_t *r) {
    const Shared *sh = zone_of(r)->shared();
    if (sh->store_state != StoreState::unavailable)
        return send_error(r, 503, "store_loading", "The models are still being read from the store; try again shortly.");
    return send_error(r, 503, "store_loading",
                      "The models cannot be read: the store is unavailable; /healthcheck and the error log say why.");
}

// Allocates nothing but from the request pool: it answers from catch blocks,
// where another exception would end the worker.
ngx_int_t internal_error(ngx_http_request_t *r, const char *what) noexcept {
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly: %s", what);
    static const char body[] = "{\"detail\":\"The server failed to handle the request.\",\"code\":\"internal_error\"}";
    return send_body(r, NGX_HTTP_INTERNAL_SERVER_ERROR, body, sizeof(body) - 1);
}

namespace {

// An answer, by status, in /metrics and the load figures.
void count_answer(EndpointStats &stats, ngx_uint_t status) {
    __atomic_fetch_add(&stats.statuses[status_slot(static_cast<int>(status))], 1, __ATOMIC_RELAXED);
    stats.rate.add(ngx_time());
}

}  // namespace

// An answer to a request whose body was read: its latency too.
void record(EndpointStats &stats, std::uint64_t started_ns, ngx_uint_t status) {
    stats.latency.record(monotonic_ns() - started_ns);
    count_answer(stats, status);
}

// Handlers return NGX_DONE when the body callback answers (and records);
// anything else is an answer given before the body was read: a refusal by
// the module (405, a bad series id, a store that refuses fits), or an error
// nginx met at once while starting to read the body.
ngx_int_t counted(ngx_http_request_t *r, EndpointStats &stats, ngx_int_t rc) {
    if (rc == NGX_DONE) return rc;
    ngx_uint_t status = rc >= NGX_HTTP_SPECIAL_RESPONSE ? static_cast<ngx_uint_t>(rc) : r->headers_out.status;
    if (rc == NGX_ERROR || status == 0) status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    count_answer(stats, status);
    return rc;
}

// Counts a request in flight until its pool goes, however it ends.
void count_in_flight(ngx_http_request_t *r, EndpointStats &stats) {
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == nullptr) return;
    __atomic_fetch_add(&stats.in_flight, 1, __ATOMIC_RELAXED);
    cln->data = &stats.in_flight;
    cln->handler = [](void *data) { __atomic_fetch_sub(static_cast<std::int64_t *>(data), 1, __ATOMIC_RELAXED); };
}

// ---- request parts ----

// The series id: the directive's value, or the URI after the location prefix.
bool series_id_of(ngx_http_request_t *r, ngx_str_t *id) {
    LocConf *lcf = loc_conf(r);
    if (lcf->series_id != nullptr) {
        if (ngx_http_complex_value(r, lcf->series_id, id) != NGX_OK) return false;
    } else {
        ngx_http_core_loc_conf_t *clcf = static_cast<ngx_http_core_loc_conf_t *>(
            ngx_http_get_module_loc_conf(r, ngx_http_core_module));
        ngx_str_t uri = r->uri;
        size_t skip = 0;
        if (uri.len >= clcf->name.len && ngx_strncmp(uri.data, clcf->name.data, clcf->name.len) == 0)
            skip = clcf->name.len;
        else if (uri.len > 0)
            skip = 1;  // regex locations: without a value, take the whole path
        id->data = uri.data + skip;
        id->len = uri.len - skip;
        if (id->len > 0 && id->data[0] == '/' && skip > 0 && clcf->name.data[clcf->name.len - 1] != '/') {
            id->data++;
            id->len--;
        }
    }
    return true;
}

bool valid_series_id(const ngx_str_t &id) {
    return is_valid_series_id(std::string_view(reinterpret_cast<char *>(id.data), id.len));
}

const char *kBadSeriesId =
    "The series id must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -";

// ---- waiting: pool tasks, the owner ----

void fit_timer_arm() {
    if (fits_in_progress > 0 && !fit_timer.timer_set) ngx_add_timer(&fit_timer, kFitPoll);
}

// 503 server_busy with Retry-After: the client may simply try again.
ngx_int_t send_busy(ngx_http_request_t *r, const char *detail, bool discard_body) {
    ngx_table_elt_t *h = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h != nullptr) {
        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        ngx_str_set(&h->value, "1");
    }
    if (discard_body) return reject(r, 503, "server_busy", detail);
    return send_error(r, 503, "server_busy", detail);
}

// Takes a fit or plot out of the queue it waits in. What it handed to the
// owner is abandoned: a job still queued is withdrawn (and its spool file
// or held fit discarded), one being committed is freed by the owner.
void stop_waiting(RequestCtx *ctx) {
    switch (ctx->wait) {
    case RequestCtx::Wait::thread_slot:
        ngx_queue_remove(&ctx->link);
        delete ctx->queued_fit;
        ctx->queued_fit = nullptr;
        break;
    case RequestCtx::Wait::owner:
        ngx_queue_remove(&ctx->link);
        if (process_zone->abandon(ctx->job) == Abandoned::withdrawn && ctx->is_fit())
            discard_handed_over(ctx->spool_seq, ctx->in_memory);
        ctx->job = nullptr;
        break;
    case RequestCtx::Wait::task:  // r->main->blocked keeps the request until the task is done
    case RequestCtx::Wait::none:
        break;
    }
    ctx->wait = RequestCtx::Wait::none;
}

namespace {

// Pool cleanup of fit and plot requests: runs however the request ends.
void request_ended(void *data) noexcept {
    RequestCtx *ctx = static_cast<RequestCtx *>(data);
    try {
        stop_waiting(ctx);
    } catch (...) {
        ctx->wait = RequestCtx::Wait::none;
    }
    fit_budget_used -= ctx->budget;
    ctx->budget = 0;
    leave_progress(ctx);
}

}  // namespace

bool watch_end(ngx_http_request_t *r, RequestCtx *ctx) {
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == nullptr) return false;
    cln->handler = request_ended;
    cln->data = ctx;
    return true;
}

void wait_for_owner(ngx_http_request_t *r, RequestCtx *ctx, Job *job) {
    ctx->job = job;
    ctx->deadline = ngx_current_msec + loc_conf(r)->fit_timeout;
    ctx->wait = RequestCtx::Wait::owner;
    ngx_queue_insert_tail(&owner_waits, &ctx->link);
    store_wake_owner();
    fit_timer_arm();
}

// Finalizes from our own events (thread completions, wake-ups, timers), so
// posted requests run here as nginx's own event handlers would.
void fit_finish(ngx_http_request_t *r, RequestCtx *ctx, ngx_int_t rc) {
    leave_progress(ctx);
    Zone *zone = zone_of(r);
    if (zone != nullptr && ctx->is_fit()) record(zone->my_stats().fit, ctx->started_ns, r->headers_out.status);
    ngx_connection_t *c = r->connection;
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

// A pool task of ours is done: the request may go on unless nginx ended it
// meanwhile (then it only waited for the task to let it go).
bool task_done_for(ngx_http_request_t *r, RequestCtx *ctx) {
    r->main->blocked--;
    ctx->wait = RequestCtx::Wait::none;
    if (!r->connection->error) return true;
    ngx_connection_t *c = r->connection;
    ngx_http_finalize_request(r, NGX_ERROR);
    ngx_http_run_posted_requests(c);
    return false;
}

// Answers every waiting fit or plot whose job the owner has finished, and
// those whose deadline has passed.
void fits_check() noexcept {
    if (process_zone == nullptr) return;
    ngx_queue_t *q = ngx_queue_head(&owner_waits);
    while (q != ngx_queue_sentinel(&owner_waits)) {
        RequestCtx *ctx = ngx_queue_data(q, RequestCtx, link);
        q = ngx_queue_next(q);
        ngx_http_request_t *r = ctx->request;
        ngx_int_t rc;
        try {
            Shared *sh = process_zone->shared();
            const bool late = static_cast<ngx_msec_int_t>(ngx_current_msec - ctx->deadline) >= 0;
            const bool store_down = sh->store_state == StoreState::unavailable && sh->owner_pid == 0;
            // A fit still queued when the store is gone or its deadline passed is
            // withdrawn: it is never stored.
            const char *withdraw = nullptr;
            if (store_down) withdraw = "The store is unavailable; /healthcheck and the error log say why.";
            else if (late && ctx->plot) withdraw = "The store did not read the plot's data in time; try again.";
            else if (late && ctx->owner_answer) withdraw = "The store did not take the request in time; try again.";
            else if (late) withdraw = "The store did not make the fit durable in time; it was not stored.";
            Job outcome;
            if (!process_zone->take_result(ctx->job, withdraw, &outcome)) {
                if (!late) continue;
                // The owner has it and has not finished: a hung disk, or an
                // owner stopped. The fit may still become durable.
                stop_waiting(ctx);
                rc = send_error(r, 503, "store_timeout",
                                ctx->plot           ? "The store did not read the plot's data in time; try again."
                                : ctx->owner_answer ? "The store did not finish in time. It may still finish: "
                                                      "GET /series/{series_id} shows what is stored."
                                                    : "The store did not confirm the fit in time. It may still be stored: "
                                                      "GET /series/{series_id} lists the versions.");
                fit_finish(r, ctx, rc);
                continue;
            }
            ngx_queue_remove(&ctx->link);
            ctx->wait = RequestCtx::Wait::none;
            ctx->job = nullptr;
            if (ctx->plot && outcome.state == JobState::done) {
                std::string data;
                try {
                    data.assign(reinterpret_cast<char *>(outcome.data), outcome.data_len);
                } catch (...) {
                    process_zone->free_data(outcome.data);
                    throw;
                }
                process_zone->free_data(outcome.data);
                draw_plot(r, ctx, std::move(data));
                continue;
            }
            if (ctx->owner_answer) {
                rc = ctx->owner_answer(r, ctx, outcome);
                process_zone->free_data(outcome.data);
                fit_finish(r, ctx, rc);
                continue;
            }
            if (outcome.state != JobState::done && !ctx->plot) discard_handed_over(ctx->spool_seq, ctx->in_memory);
            if (outcome.state == JobState::done) {
                ctx->version = outcome.version;
                std::string body = render_fit(
                    std::string_view(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len),
                    outcome.version, outcome.points);
                rc = send_body(r, NGX_HTTP_OK, body.data(), body.size());
            } else {
                rc = send_error(r, make_error(static_cast<int>(outcome.status), outcome.code, outcome.error));
            }
        } catch (const std::exception &e) {
            try {
                stop_waiting(ctx);
            } catch (...) {
                ctx->wait = RequestCtx::Wait::none;
            }
            rc = internal_error(r, e.what());
        }
        fit_finish(r, ctx, rc);
    }
}

void fit_timer_handler(ngx_event_t *) noexcept {
    fits_check();
    fit_timer_arm();
}

// ---- nginx's own errors as JSON ----

// For `error_page ... /.anomaly-error`: the errors nginx answers itself
// (client_max_body_size, auth_basic, allow/deny, limit_req) in the same
// {"detail", "code"} shape as the module's own.
ngx_int_t error_handler(ngx_http_request_t *r) noexcept {
    try {
        const ngx_uint_t status = r->err_status ? r->err_status : r->headers_out.status;
        const char *code = "error";
        std::string detail = "The request failed.";
        switch (status) {
        case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE: {
            ngx_http_core_loc_conf_t *clcf = static_cast<ngx_http_core_loc_conf_t *>(
                ngx_http_get_module_loc_conf(r, ngx_http_core_module));
            code = "body_too_large";
            detail = "The request body is larger than this location accepts (client_max_body_size " +
                     std::to_string(clcf->client_max_body_size) + " bytes).";
            break;
        }
        case NGX_HTTP_UNAUTHORIZED: code = "unauthorized"; detail = "Credentials are required."; break;
        case NGX_HTTP_FORBIDDEN: code = "forbidden"; detail = "Access is denied."; break;
        case NGX_HTTP_NOT_FOUND: code = "not_found"; detail = "There is nothing at this path."; break;
        case NGX_HTTP_NOT_ALLOWED: code = "method_not_allowed"; detail = "This method is not allowed here."; break;
        case NGX_HTTP_REQUEST_TIME_OUT: code = "request_timeout"; detail = "The request took too long to arrive."; break;
        case 429: code = "too_many_requests"; detail = "Too many requests; slow down."; break;
        case NGX_HTTP_SERVICE_UNAVAILABLE: code = "unavailable"; detail = "The service is unavailable; try again."; break;
        default:
            if (status >= 500) {
                code = "internal_error";
                detail = "The server failed to handle the request.";
            } else if (status == NGX_HTTP_BAD_REQUEST) {
                code = "bad_request";
                detail = "The request is malformed.";
            }
        }
        if (ngx_http_discard_request_body(r) != NGX_OK) r->keepalive = 0;
        return send_error(r, make_error(static_cast<int>(status), code, detail));
    } catch (...) {
        return NGX_ERROR;
    }
}

std::size_t body_pieces(const ngx_http_request_body_t *rb, std::vector<FitWork::Piece> *pieces, bool *in_file) {
    std::size_t length = 0;
    *in_file = false;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
        const ngx_buf_t *b = cl->buf;
        FitWork::Piece piece{};
        if (b->in_file) {
            *in_file = true;
            piece.fd = b->file->fd;
            piece.offset = b->file_pos;
            piece.length = static_cast<std::size_t>(b->file_last - b->file_pos);
        } else {
            piece.data = b->pos;
            piece.length = static_cast<std::size_t>(b->last - b->pos);
        }
        length += piece.length;
        pieces->push_back(piece);
    }
    return length;
}

std::string gather_body(const std::vector<FitWork::Piece> &pieces, std::size_t length) {
    std::string body;
    body.resize(length + kJsonPadding);
    std::size_t at = 0;
    for (const FitWork::Piece &piece : pieces) {
        if (piece.data != nullptr) {
            std::memcpy(&body[at], piece.data, piece.length);
        } else {
            std::size_t got = 0;
            while (got < piece.length) {
                ssize_t n = pread(piece.fd, &body[at + got], piece.length - got, piece.offset + static_cast<off_t>(got));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) throw std::runtime_error("cannot read the request body file");
                got += static_cast<std::size_t>(n);
            }
        }
        at += piece.length;
    }
    return body;
}

bool post_task(ngx_http_request_t *r, ngx_thread_task_t *task, void *data, void (*thread)(void *, ngx_log_t *),
               ngx_event_handler_pt done) {
    task->ctx = data;
    task->handler = thread;
    task->event.handler = done;
    task->event.data = data;
    task->event.log = r->connection->log;
    if (ngx_thread_task_post(process_pool, task) != NGX_OK) return false;
    r->main->blocked++;
    get_ctx(r)->wait = RequestCtx::Wait::task;
    return true;
}

namespace {

void run_later_handler(ngx_event_t *ev) noexcept {
    ngx_http_request_t *r = static_cast<ngx_http_request_t *>(ev->data);
    ngx_connection_t *c = r->connection;
    get_ctx(r)->rerun(r);
    ngx_http_run_posted_requests(c);
}

void run_later_cleanup(void *data) noexcept {
    ngx_event_t *ev = static_cast<ngx_event_t *>(data);
    if (ev->timer_set) ngx_del_timer(ev);
}

}  // namespace

bool run_later(ngx_http_request_t *r, RequestCtx *ctx, ngx_msec_t delay, void (*run)(ngx_http_request_t *)) {
    if (ctx->load_wait == nullptr) {
        ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
        ngx_event_t *ev = static_cast<ngx_event_t *>(ngx_pcalloc(r->pool, sizeof(ngx_event_t)));
        if (cln == nullptr || ev == nullptr) return false;
        ev->handler = run_later_handler;
        ev->data = r;
        ev->log = r->connection->log;
        cln->handler = run_later_cleanup;
        cln->data = ev;
        ctx->load_wait = ev;
    }
    ctx->rerun = run;
    ngx_add_timer(ctx->load_wait, delay);
    return true;
}

bool wait_for_load(ngx_http_request_t *r, RequestCtx *ctx, void (*run)(ngx_http_request_t *)) {
    const Shared *sh = zone_of(r)->shared();
    if (__atomic_load_n(&sh->loaded, __ATOMIC_ACQUIRE) || sh->store_state == StoreState::unavailable) return false;
    if (monotonic_ns() - ctx->body_read_ns > kLoadWait * 1000000ull) return false;
    return run_later(r, ctx, kLoadPoll, run);
}

void answered(ngx_http_request_t *r, const ScoredAnswer &answer) noexcept {
    history_note(r, answer);
    alert_note(r, answer);
}

}  // namespace anomaly
