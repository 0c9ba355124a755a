// /plot: an SVG of one version's training data, or of a stream's recent points. Drawn per pixel column
// (each column keeps its min and max), so the output stays bounded however
// many points were trained.
//
// What a plot draws is summarised once, when the version is fitted
// (summarize_for_plot), and stored beside it: a /plot then reads a few KB
// instead of the whole training data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "detector.hpp"
#include "model.hpp"
#include "stream.hpp"

namespace anomaly {

constexpr int kPlotColumns = 960;  // pixel columns of the plot area

// The training data as the plot sees it: for each pixel column that holds at
// least one point, the lowest and the highest value in it. The band comes
// from the model and anomaly_sigma when drawing, so the extremes are all it
// needs to mark training points outside the band (one mark per column and side).
struct PlotEnvelope {
    struct Column {
        std::uint16_t column = 0;  // 0 .. kPlotColumns - 1
        double min = 0, max = 0;
    };
    std::uint64_t points = 0;           // training points summarised
    std::int64_t first_timestamp = 0;   // the time axis: column 0 starts here
    std::int64_t last_timestamp = 0;    // and column kPlotColumns - 1 ends here
    std::vector<Column> columns;        // non-empty columns only, ascending
};

// One pass over the data. timestamps must increase (TrainingData's rule).
PlotEnvelope summarize_for_plot(const TrainingData &data);

struct PlotInput {
    std::string_view series_id;
    const ModelHeader *model = nullptr;  // the version's image
    const PlotEnvelope *envelope = nullptr;
    double sigma = 3;                    // the location's, where the version stores none
    Tail tail = Tail::both;
};

// What is drawn per detector: three_sigma and robust a flat band, seasonal
// a band that follows the season (judged at each pixel column's time),
// iforest no band; every detector marks the training extremes it flags.

// A complete SVG document (image/svg+xml), at most a few hundred KB.
std::string render_plot(const PlotInput &in);
// Draws straight from training data (in.envelope is ignored): summarises it first.
std::string render_plot(const PlotInput &in, const TrainingData &data);

// A stream's plot (/plot?series_id=X&stream=1): the recent points the
// stream keeps (StreamHeader::recent_capacity of them, copied out of the
// zone under the stream's lock), the values as a line with the points whose
// anomaly_score reaches the threshold marked, and under it a strip with the
// anomaly_score (0-100) and the threshold dashed. More points than pixel
// columns are drawn per column (min and max of the values, the highest
// score, one mark at the most anomalous point), so the size stays bounded
// (under 150 KB) for any number of points.
struct StreamPlotInput {
    std::string_view series_id;
    std::string_view detector;           // detector_name of the stream's kind
    std::uint64_t points_processed = 0;  // points the stream has learned
    std::uint32_t recent_capacity = 0;   // points the stream keeps for plots (0: none)
    double threshold = 70;               // anomaly_threshold of the plot's location
    std::vector<StreamRecent> recent;    // oldest first
};

// A complete SVG document (image/svg+xml). Without recent points it says why
// (the stream keeps none, or has learned none yet) and how to keep them.
std::string render_stream_plot(const StreamPlotInput &in);

}  // namespace anomaly
