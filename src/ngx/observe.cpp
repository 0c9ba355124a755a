// /observe (CONTRACT section 6): each point scored against its series'
// stream and then learned, in place in the zone, under the stream's own lock.
// A small body is parsed and observed on the event loop; a large one, or a
// batch a forest would take long over, in a pool thread.

#include "ngx/http.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <vector>

#include "core/parameters.hpp"
#include "core/render.hpp"
#include "core/request.hpp"
#include "core/stream.hpp"
#include "ngx/owner.hpp"

namespace anomaly {
namespace {

constexpr std::size_t kInlineBody = 64 * 1024;   // parsed on the event loop up to this
// Points observed on the event loop at most: a forest takes microseconds a
// point, the adaptive baseline a few nanoseconds.
constexpr std::size_t kInlinePoints = 32;
constexpr std::size_t kInlineAdaptivePoints = 4096;
constexpr ngx_msec_t kBusyRetry = 1;             // a stream locked by another worker: try again after
constexpr std::uint64_t kBusyGiveUpNs = 5000000000ull;  // 503 after this long
constexpr ngx_msec_t kStoreWaitPoll = 50;        // observes of a new generation waiting for the store

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string_view id_of(const RequestCtx *ctx) {
    return std::string_view(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len);
}

// What one observe did, for the variables and the counters.
struct Outcome {
    DetectorKind kind = DetectorKind::rcf;
    std::size_t anomalies = 0;
    std::size_t points = 0;
    double top_score = 0;         // the highest anomaly_score
    double last_score = 0;        // the detector's own number, of the point with top_score
    std::vector<ScoredPoint> anomalous;  // for the history and the alerts
    SeriesNode *node = nullptr;          // the series' node, for the history's counts
};

enum class Step { answered, busy };

// Observes input into the series' stream (created at its first observe).
// busy: a live process holds the stream's lock; the caller tries again.
Step observe_into(Zone *zone, std::string_view series, const StreamParams &params, bool detector_asked,
                  const ObserveInput &input, double threshold, bool may_wait, Error *error, std::string *answer,
                  Outcome *outcome) {
    StreamSlot *s = zone->find_stream(series);
    if (s == nullptr) {
        s = zone->create_stream(series, params, now_ms());
        if (s == nullptr) {
            *error = make_error(507, "zone_full",
                                "The shared zone \"" +
                                    std::string(reinterpret_cast<char *>(zone->name().data), zone->name().len) +
                                    "\" has no room for a new stream; raise its size in the anomaly_zone directive.");
            return Step::answered;
        }
    }
    if (detector_asked && s->kind() != params.kind) {
        *error = make_error(409, "detector_mismatch",
                            "The stream of " + std::string(series) + " runs " + detector_name(s->kind()) +
                                ", chosen at its first observe; it cannot change to " + detector_name(params.kind) +
                                ".");
        return Step::answered;
    }
    const std::size_t n = input.points.values.size();
    std::vector<StreamPoint> points(n);  // allocated before the lock: nothing under it may throw
    const std::uint64_t waited_from = monotonic_ns();
    for (;;) {
        const Zone::StreamAccess access = zone->lock_stream(s);
        if (access == Zone::StreamAccess::locked) break;
        if (access == Zone::StreamAccess::broken || monotonic_ns() - waited_from > kBusyGiveUpNs) {
            *error = make_error(503, "stream_unavailable",
                                access == Zone::StreamAccess::broken
                                    ? "This stream is being restored from its checkpoint after a worker died "
                                      "while updating it; try again in a few seconds."
                                    : "This stream has been busy for 5 seconds; try again.");
            return Step::answered;
        }
        if (!may_wait) return Step::busy;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::uint64_t learned = 0;
    __atomic_store_n(&s->updating, std::uint8_t{1}, __ATOMIC_RELEASE);
    StreamHeader &state = *s->state();
    for (std::size_t i = 0; i < n; i++) {
        points[i] = observe(state, input.points.timestamps[i], input.points.values[i]);
        if (points[i].stage != StreamStage::skipped) learned++;
    }
    __atomic_store_n(&s->updating, std::uint8_t{0}, __ATOMIC_RELEASE);
    if (learned > 0) __atomic_fetch_add(&s->changes, learned, __ATOMIC_RELEASE);
    zone->unlock_stream(s);

    outcome->kind = s->kind();
    outcome->points = n;
    outcome->node = s->series;
    for (std::size_t i = 0; i < n; i++) {
        const StreamPoint &p = points[i];
        if (observed_anomaly(p, threshold)) {
            outcome->anomalies++;
            outcome->anomalous.push_back(
                ScoredPoint{input.points.timestamps[i], input.points.values[i], p.anomaly_score, p.score});
        }
        if (p.anomaly_score >= outcome->top_score) {
            outcome->top_score = p.anomaly_score;
            outcome->last_score = p.score;
        }
    }
    render_observation(answer, series, s->kind(), points.data(), n, input.many, threshold);
    return Step::answered;
}

// A body too large for the event loop, or a batch too long: read, parsed and
// observed in a pool thread.
struct ObserveWork {
    ngx_thread_task_t task{};
    ngx_http_request_t *request = nullptr;
    std::vector<FitWork::Piece> pieces;
    std::size_t length = 0;
    bool parsed = false;          // input is filled already
    ObserveInput input;
    std::string series;
    StreamParams params;
    bool detector_asked = false;
    std::size_t max_points = 0;
    double threshold = 70;
    Zone *zone = nullptr;
    Error error;
    std::string answer;
    std::string log_detail;
    Outcome outcome;
};

void observe_thread(void *data, ngx_log_t *) {
    ObserveWork *work = static_cast<ObserveWork *>(data);
    try {
        if (!work->parsed) {
            std::string body = gather_body(work->pieces, work->length);
            work->error = parse_observe_body(body.data(), work->length, work->max_points, &work->input);
            if (work->error) return;
        }
        observe_into(work->zone, work->series, work->params, work->detector_asked, work->input, work->threshold,
                     true, &work->error, &work->answer, &work->outcome);
    } catch (const std::bad_alloc &) {
        work->error = make_error(507, "out_of_memory", "The server has no memory for this observe.");
    } catch (const std::exception &e) {
        work->error = make_error(500, "internal_error", "The observe failed on the server; the error log says why.");
        try {
            work->log_detail = std::string("observe failed: ") + e.what();
        } catch (const std::exception &) {
        }
    }
}

void finish(ngx_http_request_t *r, ngx_int_t rc) {
    record(zone_of(r)->my_stats().observe, get_ctx(r)->body_read_ns, r->headers_out.status);
    ngx_connection_t *c = r->connection;
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

ngx_int_t answer(ngx_http_request_t *r, const Error &error, const std::string &body, const Outcome &outcome) {
    if (error) return send_error(r, error);
    RequestCtx *ctx = get_ctx(r);
    Zone *zone = zone_of(r);
    ctx->detector = outcome.kind;
    ctx->result = outcome.anomalies > 0 ? 1 : 0;
    ctx->anomaly_score = outcome.top_score;
    ctx->score = outcome.last_score;
    WorkerStats &stats = zone->my_stats();
    __atomic_fetch_add(&stats.points_observed, outcome.points, __ATOMIC_RELAXED);
    if (outcome.anomalies > 0) __atomic_fetch_add(&stats.anomalies, outcome.anomalies, __ATOMIC_RELAXED);
    const auto k = static_cast<std::size_t>(outcome.kind);
    if (k < kDetectorSlots) __atomic_fetch_add(&stats.by_detector[k], outcome.points, __ATOMIC_RELAXED);
    answered(r, ScoredAnswer{std::string_view(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len),
                             outcome.kind, 0, outcome.points, outcome.anomalous.data(), outcome.anomalous.size(),
                             outcome.node});
    return send_body(r, NGX_HTTP_OK, body.data(), body.size());
}

void observe_done(ngx_event_t *ev) noexcept {
    ObserveWork *work = static_cast<ObserveWork *>(ev->data);
    ngx_http_request_t *r = work->request;
    // Still on the event loop until this handler returns: the series' node
    // the outcome names is read below.
    release_zone();
    if (!task_done_for(r, get_ctx(r))) {
        delete work;
        return;
    }
    ngx_int_t rc;
    try {
        if (!work->log_detail.empty())
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly: %s", work->log_detail.c_str());
        rc = answer(r, work->error, work->answer, work->outcome);
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    delete work;
    finish(r, rc);
}

// The location's parameters and the query's; detector_asked: the query names one.
Error request_params(ngx_http_request_t *r, StreamParams *params, bool *detector_asked) {
    *params = loc_conf(r)->stream;
    const std::string_view args(reinterpret_cast<char *>(r->args.data), r->args.len);
    *detector_asked = false;
    for (std::string_view rest = args; !rest.empty();) {
        const std::size_t amp = rest.find('&');
        const std::string_view arg = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
        if (arg.substr(0, arg.find('=')) == "detector") *detector_asked = true;
    }
    return apply_observe_arguments(args, params);
}

void observe_run(ngx_http_request_t *r) noexcept;

ngx_int_t observe_answer(ngx_http_request_t *r, RequestCtx *ctx, bool *pending) {
    Zone *zone = zone_of(r);
    LocConf *lcf = loc_conf(r);
    ngx_http_request_body_t *rb = r->request_body;
    if (rb == nullptr || rb->bufs == nullptr)
        return send_error(r, 400, "malformed_json",
                          "The body must be JSON: {\"timestamp\": 1700000000, \"value\": 42.0}.");
    StreamParams params;
    bool detector_asked = false;
    if (Error e = request_params(r, &params, &detector_asked)) return send_error(r, e);

    auto work = std::make_unique<ObserveWork>();
    bool in_file = false;
    const std::size_t length = body_pieces(rb, &work->pieces, &in_file);
    work->length = length;
    work->series.assign(id_of(ctx));
    work->params = params;
    work->detector_asked = detector_asked;
    work->max_points = lcf->max_points;
    work->threshold = lcf->threshold;
    work->zone = zone;

    if (!in_file && length <= kInlineBody) {
        // Small: parsed here, with the padding simdjson reads past the end.
        u_char *body = static_cast<u_char *>(ngx_palloc(r->pool, length + kJsonPadding));
        if (body == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        u_char *p = body;
        for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) p = ngx_cpymem(p, cl->buf->pos, ngx_buf_size(cl->buf));
        ngx_memzero(p, kJsonPadding);
        if (Error e = parse_observe_body(reinterpret_cast<char *>(body), length, lcf->max_points, &work->input))
            return send_error(r, e);
        work->parsed = true;
        const StreamSlot *s = zone->find_stream(work->series);
        const DetectorKind kind = s != nullptr ? s->kind() : params.kind;
        const std::size_t n = work->input.points.values.size();
        if (n <= kInlinePoints || (kind == DetectorKind::adaptive && n <= kInlineAdaptivePoints)) {
            Error error;
            std::string out;
            Outcome outcome;
            if (observe_into(zone, work->series, params, detector_asked, work->input, lcf->threshold, false, &error,
                             &out, &outcome) == Step::busy) {
                if (monotonic_ns() - ctx->body_read_ns < kBusyGiveUpNs &&
                    run_later(r, ctx, kBusyRetry, observe_run)) {
                    *pending = true;
                    return NGX_OK;
                }
                return send_error(r, 503, "stream_unavailable", "This stream has been busy for 5 seconds; try again.");
            }
            return answer(r, error, out, outcome);
        }
    }
    work->request = r;
    if (!post_task(r, &work->task, work.get(), observe_thread, observe_done))
        return send_busy(r, "The thread pool queue is full; try again.", false);
    hold_zone();  // the task finds and updates the stream in place: released by observe_done
    work.release();  // observe_done frees it
    *pending = true;
    return NGX_OK;
}

void observe_run(ngx_http_request_t *r) noexcept {
    ngx_int_t rc;
    bool pending = false;
    try {
        RequestCtx *ctx = get_ctx(r);
        // Streams come from their checkpoints at start: one created before
        // would shadow its checkpoint.
        const Shared *sh = zone_of(r)->shared();
        if (wait_for_load(r, ctx, observe_run)) return;
        // A new nginx generation (a binary upgrade) read the streams from a
        // copy while the old one still serves them: what it learns meanwhile
        // is in its checkpoints at its exit, read here when the store comes
        // over. Until then observes wait (as fits do), so that no point is
        // learned by one generation and lost with the other.
        const std::uint64_t waited_ns = monotonic_ns() - ctx->body_read_ns;
        const std::uint64_t wait_ns = static_cast<std::uint64_t>(loc_conf(r)->fit_timeout) * 1000000ull;
        const bool from_copy = __atomic_load_n(&sh->from_copy, __ATOMIC_ACQUIRE);
        if (from_copy && waited_ns < wait_ns) {
            if (run_later(r, ctx, kStoreWaitPoll, observe_run)) return;
        }
        if (from_copy) {
            rc = send_busy(r, "The streams are held by another nginx generation (a binary upgrade in progress); "
                              "try again once it has exited.", false);
        } else if (!__atomic_load_n(&sh->loaded, __ATOMIC_ACQUIRE)) {
            rc = not_loaded_error(r);
        } else {
            rc = observe_answer(r, ctx, &pending);
        }
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    if (pending) return;
    finish(r, rc);
}

void observe_body_read(ngx_http_request_t *r) noexcept {
    get_ctx(r)->body_read_ns = monotonic_ns();
    observe_run(r);
}

const char *kNotJson =
    "Send the body as JSON, with Content-Type: application/json (curl: -H 'Content-Type: application/json').";

ngx_int_t observe_start(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & NGX_HTTP_POST))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use POST for /observe.");
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr || !watch_end(r, ctx)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        count_in_flight(r, zone_of(r)->my_stats().observe);
        if (!series_id_of(r, &ctx->series_id)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!valid_series_id(ctx->series_id)) return reject(r, 400, "invalid_series_id", kBadSeriesId);
        // A bad detector or parameter is refused before the body is read.
        StreamParams params;
        bool detector_asked = false;
        if (Error bad = request_params(r, &params, &detector_asked))
            return reject(r, bad.status, bad.code, bad.detail.c_str());
        const ngx_table_elt_t *type = r->headers_in.content_type;
        if (type == nullptr ||
            !is_json_media_type(std::string_view(reinterpret_cast<char *>(type->value.data), type->value.len)))
            return reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", kNotJson);
        ngx_int_t rc = ngx_http_read_client_request_body(r, observe_body_read);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace

ngx_int_t observe_handler(ngx_http_request_t *r) noexcept {
    return counted(r, zone_of(r)->my_stats().observe, observe_start(r));
}

}  // namespace anomaly
