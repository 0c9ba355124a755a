// /score (CONTRACT section 7): every point of a posted series scored at once.

#include "ngx/http.hpp"

namespace anomaly {

ngx_int_t score_handler(ngx_http_request_t *r) noexcept {
    return reject(r, 501, "not_implemented", "/score is not built yet.");
}

}  // namespace anomaly
