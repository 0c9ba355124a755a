// Helpers shared by the unit tests.
#pragma once

#include <cstdlib>
#include <string>

#include "core/request.hpp"

namespace anomaly_test {

// A request body as the server hands it to the parser: the JSON text
// followed by kJsonPadding readable bytes that are not part of the body.
// (Reserving capacity is not enough: the bytes past size() must exist.)
class Body {
public:
    explicit Body(std::string json) : length_(json.size()), text_(std::move(json)) {
        text_.append(anomaly::kJsonPadding, ' ');
    }
    const char *data() const { return text_.data(); }
    std::size_t size() const { return length_; }

private:
    std::size_t length_;
    std::string text_;
};

// A fresh directory under /tmp, left behind for inspection.
inline std::string temp_dir(const char *what) {
    std::string tmpl = std::string("/tmp/anomaly-unit-") + what + "-XXXXXX";
    char *made = mkdtemp(&tmpl[0]);
    if (made == nullptr) std::abort();
    return tmpl;
}

}  // namespace anomaly_test
