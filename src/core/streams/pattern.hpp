// pattern: a bounded memory of the shapes the series has taken. The last
// kPatternWindow values make the point's shape; the memory holds up to
// kPatternSlots remembered shapes (prototypes). The raw score is how far the
// newest shape is from the nearest remembered one (the root mean square of
// the differences of its values), as a share of the range
// of values seen so far: a shape the series has made before scores about 0,
// a new one (a spike, a level never seen, a rhythm broken) scores high.
//
// Learning, in the manner of adaptive resonance (Carpenter and Grossberg):
// a shape within kPatternVigilance of its nearest prototype refines it (a
// running mean over its matches, capped so that it keeps following drift);
// a farther one becomes a new prototype, replacing the one matched least
// recently when the memory is full. The memory thus keeps the shapes that
// recur and forgets the ones that do not, in fixed space.
//
// The range is the least and greatest value seen (a stream knows nothing in
// advance). Prototypes are kept in the values' own units, so a wider range
// later rescales distances without invalidating the memory.
//
// Beside the shapes, an hourly adaptive band (adaptive.hpp, alpha
// kPatternBandAlpha) judges the value against its hour of the day: a shape
// the series makes every day is still anomalous at the wrong time of day.
// The two raw scores (shape, band) each have their own likelihood
// (likelihood.hpp), taken as independent evidence: their tail probabilities
// multiply (likelihood_combine), with one alarm hold.
// On NAB's development files (standard profile) the shapes alone scored
// 50.3, the band alone (adaptive hourly) 55.8; both, the larger of the two
// likelihoods answering, 63.7; with the root mean square distance 65.7, and
// combined as evidence 69.0.
//
// Expected value: the newest value of the nearest prototype (the band's
// mean before there is one).
//
// State (little-endian):
//   PatternState (64 bytes): f64 lo, hi | u32 seen, slots_used, next, 0 |
//                            f32 window[kPatternWindow]
//   kPatternSlots x PatternSlot (40 bytes): f32 shape[kPatternWindow] |
//                            u32 matches | u32 last_matched (the seen count)
//   the hourly band: AdaptiveState with hourly = 1 (616 bytes)
// 21160 bytes in all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace anomaly {

constexpr std::uint32_t kPatternWindow = 8;
constexpr std::uint32_t kPatternSlots = 512;

struct PatternState {
    double lo, hi;
    std::uint32_t seen;
    std::uint32_t slots_used;
    std::uint32_t next;
    std::uint32_t zero;
    float window[kPatternWindow];
};

struct PatternSlot {
    float shape[kPatternWindow];
    std::uint32_t matches;
    std::uint32_t last_matched;
};
static_assert(sizeof(PatternState) == 64 && sizeof(PatternSlot) == 40 &&
                  std::is_trivially_copyable<PatternState>::value && std::is_trivially_copyable<PatternSlot>::value,
              "part of the stream state format");

constexpr double kPatternBandAlpha = 0.002;

struct PatternResult {
    double raw;        // shape
    double expected;
    double shape = 0;  // distance to the nearest prototype, a share of the range
    double band = 0;   // the hourly band's |z|
};

std::size_t pattern_state_bytes() noexcept;
void pattern_init(void *state) noexcept;
PatternResult pattern_update(void *state, std::int64_t timestamp, double value, bool learn) noexcept;
bool pattern_check(std::string_view bytes) noexcept;

}  // namespace anomaly
