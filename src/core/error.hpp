// Errors the API answers with: an HTTP status, a stable machine code and one
// sentence a person understands (CONTRACT section 1).
#pragma once

#include <string>
#include <string_view>

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

// The part of a system error that may be shown to any client: the reason at
// its end ("No space left on device"), without the file names and paths
// before it, which stay in the error log. "" when there is none.
inline std::string_view public_reason(std::string_view error) {
    const std::size_t colon = error.rfind(": ");
    std::string_view reason = colon == std::string_view::npos ? error : error.substr(colon + 2);
    while (!reason.empty() && (reason.back() == '.' || reason.back() == ' ')) reason.remove_suffix(1);
    if (reason.empty() || reason.find('/') != std::string_view::npos || reason.size() > 80) return {};
    return reason;
}

}  // namespace anomaly
