// The $anomaly_* variables: the figures of /healthcheck, and what a request
// of this module saw (its version, result and score).

#include "ngx/http.hpp"

#include <cstring>

#include <cstdint>

#include "core/model.hpp"
#include "core/render.hpp"

namespace anomaly {
namespace {

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
    anomaly_score,
    detector,
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
        case Var::anomaly_score:
            if (ctx == nullptr || ctx->result < 0) return NGX_OK;
            len = format_double(buf, ctx->anomaly_score);
            break;
        case Var::detector: {
            if (ctx == nullptr || ctx->result < 0) return NGX_OK;
            const char *name = detector_name(ctx->detector);
            return set_var(r, v, name, std::strlen(name));
        }
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

}  // namespace

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
        {ngx_string("anomaly_anomaly_score"), Var::anomaly_score, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_detector"), Var::detector, NGX_HTTP_VAR_NOCACHEABLE},
    };
    for (VariableSpec &spec : specs) {
        ngx_http_variable_t *var = ngx_http_add_variable(cf, &spec.name, spec.flags);
        if (var == nullptr) return NGX_ERROR;
        var->get_handler = variable;
        var->data = static_cast<uintptr_t>(spec.var);
    }
    return NGX_OK;
}

}  // namespace anomaly
