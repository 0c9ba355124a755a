#include "core/detector.hpp"

#include <algorithm>
#include <cmath>

namespace anomaly {

// Two passes: the mean first, then squared deviations from it, each summed
// with Neumaier compensation. A one-pass sum of squares loses everything to
// cancellation for values near 1e9 with a spread of 1e-3.
//
// The sums run on values scaled by a power of two that brings the largest
// magnitude near 1, which is exact, so that values near the largest double
// do not overflow the sums and a spread of 1e-200 does not underflow when
// squared.
Model train_three_sigma(const TrainingData &data) {
    Model m;
    m.kind = DetectorKind::three_sigma;
    const std::size_t n = data.values.size();
    m.points = n;
    if (n == 0) return m;
    m.first_timestamp = data.timestamps.empty() ? 0 : data.timestamps.front();
    m.last_timestamp = data.timestamps.empty() ? 0 : data.timestamps.back();

    double largest = 0;
    for (double v : data.values) largest = std::max(largest, std::fabs(v));
    int exponent = 0;
    std::frexp(largest, &exponent);
    exponent = std::clamp(exponent, -1000, 1000);  // keeps both factors finite
    const double scale = std::ldexp(1.0, -exponent), unscale = std::ldexp(1.0, exponent);

    double sum = 0, c = 0;
    for (double value : data.values) {
        const double v = value * scale;
        double t = sum + v;
        c += std::fabs(sum) >= std::fabs(v) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    const double mean = (sum + c) / static_cast<double>(n);

    double sq = 0, csq = 0, dev = 0;
    for (double value : data.values) {
        const double d = value * scale - mean;
        dev += d;
        const double x = d * d;
        double t = sq + x;
        csq += sq >= x ? (sq - t) + x : (x - t) + sq;
        sq = t;
    }
    // The residual sum of deviations corrects the mean's rounding (Chan et al.).
    double var = ((sq + csq) - dev * dev / static_cast<double>(n)) / static_cast<double>(n);
    if (var < 0) var = 0;
    m.mean = mean * unscale;
    m.std = std::sqrt(var) * unscale;

    // Identical values must give exactly 0 so constant series are recognised.
    bool constant = true;
    for (double v : data.values) {
        if (v != data.values[0]) {
            constant = false;
            break;
        }
    }
    if (constant) {
        m.mean = data.values[0];
        m.std = 0;
    }
    return m;
}

Prediction predict(const Model &model, double value, double sigma, Tail tail) noexcept {
    Prediction p;
    p.score = (value - model.mean) / model.std;
    switch (tail) {
    case Tail::both: p.anomaly = std::fabs(value - model.mean) > sigma * model.std; break;
    case Tail::upper: p.anomaly = value > model.mean + sigma * model.std; break;
    case Tail::lower: p.anomaly = value < model.mean - sigma * model.std; break;
    }
    return p;
}

}  // namespace anomaly
