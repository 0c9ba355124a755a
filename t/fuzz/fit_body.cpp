// libFuzzer target: fit bodies. Any input must give a 200-style success or
// one of the documented errors, never a crash, a hang or a read past the
// padding the server provides.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::vector<char> body(size + anomaly::kJsonPadding, ' ');
    if (size) std::memcpy(body.data(), data, size);
    anomaly::FitLimits limits;
    limits.min_points = 2;
    limits.max_points = 100000;
    anomaly::TrainingData out;
    anomaly::Error e = anomaly::parse_fit_body(body.data(), size, limits, &out);
    if (!e) {
        if (out.timestamps.size() != out.values.size() || out.values.size() < 2) __builtin_trap();
        for (std::size_t i = 1; i < out.timestamps.size(); i++)
            if (out.timestamps[i] <= out.timestamps[i - 1]) __builtin_trap();
    } else if (e.status != 400 && e.status != 422) {
        __builtin_trap();
    }
    return 0;
}
