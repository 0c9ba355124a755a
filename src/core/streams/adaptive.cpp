#include "core/streams/adaptive.hpp"
#include "core/stream.hpp"

#include <cmath>
#include <cstring>

namespace anomaly {

namespace {

AdaptiveMoments *hours_of(void *state) {
    return reinterpret_cast<AdaptiveMoments *>(static_cast<unsigned char *>(state) + sizeof(AdaptiveState));
}

std::uint32_t hour_of(std::int64_t timestamp) {
    std::int64_t second = timestamp % 86400;
    if (second < 0) second += 86400;
    return static_cast<std::uint32_t>(second / 3600);
}

// The spread is never quite 0: a value off a constant series is then very
// strange rather than infinitely so.
double spread_of(const AdaptiveMoments &m) {
    const double floor = 1e-9 * std::fmax(1.0, std::fabs(m.mean));
    return std::fmax(std::sqrt(std::fmax(m.var, 0.0)), floor);
}

void learn(AdaptiveMoments *m, double alpha, double value) {
    if (m->points == 0) {
        m->mean = value;
        m->var = 0;
    } else {
        // Until 1 / alpha points, the plain mean and variance: the first
        // points would otherwise pull the mean from 0 slowly.
        const double n = static_cast<double>(m->points) + 1;
        const double a = n * alpha < 1 ? 1 / n : alpha;
        const double diff = value - m->mean;
        const double step = a * diff;
        m->mean += step;
        m->var = (1 - a) * (m->var + diff * step);
    }
    m->points++;
}

}  // namespace

std::size_t adaptive_state_bytes(bool hourly) noexcept {
    return sizeof(AdaptiveState) + (hourly ? 24 * sizeof(AdaptiveMoments) : 0);
}

void adaptive_init(void *state, double alpha, bool hourly) noexcept {
    std::memset(state, 0, adaptive_state_bytes(hourly));
    auto *s = static_cast<AdaptiveState *>(state);
    s->alpha = alpha;
    s->hourly = hourly ? 1 : 0;
}

AdaptiveResult adaptive_update(void *state, std::int64_t timestamp, double value, bool learn_it) noexcept {
    auto *s = static_cast<AdaptiveState *>(state);
    AdaptiveMoments *hour = s->hourly ? &hours_of(state)[hour_of(timestamp)] : nullptr;
    const AdaptiveMoments &judge = hour && hour->points >= kAdaptiveHourMinPoints ? *hour : s->overall;
    AdaptiveResult r{0, value};
    // A spread from a handful of points is no spread to judge by.
    if (judge.points >= kAdaptiveMinPoints) {
        r.raw = std::fabs(value - judge.mean) / spread_of(judge);
        r.expected = judge.mean;
    }
    if (learn_it) {
        learn(&s->overall, s->alpha, value);
        if (hour) learn(hour, s->alpha, value);
    }
    return r;
}

bool adaptive_check(std::string_view bytes) noexcept {
    if (bytes.size() < sizeof(AdaptiveState)) return false;
    AdaptiveState s;
    std::memcpy(&s, bytes.data(), sizeof(s));
    if (!(s.alpha >= kAdaptiveMinAlpha && s.alpha <= kAdaptiveMaxAlpha) || s.hourly > 1) return false;
    if (bytes.size() != adaptive_state_bytes(s.hourly)) return false;
    const std::size_t n = 1 + (s.hourly ? 24 : 0);
    for (std::size_t i = 0; i < n; i++) {
        AdaptiveMoments m;
        std::memcpy(&m, bytes.data() + sizeof(AdaptiveState) - sizeof(AdaptiveMoments) + i * sizeof(m), sizeof(m));
        // Learned values are within +-kMaxStreamValue: so are their moments.
        if (!(std::fabs(m.mean) <= kMaxStreamValue) || !(m.var >= 0 && m.var <= 4 * kMaxStreamValue * kMaxStreamValue))
            return false;
    }
    return true;
}

}  // namespace anomaly
