// three_sigma: the challenge's model, exactly. Mean and population standard
// deviation of the training values; a point is anomalous when
// |value - mean| > k * std (or one-sided, anomaly_tail).
#pragma once

#include <string>

#include "core/error.hpp"
#include "core/model.hpp"

namespace anomaly {

Error train_three_sigma(const TrainingData &data, const DetectorParams &params, std::string *image);

}  // namespace anomaly
