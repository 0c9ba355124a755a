// libFuzzer target: observe bodies (one point, or many in either fit shape).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::vector<char> body(size + anomaly::kJsonPadding, ' ');
    if (size) std::memcpy(body.data(), data, size);
    anomaly::ObserveInput in;
    anomaly::Error e = anomaly::parse_observe_body(body.data(), size, 1000, &in);
    if (e && e.status != 400 && e.status != 422) __builtin_trap();
    if (!e) {
        const auto &p = in.points;
        if (p.values.empty() || p.values.size() != p.timestamps.size() || p.values.size() > 1000) __builtin_trap();
        if (!in.many && p.values.size() != 1) __builtin_trap();
        for (std::size_t i = 0; i < p.values.size(); i++)
            if (!std::isfinite(p.values[i]) || p.timestamps[i] < 0 || p.timestamps[i] > anomaly::kMaxTimestamp)
                __builtin_trap();
    }
    return 0;
}
