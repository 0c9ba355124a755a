// /predict: the body in memory, the model from the zone, the answer on the
// event loop. A predict that arrives while the zone is being filled waits.

#include "ngx/http.hpp"

#include <exception>
#include <string_view>

#include "core/render.hpp"
#include "core/request.hpp"
#include "core/series.hpp"

namespace anomaly {
namespace {

constexpr std::size_t kMaxPredictBody = 64 * 1024;

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

    const ModelHeader *model = nullptr;
    SeriesNode *node = nullptr;
    const Lookup lookup = zone->find_model(
        std::string_view(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len), version, &model, &node);
    if (lookup != Lookup::found) return lookup_error(r, lookup);

    // Judged with the image in place, the zone's lock already let go: a
    // published image never changes (see SeriesNode::versions). A point
    // without a timestamp is judged at the time it arrives.
    const std::int64_t at = input.has_timestamp ? input.timestamp : static_cast<std::int64_t>(ngx_time());
    const Judgement judgement = judge(*model, input.value, at, JudgeDefaults{lcf->sigma, static_cast<Tail>(lcf->tail)});
    ctx->version = model->version;
    ctx->detector = model->kind;
    ctx->result = judgement.anomaly ? 1 : 0;
    ctx->score = judgement.score;
    ctx->anomaly_score = judgement.anomaly_score;
    if (judgement.anomaly) __atomic_fetch_add(&zone->my_stats().anomalies, 1, __ATOMIC_RELAXED);
    zone->count_prediction(model->kind);
    const ScoredPoint point{at, input.value, judgement.anomaly_score, judgement.score};
    answered(r, ScoredAnswer{std::string_view(reinterpret_cast<char *>(ctx->series_id.data), ctx->series_id.len),
                             model->kind, model->version, 1, &point, judgement.anomaly ? 1u : 0u, node});

    char out[kPredictionMaxLength];
    size_t n = render_prediction(out, judgement, model->version, model->kind);
    return send_body(r, NGX_HTTP_OK, out, n);
}

void predict_run(ngx_http_request_t *r) noexcept {
    ngx_int_t rc;
    try {
        RequestCtx *ctx = get_ctx(r);
        if (wait_for_load(r, ctx, predict_run)) return;
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

}  // namespace

ngx_int_t predict_handler(ngx_http_request_t *r) noexcept {
    return counted(r, zone_of(r)->my_stats().predict, predict_start(r));
}

}  // namespace anomaly
