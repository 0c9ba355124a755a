// /score (CONTRACT section 7): every point of a posted series scored at
// once, with a stored version, or with ?detector= trained (batch) or run
// (stream) over the series itself, storing nothing. The query is checked
// before the body is read; the version is looked up once it is; the body is
// parsed, scored and rendered in a pool thread, never on the event loop.

#include "ngx/http.hpp"

#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "core/csv.hpp"
#include "core/parameters.hpp"
#include "core/render.hpp"
#include "core/request.hpp"
#include "core/score.hpp"
#include "core/series.hpp"
#include "ngx/owner.hpp"

namespace anomaly {
namespace {

// As predict: a score that arrives while the zone is being filled waits
// this long for its version before 503.

enum class Mode : std::uint8_t {
    version,  // a stored version's image, in the zone
    batch,    // a batch detector trained on the posted series
    stream,   // a fresh stream run over the posted series
};

// What the query asks, checked before the body is read.
struct Query {
    Mode mode = Mode::version;
    std::uint32_t version = 0;  // 0: the latest
    DetectorParams batch;
    StreamParams stream;
    bool only_anomalies = false;
};

// The work of a pool task. It owns everything it touches but the body's
// buffers and temp file, which r->main->blocked keeps until it is done.
struct ScoreWork {
    ngx_thread_task_t task{};
    ngx_http_request_t *request = nullptr;
    std::vector<FitWork::Piece> pieces;
    std::size_t length = 0;
    bool csv_in = false;
    bool csv_out = false;
    Query query;
    // Mode::version: the image, copied from the zone on the event loop, so
    // that a delete of the version meanwhile cannot free it under the task.
    const ModelHeader *image = nullptr;
    std::vector<std::uint64_t> image_copy;  // 8-byte aligned, as images are
    std::string series;
    FitLimits limits;
    std::size_t min_points = 10;  // to train a batch detector
    JudgeDefaults defaults;
    double threshold = 70;
    std::int64_t now_ms = 0;
    // Results
    Error error;
    std::string answer;
    std::string log_detail;
    DetectorKind kind = DetectorKind::three_sigma;
    std::size_t anomalies = 0;
    double top_score = 0;         // the highest anomaly_score
    double top_own_score = 0;     // the detector's own number of that point
};

bool query_arg(ngx_http_request_t *r, const char *name, std::size_t len, std::string_view *value) {
    ngx_str_t arg;
    if (ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>(name)), len, &arg) != NGX_OK) return false;
    *value = view(arg);
    return true;
}

Error read_query(ngx_http_request_t *r, Query *q) {
    LocConf *lcf = loc_conf(r);
    const std::string_view args = view(r->args);
    std::string_view only, version, detector;
    if (query_arg(r, "only", 4, &only)) {
        if (only != "anomalies")
            return make_error(422, "invalid_parameter",
                              "only accepts anomalies (only the flagged points), not \"" +
                                  std::string(only.substr(0, 40)) + "\".");
        q->only_anomalies = true;
    }
    const bool has_version = query_arg(r, "version", 7, &version);
    const bool has_detector = query_arg(r, "detector", 8, &detector);
    if (has_version && has_detector)
        return make_error(422, "invalid_parameter",
                          "Give ?version= to score with a stored version, or ?detector= to score with a detector "
                          "run over the posted series, not both.");
    if (has_version) {
        if (!parse_version(version, &q->version))
            return make_error(422, "invalid_version", "The version must look like v3 or 3 (versions start at v1).");
        return Error();
    }
    if (!has_detector) return Error();
    DetectorKind kind;
    if (!detector_from_name(detector, &kind))
        return make_error(422, "invalid_detector",
                          "detector must be one of " + detector_names() + ", not \"" +
                              std::string(detector.substr(0, 40)) + "\".");
    if (is_stream_detector(kind)) {
        q->mode = Mode::stream;
        q->stream = lcf->stream;
        if (Error e = apply_observe_arguments(args, &q->stream)) return e;
        StreamParams resolved = q->stream;
        return resolve_stream_params(&resolved);
    }
    q->mode = Mode::batch;
    q->batch = location_params(lcf);
    return apply_fit_arguments(args, "", &q->batch);
}

// Whether any Accept header of the request prefers CSV.
bool wants_csv(ngx_http_request_t *r) {
    std::string accept;
    const ngx_list_part_t *part = &r->headers_in.headers.part;
    for (; part != nullptr; part = part->next) {
        const ngx_table_elt_t *h = static_cast<const ngx_table_elt_t *>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; i++) {
            if (h[i].key.len != 6 || ngx_strncasecmp(h[i].key.data, (u_char *)"accept", 6) != 0) continue;
            if (!accept.empty()) accept += ',';
            accept.append(reinterpret_cast<char *>(h[i].value.data), h[i].value.len);
        }
    }
    return accepts_csv(accept);
}

void score_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;  // batch work, as a fit is: the event loops come first
    ScoreWork *work = static_cast<ScoreWork *>(data);
    try {
        std::string body = gather_body(work->pieces, work->length);
        TrainingData points;
        CsvTable table;
        if (work->csv_in) {
            work->error = parse_csv_body(std::string_view(body.data(), work->length), work->limits, work->csv_out,
                                         &table, &points);
        } else {
            work->error = parse_fit_body(body.data(), work->length, work->limits, &points);
        }
        if (work->error) return;
        std::string().swap(body);
        std::vector<PointScore> scores;
        ScoreSummary summary;
        summary.series_id = work->series;
        summary.only_anomalies = work->query.only_anomalies;
        switch (work->query.mode) {
        case Mode::version:
            score_with_image(*work->image, points, work->defaults, &scores);
            summary.kind = work->image->kind;
            summary.version = work->image->version;
            break;
        case Mode::batch:
            work->error = score_with_training(points, work->query.batch, work->min_points, work->defaults, &scores);
            summary.kind = work->query.batch.kind;
            break;
        case Mode::stream:
            work->error = score_with_stream(work->query.stream, points, work->threshold, stream_seed(work->series),
                                            work->now_ms, &scores);
            summary.kind = work->query.stream.kind;
            break;
        }
        if (work->error) return;
        work->kind = summary.kind;
        for (const PointScore &s : scores) {
            if (s.anomaly) work->anomalies++;
            if (s.anomaly_score >= work->top_score) {
                work->top_score = s.anomaly_score;
                work->top_own_score = s.score;
            }
        }
        if (work->csv_out) render_score_csv(&work->answer, summary, work->csv_in ? &table : nullptr, points, scores);
        else render_score_json(&work->answer, summary, points, scores);
    } catch (const std::bad_alloc &) {
        work->error = make_error(507, "out_of_memory", "The server has no memory for this score.");
    } catch (const std::exception &e) {
        work->error = make_error(500, "internal_error", "The score failed on the server; the error log says why.");
        try {
            work->log_detail = std::string("score failed: ") + e.what();
        } catch (const std::exception &) {
        }
    }
}

void finish(ngx_http_request_t *r, ngx_int_t rc) {
    record(zone_of(r)->my_stats().score, get_ctx(r)->body_read_ns, r->headers_out.status);
    ngx_connection_t *c = r->connection;
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

// The answer depends on Accept: caches must know.
void vary_on_accept(ngx_http_request_t *r) {
    ngx_table_elt_t *h = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h == nullptr) return;
    h->hash = 1;
    ngx_str_set(&h->key, "Vary");
    ngx_str_set(&h->value, "Accept");
}

ngx_int_t answer(ngx_http_request_t *r, ScoreWork *work) {
    if (!work->log_detail.empty())
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly: %s", work->log_detail.c_str());
    if (work->error) return send_error(r, work->error);
    RequestCtx *ctx = get_ctx(r);
    ctx->detector = work->kind;
    ctx->version = work->image != nullptr ? work->image->version : 0;
    ctx->result = work->anomalies > 0 ? 1 : 0;
    ctx->anomaly_score = work->top_score;
    ctx->score = work->top_own_score;
    vary_on_accept(r);
    return send_body(r, NGX_HTTP_OK, work->answer.data(), work->answer.size(),
                     work->csv_out ? "text/csv; charset=utf-8" : "application/json");
}

void score_done(ngx_event_t *ev) noexcept {
    ScoreWork *work = static_cast<ScoreWork *>(ev->data);
    ngx_http_request_t *r = work->request;
    if (!task_done_for(r, get_ctx(r))) {
        delete work;
        return;
    }
    ngx_int_t rc;
    try {
        rc = answer(r, work);
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    delete work;
    finish(r, rc);
}

bool is_csv_request(ngx_http_request_t *r) {
    const ngx_table_elt_t *type = r->headers_in.content_type;
    return type != nullptr && is_csv_media_type(view(type->value));
}

void score_run(ngx_http_request_t *r) noexcept;

// Returns NGX_DONE when a pool task answers.
ngx_int_t score_answer(ngx_http_request_t *r, RequestCtx *ctx) {
    LocConf *lcf = loc_conf(r);
    auto work = std::make_unique<ScoreWork>();
    if (Error e = read_query(r, &work->query)) return send_error(r, e);  // checked before: cannot fail here
    work->series.assign(view(ctx->series_id));
    if (work->query.mode == Mode::version) {
        const ModelHeader *found = nullptr;
        const Lookup lookup = zone_of(r)->find_model(work->series, work->query.version, &found);
        if (lookup == Lookup::not_loaded && wait_for_load(r, ctx, score_run)) return NGX_DONE;
        if (lookup != Lookup::found) return lookup_error(r, lookup);
        work->image_copy.resize((found->bytes + 7) / 8);
        std::memcpy(work->image_copy.data(), found, found->bytes);
        work->image = reinterpret_cast<const ModelHeader *>(work->image_copy.data());
    }
    ngx_http_request_body_t *rb = r->request_body;
    bool in_file = false;
    if (rb != nullptr) work->length = body_pieces(rb, &work->pieces, &in_file);
    work->csv_in = is_csv_request(r);
    work->csv_out = wants_csv(r);
    // Points to score: one is enough, equal values too; what trains on
    // them checks its own minimum and spread.
    work->limits.min_points = 1;
    work->limits.max_points = lcf->max_points;
    work->limits.any_spread = true;
    work->min_points = lcf->min_points;
    work->defaults = JudgeDefaults{lcf->sigma, static_cast<Tail>(lcf->tail)};
    work->threshold = lcf->threshold;
    work->now_ms = static_cast<std::int64_t>(ngx_time()) * 1000;
    work->request = r;
    if (!post_task(r, &work->task, work.get(), score_thread, score_done))
        return send_busy(r, "The thread pool queue is full; try again.", false);
    work.release();  // score_done frees it
    return NGX_DONE;
}

void score_run(ngx_http_request_t *r) noexcept {
    ngx_int_t rc;
    try {
        rc = score_answer(r, get_ctx(r));
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    if (rc == NGX_DONE) return;
    finish(r, rc);
}

void score_body_read(ngx_http_request_t *r) noexcept {
    get_ctx(r)->body_read_ns = monotonic_ns();
    score_run(r);
}

const char *kNotJsonOrCsv =
    "Send the series as JSON (Content-Type: application/json) or as CSV with a header row (Content-Type: "
    "text/csv).";

ngx_int_t score_start(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & NGX_HTTP_POST))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use POST for /score.");
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr || !watch_end(r, ctx)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        count_in_flight(r, zone_of(r)->my_stats().score);
        if (!series_id_of(r, &ctx->series_id)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!valid_series_id(ctx->series_id)) return reject(r, 400, "invalid_series_id", kBadSeriesId);
        // A bad query is refused before the body is read.
        Query query;
        if (Error bad = read_query(r, &query)) return reject(r, bad.status, bad.code, bad.detail.c_str());
        const ngx_table_elt_t *type = r->headers_in.content_type;
        if (type == nullptr || !(is_json_media_type(view(type->value)) || is_csv_media_type(view(type->value))))
            return reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", kNotJsonOrCsv);
        ngx_int_t rc = ngx_http_read_client_request_body(r, score_body_read);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace

ngx_int_t score_handler(ngx_http_request_t *r) noexcept {
    return counted(r, zone_of(r)->my_stats().score, score_start(r));
}

}  // namespace anomaly
