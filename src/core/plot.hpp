// /plot: an SVG of one version's training data. Drawn per pixel column
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

}  // namespace anomaly
