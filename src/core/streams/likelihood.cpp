#include <algorithm>
#include "core/streams/likelihood.hpp"

#include <cmath>
#include <cstring>

#include "core/model.hpp"

namespace anomaly {

namespace {

// Short averages the history forgets over (about a month of 5-minute points
// weighs most); before that many the history is the plain average.
constexpr double kLikelihoodHistory = 8640;
// p = 10^-5 scores 70: the decision point of the paper (likelihood 0.99999).
constexpr double kLikelihoodDecision = 5;
// The spread of the short averages is at least this share of the peak raw
// score, and at least kTinySpread.
constexpr double kSpreadShareOfPeak = 0.02;
constexpr double kTinySpread = 1e-9;
// The peak decays by this factor a point: a burst of strangeness long ago
// does not keep the floor of the spread raised for ever.
constexpr double kPeakDecay = 0.9995;
// After an alarm, new alarms in the next hold points are damped: one event
// is one alarm, as an operator wants it (and as NAB counts them).
constexpr double kQuietFactor = 0.5;
constexpr double kMaxRaw = 3.4e38;

}  // namespace

double log10_upper_tail(double z) noexcept {
    if (!(z > -40)) return 0;  // also NaN
    if (z < 30) {
        const double p = 0.5 * std::erfc(z / std::sqrt(2.0));
        return p > 0 ? std::log10(p) : -300;
    }
    // Mills ratio: Q(z) ~ phi(z) / z (1 - 1/z^2), past where erfc underflows.
    const double ln = -0.5 * z * z - std::log(z) - 0.5 * std::log(2 * M_PI) + std::log1p(-1 / (z * z));
    return ln / std::log(10.0);
}

void likelihood_init(LikelihoodState *s) noexcept {
    std::memset(s, 0, sizeof(*s));
}

namespace {

// r of an anomaly_score, the inverse of sigma_anomaly_score.
double r_of(double score) {
    if (!(score > 0)) return 0;
    if (!(score < 100)) return 1e6;
    return std::sqrt(3.0 / 7.0 * score / (100 - score));
}

}  // namespace

double likelihood_combine(double a, double b) noexcept {
    return sigma_anomaly_score(r_of(a) + r_of(b));
}

double likelihood_hold(LikelihoodState *s, double score, bool learn, std::uint32_t hold_points, bool warm) noexcept {
    // A skipped point (a retry) is answered in full: the hold damps new
    // alarms, not the repetition of the one that started it.
    const double held = s->quiet > 0 && learn ? score * kQuietFactor : score;
    if (learn) {
        if (s->quiet > 0) s->quiet--;
        if (warm && held >= 70 && hold_points > 0) s->quiet = static_cast<std::uint16_t>(std::min<std::uint32_t>(hold_points, 65535));
    }
    return held;
}

double likelihood_update(LikelihoodState *s, double raw, bool learn) noexcept {
    if (!std::isfinite(raw) || raw < 0) raw = raw > 0 ? kMaxRaw : 0;
    if (raw > kMaxRaw) raw = kMaxRaw;  // the window keeps f32

    // The short average, with raw in the window.
    const std::uint32_t filled = s->seen < kLikelihoodWindow ? s->seen : kLikelihoodWindow;
    double sum = raw;
    std::uint32_t count = 1;
    const std::uint32_t keep = filled < kLikelihoodWindow ? filled : kLikelihoodWindow - 1;
    for (std::uint32_t k = 1; k <= keep; k++) {
        sum += s->window[(s->next + kLikelihoodWindow - k) % kLikelihoodWindow];
        count++;
    }
    const double average = sum / count;

    double score = 0;
    const double peak = std::fmax(s->peak * kPeakDecay, raw);
    if (s->seen > 0) {
        const double floor = std::fmax(kSpreadShareOfPeak * s->peak, kTinySpread);
        const double spread = std::fmax(std::sqrt(std::fmax(s->var, 0.0)), floor);
        const double z = (average - s->mean) / spread;
        const double r = -log10_upper_tail(z) / kLikelihoodDecision;
        score = sigma_anomaly_score(r);
    }
    if (!learn) return score;

    s->window[s->next] = static_cast<float>(raw);
    s->next = static_cast<std::uint16_t>((s->next + 1) % kLikelihoodWindow);
    const double n = s->seen + 1.0;
    const double alpha = n < kLikelihoodHistory ? 1 / n : 1 / kLikelihoodHistory;
    const double diff = average - s->mean;
    const double step = alpha * diff;
    s->mean += step;
    s->var = (1 - alpha) * (s->var + diff * step);
    s->peak = peak;
    if (s->seen < 0xffffffffu) s->seen++;
    return score;
}

bool likelihood_check(const LikelihoodState &s) noexcept {
    for (float w : s.window)
        if (!std::isfinite(w) || w < 0) return false;
    // Raw scores are kept below kMaxRaw (the window is f32), so their
    // averages, the spread of those and the peak are bounded too: a state
    // beyond these bounds was not written by likelihood_update, and one
    // inside them cannot overflow it. quiet: any u16 (a hold is at most 65535).
    return std::fabs(s.mean) <= kMaxRaw && s.var >= 0 && s.var <= 4 * kMaxRaw * kMaxRaw && s.peak >= 0 &&
           s.peak <= kMaxRaw && s.next < kLikelihoodWindow;
}

}  // namespace anomaly
