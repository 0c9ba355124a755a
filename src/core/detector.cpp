#include "core/detector.hpp"

#include <cmath>

namespace anomaly {

// Two passes: the mean first, then squared deviations from it, each summed
// with Neumaier compensation. A one-pass sum of squares loses everything to
// cancellation for values near 1e9 with a spread of 1e-3.
Model train_three_sigma(const TrainingData &data) {
    Model m;
    m.kind = DetectorKind::three_sigma;
    const std::size_t n = data.values.size();
    m.points = n;
    if (n == 0) return m;
    m.first_timestamp = data.timestamps.empty() ? 0 : data.timestamps.front();
    m.last_timestamp = data.timestamps.empty() ? 0 : data.timestamps.back();

    double sum = 0, c = 0;
    for (double v : data.values) {
        double t = sum + v;
        c += std::fabs(sum) >= std::fabs(v) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    const double mean = (sum + c) / static_cast<double>(n);

    double sq = 0, csq = 0, dev = 0;
    for (double v : data.values) {
        const double d = v - mean;
        dev += d;
        const double x = d * d;
        double t = sq + x;
        csq += sq >= x ? (sq - t) + x : (x - t) + sq;
        sq = t;
    }
    // The residual sum of deviations corrects the mean's rounding (Chan et al.).
    double var = ((sq + csq) - dev * dev / static_cast<double>(n)) / static_cast<double>(n);
    if (var < 0) var = 0;
    m.mean = mean;
    m.std = std::sqrt(var);

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
