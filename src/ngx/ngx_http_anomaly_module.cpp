// ngx_http_anomaly_module: the nginx side. Directives, the handlers of each
// endpoint, variables, and the path of a fit from the request body to a
// durable version. The maths, parsing and formats live in src/core; the
// store and its ownership in src/store and owner.cpp.

#include "ngx/ngx.hpp"

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <malloc.h>
#include <unistd.h>
#include <vector>

#include "core/encoding.hpp"
#include "core/metrics.hpp"
#include "core/plot.hpp"
#include "core/dashboard.hpp"
#include "core/render.hpp"
#include "core/request.hpp"
#include "core/series.hpp"
#include "ngx/owner.hpp"
#include "ngx/store_dir.hpp"
#include "ngx/zone.hpp"
#include "store/store.hpp"

extern ngx_module_t ngx_http_anomaly_module;

namespace anomaly {
namespace {

constexpr ngx_msec_t kFitPoll = 20;           // fallback when a wake-up is lost
constexpr ngx_msec_t kDefaultFitTimeout = 30000;  // anomaly_fit_timeout
constexpr size_t kDefaultFitMemory = 128 * 1024 * 1024;  // anomaly_fit_memory
constexpr std::size_t kMaxPredictBody = 64 * 1024;
// A predict that arrives while the zone is being filled (a start, or a new
// nginx generation in a binary upgrade) waits this long before 503.
constexpr ngx_msec_t kLoadWait = 3000;
constexpr ngx_msec_t kLoadPoll = 10;

enum class Endpoint : ngx_uint_t { none = 0, fit, predict, healthcheck, metrics, error, plot, series, versions, dashboard };

struct MainConf {
    ngx_shm_zone_t *shm_zone;
    ngx_str_t store;
    ngx_str_t thread_pool_name;
    ngx_thread_pool_t *thread_pool;
    ngx_flag_t endpoints_used;
    size_t fit_memory;                    // anomaly_fit_memory: body bytes of fits per worker
};

struct LocConf {
    ngx_uint_t endpoint;
    ngx_http_complex_value_t *series_id;  // anomaly_fit $var; else the URI tail
    double sigma;                         // anomaly_sigma
    ngx_uint_t tail;                      // anomaly_tail
    size_t min_points;                    // anomaly_min_points
    size_t max_points;                    // anomaly_max_points
    ngx_msec_t fit_timeout;               // anomaly_fit_timeout
};

constexpr double kUnsetSigma = -1;

struct FitWork;

// Per request: what the variables show, and where a fit or a plot waits.
struct RequestCtx {
    std::uint32_t version = 0;        // $anomaly_model_version
    int result = -1;                  // $anomaly_result: -1 none, 0 false, 1 true
    double score = 0;                 // $anomaly_score

    ngx_http_request_t *request = nullptr;
    ngx_str_t series_id{};
    std::uint64_t started_ns = 0;
    ngx_event_t *load_wait = nullptr; // a predict waiting for the zone to be filled
    std::uint64_t body_read_ns = 0;
    bool plot = false;

    // A fit or a plot waits in one place at a time. nginx may end the
    // request anywhere (a closed connection, worker_shutdown_timeout): a
    // pool cleanup (request_ended) then takes it out of whatever it waits in.
    enum class Wait : std::uint8_t {
        none,
        thread_slot,  // in fits_for_threads: every fit thread slot is busy
        task,         // a pool task works for it; r->main->blocked holds the request
        owner,        // in owner_waits: the store's owner commits it or reads for it
    };
    Wait wait = Wait::none;
    ngx_queue_t link{};
    FitWork *queued_fit = nullptr;    // Wait::thread_slot
    Job *job = nullptr;               // Wait::owner
    ngx_msec_t deadline = 0;          // Wait::owner: answered 503 store_timeout after
    std::uint64_t spool_seq = 0;
    bool in_memory = false;
    std::uint64_t budget = 0;         // body bytes held in this worker's fit budget
    bool in_progress = false;         // counted in fits_in_progress
    Model model;                      // the version a plot draws
};

// A fit being parsed and validated in a pool thread. It owns its task, so
// that nothing the thread touches lives in the request's pool but the body,
// which r->main->blocked keeps until the task is done.
struct FitWork {
    struct Piece {
        const u_char *data;   // in memory, or nullptr when in the file
        ngx_fd_t fd;
        off_t offset;
        size_t length;
    };
    ngx_thread_task_t task{};
    ngx_http_request_t *request = nullptr;
    std::vector<Piece> pieces;
    size_t length = 0;
    FitLimits limits;
    std::uint64_t spool_seq = 0;
    bool in_memory = false;           // handed over in memory (see hand_over)
    Error error;
    std::string log_detail;           // what the error log says of a 5xx
    std::uint64_t points = 0;
};

// A /plot being drawn in a pool thread from what the owner read.
struct PlotWork {
    ngx_thread_task_t task{};
    ngx_http_request_t *request = nullptr;
    std::string data;                 // the owner's answer (see read_plot_data)
    Model model;
    std::string series_id;
    double sigma = 3;
    Tail tail = Tail::both;
    std::string svg;
    Error error;
    std::string log_detail;           // what the error log says of a 5xx
};

// ---- process state ----
ngx_queue_t owner_waits;          // fits and plots waiting on the owner
ngx_queue_t fits_for_threads;     // fits waiting for a thread slot
ngx_uint_t fit_threads_busy = 0;  // fit tasks posted and not yet done
ngx_uint_t fit_threads_max = 1;   // the CPUs of the machine: more parse no faster
std::uint64_t fit_budget_used = 0;  // body bytes of the fits this worker holds
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
                    const char *content_type = "application/json") {
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
            Endpoint endpoint = static_cast<Endpoint>(loc_conf(r)->endpoint);
            if (endpoint != Endpoint::fit && endpoint != Endpoint::predict) {
                ngx_str_set(&allow->value, "GET, HEAD");
            } else {
                ngx_str_set(&allow->value, "POST");
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

// An answer, by status, in /metrics and the load figures.
void count_answer(EndpointStats &stats, ngx_uint_t status) {
    __atomic_fetch_add(&stats.statuses[status_slot(static_cast<int>(status))], 1, __ATOMIC_RELAXED);
    stats.rate.add(ngx_time());
}

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

// ---- predict ----

ngx_int_t predict_answer(ngx_http_request_t *r, RequestCtx *ctx) {
    Zone *zone = zone_of(r);
    LocConf *lcf = loc_conf(r);

    std::uint32_t version = 0;
    ngx_str_t arg;
    if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>("version")), 7, &arg) == NGX_OK) {
        if (!parse_version(std::string_view(reinterpret_cast<char *>(arg.data), arg.len), &version))
            return send_error(r, 422, "invalid_version",
                              "The version must look like v3 or 3 (versions start at v1).");
    }

    // The body: small, in memory; copied once into the pool with the padding
    // simdjson reads past the end.
    ngx_http_request_body_t *rb = r->request_body;
    if (rb == nullptr || rb->bufs == nullptr)
        return send_error(r, 400, "malformed_json",
                          "The body must be a JSON object such as {\"timestamp\": \"1700000000\", \"value\": 42.0}.");
    if (rb->temp_file != nullptr)  // never read a file on the event loop
        return send_error(r, 413, "body_too_large",
                          "A prediction body must fit in client_body_buffer_size and be under 64 KB.");
    size_t len = 0;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) len += ngx_buf_size(cl->buf);
    if (len > kMaxPredictBody)
        return send_error(r, 413, "body_too_large",
                          "A prediction body must fit in client_body_buffer_size and be under 64 KB.");
    u_char *body = static_cast<u_char *>(ngx_palloc(r->pool, len + kJsonPadding));
    if (body == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    u_char *p = body;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) p = ngx_cpymem(p, cl->buf->pos, ngx_buf_size(cl->buf));
    ngx_memzero(p, kJsonPadding);

    PredictInput input;
    Error error = parse_predict_body(reinterpret_cast<char *>(body), len, &input);
    if (error) return send_error(r, error);

    Model model;
    switch (zone->find_model(std::string_view(reinterpret_cast<char *>(ctx->series_id.data),
                                              ctx->series_id.len),
                             version, &model)) {
    case Lookup::found:
        break;
    case Lookup::not_loaded:
        return not_loaded_error(r);
    case Lookup::series_not_found:
        return send_error(r, 404, "series_not_found", "No model has been trained for this series.");
    case Lookup::version_not_found:
        return send_error(r, 404, "version_not_found", "This series has no such version.");
    }

    Prediction prediction = predict(model, input.value, lcf->sigma, static_cast<Tail>(lcf->tail));
    ctx->version = model.version;
    ctx->result = prediction.anomaly ? 1 : 0;
    ctx->score = prediction.score;
    if (prediction.anomaly) __atomic_fetch_add(&zone->my_stats().anomalies, 1, __ATOMIC_RELAXED);

    char out[kPredictionMaxLength];
    size_t n = render_prediction(out, prediction.anomaly, model.version, prediction.score);
    return send_body(r, NGX_HTTP_OK, out, n);
}

void predict_run(ngx_http_request_t *r) noexcept;

void predict_load_waited(ngx_event_t *ev) noexcept {
    ngx_http_request_t *r = static_cast<ngx_http_request_t *>(ev->data);
    ngx_connection_t *c = r->connection;
    predict_run(r);
    ngx_http_run_posted_requests(c);
}

void predict_wait_cleanup(void *data) noexcept {
    ngx_event_t *ev = static_cast<ngx_event_t *>(data);
    if (ev->timer_set) ngx_del_timer(ev);
}

// True when the request will be run again once the zone is filled.
bool wait_for_load(ngx_http_request_t *r, RequestCtx *ctx) {
    const Shared *sh = zone_of(r)->shared();
    if (__atomic_load_n(&sh->loaded, __ATOMIC_ACQUIRE) || sh->store_state == StoreState::unavailable) return false;
    if (monotonic_ns() - ctx->body_read_ns > kLoadWait * 1000000ull) return false;
    if (ctx->load_wait == nullptr) {
        ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
        ngx_event_t *ev = static_cast<ngx_event_t *>(ngx_pcalloc(r->pool, sizeof(ngx_event_t)));
        if (cln == nullptr || ev == nullptr) return false;
        ev->handler = predict_load_waited;
        ev->data = r;
        ev->log = r->connection->log;
        cln->handler = predict_wait_cleanup;
        cln->data = ev;
        ctx->load_wait = ev;
    }
    ngx_add_timer(ctx->load_wait, kLoadPoll);
    return true;
}

void predict_run(ngx_http_request_t *r) noexcept {
    ngx_int_t rc;
    try {
        RequestCtx *ctx = get_ctx(r);
        if (wait_for_load(r, ctx)) return;
        rc = predict_answer(r, ctx);
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    Zone *zone = zone_of(r);
    record(zone->my_stats().predict, get_ctx(r)->body_read_ns, r->headers_out.status);
    ngx_http_finalize_request(r, rc);
}

void predict_body_read(ngx_http_request_t *r) noexcept {
    get_ctx(r)->body_read_ns = monotonic_ns();
    predict_run(r);
}

ngx_int_t predict_start(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & NGX_HTTP_POST))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use POST for /predict.");
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        count_in_flight(r, zone_of(r)->my_stats().predict);
        if (!series_id_of(r, &ctx->series_id)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!valid_series_id(ctx->series_id))
            return reject(r, 400, "invalid_series_id", kBadSeriesId);
        r->request_body_in_single_buf = 1;
        ngx_int_t rc = ngx_http_read_client_request_body(r, predict_body_read);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

ngx_int_t predict_handler(ngx_http_request_t *r) noexcept {
    return counted(r, zone_of(r)->my_stats().predict, predict_start(r));
}

// ---- waiting: thread slots, pool tasks, the owner ----

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

// A worker keeps the memory its fits freed, for the next fit (see
// keep_fit_memory). Once it has had no fit for a second, it gives back what
// it holds beyond kKeptFitMemory: a burst of large fits must not leave a
// worker at its peak for good.
constexpr size_t kKeptFitMemory = 256 * 1024 * 1024;
constexpr ngx_msec_t kIdleBeforeTrim = 1000;
ngx_event_t trim_timer;
ngx_thread_task_t trim_task;
bool trim_running = false;
bool trimmed_since_fit = true;

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
        if (process_zone->abandon(ctx->job) == Abandoned::withdrawn && !ctx->plot)
            discard_handed_over(ctx->spool_seq, ctx->in_memory);
        ctx->job = nullptr;
        break;
    case RequestCtx::Wait::task:  // r->main->blocked keeps the request until the task is done
    case RequestCtx::Wait::none:
        break;
    }
    ctx->wait = RequestCtx::Wait::none;
}

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

bool watch_end(ngx_http_request_t *r, RequestCtx *ctx) {
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == nullptr) return false;
    cln->handler = request_ended;
    cln->data = ctx;
    return true;
}

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
    if (zone != nullptr && !ctx->plot) record(zone->my_stats().fit, ctx->started_ns, r->headers_out.status);
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

void draw_plot(ngx_http_request_t *r, RequestCtx *ctx, std::string data) noexcept;

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
            else if (late) withdraw = "The store did not make the fit durable in time; it was not stored.";
            Job outcome;
            if (!process_zone->take_result(ctx->job, withdraw, &outcome)) {
                if (!late) continue;
                // The owner has it and has not finished: a hung disk, or an
                // owner stopped. The fit may still become durable.
                stop_waiting(ctx);
                rc = send_error(r, 503, "store_timeout",
                                ctx->plot ? "The store did not read the plot's data in time; try again."
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
        std::string body;
        body.resize(work->length + kJsonPadding);
        size_t at = 0;
        for (const FitWork::Piece &piece : work->pieces) {
            if (piece.data != nullptr) {
                std::memcpy(&body[at], piece.data, piece.length);
            } else {
                size_t got = 0;
                while (got < piece.length) {
                    ssize_t n = pread(piece.fd, &body[at + got], piece.length - got,
                                      piece.offset + static_cast<off_t>(got));
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) throw std::runtime_error("cannot read the request body file");
                    got += static_cast<size_t>(n);
                }
            }
            at += piece.length;
        }
        TrainingData training;
        work->error = parse_fit_body(body.data(), work->length, work->limits, &training);
        if (work->error) return;
        std::string().swap(body);  // free the copy before training
        Model model = train_three_sigma(training);
        work->error = check_model(model);
        if (work->error) return;
        work->points = model.points;
        std::string error;
        if (!hand_over(work->spool_seq, model, encode_plot_envelope(summarize_for_plot(training)),
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
        for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
            ngx_buf_t *b = cl->buf;
            FitWork::Piece piece{};
            if (b->in_file) {
                piece.fd = b->file->fd;
                piece.offset = b->file_pos;
                piece.length = static_cast<size_t>(b->file_last - b->file_pos);
            } else {
                piece.data = b->pos;
                piece.length = static_cast<size_t>(b->last - b->pos);
            }
            work->length += piece.length;
            work->pieces.push_back(piece);
        }
        // A body sent without a length (chunked) is counted once it is read.
        if (ctx->budget == 0 && !take_budget(r, ctx, work->length)) {
            delete work;
            fit_finish(r, ctx, send_busy(r, "The fits in progress hold this worker's memory budget "
                                            "(anomaly_fit_memory); try again shortly.", false));
            return;
        }
        work->limits.min_points = lcf->min_points;
        work->limits.max_points = lcf->max_points;
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

ngx_int_t fit_handler(ngx_http_request_t *r) noexcept {
    return counted(r, zone_of(r)->my_stats().fit, fit_start(r));
}

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
        in.model = &work->model;
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

// The owner read what the plot draws: draw it off the event loop.
void draw_plot(ngx_http_request_t *r, RequestCtx *ctx, std::string data) noexcept {
    PlotWork *work = nullptr;
    ngx_int_t rc;
    try {
        LocConf *lcf = loc_conf(r);
        work = new PlotWork();
        work->request = r;
        work->data = std::move(data);
        work->model = ctx->model;
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

        Zone *zone = zone_of(r);
        Model model;
        const std::string_view series(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len);
        switch (zone->find_model(series, version, &model)) {
        case Lookup::found: break;
        case Lookup::not_loaded:
            return not_loaded_error(r);
        case Lookup::series_not_found:
            return send_error(r, 404, "series_not_found", "No model has been trained for this series.");
        case Lookup::version_not_found:
            return send_error(r, 404, "version_not_found", "This series has no such version.");
        }
        ctx->version = model.version;
        ctx->model = model;
        bool busy = false;
        Job *job = zone->add_read(series, model.version, &busy);
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

// ---- catalogue: /series, /series/{id}, /dashboard ----

ngx_int_t get_only(ngx_http_request_t *r, const char *what) {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
        return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", what);
    return ngx_http_discard_request_body(r) == NGX_OK ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
}

ngx_int_t lookup_error(ngx_http_request_t *r, Lookup lookup) {
    if (lookup == Lookup::not_loaded) return not_loaded_error(r);
    return send_error(r, 404, "series_not_found", "No model has been trained for this series.");
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

ngx_int_t series_handler(ngx_http_request_t *r) noexcept {
    try {
        ngx_int_t rc = get_only(r, "Use GET for /series.");
        if (rc != NGX_OK) return rc;
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
        for (const Zone::SeriesSummary &s : found) entries.push_back(SeriesEntry{s.series_id(), &s.latest});
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
        ngx_int_t rc = get_only(r, "Use GET for /series/{series_id}.");
        if (rc != NGX_OK) return rc;
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
        std::vector<Model> versions;
        bool more = false;
        Lookup lookup = zone_of(r)->versions(series, after, limit, newest, &versions, &more);
        if (lookup != Lookup::found) return lookup_error(r, lookup);
        std::string out = render_versions(series, versions, more);
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

ngx_int_t dashboard_handler(ngx_http_request_t *r) noexcept {
    try {
        ngx_int_t rc = get_only(r, "Use GET for /dashboard.");
        if (rc != NGX_OK) return rc;
        std::string_view page = dashboard_html();
        return send_body(r, NGX_HTTP_OK, page.data(), page.size(), "text/html; charset=utf-8");
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// ---- healthcheck ----

struct EndpointFigures {
    LatencySummary latency;
    std::uint64_t statuses[kStatusSlots] = {};
    std::uint64_t last_10s = 0;
    std::uint64_t last_60s = 0;
    std::int64_t in_flight = 0;

    void add(const EndpointStats &s, std::int64_t now) {
        latency.add(s.latency);
        for (std::size_t i = 0; i < kStatusSlots; i++) statuses[i] += __atomic_load_n(&s.statuses[i], __ATOMIC_RELAXED);
        last_10s += s.rate.total(now, 10);
        last_60s += s.rate.total(now, 60);
        in_flight += __atomic_load_n(&s.in_flight, __ATOMIC_RELAXED);
    }
};

struct Figures {
    EndpointFigures predict;
    EndpointFigures fit;
    std::uint64_t anomalies = 0;
};

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
            merged.anomalies += __atomic_load_n(&w.anomalies, __ATOMIC_RELAXED);
        }
        computed_at = ngx_current_msec;
        computed = true;
    }
    return merged;
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
        ngx_pid_t owner = sh->owner_pid;
        StoreState state = sh->store_state;
        std::string store_error = sh->store_error;
        size_t bytes_free = zone->pool()->pfree << ngx_pagesize_shift;
        zone->unlock();
        const Figures &fig = figures(zone);

        std::string out;
        out.reserve(1024);
        out += "{\"series_trained\":" + std::to_string(series);
        out += ",\"versions_stored\":" + std::to_string(versions) + ",";
        append_latency(&out, "inference_latency_ms", fig.predict.latency);
        out += ",";
        append_latency(&out, "training_latency_ms", fig.fit.latency);
        out += ",\"load\":{";
        append_load(&out, "predict", fig.predict);
        out += ",";
        append_load(&out, "fit", fig.fit);
        out += "}";
        out += ",\"store\":{\"state\":\"";
        out += store_state_name(state);
        out += "\",\"owner_pid\":" + std::to_string(owner);
        out += ",\"fits_waiting\":" + std::to_string(sh->jobs_pending);
        out += ",\"error\":";
        if (store_error.empty()) out += "null";
        else append_json_string(&out, store_error);
        out += "},\"zone\":{\"name\":";
        append_json_string(&out, std::string_view(reinterpret_cast<char *>(zone->name().data),
                                                  zone->name().len));
        out += ",\"bytes_total\":" + std::to_string(zone->bytes_total());
        out += ",\"bytes_free\":" + std::to_string(bytes_free) + "}}";
        return send_body(r, NGX_HTTP_OK, out.data(), out.size());
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// ---- metrics ----

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
        m.in_flight = static_cast<std::uint64_t>(std::max<std::int64_t>(0, fig.predict.in_flight + fig.fit.in_flight));
        m.endpoints.resize(2);
        fill_endpoint(&m.endpoints[0], "predict", fig.predict);
        fill_endpoint(&m.endpoints[1], "fit", fig.fit);
        std::string out = render_prometheus(m);
        return send_body(r, NGX_HTTP_OK, out.data(), out.size(), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
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

// ---- variables ----

enum class Var : uintptr_t {
    series_trained,
    inference_avg,
    inference_p95,
    training_avg,
    training_p95,
    model_version,
    result,
    score,
};

ngx_int_t set_var(ngx_http_request_t *r, ngx_http_variable_value_t *v, const char *s, size_t len) {
    u_char *p = static_cast<u_char *>(ngx_pnalloc(r->pool, len));
    if (p == nullptr) return NGX_ERROR;
    ngx_memcpy(p, s, len);
    v->data = p;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

ngx_int_t variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data) noexcept {
    try {
        v->not_found = 1;
        char buf[64];
        size_t len = 0;
        RequestCtx *ctx = get_ctx(r);
        Zone *zone = zone_of(r);
        switch (static_cast<Var>(data)) {
        case Var::model_version:
            if (ctx == nullptr || ctx->version == 0) return NGX_OK;
            len = static_cast<size_t>(ngx_sprintf(reinterpret_cast<u_char *>(buf), "v%uD", ctx->version) -
                                      reinterpret_cast<u_char *>(buf));
            break;
        case Var::result:
            if (ctx == nullptr || ctx->result < 0) return NGX_OK;
            return ctx->result ? set_var(r, v, "true", 4) : set_var(r, v, "false", 5);
        case Var::score:
            if (ctx == nullptr || ctx->result < 0) return NGX_OK;
            len = format_double(buf, ctx->score);
            break;
        default: {
            if (zone == nullptr) return NGX_OK;
            const Figures &fig = figures(zone);
            double value = 0;
            switch (static_cast<Var>(data)) {
            case Var::series_trained:
                len = static_cast<size_t>(ngx_sprintf(reinterpret_cast<u_char *>(buf), "%uL",
                                                      zone->shared()->series_trained) -
                                          reinterpret_cast<u_char *>(buf));
                return set_var(r, v, buf, len);
            case Var::inference_avg: value = fig.predict.latency.avg_ms(); break;
            case Var::inference_p95: value = fig.predict.latency.quantile_ms(0.95); break;
            case Var::training_avg: value = fig.fit.latency.avg_ms(); break;
            default: value = fig.fit.latency.quantile_ms(0.95); break;
            }
            len = format_double(buf, value);
        }
        }
        return set_var(r, v, buf, len);
    } catch (...) {
        return NGX_ERROR;
    }
}

struct VariableSpec {
    ngx_str_t name;
    Var var;
    ngx_uint_t flags;
};

ngx_int_t add_variables(ngx_conf_t *cf) noexcept {
    static VariableSpec specs[] = {
        {ngx_string("anomaly_series_trained"), Var::series_trained, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_inference_latency_avg_ms"), Var::inference_avg, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_inference_latency_p95_ms"), Var::inference_p95, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_training_latency_avg_ms"), Var::training_avg, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_training_latency_p95_ms"), Var::training_p95, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_model_version"), Var::model_version, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_result"), Var::result, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_score"), Var::score, NGX_HTTP_VAR_NOCACHEABLE},
    };
    for (VariableSpec &spec : specs) {
        ngx_http_variable_t *var = ngx_http_add_variable(cf, &spec.name, spec.flags);
        if (var == nullptr) return NGX_ERROR;
        var->get_handler = variable;
        var->data = static_cast<uintptr_t>(spec.var);
    }
    return NGX_OK;
}

// ---- configuration ----

void *create_main_conf(ngx_conf_t *cf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(ngx_pcalloc(cf->pool, sizeof(MainConf)));
    if (mcf == nullptr) return nullptr;
    mcf->endpoints_used = NGX_CONF_UNSET;
    mcf->fit_memory = NGX_CONF_UNSET_SIZE;
    return mcf;
}

char *init_main_conf(ngx_conf_t *cf, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->thread_pool_name.len == 0) {
        ngx_str_set(&mcf->thread_pool_name, "default");
    }
    ngx_conf_init_size_value(mcf->fit_memory, kDefaultFitMemory);
    if (mcf->endpoints_used == 1 && (mcf->shm_zone == nullptr || mcf->store.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "anomaly endpoints need \"anomaly_zone\" and \"anomaly_store\" in the http block");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (mcf->shm_zone != nullptr && mcf->store.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_zone\" needs \"anomaly_store\"");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (mcf->shm_zone != nullptr) {
        mcf->thread_pool = ngx_thread_pool_add(cf, &mcf->thread_pool_name);
        if (mcf->thread_pool == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

void *create_loc_conf(ngx_conf_t *cf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(ngx_pcalloc(cf->pool, sizeof(LocConf)));
    if (lcf == nullptr) return nullptr;
    lcf->sigma = kUnsetSigma;
    lcf->tail = NGX_CONF_UNSET_UINT;
    lcf->min_points = NGX_CONF_UNSET_SIZE;
    lcf->max_points = NGX_CONF_UNSET_SIZE;
    lcf->fit_timeout = NGX_CONF_UNSET_MSEC;
    return lcf;
}

char *merge_loc_conf(ngx_conf_t *cf, void *parent, void *child) noexcept {
    LocConf *prev = static_cast<LocConf *>(parent);
    LocConf *conf = static_cast<LocConf *>(child);
    if (conf->sigma == kUnsetSigma) conf->sigma = prev->sigma == kUnsetSigma ? 3.0 : prev->sigma;
    ngx_conf_merge_uint_value(conf->tail, prev->tail, static_cast<ngx_uint_t>(Tail::both));
    ngx_conf_merge_size_value(conf->min_points, prev->min_points, 10);
    ngx_conf_merge_size_value(conf->max_points, prev->max_points, 1000000);
    ngx_conf_merge_msec_value(conf->fit_timeout, prev->fit_timeout, kDefaultFitTimeout);
    if (conf->min_points > conf->max_points) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_min_points\" %uz is larger than \"anomaly_max_points\" %uz",
                           conf->min_points, conf->max_points);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

// The zone's init callback. nginx calls it after creating its own paths and
// before it commits a new configuration, so the store directory is prepared
// here: a refusal stops a start and leaves a reload on the old configuration
// (a failing init_module would make the master exit). nginx -t and
// nginx -s also get here, and change nothing on disk.
ngx_int_t init_zone(ngx_shm_zone_t *shm_zone, void *data) noexcept {
    try {
        Zone *zone = Zone::from(shm_zone);
        if (!ngx_test_config && ngx_process != NGX_PROCESS_SIGNALLER) {
            ngx_cycle_t *cycle = zone->cycle();
            auto *mcf = static_cast<MainConf *>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_anomaly_module));
            auto *ccf = reinterpret_cast<ngx_core_conf_t *>(ngx_get_conf(cycle->conf_ctx, ngx_core_module));
            std::string dir(reinterpret_cast<char *>(mcf->store.data), mcf->store.len);
            if (prepare_store_dir(shm_zone->shm.log, dir, ccf->user) != NGX_OK) return NGX_ERROR;
        }
        return Zone::init(shm_zone, data);
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0, "anomaly_zone \"%V\": %s", &shm_zone->shm.name,
                      e.what());
        return NGX_ERROR;
    }
}

char *set_zone(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->shm_zone != nullptr) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    u_char *colon = static_cast<u_char *>(ngx_strlchr(value[1].data, value[1].data + value[1].len, ':'));
    if (colon == nullptr || colon == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_zone\" takes name:size, e.g. models:64m, not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_str_t name{static_cast<size_t>(colon - value[1].data), value[1].data};
    ngx_str_t size_text{static_cast<size_t>(value[1].data + value[1].len - colon - 1), colon + 1};
    ssize_t size = ngx_parse_size(&size_text);
    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid anomaly_zone size \"%V\"", &size_text);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    const ssize_t minimum = static_cast<ssize_t>(8 * ngx_pagesize + sizeof(Shared) + 1024 * sizeof(void *));
    if (size < minimum) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "anomaly_zone \"%V\" is too small, it needs at least %uzk",
                           &name, static_cast<size_t>(minimum / 1024 + 1));
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    mcf->shm_zone = ngx_shared_memory_add(cf, &name, static_cast<size_t>(size), &ngx_http_anomaly_module);
    if (mcf->shm_zone == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
    if (mcf->shm_zone->data != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "anomaly_zone \"%V\" is already bound", &name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    void *mem = ngx_pcalloc(cf->pool, sizeof(Zone));
    if (mem == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
    static_assert(std::is_trivially_destructible<Zone>::value, "lives in the conf pool");
    mcf->shm_zone->data = new (mem) Zone(cf->cycle);
    mcf->shm_zone->init = init_zone;
    mcf->shm_zone->noreuse = 0;
    return NGX_CONF_OK;
}

char *set_store(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->store.len != 0) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    mcf->store = value[1];
    if (ngx_conf_full_name(cf->cycle, &mcf->store, 0) != NGX_OK) return static_cast<char *>(NGX_CONF_ERROR);
    while (mcf->store.len > 1 && mcf->store.data[mcf->store.len - 1] == '/') mcf->store.len--;
    return NGX_CONF_OK;
}

char *set_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(conf);
    if (lcf->endpoint != 0) return const_cast<char *>("is duplicate");
    lcf->endpoint = reinterpret_cast<uintptr_t>(cmd->post);
    ngx_http_core_loc_conf_t *clcf =
        static_cast<ngx_http_core_loc_conf_t *>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    switch (static_cast<Endpoint>(lcf->endpoint)) {
    case Endpoint::fit: clcf->handler = fit_handler; break;
    case Endpoint::predict: clcf->handler = predict_handler; break;
    case Endpoint::metrics: clcf->handler = metrics_handler; break;
    case Endpoint::error: clcf->handler = error_handler; break;
    case Endpoint::plot: clcf->handler = plot_handler; break;
    case Endpoint::series: clcf->handler = series_handler; break;
    case Endpoint::versions: clcf->handler = versions_handler; break;
    case Endpoint::dashboard: clcf->handler = dashboard_handler; break;
    default: clcf->handler = healthcheck_handler; break;
    }
    if (cf->args->nelts == 2) {
        ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
        lcf->series_id = static_cast<ngx_http_complex_value_t *>(ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t)));
        if (lcf->series_id == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
        ngx_http_compile_complex_value_t ccv{};
        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = lcf->series_id;
        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) return static_cast<char *>(NGX_CONF_ERROR);
    }
    MainConf *mcf = static_cast<MainConf *>(ngx_http_conf_get_module_main_conf(cf, ngx_http_anomaly_module));
    mcf->endpoints_used = 1;
    return NGX_CONF_OK;
}

char *set_sigma(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(conf);
    if (lcf->sigma != kUnsetSigma) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    std::string text(reinterpret_cast<char *>(value[1].data), value[1].len);
    char *end = nullptr;
    errno = 0;
    double sigma = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(sigma) || sigma <= 0 || sigma > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_sigma\" must be a number above 0 and at most 1000, such as 3 or 2.5, not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    lcf->sigma = sigma;
    return NGX_CONF_OK;
}

char *set_points(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_size_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    size_t n = *reinterpret_cast<size_t *>(static_cast<char *>(conf) + cmd->offset);
    if (n < 2 || n > 100000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" must be between 2 and 100000000", &cmd->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

char *set_fit_memory(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_size_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    if (static_cast<MainConf *>(conf)->fit_memory < 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_fit_memory\" must be at least 1m, such as 128m");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

char *set_fit_timeout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_msec_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    const ngx_msec_t t = static_cast<LocConf *>(conf)->fit_timeout;
    if (t < 100 || t > 3600000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_fit_timeout\" must be between 100ms and 1h, such as 30s");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

ngx_conf_enum_t tails[] = {
    {ngx_string("both"), static_cast<ngx_uint_t>(Tail::both)},
    {ngx_string("upper"), static_cast<ngx_uint_t>(Tail::upper)},
    {ngx_string("lower"), static_cast<ngx_uint_t>(Tail::lower)},
    {ngx_null_string, 0},
};

#define ANOMALY_LOC (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF)

ngx_command_t commands[] = {
    {ngx_string("anomaly_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_zone,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("anomaly_store"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_store,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("anomaly_thread_pool"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_str_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, thread_pool_name), nullptr},
    {ngx_string("anomaly_fit_memory"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_fit_memory,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, fit_memory), nullptr},
    {ngx_string("anomaly_fit_timeout"), ANOMALY_LOC | NGX_CONF_TAKE1, set_fit_timeout,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, fit_timeout), nullptr},
    {ngx_string("anomaly_fit"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::fit)},
    {ngx_string("anomaly_predict"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::predict)},
    {ngx_string("anomaly_healthcheck"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::healthcheck)},
    {ngx_string("anomaly_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::metrics)},
    {ngx_string("anomaly_plot"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::plot)},
    {ngx_string("anomaly_series"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::series)},
    {ngx_string("anomaly_versions"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::versions)},
    {ngx_string("anomaly_dashboard"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::dashboard)},
    {ngx_string("anomaly_error"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::error)},
    {ngx_string("anomaly_sigma"), ANOMALY_LOC | NGX_CONF_TAKE1, set_sigma, NGX_HTTP_LOC_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("anomaly_tail"), ANOMALY_LOC | NGX_CONF_TAKE1, ngx_conf_set_enum_slot,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, tail), tails},
    {ngx_string("anomaly_min_points"), ANOMALY_LOC | NGX_CONF_TAKE1, set_points,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, min_points), nullptr},
    {ngx_string("anomaly_max_points"), ANOMALY_LOC | NGX_CONF_TAKE1, set_points,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, max_points), nullptr},
    ngx_null_command,
};

// A million-point fit allocates about 80 MB in passing (the body copy, the
// parsed vectors, the encoded record, LevelDB's batch and memtable). By
// default glibc maps each block over a few MB afresh and unmaps it when
// freed, and gives each pool thread an arena of its own, so nearly every fit
// paid a page fault per 4 KB again: 60% of a 1M-point fit's time here. Blocks
// up to 32 MB (glibc's limit) now come from one heap shared by the worker's
// threads, and up to 256 MB of it is kept free for the next fit (the rest
// is given back once the worker has had no fit for a second: trim_timer).
void keep_fit_memory() {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    mallopt(M_ARENA_MAX, 1);
}

ngx_int_t init_process(ngx_cycle_t *cycle) noexcept {
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) return NGX_OK;
    MainConf *mcf = static_cast<MainConf *>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_anomaly_module));
    if (mcf == nullptr || mcf->shm_zone == nullptr) return NGX_OK;
    try {
        keep_fit_memory();
        ngx_queue_init(&owner_waits);
        ngx_queue_init(&fits_for_threads);
        fit_threads_max = ngx_ncpu > 0 ? static_cast<ngx_uint_t>(ngx_ncpu) : 1;
        process_pool = mcf->thread_pool;
        fit_timer.handler = fit_timer_handler;
        fit_timer.log = cycle->log;
        fit_timer.data = &fit_timer;
        fit_timer.cancelable = 0;  // a worker waits for its fits before it exits
        trim_timer.handler = trim_timer_handler;
        trim_timer.log = cycle->log;
        trim_timer.data = &trim_timer;
        trim_timer.cancelable = 1;
        trim_task.handler = trim_thread;
        trim_task.event.handler = trim_done;
        trim_task.event.data = &trim_task;
        trim_task.event.log = cycle->log;
        process_zone = Zone::from(mcf->shm_zone);
        StoreSettings settings;
        settings.zone = process_zone;
        settings.dir.assign(reinterpret_cast<char *>(mcf->store.data), mcf->store.len);
        settings.pool = mcf->thread_pool;
        return store_start(cycle, settings, fits_check);
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "anomaly: %s", e.what());
        return NGX_ERROR;
    }
}

void exit_process(ngx_cycle_t *) noexcept {
    try {
        store_stop();
    } catch (...) {
    }
}

ngx_http_module_t module_ctx = {
    add_variables,     // preconfiguration
    nullptr,           // postconfiguration
    create_main_conf,
    init_main_conf,
    nullptr,           // create server configuration
    nullptr,           // merge server configuration
    create_loc_conf,
    merge_loc_conf,
};

}  // namespace
}  // namespace anomaly

ngx_module_t ngx_http_anomaly_module = {
    NGX_MODULE_V1,
    &anomaly::module_ctx,
    anomaly::commands,
    NGX_HTTP_MODULE,
    nullptr,                  // init master
    nullptr,                  // init module: see init_zone
    anomaly::init_process,
    nullptr,                  // init thread
    nullptr,                  // exit thread
    anomaly::exit_process,
    nullptr,                  // exit master
    NGX_MODULE_V1_PADDING,
};
