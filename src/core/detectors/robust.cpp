#include "core/detectors/robust.hpp"

#include <algorithm>
#include <cmath>

#include "core/request.hpp"

namespace anomaly {

namespace {

// The median of values[first, last), reordering them.
double median(std::vector<double> *values, std::size_t first, std::size_t last) {
    auto begin = values->begin() + static_cast<std::ptrdiff_t>(first);
    auto end = values->begin() + static_cast<std::ptrdiff_t>(last);
    const std::size_t n = last - first;
    auto mid = begin + static_cast<std::ptrdiff_t>(n / 2);
    std::nth_element(begin, mid, end);
    const double upper = *mid;
    if (n % 2 == 1) return upper;
    const double lower = *std::max_element(begin, mid);
    return lower + (upper - lower) / 2;  // no overflow near the largest double
}

}  // namespace

Band robust_band(std::vector<double> *values) {
    Band band{0, 0};
    const std::size_t n = values->size();
    if (n == 0) return band;
    band.centre = median(values, 0, n);
    double mean_abs = 0;
    for (double &v : *values) {
        v = std::fabs(v - band.centre);
        mean_abs += v / static_cast<double>(n);
    }
    // 1.4826 = 1 / Phi^-1(3/4): the MAD of normal data times this is its std.
    band.spread = 1.4826 * median(values, 0, n);
    // sqrt(pi / 2): the same for the mean absolute deviation.
    if (!(band.spread > 0)) band.spread = 1.2533141373155 * mean_abs;
    return band;
}

Error train_robust(const TrainingData &data, const DetectorParams &params, std::string *image) {
    std::vector<double> values = data.values;
    const Band band = robust_band(&values);
    if (!std::isfinite(band.centre) || !std::isfinite(band.spread))
        return make_error(422, "invalid_value",
                          "The values are too large in magnitude: their median or spread is not a finite number.");
    if (!(band.spread > 0))
        return make_error(422, "constant_series",
                          "The values vary too little: their spread rounds to 0, so nothing could be anomalous.");
    *image = band_image(data, params, band);
    return Error();
}

}  // namespace anomaly
