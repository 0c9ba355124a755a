// The anomaly history (CONTRACT section 8): /anomalies, /anomalies/summary.

#include "ngx/http.hpp"

namespace anomaly {

void history_note(ngx_http_request_t *, const ScoredAnswer &) noexcept {}

ngx_int_t anomalies_handler(ngx_http_request_t *r) noexcept {
    return reject(r, 501, "not_implemented", "/anomalies is not built yet.");
}

ngx_int_t anomalies_summary_handler(ngx_http_request_t *r) noexcept {
    return reject(r, 501, "not_implemented", "/anomalies/summary is not built yet.");
}

}  // namespace anomaly
