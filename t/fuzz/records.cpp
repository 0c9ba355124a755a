// libFuzzer target: stored records, as a damaged store would hand them back.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <string_view>

#include "core/encoding.hpp"
#include "core/history.hpp"
#include "core/model.hpp"
#include "core/plot.hpp"
#include "core/series.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char *>(data), size);
    // A model record that decodes is an image the detectors can judge with.
    std::string image;
    if (anomaly::decode_model(bytes, &image)) {
        std::string again;
        if (!anomaly::decode_model(anomaly::encode_model(image), &again) || again != image) __builtin_trap();
        const anomaly::Judgement j = anomaly::judge(anomaly::header_of(image.data()), 1.5, 1700000000, {});
        if (!(j.anomaly_score >= 0 && j.anomaly_score <= 100)) __builtin_trap();
    }
    anomaly::TrainingData d;
    if (anomaly::decode_training_data(bytes, &d) && d.timestamps.size() != d.values.size()) __builtin_trap();
    // A plot envelope that decodes is one the encoder writes, and draws.
    anomaly::PlotEnvelope e;
    if (anomaly::decode_plot_envelope(bytes, &e)) {
        if (anomaly::encode_plot_envelope(e) != bytes) __builtin_trap();
        anomaly::Model model;
        model.version = 1;
        model.points = e.points;
        model.mean = e.columns.empty() ? 0 : e.columns[0].min;
        model.std = 1;
        const std::string flat = anomaly::image_from_model(model);
        anomaly::PlotInput in;
        in.series_id = "s";
        in.model = &anomaly::header_of(flat.data());
        in.envelope = &e;
        if (anomaly::render_plot(in).size() > 1000000) __builtin_trap();
        // With the model image of the first record, when one decodes, too.
        if (!image.empty()) {
            in.model = &anomaly::header_of(image.data());
            if (anomaly::render_plot(in).size() > 1000000) __builtin_trap();
        }
    }
    // A model image (format 2) that passes check_image is judged in place by
    // every worker: it must stay inside its bytes and end (a forest's walks).
    std::vector<std::uint64_t> aligned((size + 7) / 8);
    if (size) std::memcpy(aligned.data(), data, size);
    const std::string_view raw(reinterpret_cast<const char *>(aligned.data()), size);
    if (anomaly::check_image(raw)) {
        const anomaly::ModelHeader &h = anomaly::header_of(raw.data());
        for (double value : {-1e300, -1.0, 0.0, 0.5, 42.0, 1e300}) {
            const anomaly::Judgement j = anomaly::judge(h, value, 1700000000, anomaly::JudgeDefaults{});
            if (std::isnan(j.anomaly_score) || j.anomaly_score < 0 || j.anomaly_score > 100) __builtin_trap();
        }
    }
    // An anomaly history record that decodes is one the encoder writes, and renders.
    anomaly::HistoryEvent event;
    if (anomaly::decode_history_event(bytes, &event)) {
        if (anomaly::encode_history_event(event) != bytes) __builtin_trap();
        anomaly::HistoryPage page;
        page.events.push_back(event);
        if (anomaly::render_anomalies(page).empty()) __builtin_trap();
    }
    std::int64_t since_ms = 0;
    if (anomaly::parse_since(bytes, &since_ms) && (since_ms < 0 || since_ms > anomaly::kMaxTimestamp * 1000 + 999))
        __builtin_trap();
    std::uint64_t sequence;
    anomaly::parse_history_key(bytes, &sequence);
    std::string_view series;
    std::uint32_t version;
    anomaly::parse_model_key(bytes, &series, &version);
    anomaly::parse_version(bytes, &version);
    anomaly::is_valid_series_id(bytes);
    return 0;
}
