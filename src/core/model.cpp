#include "core/model.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/detectors/iforest.hpp"
#include "core/detectors/robust.hpp"
#include "core/detectors/seasonal.hpp"
#include "core/detectors/three_sigma.hpp"

namespace anomaly {

namespace {

constexpr DetectorInfo kDetectors[] = {
    {DetectorKind::three_sigma, "three_sigma", "batch", "mean and population standard deviation (the challenge's model)"},
    {DetectorKind::robust, "robust", "batch", "median and median absolute deviation, scaled to a standard deviation"},
    {DetectorKind::seasonal, "seasonal", "batch",
     "a robust centre and spread per hour of the day or of the week, the overall band where an hour is thin"},
    {DetectorKind::iforest, "iforest", "batch",
     "an Isolation Forest over the value, its hour of the day and its day of the week"},
    {DetectorKind::rcf, "rcf", "stream",
     "a streaming Random Cut Forest over shingles of recent values: points that few random cuts isolate"},
    {DetectorKind::adaptive, "adaptive", "stream",
     "an exponentially weighted mean and variance that follow the series, optionally per hour of the day"},
    {DetectorKind::pattern, "pattern", "stream",
     "a bounded memory of the shapes the last few values have taken; a shape unlike any remembered is anomalous"},
};

bool finite_band(const Band &b) { return std::isfinite(b.centre) && std::isfinite(b.spread) && b.spread > 0; }

// The sigma detectors: a band centre +- k * spread.
Judgement judge_band(const ModelHeader &image, Band band, double value, const JudgeDefaults &defaults) {
    const double k = image.sigma > 0 ? image.sigma : defaults.sigma;
    const Tail tail = image.tail == kTailFromLocation ? defaults.tail : static_cast<Tail>(image.tail);
    Judgement j;
    const double deviation = value - band.centre;
    j.score = deviation / band.spread;
    double r = 0;
    // The comparisons are the challenge's, written as it writes them, so
    // that a point on the boundary is judged the same, bit for bit.
    switch (tail) {
    case Tail::both:
        j.anomaly = std::fabs(deviation) > k * band.spread;
        r = std::fabs(j.score) / k;
        break;
    case Tail::upper:
        j.anomaly = value > band.centre + k * band.spread;
        r = j.score > 0 ? j.score / k : 0;
        break;
    case Tail::lower:
        j.anomaly = value < band.centre - k * band.spread;
        r = j.score < 0 ? -j.score / k : 0;
        break;
    }
    j.anomaly_score = sigma_anomaly_score(r);
    j.has_expected = true;
    j.expected_value = band.centre;
    j.has_lower = tail != Tail::upper;
    j.lower = band.centre - k * band.spread;
    j.has_upper = tail != Tail::lower;
    j.upper = band.centre + k * band.spread;
    return j;
}

const Band &band_of(const ModelHeader &image) {
    return *reinterpret_cast<const Band *>(reinterpret_cast<const unsigned char *>(&image) + sizeof(ModelHeader));
}

}  // namespace

VersionSummary summary_of(const ModelHeader &image) noexcept {
    VersionSummary s;
    s.header = image;
    s.band = has_band(image.kind) ? band_of(image) : Band{0, 0};
    if (image.kind == DetectorKind::iforest) forest_parameters(image, &s.trees, &s.sample, &s.contamination);
    return s;
}

const char *detector_name(DetectorKind kind) noexcept {
    for (const DetectorInfo &d : kDetectors)
        if (d.kind == kind) return d.name;
    return "unknown";
}

bool detector_from_name(std::string_view name, DetectorKind *kind) noexcept {
    for (const DetectorInfo &d : kDetectors) {
        if (name == d.name) {
            *kind = d.kind;
            return true;
        }
    }
    return false;
}

const char *season_name(Season season) noexcept {
    switch (season) {
    case Season::day: return "day";
    case Season::week: return "week";
    case Season::none: break;
    }
    return "none";
}

const DetectorInfo *detectors(std::size_t *count) noexcept {
    *count = sizeof(kDetectors) / sizeof(kDetectors[0]);
    return kDetectors;
}

double sigma_anomaly_score(double r) noexcept {
    if (!(r > 0)) return 0;
    if (r > 1e6) return 100;
    const double r2 = r * r;
    return 100 * r2 / (r2 + 3.0 / 7.0);
}

ModelHeader new_header(const TrainingData &data, const DetectorParams &params, std::size_t bytes) {
    ModelHeader h;
    std::memset(&h, 0, sizeof(h));
    h.format = kModelImageFormat;
    h.kind = params.kind;
    // A forest has no band: a sigma or tail given to it is not kept.
    const bool banded = has_band(params.kind);
    h.tail = banded ? params.tail : kTailFromLocation;
    h.season = params.kind == DetectorKind::seasonal ? params.season : Season::none;
    h.bytes = static_cast<std::uint32_t>(bytes);
    h.points = static_cast<std::uint32_t>(data.values.size());
    h.first_timestamp = data.timestamps.empty() ? 0 : data.timestamps.front();
    h.last_timestamp = data.timestamps.empty() ? 0 : data.timestamps.back();
    h.sigma = banded ? params.sigma : 0;
    return h;
}

std::string band_image(const TrainingData &data, const DetectorParams &params, Band band) {
    std::string image(sizeof(ModelHeader) + sizeof(Band), '\0');
    const ModelHeader h = new_header(data, params, image.size());
    std::memcpy(&image[0], &h, sizeof(h));
    std::memcpy(&image[sizeof(h)], &band, sizeof(band));
    return image;
}

std::string image_from_model(const Model &m) {
    TrainingData none;
    DetectorParams params;
    std::string image = band_image(none, params, Band{m.mean, m.std});
    ModelHeader h = header_of(image.data());
    h.version = m.version;
    h.points = static_cast<std::uint32_t>(m.points);
    h.first_timestamp = m.first_timestamp;
    h.last_timestamp = m.last_timestamp;
    h.trained_at_ms = m.trained_at_ms;
    std::memcpy(&image[0], &h, sizeof(h));
    return image;
}

Error train(const TrainingData &data, const DetectorParams &params, std::string *image) {
    switch (params.kind) {
    case DetectorKind::three_sigma: return train_three_sigma(data, params, image);
    case DetectorKind::robust: return train_robust(data, params, image);
    case DetectorKind::seasonal: return train_seasonal(data, params, image);
    case DetectorKind::iforest: return train_iforest(data, params, image);
    default: break;  // stream detectors learn from /observe
    }
    return make_error(422, "invalid_detector", "This server does not offer that detector.");
}

bool check_image(std::string_view bytes) noexcept {
    if (bytes.size() < sizeof(ModelHeader) || bytes.size() % 8 != 0 || bytes.size() > kMaxImageBytes) return false;
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % 8 != 0) return false;
    ModelHeader h;
    std::memcpy(&h, bytes.data(), sizeof(h));
    if (h.format != kModelImageFormat || h.bytes != bytes.size()) return false;
    if (h.tail != kTailFromLocation && h.tail > static_cast<std::uint8_t>(Tail::lower)) return false;
    if (!(h.sigma == 0 || (std::isfinite(h.sigma) && h.sigma > 0 && h.sigma <= 1000))) return false;
    if (h.first_timestamp < 0 || h.last_timestamp < h.first_timestamp || h.last_timestamp > kMaxTimestamp)
        return false;
    if (h.kind == DetectorKind::iforest && (h.sigma != 0 || h.tail != kTailFromLocation)) return false;
    if ((h.kind == DetectorKind::seasonal) != (h.season != Season::none)) return false;
    switch (h.kind) {
    case DetectorKind::three_sigma:
    case DetectorKind::robust: {
        if (bytes.size() != sizeof(ModelHeader) + sizeof(Band)) return false;
        Band b;
        std::memcpy(&b, bytes.data() + sizeof(ModelHeader), sizeof(b));
        return finite_band(b);
    }
    case DetectorKind::seasonal: return check_seasonal(bytes);
    case DetectorKind::iforest: return check_iforest(bytes);
    default: break;
    }
    return false;
}

Judgement judge(const ModelHeader &image, double value, std::int64_t timestamp,
                const JudgeDefaults &defaults) noexcept {
    switch (image.kind) {
    case DetectorKind::three_sigma:
    case DetectorKind::robust: return judge_band(image, band_of(image), value, defaults);
    case DetectorKind::seasonal: return judge_band(image, seasonal_band(image, timestamp), value, defaults);
    case DetectorKind::iforest: return judge_iforest(image, value, timestamp);
    default: break;
    }
    return Judgement();
}

}  // namespace anomaly
