// Helpers shared by the unit tests.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "core/detector.hpp"
#include "core/model.hpp"
#include "core/request.hpp"
#include "core/stream.hpp"

namespace anomaly_test {

// A request body as the server hands it to the parser: the JSON text
// followed by kJsonPadding readable bytes that are not part of the body.
// (Reserving capacity is not enough: the bytes past size() must exist.)
class Body {
public:
    explicit Body(std::string json) : length_(json.size()), text_(std::move(json)) {
        text_.append(anomaly::kJsonPadding, ' ');
    }
    const char *data() const { return text_.data(); }
    std::size_t size() const { return length_; }

private:
    std::size_t length_;
    std::string text_;
};

constexpr std::int64_t kMonday = 1700438400;  // 2023-11-20 00:00:00 UTC, a Monday

// n normal values (mean, sd), every step seconds from kMonday.
inline anomaly::TrainingData noisy(std::size_t n, double mean, double sd, unsigned seed, std::int64_t step = 300) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(mean, sd);
    anomaly::TrainingData d;
    for (std::size_t i = 0; i < n; i++) {
        d.timestamps.push_back(kMonday + step * static_cast<std::int64_t>(i));
        d.values.push_back(noise(rng));
    }
    return d;
}

// What a three-sigma image says, as the Model of a format 1 record.
inline anomaly::Model three_sigma_model_of(const std::string &image) {
    const anomaly::ModelHeader &h = anomaly::header_of(image.data());
    anomaly::Model m;
    m.version = h.version;
    m.kind = h.kind;
    m.points = h.points;
    m.first_timestamp = h.first_timestamp;
    m.last_timestamp = h.last_timestamp;
    m.trained_at_ms = h.trained_at_ms;
    std::memcpy(&m.mean, image.data() + sizeof(anomaly::ModelHeader), 8);
    std::memcpy(&m.std, image.data() + sizeof(anomaly::ModelHeader) + 8, 8);
    return m;
}

// The bytes of an adaptive stream (default parameters) that has learned n
// points, one a minute: what a checkpoint holds.
inline std::string adaptive_stream(int n, std::uint64_t seed = 7) {
    anomaly::StreamParams p;
    p.kind = anomaly::DetectorKind::adaptive;
    if (anomaly::resolve_stream_params(&p)) std::abort();
    std::string state(anomaly::stream_state_bytes(p), '\0');
    anomaly::init_stream(&state[0], p, 1700000000000, seed);
    auto &h = *reinterpret_cast<anomaly::StreamHeader *>(&state[0]);
    for (int i = 0; i < n; i++) anomaly::observe(h, 1700000000 + 60 * i, 10 + i % 3);
    return state;
}

// A fresh directory under /tmp, left behind for inspection.
inline std::string temp_dir(const char *what) {
    std::string tmpl = std::string("/tmp/anomaly-unit-") + what + "-XXXXXX";
    char *made = mkdtemp(&tmpl[0]);
    if (made == nullptr) std::abort();
    return tmpl;
}

}  // namespace anomaly_test
