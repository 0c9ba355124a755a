#include "core/encoding.hpp"
#include "core/stream.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

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

std::string encode_u64(std::uint64_t v) {
    std::string out;
    put_fixed(&out, v, 8);
    return out;
}

bool decode_u64(std::string_view bytes, std::uint64_t *v) noexcept {
    if (bytes.size() != 8) return false;
    *v = Reader(bytes).fixed(8);
    return true;
}

std::string model_key(std::string_view series_id, std::uint32_t version) {
    return key('m', series_id, version);
}

std::string training_data_key(std::string_view series_id, std::uint32_t version) {
    return key('d', series_id, version);
}

std::string plot_envelope_key(std::string_view series_id, std::uint32_t version) {
    return key('p', series_id, version);
}

std::string version_commit_key(std::string_view series_id, std::uint32_t version) {
    return key('y', series_id, version);
}

std::string commit_index_key(std::uint64_t commit, std::string_view series_id, std::uint32_t version) {
    std::string k(kCommitIndexPrefix);
    k.reserve(2 + 8 + series_id.size() + 5);
    for (int i = 7; i >= 0; i--) k.push_back(static_cast<char>((commit >> (8 * i)) & 0xff));
    k.append(series_id);
    k.push_back('/');
    for (int i = 3; i >= 0; i--) k.push_back(static_cast<char>((version >> (8 * i)) & 0xff));
    return k;
}

bool parse_commit_index_key(std::string_view k, std::uint64_t *commit, std::string_view *series_id,
                            std::uint32_t *version) noexcept {
    if (k.size() < 2 + 8 + 1 + 1 + 4 || k.substr(0, 2) != kCommitIndexPrefix || k[k.size() - 5] != '/') return false;
    std::uint64_t c = 0;
    for (std::size_t i = 2; i < 10; i++) c = (c << 8) | static_cast<unsigned char>(k[i]);
    std::uint32_t v = 0;
    for (std::size_t i = k.size() - 4; i < k.size(); i++) v = (v << 8) | static_cast<unsigned char>(k[i]);
    *commit = c;
    *series_id = k.substr(10, k.size() - 10 - 5);
    *version = v;
    return series_id->find('/') == std::string_view::npos;
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

std::string encode_model_format1(const Model &m) {
    std::string out;
    out.reserve(64);
    put_u8(&out, kModelFormatThreeSigma);
    put_u8(&out, static_cast<std::uint8_t>(DetectorKind::three_sigma));
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

std::string encode_model(std::string_view image) { return std::string(image); }

void set_image_version(std::string *image, std::uint32_t version, std::int64_t trained_at_ms) {
    ModelHeader h;
    std::memcpy(&h, image->data(), sizeof(h));
    h.version = version;
    h.trained_at_ms = trained_at_ms;
    std::memcpy(&(*image)[0], &h, sizeof(h));
}

namespace {

bool decode_format1(std::string_view bytes, Model *m) noexcept {
    Reader r(bytes);
    if (r.fixed(1) != kModelFormatThreeSigma) return false;
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

}  // namespace

bool decode_model(std::string_view bytes, std::string *image) {
    if (bytes.empty()) return false;
    if (static_cast<std::uint8_t>(bytes[0]) == kModelFormatThreeSigma) {
        Model m;
        if (!decode_format1(bytes, &m)) return false;
        std::string converted = image_from_model(m);
        if (!check_image(converted)) return false;  // a mean or std no fit could give
        *image = std::move(converted);
        return true;
    }
    // A std::string of more than 15 bytes lives on the heap: 16-byte aligned,
    // as check_image and judge want.
    std::string copy(bytes);
    if (copy.size() < sizeof(ModelHeader) || !check_image(copy)) return false;
    *image = std::move(copy);
    return true;
}

std::string encode_training_data(const TrainingData &d) {
    const std::size_t n = d.values.size();
    std::string out;
    out.resize(16 + n * 8 + (n > 0 ? 8 + (n - 1) * 10 : 0));  // the most varints can take
    char *p = &out[0];
    auto fixed = [&p](std::uint64_t v, int bytes) {
        for (int i = 0; i < bytes; i++) *p++ = static_cast<char>((v >> (8 * i)) & 0xff);
    };
    fixed(kTrainingDataFormat, 1);
    fixed(0, 1);
    fixed(0, 2);
    fixed(0, 4);
    fixed(n, 8);
    if constexpr (kLittleEndianHost) {
        if (n > 0) std::memcpy(p, d.values.data(), n * 8);  // the host's layout is the file's
        p += n * 8;
    } else {
        for (double v : d.values) {
            std::uint64_t bits;
            std::memcpy(&bits, &v, sizeof(bits));
            fixed(bits, 8);
        }
    }
    if (n > 0) {
        fixed(static_cast<std::uint64_t>(d.timestamps[0]), 8);
        for (std::size_t i = 1; i < n; i++) {
            std::uint64_t delta = static_cast<std::uint64_t>(d.timestamps[i] - d.timestamps[i - 1]);
            while (delta >= 0x80) {
                *p++ = static_cast<char>(delta | 0x80);
                delta >>= 7;
            }
            *p++ = static_cast<char>(delta);
        }
    }
    out.resize(static_cast<std::size_t>(p - out.data()));
    return out;
}

bool decode_training_data(std::string_view bytes, TrainingData *d) {
    Reader r(bytes);
    if (r.fixed(1) != kTrainingDataFormat) return false;
    r.fixed(1);
    r.fixed(2);
    r.fixed(4);
    const std::uint64_t n = r.fixed(8);
    // Each point takes at least 9 bytes (a value and a delta byte).
    if (r.failed() || (n > 0 && (r.left() < 16 || (r.left() - 16) / 9 < n - 1)) || (n == 0 && r.left() != 0))
        return false;
    d->values.resize(n);
    d->timestamps.resize(n);
    const char *p = bytes.data() + 16;
    const char *end = bytes.data() + bytes.size();
    if (n == 0) return true;
    if constexpr (kLittleEndianHost) {
        std::memcpy(d->values.data(), p, n * 8);
        p += n * 8;
    } else {
        Reader values(std::string_view(p, n * 8));
        for (std::uint64_t i = 0; i < n; i++) d->values[i] = values.real();
        p += n * 8;
    }
    Reader first(std::string_view(p, 8));
    d->timestamps[0] = static_cast<std::int64_t>(first.fixed(8));
    p += 8;
    for (std::uint64_t i = 1; i < n; i++) {
        std::uint64_t delta = 0;
        int shift = 0;
        for (;;) {
            if (p == end || shift > 63) return false;
            const auto byte = static_cast<unsigned char>(*p++);
            delta |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
            if (byte < 0x80) break;
            shift += 7;
        }
        // Timestamps strictly increase, and a damaged record must not overflow.
        if (delta == 0 || delta > static_cast<std::uint64_t>(INT64_MAX) ||
            __builtin_add_overflow(d->timestamps[i - 1], static_cast<std::int64_t>(delta), &d->timestamps[i]))
            return false;
    }
    return p == end;
}

std::string encode_plot_envelope(const PlotEnvelope &e) {
    std::string out;
    out.reserve(32 + 18 * e.columns.size());
    put_u8(&out, kPlotEnvelopeFormat);
    put_u8(&out, 0);
    put_fixed(&out, e.columns.size(), 2);
    put_fixed(&out, 0, 4);
    put_fixed(&out, e.points, 8);
    put_fixed(&out, static_cast<std::uint64_t>(e.first_timestamp), 8);
    put_fixed(&out, static_cast<std::uint64_t>(e.last_timestamp), 8);
    for (const PlotEnvelope::Column &c : e.columns) {
        put_fixed(&out, c.column, 2);
        put_double(&out, c.min);
        put_double(&out, c.max);
    }
    return out;
}

bool decode_plot_envelope(std::string_view bytes, PlotEnvelope *e) {
    Reader r(bytes);
    if (r.fixed(1) != kPlotEnvelopeFormat || r.fixed(1) != 0) return false;
    const std::uint64_t count = r.fixed(2);
    if (r.fixed(4) != 0) return false;
    PlotEnvelope out;
    out.points = r.fixed(8);
    out.first_timestamp = static_cast<std::int64_t>(r.fixed(8));
    out.last_timestamp = static_cast<std::int64_t>(r.fixed(8));
    // Checked before anything is allocated: the size must be exact.
    if (r.failed() || count > static_cast<std::uint64_t>(kPlotColumns) || r.left() != count * 18) return false;
    // The drawing subtracts and formats these timestamps: keep them in the range fits accept.
    if (out.first_timestamp < 0 || out.first_timestamp > out.last_timestamp || out.last_timestamp > kMaxTimestamp)
        return false;
    if ((count == 0) != (out.points == 0) || count > out.points) return false;
    if (count == 0 && (out.first_timestamp != 0 || out.last_timestamp != 0)) return false;
    out.columns.resize(count);
    int previous = -1;
    for (PlotEnvelope::Column &c : out.columns) {
        const int column = static_cast<int>(r.fixed(2));
        c.min = r.real();
        c.max = r.real();
        if (column <= previous || column >= kPlotColumns || !std::isfinite(c.min) || !std::isfinite(c.max) ||
            !(c.min <= c.max))
            return false;
        c.column = static_cast<std::uint16_t>(column);
        previous = column;
    }
    if (r.failed() || r.left() != 0) return false;
    *e = std::move(out);
    return true;
}

std::string stream_key(std::string_view series_id) {
    std::string k(kStreamKeyPrefix);
    k.append(series_id);
    return k;
}

bool parse_stream_key(std::string_view key, std::string_view *series_id) noexcept {
    if (key.size() <= kStreamKeyPrefix.size() || key.substr(0, kStreamKeyPrefix.size()) != kStreamKeyPrefix)
        return false;
    *series_id = key.substr(kStreamKeyPrefix.size());
    return series_id->find('/') == std::string_view::npos;
}

std::string encode_checkpoint(std::string_view state, std::int64_t written_ms) {
    std::string out;
    out.reserve(16 + state.size());
    put_u8(&out, kCheckpointFormat);
    put_fixed(&out, 0, 7);
    put_fixed(&out, static_cast<std::uint64_t>(written_ms), 8);
    out.append(state);
    return out;
}

bool decode_checkpoint(std::string_view bytes, std::string *state, std::int64_t *written_ms) {
    if (bytes.size() < 16 + sizeof(StreamHeader) || static_cast<std::uint8_t>(bytes[0]) != kCheckpointFormat)
        return false;
    std::uint64_t ms = 0;
    for (int i = 7; i >= 0; i--) ms = (ms << 8) | static_cast<unsigned char>(bytes[8 + i]);
    const std::string_view body = bytes.substr(16);
    if (body.size() > kMaxStreamBytes || body.size() % 8 != 0) return false;
    // std::string's buffer is aligned for any scalar type (operator new).
    state->assign(body.data(), body.size());
    if (!check_stream(*state)) return false;
    *written_ms = static_cast<std::int64_t>(ms);
    return true;
}

}  // namespace anomaly
