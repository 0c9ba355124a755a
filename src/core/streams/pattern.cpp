#include "core/streams/pattern.hpp"
#include "core/stream.hpp"

#include <cmath>
#include <cstring>

#include "core/streams/adaptive.hpp"

namespace anomaly {

namespace {

// A shape this close to a prototype (the distance, as a share of the range)
// is that prototype seen again. (0.02 to 0.08 score the same.)
constexpr double kPatternVigilance = 0.05;
// A prototype averages at most this many matches: it follows drift.
constexpr std::uint32_t kPatternMaxMatches = 64;

void *band_of(void *state) {
    return static_cast<unsigned char *>(state) + sizeof(PatternState) + kPatternSlots * sizeof(PatternSlot);
}

PatternSlot *slots_of(void *state) {
    return reinterpret_cast<PatternSlot *>(static_cast<unsigned char *>(state) + sizeof(PatternState));
}

// The distance of a shape from a prototype, in the values' units: the root
// mean square of the differences of its values. (The largest difference of
// one value scored 63.7 on NAB's development files, this 65.7: a shape
// differing a little everywhere is as novel as one differing at one point.)
double distance(const float *shape, const PatternSlot &slot) {
    double d = 0;
    for (std::uint32_t i = 0; i < kPatternWindow; i++) {
        const double e = double{shape[i]} - slot.shape[i];
        d += e * e;
    }
    return std::sqrt(d / kPatternWindow);
}

PatternResult shape_update(void *state, double value, bool learn) {
    auto *s = static_cast<PatternState *>(state);
    PatternSlot *slots = slots_of(state);
    PatternResult r{0, value};
    const float v = static_cast<float>(value);
    // The shape ending with this value, oldest first.
    float shape[kPatternWindow];
    for (std::uint32_t i = 0; i + 1 < kPatternWindow; i++)
        shape[i] = s->window[(s->next + 1 + i) % kPatternWindow];
    shape[kPatternWindow - 1] = v;
    const double lo = s->seen ? std::fmin(s->lo, value) : value;
    const double hi = s->seen ? std::fmax(s->hi, value) : value;
    const double range = hi - lo;

    std::uint32_t best = kPatternSlots;
    double best_d = INFINITY;
    for (std::uint32_t k = 0; k < s->slots_used; k++) {
        const double d = distance(shape, slots[k]);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    const bool full_shape = s->seen + 1 >= kPatternWindow;
    if (best < kPatternSlots && range > 0) {
        r.raw = best_d / range;
        r.expected = slots[best].shape[kPatternWindow - 1];
    }
    if (!full_shape) r.raw = 0;
    if (!learn) return r;

    s->lo = lo;
    s->hi = hi;
    s->window[s->next] = v;
    s->next = (s->next + 1) % kPatternWindow;
    if (s->seen < 0xffffffffu) s->seen++;
    if (!full_shape) return r;
    if (best < kPatternSlots && (range == 0 || best_d <= kPatternVigilance * range)) {
        PatternSlot &p = slots[best];
        if (p.matches < kPatternMaxMatches) p.matches++;
        const float rate = 1.0f / static_cast<float>(p.matches);
        for (std::uint32_t i = 0; i < kPatternWindow; i++) p.shape[i] += rate * (shape[i] - p.shape[i]);
        p.last_matched = s->seen;
        return r;
    }
    // A new shape: a new prototype, in place of the one matched least recently.
    std::uint32_t k = s->slots_used;
    if (k < kPatternSlots) {
        s->slots_used++;
    } else {
        k = 0;
        for (std::uint32_t j = 1; j < kPatternSlots; j++)
            if (slots[j].last_matched < slots[k].last_matched) k = j;
    }
    std::memcpy(slots[k].shape, shape, sizeof(shape));
    slots[k].matches = 1;
    slots[k].last_matched = s->seen;
    return r;
}

}  // namespace

std::size_t pattern_state_bytes() noexcept {
    return sizeof(PatternState) + kPatternSlots * sizeof(PatternSlot) + adaptive_state_bytes(true);
}

void pattern_init(void *state) noexcept {
    std::memset(state, 0, pattern_state_bytes());
    adaptive_init(band_of(state), kPatternBandAlpha, true);
}

PatternResult pattern_update(void *state, std::int64_t timestamp, double value, bool learn) noexcept {
    const AdaptiveResult band = adaptive_update(band_of(state), timestamp, value, learn);
    PatternResult r = shape_update(state, value, learn);
    r.shape = r.raw;
    r.band = band.raw;
    if (r.expected == value && band.expected != value) r.expected = band.expected;
    return r;
}

bool pattern_check(std::string_view bytes) noexcept {
    if (bytes.size() != pattern_state_bytes()) return false;
    PatternState s;
    std::memcpy(&s, bytes.data(), sizeof(s));
    if (!(std::fabs(s.lo) <= kMaxStreamValue) || !(std::fabs(s.hi) <= kMaxStreamValue) || s.lo > s.hi ||
        s.slots_used > kPatternSlots ||
        s.next >= kPatternWindow || s.zero != 0)
        return false;
    for (float w : s.window)
        if (!std::isfinite(w)) return false;
    for (std::uint32_t k = 0; k < s.slots_used; k++) {
        PatternSlot p;
        std::memcpy(&p, bytes.data() + sizeof(s) + std::size_t{k} * sizeof(p), sizeof(p));
        for (float x : p.shape)
            if (!std::isfinite(x)) return false;
        if (p.matches < 1 || p.matches > kPatternMaxMatches || p.last_matched > s.seen) return false;
    }
    const std::size_t band = sizeof(PatternState) + kPatternSlots * sizeof(PatternSlot);
    if (!adaptive_check(bytes.substr(band))) return false;
    AdaptiveState a;
    std::memcpy(&a, bytes.data() + band, sizeof(a));
    return a.hourly == 1;
}

}  // namespace anomaly
