// iforest: an Isolation Forest (Liu, Ting and Zhou, ICDM 2008) over the
// value, its hour of the day and its day of the week. Points that a few
// random axis-parallel cuts isolate are anomalies: shapes no band describes,
// such as a value normal on weekdays seen on a Sunday. The threshold is the
// training scores' (1 - contamination) quantile.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/model.hpp"

namespace anomaly {

Error train_iforest(const TrainingData &data, const DetectorParams &params, std::string *image);
// The forest's part of an image whose header check_image has checked.
bool check_iforest(std::string_view image) noexcept;
Judgement judge_iforest(const ModelHeader &image, double value, std::int64_t timestamp) noexcept;

}  // namespace anomaly
