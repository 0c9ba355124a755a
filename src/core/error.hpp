// Errors the API answers with: an HTTP status, a stable machine code and one
// sentence a person understands (CONTRACT section 1).
#pragma once

#include <string>

namespace anomaly {

struct Error {
    int status = 0;          // HTTP status, 0 when there is no error
    const char *code = "";   // machine code, e.g. "invalid_value"
    std::string detail;      // one sentence for a person

    explicit operator bool() const { return status != 0; }
};

inline Error make_error(int status, const char *code, std::string detail) {
    Error e;
    e.status = status;
    e.code = code;
    e.detail = std::move(detail);
    return e;
}

}  // namespace anomaly
