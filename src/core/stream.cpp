#include "core/stream.hpp"

#include <cmath>
#include <cstring>
#include <string>

#include "core/model.hpp"
#include "core/streams/adaptive.hpp"
#include "core/streams/likelihood.hpp"
#include "core/streams/pattern.hpp"
#include "core/streams/rcf.hpp"

namespace anomaly {

namespace {

constexpr std::uint32_t kMaxWarmup = 1000000;
constexpr std::uint32_t kMaxRecent = 65536;
// Detectors that keep a few dozen bytes keep no recent points by default:
// the ring would be most of the state.
constexpr std::uint32_t kDefaultRecent = 256;
constexpr std::uint32_t kAdaptiveWarmup = 100;
constexpr std::uint32_t kDefaultWarmup = 300;
// The hold after an alarm: a day of 5-minute points.
constexpr std::uint32_t kDefaultHold = 288;

constexpr std::size_t kPostOffset = sizeof(StreamHeader);
// pattern scores two things (shapes and the hourly band), each with its own
// likelihood, combined as independent evidence; the others one.
std::size_t likelihoods_of(DetectorKind kind) { return kind == DetectorKind::pattern ? 2 : 1; }
std::size_t detector_offset_of(DetectorKind kind) { return kPostOffset + likelihoods_of(kind) * sizeof(LikelihoodState); }
constexpr std::size_t kDetectorOffset = kPostOffset + sizeof(LikelihoodState);

std::size_t round8(std::size_t n) { return (n + 7) & ~static_cast<std::size_t>(7); }

bool available(DetectorKind kind) { return is_stream_detector(kind); }

Error invalid(const char *name, const std::string &accepts) {
    return make_error(422, "invalid_parameter", std::string(name) + " must be " + accepts + ".");
}

std::uint32_t capacity_of(std::uint32_t recent) { return recent == kNoRecent ? 0 : recent; }

// The detector's part of a state with resolved params, before rounding.
std::size_t detector_bytes(const StreamParams &p) {
    switch (p.kind) {
    case DetectorKind::adaptive: return adaptive_state_bytes(p.hourly != 0);
    case DetectorKind::pattern: return pattern_state_bytes();
    case DetectorKind::rcf: return rcf::state_bytes(rcf::Params{p.trees, p.sample, p.shingle, p.decay});
    default: return 0;
    }
}

unsigned char *at(StreamHeader &h, std::uint32_t offset) { return reinterpret_cast<unsigned char *>(&h) + offset; }
const unsigned char *at(const StreamHeader &h, std::uint32_t offset) {
    return reinterpret_cast<const unsigned char *>(&h) + offset;
}

std::uint64_t splitmix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// What a detector answers for one point, before post-processing.
struct Raw {
    double score = 0;
    double second = 0;  // pattern: the band's score
    bool has_expected = false;
    double expected = 0;
};

Raw detect(StreamHeader &h, std::int64_t timestamp, double value, bool learn) {
    void *d = at(h, h.detector_offset);
    Raw r;
    switch (h.kind) {
    case DetectorKind::adaptive: {
        const AdaptiveResult a = adaptive_update(d, timestamp, value, learn);
        r.score = a.raw;
        r.has_expected = true;
        r.expected = a.expected;
        break;
    }
    case DetectorKind::pattern: {
        const PatternResult a = pattern_update(d, timestamp, value, learn);
        r.score = a.shape;
        r.second = a.band;
        r.has_expected = true;
        r.expected = a.expected;
        break;
    }
    case DetectorKind::rcf: {
        const rcf::Result a = rcf::update(d, value, learn, &h.rng);
        r.score = a.score;
        r.has_expected = a.has_expected;
        r.expected = a.expected;
        break;
    }
    default: break;
    }
    return r;
}

}  // namespace

const char *stream_stage_name(StreamStage stage) noexcept {
    switch (stage) {
    case StreamStage::learning: return "learning";
    case StreamStage::inference: return "inference";
    case StreamStage::skipped: return "skipped";
    }
    return "unknown";
}

bool is_stream_detector(DetectorKind kind) noexcept {
    return kind == DetectorKind::rcf || kind == DetectorKind::adaptive || kind == DetectorKind::pattern;
}

Error resolve_stream_params(StreamParams *p) {
    if (!is_stream_detector(p->kind) || !available(p->kind))
        return make_error(422, "invalid_detector",
                          std::string(detector_name(p->kind)) + " is not a stream detector this build offers.");
    const bool adaptive = p->kind == DetectorKind::adaptive;
    if (p->warmup == 0) p->warmup = adaptive ? kAdaptiveWarmup : kDefaultWarmup;
    if (p->warmup > kMaxWarmup) return invalid("warmup", "a whole number from 1 to 1000000");
    if (p->recent == 0) p->recent = adaptive ? kNoRecent : kDefaultRecent;
    if (p->recent != kNoRecent && p->recent > kMaxRecent)
        return invalid("recent", "a whole number from 1 to 65536");
    if (p->hold == 0) p->hold = kDefaultHold;
    if (p->hold != kNoHold && p->hold > 65535) return invalid("hold", "a whole number from 0 to 65535");
    // Parameters of another detector do not apply: a directive may set them
    // for every stream of a location, whatever each one's detector.
    if (adaptive) {
        if (p->alpha == 0) p->alpha = kAdaptiveAlpha;
        if (!(p->alpha >= kAdaptiveMinAlpha && p->alpha <= kAdaptiveMaxAlpha))
            return invalid("alpha", "a number from 0.000001 to 0.5");
        if (p->hourly > 1) return invalid("hourly", "0 or 1");
    } else {
        p->alpha = 0;
        p->hourly = 0;
    }
    if (p->kind == DetectorKind::rcf) {
        const rcf::Params d = rcf::default_params();
        rcf::Params r{p->trees ? p->trees : d.trees, p->sample ? p->sample : d.sample,
                      p->shingle ? p->shingle : d.shingle, p->decay != 0 ? p->decay : d.decay};
        if (Error e = rcf::check_params(r)) return e;
        if (stream_state_bytes(StreamParams{DetectorKind::rcf, p->warmup, p->recent, r.trees, r.sample, r.shingle,
                                            r.decay, 0, 0}) > kMaxStreamBytes)
            return make_error(422, "invalid_parameter",
                              "trees x sample must be smaller: the forest would not fit a stream's 4 MB.");
        p->trees = r.trees;
        p->sample = r.sample;
        p->shingle = r.shingle;
        p->decay = r.decay;
    } else {
        p->trees = p->sample = p->shingle = 0;
        p->decay = 0;
    }
    return Error{};
}

std::size_t stream_state_bytes(const StreamParams &p) noexcept {
    return detector_offset_of(p.kind) + round8(detector_bytes(p)) + std::size_t{capacity_of(p.recent)} * sizeof(StreamRecent);
}

void init_stream(void *state, const StreamParams &p, std::int64_t created_ms, std::uint64_t seed) noexcept {
    const std::size_t bytes = stream_state_bytes(p);
    std::memset(state, 0, bytes);
    StreamHeader &h = *static_cast<StreamHeader *>(state);
    h.format = kStreamFormat;
    h.kind = p.kind;
    h.bytes = static_cast<std::uint32_t>(bytes);
    h.points_processed = 0;
    h.last_timestamp = kNoTimestamp;
    h.created_ms = created_ms;
    h.warmup = p.warmup;
    h.hold = static_cast<std::uint16_t>(p.hold == kNoHold ? 0 : p.hold);
    h.post_offset = static_cast<std::uint32_t>(kPostOffset);
    h.detector_offset = static_cast<std::uint32_t>(detector_offset_of(p.kind));
    h.recent_offset = static_cast<std::uint32_t>(h.detector_offset + round8(detector_bytes(p)));
    h.recent_capacity = capacity_of(p.recent);
    h.recent_next = 0;
    h.rng = splitmix(seed) | 1;  // never 0: some generators stick there
    for (std::size_t i = 0; i < likelihoods_of(p.kind); i++)
        likelihood_init(reinterpret_cast<LikelihoodState *>(at(h, h.post_offset)) + i);
    void *d = at(h, h.detector_offset);
    switch (p.kind) {
    case DetectorKind::adaptive: adaptive_init(d, p.alpha, p.hourly != 0); break;
    case DetectorKind::pattern: pattern_init(d); break;
    case DetectorKind::rcf: rcf::init(d, rcf::Params{p.trees, p.sample, p.shingle, p.decay}); break;
    default: break;
    }
}

StreamPoint observe(StreamHeader &h, std::int64_t timestamp, double value) noexcept {
    value = std::fmin(std::fmax(value, -kMaxStreamValue), kMaxStreamValue);
    const bool learn = h.last_timestamp == kNoTimestamp || timestamp > h.last_timestamp;
    const Raw raw = detect(h, timestamp, value, learn);
    auto *post = reinterpret_cast<LikelihoodState *>(at(h, h.post_offset));
    double score = likelihood_update(post, raw.score, learn);
    if (likelihoods_of(h.kind) == 2) score = likelihood_combine(score, likelihood_update(post + 1, raw.second, learn));
    score = likelihood_hold(post, score, learn, h.hold, h.points_processed >= h.warmup);

    StreamPoint out;
    out.score = raw.score;
    out.has_expected = raw.has_expected;
    out.expected_value = raw.expected;
    if (learn) {
        h.points_processed++;
        h.last_timestamp = timestamp;
    }
    const bool warm = h.points_processed > h.warmup;
    out.anomaly_score = warm ? score : 0;
    out.stage = !learn ? StreamStage::skipped : warm ? StreamStage::inference : StreamStage::learning;
    out.points_processed = h.points_processed;
    // Confidence grows with the points learned, 63% at the end of the
    // warm-up and 95% at three times it.
    const double maturity = h.warmup > 16 ? h.warmup : 16;
    out.confidence = 100 * (1 - std::exp(-static_cast<double>(h.points_processed) / maturity));
    if (learn && h.recent_capacity > 0) {
        StreamRecent r;
        r.timestamp = timestamp;
        r.value = static_cast<float>(value);
        r.anomaly_score = static_cast<float>(out.anomaly_score);
        std::memcpy(at(h, h.recent_offset) + std::size_t{h.recent_next} * sizeof(StreamRecent), &r, sizeof(r));
        h.recent_next = h.recent_next + 1 == h.recent_capacity ? 0 : h.recent_next + 1;
    }
    return out;
}

bool check_stream(std::string_view bytes) noexcept {
    if (bytes.size() < kDetectorOffset || bytes.size() % 8 != 0 || bytes.size() > kMaxStreamBytes) return false;
    StreamHeader h;
    std::memcpy(&h, bytes.data(), sizeof(h));
    if (h.format != kStreamFormat || !is_stream_detector(h.kind) || !available(h.kind)) return false;
    if (h.bytes != bytes.size() || h.post_offset != kPostOffset || h.detector_offset != detector_offset_of(h.kind))
        return false;
    if (h.recent_offset % 8 != 0 || h.recent_offset <= h.detector_offset || h.recent_offset > h.bytes) return false;
    if (h.recent_capacity > kMaxRecent ||
        std::uint64_t{h.recent_capacity} * sizeof(StreamRecent) != std::uint64_t{h.bytes} - h.recent_offset)
        return false;
    if (h.recent_capacity == 0 ? h.recent_next != 0 : h.recent_next >= h.recent_capacity) return false;
    if (h.warmup < 1 || h.warmup > kMaxWarmup) return false;
    if ((h.points_processed == 0) != (h.last_timestamp == kNoTimestamp)) return false;
    // Observed timestamps are Unix seconds from 0 to the year 9999.
    if (h.last_timestamp != kNoTimestamp && (h.last_timestamp < 0 || h.last_timestamp > kMaxTimestamp)) return false;

    for (std::size_t i = 0; i < likelihoods_of(h.kind); i++) {
        LikelihoodState post;
        std::memcpy(&post, bytes.data() + kPostOffset + i * sizeof(post), sizeof(post));
        if (!likelihood_check(post)) return false;
    }

    const std::string_view detector = bytes.substr(h.detector_offset, h.recent_offset - h.detector_offset);
    switch (h.kind) {
    case DetectorKind::adaptive:
        if (!adaptive_check(detector)) return false;
        break;
    case DetectorKind::pattern:
        if (!pattern_check(detector)) return false;
        break;
    case DetectorKind::rcf: {
        if (!rcf::check(detector.data(), detector.size())) return false;
        // The region is exactly the forest, padded to 8.
        const rcf::Params r = rcf::params_of(detector.data());
        if (round8(rcf::state_bytes(r)) != detector.size()) return false;
        break;
    }
    default: return false;
    }

    for (std::uint32_t i = 0; i < h.recent_capacity; i++) {
        StreamRecent r;
        std::memcpy(&r, bytes.data() + h.recent_offset + std::size_t{i} * sizeof(r), sizeof(r));
        if (!std::isfinite(r.value) || !(r.anomaly_score >= 0 && r.anomaly_score <= 100)) return false;
    }
    return true;
}

StreamParams stream_params_of(const StreamHeader &h) noexcept {
    StreamParams p;
    p.kind = h.kind;
    p.warmup = h.warmup;
    p.recent = h.recent_capacity == 0 ? kNoRecent : h.recent_capacity;
    p.hold = h.hold == 0 ? kNoHold : h.hold;
    const unsigned char *d = at(h, h.detector_offset);
    switch (h.kind) {
    case DetectorKind::adaptive: {
        AdaptiveState s;
        std::memcpy(&s, d, sizeof(s));
        p.alpha = s.alpha;
        p.hourly = s.hourly;
        break;
    }
    case DetectorKind::rcf: {
        const rcf::Params r = rcf::params_of(d);
        p.trees = r.trees;
        p.sample = r.sample;
        p.shingle = r.shingle;
        p.decay = r.decay;
        break;
    }
    default: break;
    }
    return p;
}

std::size_t stream_recent(const StreamHeader &h, StreamRecent *out, std::size_t max) noexcept {
    const std::uint32_t cap = h.recent_capacity;
    if (cap == 0 || max == 0) return 0;
    const std::uint64_t held = h.points_processed < cap ? h.points_processed : cap;
    const std::size_t n = held < max ? static_cast<std::size_t>(held) : max;
    // The oldest of the n newest.
    std::uint32_t i = static_cast<std::uint32_t>((h.recent_next + cap - n % cap) % cap);
    if (n == cap) i = h.recent_next;
    for (std::size_t k = 0; k < n; k++) {
        std::memcpy(&out[k], at(h, h.recent_offset) + std::size_t{i} * sizeof(StreamRecent), sizeof(StreamRecent));
        i = i + 1 == cap ? 0 : i + 1;
    }
    return n;
}

}  // namespace anomaly
