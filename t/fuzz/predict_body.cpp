// libFuzzer target: predict bodies.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::vector<char> body(size + anomaly::kJsonPadding, ' ');
    if (size) std::memcpy(body.data(), data, size);
    anomaly::PredictInput in;
    anomaly::Error e = anomaly::parse_predict_body(body.data(), size, &in);
    if (!e && !std::isfinite(in.value)) __builtin_trap();
    if (e && e.status != 400 && e.status != 422) __builtin_trap();
    return 0;
}
