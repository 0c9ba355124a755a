// The score post-processing shared by every stream detector: a detector's
// raw score (any scale, higher is stranger) becomes an anomaly_score 0..100.
//
// It is the "anomaly likelihood" of Ahmad, Lavin, Purdy and Agha (2017,
// "Unsupervised real-time anomaly detection for streaming data"): how
// unlikely the average of the last few raw scores is under the distribution
// of such averages in the stream's own history. A raw score that is
// routinely high on a noisy series then says little, and one that is rare
// for this series says a lot, whatever the detector's scale. The history is
// a normal fitted online (a running mean and variance of the short averages,
// exponentially forgetting after kLikelihoodHistory points), so the state
// has a fixed size and needs no range known in advance.
//
// From the upper tail probability p of the short average:
//   r = log10(1/p) / kLikelihoodDecision,  anomaly_score = sigma_anomaly_score(r)
// so p = 10^-kLikelihoodDecision scores 70 and rarer averages approach 100.
//
// State (64 bytes, little-endian):
//   f32 window[8]   the last raw scores, a ring
//   f64 mean, var   of the short averages learned so far
//   f64 peak        a slowly decaying maximum of the raw scores: the floor
//                   of the spread is a share of it, so that a series whose
//                   raw scores never moved does not alarm on a tiny wobble
//   u32 seen        raw scores learned
//   u16 next        where the next raw score goes in the window
//   u16 quiet       points left in which a new alarm is damped (after one fired)
#pragma once

#include <cstdint>
#include <type_traits>

namespace anomaly {

constexpr std::uint32_t kLikelihoodWindow = 8;

struct LikelihoodState {
    float window[kLikelihoodWindow];
    double mean;
    double var;
    double peak;
    std::uint32_t seen;
    std::uint16_t next;
    std::uint16_t quiet;
};
static_assert(sizeof(LikelihoodState) == 64 && std::is_trivially_copyable<LikelihoodState>::value,
              "part of the stream state format");

void likelihood_init(LikelihoodState *s) noexcept;

// The anomaly_score (0..100) of raw, then, when learn, raw joins the
// history. Without learn the state is left as it was.
double likelihood_update(LikelihoodState *s, double raw, bool learn) noexcept;

// The anomaly_score of two independent pieces of evidence, given as their
// anomaly_scores: their tail probabilities multiply, so their r add. Two
// scores of 0 make 0; either approaching 100 makes about 100.
double likelihood_combine(double a, double b) noexcept;

// The hold after an alarm: a score of 70 or more, learned past the warm-up
// (warm), damps the scores of the next hold_points learned points by half,
// so that one event is one alarm, as an operator wants it (and as NAB counts
// them: the leaders hold alarms the same way). Returns the score to answer.
double likelihood_hold(LikelihoodState *s, double score, bool learn, std::uint32_t hold_points, bool warm) noexcept;

// Finite numbers, indices in range.
bool likelihood_check(const LikelihoodState &s) noexcept;

// log10 of the upper tail probability of a standard normal at z (<= 0).
double log10_upper_tail(double z) noexcept;

}  // namespace anomaly
