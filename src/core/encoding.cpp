#include "core/encoding.hpp"

#include <cstring>

namespace anomaly {

namespace {

constexpr bool kLittleEndianHost = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

void put_u8(std::string *out, std::uint8_t v) { out->push_back(static_cast<char>(v)); }

void put_fixed(std::string *out, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_double(std::string *out, double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof(bits));
    put_fixed(out, bits, 8);
}

// Reads little-endian fields from a bounded buffer; any overrun sets failed.
class Reader {
public:
    explicit Reader(std::string_view bytes) : p_(bytes.data()), left_(bytes.size()) {}
    std::uint64_t fixed(int bytes) {
        if (left_ < static_cast<std::size_t>(bytes)) {
            failed_ = true;
            return 0;
        }
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; i++)
            v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p_[i])) << (8 * i);
        p_ += bytes;
        left_ -= static_cast<std::size_t>(bytes);
        return v;
    }
    double real() {
        std::uint64_t bits = fixed(8);
        double d;
        std::memcpy(&d, &bits, sizeof(d));
        return d;
    }
    std::size_t left() const { return left_; }
    bool failed() const { return failed_; }

private:
    const char *p_;
    std::size_t left_;
    bool failed_ = false;
};

std::string key(char kind, std::string_view series_id, std::uint32_t version) {
    std::string k;
    k.reserve(series_id.size() + 7);
    k.push_back(kind);
    k.push_back('/');
    k.append(series_id);
    k.push_back('/');
    for (int i = 3; i >= 0; i--) k.push_back(static_cast<char>((version >> (8 * i)) & 0xff));
    return k;
}

}  // namespace

std::string model_key(std::string_view series_id, std::uint32_t version) {
    return key('m', series_id, version);
}

std::string training_data_key(std::string_view series_id, std::uint32_t version) {
    return key('d', series_id, version);
}

bool parse_model_key(std::string_view k, std::string_view *series_id, std::uint32_t *version) noexcept {
    if (k.size() < 2 + 1 + 1 + 4 || k.substr(0, 2) != kModelKeyPrefix) return false;
    if (k[k.size() - 5] != '/') return false;
    std::uint32_t v = 0;
    for (std::size_t i = k.size() - 4; i < k.size(); i++) v = (v << 8) | static_cast<unsigned char>(k[i]);
    *series_id = k.substr(2, k.size() - 2 - 5);
    *version = v;
    return !series_id->empty();
}

std::string encode_model(const Model &m) {
    std::string out;
    out.reserve(64);
    put_u8(&out, kModelFormat);
    put_u8(&out, static_cast<std::uint8_t>(m.kind));
    put_fixed(&out, 2, 2);  // three_sigma: mean, std
    put_fixed(&out, m.version, 4);
    put_fixed(&out, m.points, 8);
    put_fixed(&out, static_cast<std::uint64_t>(m.first_timestamp), 8);
    put_fixed(&out, static_cast<std::uint64_t>(m.last_timestamp), 8);
    put_fixed(&out, static_cast<std::uint64_t>(m.trained_at_ms), 8);
    put_double(&out, m.mean);
    put_double(&out, m.std);
    return out;
}

bool decode_model(std::string_view bytes, Model *m) noexcept {
    Reader r(bytes);
    if (r.fixed(1) != kModelFormat) return false;
    const auto kind = static_cast<DetectorKind>(r.fixed(1));
    const std::uint64_t params = r.fixed(2);
    if (kind != DetectorKind::three_sigma || params != 2) return false;
    Model out;
    out.kind = kind;
    out.version = static_cast<std::uint32_t>(r.fixed(4));
    out.points = r.fixed(8);
    out.first_timestamp = static_cast<std::int64_t>(r.fixed(8));
    out.last_timestamp = static_cast<std::int64_t>(r.fixed(8));
    out.trained_at_ms = static_cast<std::int64_t>(r.fixed(8));
    out.mean = r.real();
    out.std = r.real();
    if (r.failed() || r.left() != 0) return false;
    *m = out;
    return true;
}

std::string encode_training_data(const TrainingData &d) {
    const std::size_t n = d.values.size();
    std::string out;
    out.reserve(16 + n * 16);
    put_u8(&out, kTrainingDataFormat);
    put_u8(&out, 0);
    put_fixed(&out, 0, 2);
    put_fixed(&out, 0, 4);
    put_fixed(&out, n, 8);
    if constexpr (kLittleEndianHost) {
        // The host's layout is the file's: copy the arrays whole (a 1M-point
        // fit is 16 MB, byte by byte that costs 10 ms).
        out.resize(16 + n * 16);
        std::memcpy(&out[16], d.timestamps.data(), n * 8);
        std::memcpy(&out[16 + n * 8], d.values.data(), n * 8);
    } else {
        for (std::size_t i = 0; i < n; i++) put_fixed(&out, static_cast<std::uint64_t>(d.timestamps[i]), 8);
        for (std::size_t i = 0; i < n; i++) put_double(&out, d.values[i]);
    }
    return out;
}

bool decode_training_data(std::string_view bytes, TrainingData *d) {
    Reader r(bytes);
    if (r.fixed(1) != kTrainingDataFormat) return false;
    r.fixed(1);
    r.fixed(2);
    r.fixed(4);
    const std::uint64_t n = r.fixed(8);
    if (r.failed() || r.left() / 16 != n || r.left() % 16 != 0) return false;
    d->timestamps.resize(n);
    d->values.resize(n);
    if constexpr (kLittleEndianHost) {
        std::memcpy(d->timestamps.data(), bytes.data() + 16, n * 8);
        std::memcpy(d->values.data(), bytes.data() + 16 + n * 8, n * 8);
        return true;
    }
    for (std::uint64_t i = 0; i < n; i++) d->timestamps[i] = static_cast<std::int64_t>(r.fixed(8));
    for (std::uint64_t i = 0; i < n; i++) d->values[i] = r.real();
    return !r.failed();
}

}  // namespace anomaly
