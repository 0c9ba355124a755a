// Alerts (CONTRACT section 8): an anomalous answer of a location with
// anomaly_alert issues a background subrequest to that location, as nginx's
// mirror does, so that the operator's own proxy_pass delivers it (timeouts,
// TLS, retries are nginx's). The subrequest's $anomaly_alert_* variables
// describe the event; its body is $anomaly_alert_body. At most one alert per
// series per anomaly_alert_interval, decided in the zone across workers.
//
// The client's answer does not wait: the subrequest is posted, and runs
// after the main request's handler returns (ngx_http_run_posted_requests,
// which every path calling answered() reaches). nginx keeps the client's
// connection until background subrequests end, so the next request on a
// keepalive connection waits for the delivery: the alert location's
// proxy_*_timeout bound that.

#include "ngx/http.hpp"

#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "core/alert.hpp"

namespace anomaly {
namespace {

std::int64_t monotonic_ms() {
    const std::int64_t ms = static_cast<std::int64_t>(monotonic_ns() / 1000000ull);
    return ms > 0 ? ms : 1;
}

// Our lines name the location and status themselves: the connection's
// current action ("sending to client", of the main request) would mislead.
void log_plain(ngx_uint_t level, ngx_log_t *log, const char *fmt, const ngx_str_t &location, ngx_uint_t status,
               const char *series) {
    char *action = log->action;
    log->action = nullptr;
    if (status != 0) {
        ngx_log_error(level, log, 0, fmt, &location, status, series);
    } else {
        ngx_log_error(level, log, 0, fmt, &location, series);
    }
    log->action = action;
}

// Deliveries that fail are logged once, when they start failing, and once
// when one succeeds again: a webhook that is down would otherwise write a
// line per anomalous answer.
void delivered(AlertState *st, const Alert &alert, bool ok, ngx_uint_t status, ngx_log_t *log) {
    if (ok) {
        __atomic_fetch_add(&st->delivered, 1, __ATOMIC_RELAXED);
        std::uint32_t was = 1;
        if (__atomic_load_n(&st->failing, __ATOMIC_RELAXED) &&
            __atomic_compare_exchange_n(&st->failing, &was, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            log_plain(NGX_LOG_NOTICE, log, "anomaly alerts to \"%V\" are delivered again (status %ui%s)",
                      alert.location, status, "");
        return;
    }
    __atomic_fetch_add(&st->failed, 1, __ATOMIC_RELAXED);
    std::uint32_t was = 0;
    if (!__atomic_load_n(&st->failing, __ATOMIC_RELAXED) &&
        __atomic_compare_exchange_n(&st->failing, &was, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        if (status != 0) {
            log_plain(NGX_LOG_WARN, log,
                      "anomaly alerts to \"%V\" are failing: status %ui for series \"%s\"; further failures are "
                      "counted in anomaly_alerts_total{outcome=\"failed\"}, not logged, until one is delivered",
                      alert.location, status, alert.series_id.c_str());
        } else {
            log_plain(NGX_LOG_WARN, log,
                      "anomaly alerts to \"%V\" are failing: the alert for series \"%s\" could not be issued or "
                      "ended without a status; further failures are counted in "
                      "anomaly_alerts_total{outcome=\"failed\"}, not logged, until one is delivered",
                      alert.location, 0, alert.series_id.c_str());
        }
    }
}

AlertState *alert_state() { return process_zone != nullptr ? process_zone->alerts() : nullptr; }

// How the subrequest ended: rc is what it was finalized with (an HTTP status
// for nginx's own errors, 502 and 504 from proxy_pass among them), else its
// response's status. nginx may finalize it more than once (an error page
// after an error): the first end counts.
ngx_int_t alert_ended(ngx_http_request_t *sr, void *data, ngx_int_t rc) noexcept {
    Alert *alert = static_cast<Alert *>(data);
    if (alert->ended || rc == NGX_AGAIN || rc == NGX_DONE) return rc;
    try {
        alert->ended = true;
        // The delivery logged to the alert location's error_log (see
        // alert_log_phase); the connection's log is the client's request's again.
        const auto *main_clcf =
            static_cast<ngx_http_core_loc_conf_t *>(ngx_http_get_module_loc_conf(sr->main, ngx_http_core_module));
        ngx_set_connection_log(sr->connection, main_clcf->error_log);
        ngx_uint_t status = 0;
        if (rc >= NGX_HTTP_CONTINUE) status = static_cast<ngx_uint_t>(rc);
        else if (rc == NGX_OK) status = sr->headers_out.status;
        AlertState *st = alert_state();
        if (st != nullptr) delivered(st, *alert, status >= 200 && status < 300, status, sr->connection->log);
    } catch (...) {
    }
    return rc;
}

// The request's pool goes after every subrequest has ended: an alert whose
// end nginx never reported (the connection was torn down) counts as failed.
void alert_cleanup(void *data) noexcept {
    Alert *alert = static_cast<Alert *>(data);
    if (!alert->ended) {
        alert->ended = true;
        AlertState *st = alert_state();
        if (st != nullptr) delivered(st, *alert, false, 0, ngx_cycle->log);
    }
    alert->~Alert();
}

ngx_str_t str_of(const char *s) {
    return ngx_str_t{ngx_strlen(s), reinterpret_cast<u_char *>(const_cast<char *>(s))};
}

ngx_table_elt_t *add_header(ngx_list_t *headers, const char *lowcase, const char *key, ngx_str_t value) {
    ngx_table_elt_t *h = static_cast<ngx_table_elt_t *>(ngx_list_push(headers));
    if (h == nullptr) return nullptr;
    h->key.data = reinterpret_cast<u_char *>(const_cast<char *>(key));
    h->key.len = ngx_strlen(key);
    h->lowcase_key = reinterpret_cast<u_char *>(const_cast<char *>(lowcase));
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    h->value = value;
    return h;
}

// The subrequest: a POST of the alert's JSON body, with headers of its own.
// None of the client's headers go with it (its Authorization or cookies are
// not the webhook's business); the location adds what the webhook needs.
// Everything it needs is allocated first: once issued it cannot be taken back.
bool issue(ngx_http_request_t *r, Alert *alert) {
    auto *ps = static_cast<ngx_http_post_subrequest_t *>(ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t)));
    void *ctx_mem = ngx_pcalloc(r->pool, sizeof(RequestCtx));
    auto *rb = static_cast<ngx_http_request_body_t *>(ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t)));
    auto *b = static_cast<ngx_buf_t *>(ngx_pcalloc(r->pool, sizeof(ngx_buf_t)));
    ngx_chain_t *cl = ngx_alloc_chain_link(r->pool);
    u_char *length = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_OFF_T_LEN));
    if (ps == nullptr || ctx_mem == nullptr || rb == nullptr || b == nullptr || cl == nullptr || length == nullptr)
        return false;
    ps->handler = alert_ended;
    ps->data = alert;

    b->pos = reinterpret_cast<u_char *>(alert->body.data());
    b->last = b->pos + alert->body.size();
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;
    cl->buf = b;
    cl->next = nullptr;
    rb->bufs = cl;

    ngx_http_headers_in_t h;
    ngx_memzero(&h, sizeof(ngx_http_headers_in_t));
    h.server = r->headers_in.server;
    if (ngx_list_init(&h.headers, r->pool, 2, sizeof(ngx_table_elt_t)) != NGX_OK) return false;
    h.content_type = add_header(&h.headers, "content-type", "Content-Type", str_of("application/json"));
    ngx_str_t n{static_cast<size_t>(ngx_sprintf(length, "%uz", alert->body.size()) - length), length};
    h.content_length = add_header(&h.headers, "content-length", "Content-Length", n);
    if (h.content_type == nullptr || h.content_length == nullptr) return false;
    h.content_length_n = static_cast<off_t>(alert->body.size());

    ngx_http_request_t *sr = nullptr;
    if (ngx_http_subrequest(r, &alert->location, nullptr, &sr, ps, NGX_HTTP_SUBREQUEST_BACKGROUND) != NGX_OK)
        return false;
    // From here nginx runs it, after this request's handler returns, and
    // reports its end to alert_ended.
    sr->header_only = 1;  // its response is read and dropped, as mirror's
    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");
    sr->request_body = rb;
    sr->headers_in = h;

    RequestCtx *ctx = new (ctx_mem) RequestCtx();
    ctx->request = sr;
    ctx->alert = alert;
    ctx->series_id.data = reinterpret_cast<u_char *>(alert->series_id.data());
    ctx->series_id.len = alert->series_id.size();
    ctx->version = alert->event.version;
    ctx->result = 1;
    ctx->score = alert->event.score;
    ctx->anomaly_score = alert->event.anomaly_score;
    ctx->detector = alert->event.detector;
    ngx_http_set_ctx(sr, ctx, ngx_http_anomaly_module);
    return true;
}

// nginx applies a location's error_log to main requests only: the alert
// location's applies to its delivery here, so that an operator can send
// proxy_pass's own lines of each failed delivery (connect() failed, upstream
// timed out) elsewhere than the error log, where failures are logged once.
ngx_int_t alert_log_phase(ngx_http_request_t *r) noexcept {
    if (r == r->main) return NGX_DECLINED;
    const RequestCtx *ctx = get_ctx(r);
    if (ctx == nullptr || ctx->alert == nullptr) return NGX_DECLINED;
    const auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    ngx_set_connection_log(r->connection, clcf->error_log);
    return NGX_DECLINED;
}

}  // namespace

ngx_int_t alert_postconfiguration(ngx_conf_t *cf) noexcept {
    auto *cmcf = static_cast<ngx_http_core_main_conf_t *>(ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    auto *h = static_cast<ngx_http_handler_pt *>(ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers));
    if (h == nullptr) return NGX_ERROR;
    *h = alert_log_phase;
    return NGX_OK;
}

void alert_note(ngx_http_request_t *r, const ScoredAnswer &answer) noexcept {
    if (answer.anomaly_count == 0) return;
    const LocConf *lcf = loc_conf(r);
    if (lcf->alert.len == 0) return;
    // An alert location that predicts or observes itself raises no alert of its own.
    if (r != r->main && r->post_subrequest != nullptr && r->post_subrequest->handler == alert_ended) return;
    AlertState *st = alert_state();
    if (st == nullptr) return;
    try {
        const ScoredPoint &point = answer.anomalies[alert_point(answer.anomalies, answer.anomaly_count)];
        const AlertDecision d = decide_alert(st->slots, st->slot_count, alert_key(answer.series_id), monotonic_ms(),
                                             static_cast<std::int64_t>(lcf->alert_interval));
        if (!d.send) {
            __atomic_fetch_add(&st->suppressed, 1, __ATOMIC_RELAXED);
            if (d.untracked) __atomic_fetch_add(&st->untracked, 1, __ATOMIC_RELAXED);
            return;
        }

        ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, sizeof(Alert));
        if (cln == nullptr) {
            __atomic_fetch_add(&st->failed, 1, __ATOMIC_RELAXED);
            return;
        }
        Alert *alert = new (cln->data) Alert();
        cln->handler = alert_cleanup;  // set once the Alert exists
        cln->data = alert;
        alert->series_id.assign(answer.series_id);
        AlertEvent &event = alert->event;
        event.series_id = alert->series_id;
        event.timestamp = point.timestamp;
        event.value = point.value;
        event.anomaly_score = point.anomaly_score;
        event.score = point.score;
        event.detector = answer.detector;
        event.version = answer.version;
        event.anomalies = answer.anomaly_count;
        event.suppressed = d.suppressed;
        alert->location = lcf->alert;
        alert->body = render_alert_body(event);

        if (!issue(r, alert)) {
            alert->ended = true;
            delivered(st, *alert, false, 0, r->connection->log);
            return;
        }
        __atomic_fetch_add(&st->sent, 1, __ATOMIC_RELAXED);
    } catch (const std::exception &e) {
        // An Alert made is counted as failed when the request's pool goes.
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly alert not issued: %s", e.what());
    }
}

}  // namespace anomaly
