// Batch scoring (CONTRACT section 7): every point of a posted series judged
// at once, with a stored version's image, with a batch detector trained on
// the series itself, or with a fresh stream run over it in order. Nothing
// here keeps anything: the caller owns the points, the image and the answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "csv.hpp"
#include "detector.hpp"
#include "error.hpp"
#include "model.hpp"
#include "stream.hpp"

namespace anomaly {

// What one point scored.
struct PointScore {
    bool anomaly = false;
    double anomaly_score = 0;  // 0..100
    double score = 0;          // the detector's own number
    bool has_expected = false;
    double expected_value = 0;
};

// Judges every point with an image (a stored version, or one just
// trained), exactly as /predict judges each of them. Allocates only *out.
void score_with_image(const ModelHeader &image, const TrainingData &points, const JudgeDefaults &defaults,
                      std::vector<PointScore> *out);

// Trains params.kind (a batch detector) on points and judges every point
// with the image: train()'s errors (422 constant_series, invalid_value), and
// 422 too_few_points under min_points.
Error score_with_training(const TrainingData &points, const DetectorParams &params, std::size_t min_points,
                          const JudgeDefaults &defaults, std::vector<PointScore> *out);

// Runs a fresh stream of params.kind over points in order, as /observe
// would over a series it has never seen: each point scored, then learned.
// A point is anomalous when observed_anomaly(p, threshold). seed: as a
// stream in the zone gets it from its series (stream_seed). Errors of
// resolve_stream_params (422 invalid_detector, invalid_parameter).
Error score_with_stream(StreamParams params, const TrainingData &points, double threshold, std::uint64_t seed,
                        std::int64_t now_ms, std::vector<PointScore> *out);

// The seed a stream of this series id gets in the zone (Zone::create_stream),
// so that ?detector= answers what /observe of a new series of that id would.
std::uint64_t stream_seed(std::string_view series_id) noexcept;

// What the answer says besides the points.
struct ScoreSummary {
    std::string_view series_id;
    DetectorKind kind = DetectorKind::three_sigma;
    std::uint32_t version = 0;     // the stored version judged with; 0: ?detector=, nothing stored
    bool only_anomalies = false;   // ?only=anomalies: the arrays hold the flagged points alone
};

// {"series_id":"s","version":"v3","detector":"three_sigma","points":n,"anomalies":k,
//  "timestamps":[..],"values":[..],"anomaly":[..],"anomaly_score":[..],
//  "expected_value":[..|null]}  ("version" only for a stored version)
// The detector's own number (score) is left out: a fifth of the answer's
// size and time for a number anomaly_score already orders the same way.
void render_score_json(std::string *out, const ScoreSummary &summary, const TrainingData &points,
                       const std::vector<PointScore> &scores);

// The input as CSV with anomaly and anomaly_score columns appended, CRLF
// line ends: table's header and fields when the input was CSV (table not
// nullptr, fields kept), else the columns timestamp,value.
void render_score_csv(std::string *out, const ScoreSummary &summary, const CsvTable *table,
                      const TrainingData &points, const std::vector<PointScore> &scores);

// Whether a Content-Type header declares CSV: text/csv, parameters
// (charset) allowed, case-insensitive.
bool is_csv_media_type(std::string_view content_type) noexcept;

// Whether an Accept header prefers CSV: text/csv among its media ranges
// with a quality above 0 and at least that of any range JSON matches
// (application/json, application/*, */*).
bool accepts_csv(std::string_view accept) noexcept;

}  // namespace anomaly
