// /plot: an SVG of one version's training data. Drawn per pixel column
// (each column keeps its min and max), so the output stays bounded however
// many points were trained.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "detector.hpp"

namespace anomaly {

struct PlotInput {
    std::string_view series_id;
    const Model *model = nullptr;
    const TrainingData *data = nullptr;
    double sigma = 3;
    Tail tail = Tail::both;
};

constexpr int kPlotColumns = 960;  // pixel columns of the plot area

// A complete SVG document (image/svg+xml), at most a few hundred KB.
std::string render_plot(const PlotInput &in);

}  // namespace anomaly
