#include "core/detectors/seasonal.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/detectors/robust.hpp"

namespace anomaly {

namespace {

// A bucket's spread is at least this share of the overall one: an hour whose
// training values were nearly identical would otherwise flag any wobble.
constexpr double kSpreadFloor = 0.05;

const SeasonalLayout &layout_of(const ModelHeader &image) {
    return *reinterpret_cast<const SeasonalLayout *>(reinterpret_cast<const unsigned char *>(&image) +
                                                     sizeof(ModelHeader));
}

const Band *buckets_of(const ModelHeader &image) {
    return reinterpret_cast<const Band *>(reinterpret_cast<const unsigned char *>(&image) + sizeof(ModelHeader) +
                                          sizeof(SeasonalLayout));
}

}  // namespace

std::uint32_t seasonal_buckets(Season season) noexcept { return season == Season::week ? 168 : 24; }

std::uint32_t seasonal_bucket(Season season, std::int64_t timestamp) noexcept {
    // Floor division: timestamps before 1970 are not accepted by fits, but a
    // predict may send one.
    std::int64_t day = timestamp / 86400, second = timestamp % 86400;
    if (second < 0) {
        second += 86400;
        day -= 1;
    }
    const auto hour = static_cast<std::uint32_t>(second / 3600);
    if (season != Season::week) return hour;
    // 1970-01-01 was a Thursday: day 0 is weekday 3 counting Monday as 0.
    const auto weekday = static_cast<std::uint32_t>(((day + 3) % 7 + 7) % 7);
    return weekday * 24 + hour;
}

Error train_seasonal(const TrainingData &data, const DetectorParams &params, std::string *image) {
    const Season season = params.season == Season::week ? Season::week : Season::day;
    const std::uint32_t buckets = seasonal_buckets(season);
    std::vector<std::vector<double>> by_bucket(buckets);
    for (std::size_t i = 0; i < data.values.size(); i++)
        by_bucket[seasonal_bucket(season, data.timestamps[i])].push_back(data.values[i]);

    std::vector<double> all = data.values;
    SeasonalLayout layout;
    layout.fallback = robust_band(&all);
    layout.buckets = buckets;
    layout.zero = 0;
    if (!std::isfinite(layout.fallback.centre) || !std::isfinite(layout.fallback.spread))
        return make_error(422, "invalid_value",
                          "The values are too large in magnitude: their median or spread is not a finite number.");
    if (!(layout.fallback.spread > 0))
        return make_error(422, "constant_series",
                          "The values vary too little: their spread rounds to 0, so nothing could be anomalous.");
    const double floor = kSpreadFloor * layout.fallback.spread;

    const std::size_t bytes = sizeof(ModelHeader) + sizeof(SeasonalLayout) + buckets * sizeof(Band);
    image->assign(bytes, '\0');
    DetectorParams p = params;
    p.season = season;
    const ModelHeader h = new_header(data, p, bytes);
    std::memcpy(&(*image)[0], &h, sizeof(h));
    std::memcpy(&(*image)[sizeof(h)], &layout, sizeof(layout));
    for (std::uint32_t b = 0; b < buckets; b++) {
        Band band = layout.fallback;
        if (by_bucket[b].size() >= kSeasonalMinBucketPoints) {
            band = robust_band(&by_bucket[b]);
            if (!(band.spread >= floor)) band.spread = floor;
        }
        std::memcpy(&(*image)[sizeof(h) + sizeof(layout) + b * sizeof(Band)], &band, sizeof(band));
    }
    return Error();
}

bool check_seasonal(std::string_view image) noexcept {
    ModelHeader h;
    std::memcpy(&h, image.data(), sizeof(h));
    if (h.season != Season::day && h.season != Season::week) return false;
    const std::uint32_t buckets = seasonal_buckets(h.season);
    if (image.size() != sizeof(ModelHeader) + sizeof(SeasonalLayout) + buckets * sizeof(Band)) return false;
    SeasonalLayout layout;
    std::memcpy(&layout, image.data() + sizeof(h), sizeof(layout));
    if (layout.buckets != buckets || layout.zero != 0) return false;
    for (std::uint32_t b = 0; b <= buckets; b++) {
        Band band = layout.fallback;
        if (b < buckets) std::memcpy(&band, image.data() + sizeof(h) + sizeof(layout) + b * sizeof(Band), sizeof(band));
        if (!std::isfinite(band.centre) || !std::isfinite(band.spread) || !(band.spread > 0)) return false;
    }
    return true;
}

Band seasonal_band(const ModelHeader &image, std::int64_t timestamp) noexcept {
    const std::uint32_t b = seasonal_bucket(image.season, timestamp);
    if (b >= layout_of(image).buckets) return layout_of(image).fallback;
    return buckets_of(image)[b];
}

}  // namespace anomaly
