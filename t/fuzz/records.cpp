// libFuzzer target: stored records, as a damaged store would hand them back.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/encoding.hpp"
#include "core/series.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char *>(data), size);
    anomaly::Model m;
    if (anomaly::decode_model(bytes, &m) && anomaly::decode_model(anomaly::encode_model(m), &m) == false)
        __builtin_trap();
    anomaly::TrainingData d;
    if (anomaly::decode_training_data(bytes, &d) && d.timestamps.size() != d.values.size()) __builtin_trap();
    std::string_view series;
    std::uint32_t version;
    anomaly::parse_model_key(bytes, &series, &version);
    anomaly::parse_version(bytes, &version);
    anomaly::is_valid_series_id(bytes);
    return 0;
}
