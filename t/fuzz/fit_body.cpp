// libFuzzer target: fit bodies. Any input must give a 200-style success or
// one of the documented errors, never a crash, a hang or a read past the
// padding the server provides.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/model.hpp"
#include "core/parameters.hpp"
#include "core/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::vector<char> body(size + anomaly::kJsonPadding, ' ');
    if (size) std::memcpy(body.data(), data, size);
    anomaly::FitLimits limits;
    limits.min_points = 2;
    limits.max_points = 100000;
    anomaly::TrainingData out;
    std::string detector;
    anomaly::Error e = anomaly::parse_fit_body(body.data(), size, limits, &out, &detector);
    // The same bytes as a query string: parameters that parse are in range.
    anomaly::DetectorParams params;
    anomaly::Error q = anomaly::apply_fit_arguments(std::string_view(reinterpret_cast<const char *>(data), size),
                                                    detector, &params);
    if (q && q.status != 422) __builtin_trap();
    if (!q && (params.trees < 1 || params.trees > 1000 || params.sample < 2 || !(params.contamination > 0) ||
               !(params.contamination < 0.5) || params.sigma < 0 || params.sigma > 1000))
        __builtin_trap();
    if (!e) {
        if (out.timestamps.size() != out.values.size() || out.values.size() < 2) __builtin_trap();
        for (std::size_t i = 1; i < out.timestamps.size(); i++)
            if (out.timestamps[i] <= out.timestamps[i - 1]) __builtin_trap();
        // Every detector trains on what the parser accepts, or says why not.
        if (!q && out.values.size() <= 2000) {
            std::string image;
            anomaly::Error t = anomaly::train(out, params, &image);
            if (t ? t.status != 422 : !anomaly::check_image(image)) __builtin_trap();
        }
    } else if (e.status != 400 && e.status != 422) {
        __builtin_trap();
    }
    return 0;
}
