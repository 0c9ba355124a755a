// robust: the median and the median absolute deviation (scaled by 1.4826 to
// estimate a standard deviation for normal data). A few spikes in the
// training data move neither, so the band stays as narrow as the data's
// usual spread, where a mean and a standard deviation widen for good.
#pragma once

#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/model.hpp"

namespace anomaly {

// The median and the robust spread of values (reordered). The spread is the
// scaled MAD; when more than half the values are equal (MAD 0), the mean
// absolute deviation from the median scaled by sqrt(pi / 2); 0 only when
// every value is the same.
Band robust_band(std::vector<double> *values);

Error train_robust(const TrainingData &data, const DetectorParams &params, std::string *image);

}  // namespace anomaly
