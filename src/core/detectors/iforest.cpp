// Placeholder until the forest lands: every fit with it is refused.
#include "core/detectors/iforest.hpp"

namespace anomaly {

Error train_iforest(const TrainingData &, const DetectorParams &, std::string *) {
    return make_error(400, "invalid_detector", "iforest is not available in this build.");
}
bool check_iforest(std::string_view) noexcept { return false; }
Judgement judge_iforest(const ModelHeader &, double, std::int64_t) noexcept { return Judgement(); }

}  // namespace anomaly
