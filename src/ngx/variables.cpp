// The $anomaly_* variables: the figures of /healthcheck, and what a request
// of this module saw (its version, result and score), and in an alert's
// subrequest the event it describes.

#include "ngx/http.hpp"

#include <cstring>

#include <cstdint>

#include "core/alert.hpp"
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
    // An alert subrequest's event (alert.cpp)
    alert_series,
    alert_timestamp,
    alert_time,
    alert_value,
    alert_anomaly_score,
    alert_score,
    alert_detector,
    alert_version,
    alert_anomalies,
    alert_suppressed,
    alert_body,
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

size_t print_whole(char *buf, std::uint64_t n) {
    return static_cast<size_t>(ngx_sprintf(reinterpret_cast<u_char *>(buf), "%uL", n) - reinterpret_cast<u_char *>(buf));
}

// $anomaly_alert_*: found in an alert's subrequest only.
ngx_int_t alert_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, Var var, const Alert &alert) {
    const AlertEvent &a = alert.event;
    char buf[64];
    size_t len = 0;
    switch (var) {
    case Var::alert_series: return set_var(r, v, alert.series_id.data(), alert.series_id.size());
    case Var::alert_body: return set_var(r, v, alert.body.data(), alert.body.size());
    case Var::alert_timestamp:
        len = static_cast<size_t>(ngx_sprintf(reinterpret_cast<u_char *>(buf), "%L", a.timestamp) -
                                  reinterpret_cast<u_char *>(buf));
        break;
    case Var::alert_time: {
        const std::string t = iso8601_seconds(a.timestamp);
        return set_var(r, v, t.data(), t.size());
    }
    case Var::alert_value: len = format_double(buf, a.value); break;
    case Var::alert_anomaly_score: len = format_double(buf, a.anomaly_score); break;
    case Var::alert_score: len = format_double(buf, a.score); break;
    case Var::alert_detector: {
        const char *name = detector_name(a.detector);
        return set_var(r, v, name, std::strlen(name));
    }
    case Var::alert_version:
        if (a.version == 0) return set_var(r, v, "", 0);  // a stream: no version
        len = static_cast<size_t>(ngx_sprintf(reinterpret_cast<u_char *>(buf), "v%uD", a.version) -
                                  reinterpret_cast<u_char *>(buf));
        break;
    case Var::alert_anomalies: len = print_whole(buf, a.anomalies); break;
    default: len = print_whole(buf, a.suppressed); break;
    }
    return set_var(r, v, buf, len);
}

ngx_int_t variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data) noexcept {
    try {
        v->not_found = 1;
        char buf[64];
        size_t len = 0;
        RequestCtx *ctx = get_ctx(r);
        Zone *zone = zone_of(r);
        if (static_cast<Var>(data) >= Var::alert_series) {
            if (ctx == nullptr || ctx->alert == nullptr) return NGX_OK;
            return alert_variable(r, v, static_cast<Var>(data), *ctx->alert);
        }
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
        {ngx_string("anomaly_alert_series"), Var::alert_series, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_timestamp"), Var::alert_timestamp, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_time"), Var::alert_time, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_value"), Var::alert_value, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_anomaly_score"), Var::alert_anomaly_score, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_score"), Var::alert_score, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_detector"), Var::alert_detector, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_version"), Var::alert_version, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_anomalies"), Var::alert_anomalies, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_suppressed"), Var::alert_suppressed, NGX_HTTP_VAR_NOCACHEABLE},
        {ngx_string("anomaly_alert_body"), Var::alert_body, NGX_HTTP_VAR_NOCACHEABLE},
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
