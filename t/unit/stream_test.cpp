// Streams (stream.hpp): the dispatcher every stream detector shares (the
// skipped rule, the warm-up, resuming from bytes, check_stream), the
// adaptive detector and the likelihood post-processing, each shown doing
// what it is for.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/model.hpp"
#include "core/stream.hpp"
#include "core/streams/adaptive.hpp"
#include "core/streams/likelihood.hpp"
#include "core/streams/pattern.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::kMonday;

namespace {

// A state in 8-byte aligned storage.
struct Stream {
    std::vector<std::uint64_t> words;
    StreamHeader &header() { return *reinterpret_cast<StreamHeader *>(words.data()); }
    std::string_view bytes() const {
        return std::string_view(reinterpret_cast<const char *>(words.data()), words.size() * 8);
    }
    StreamPoint observe(std::int64_t t, double v) { return anomaly::observe(header(), t, v); }
};

StreamParams params_of(DetectorKind kind) {
    StreamParams p;
    p.kind = kind;
    return p;
}

Stream make(StreamParams p, std::uint64_t seed = 7) {
    Error e = resolve_stream_params(&p);
    EXPECT_FALSE(e) << e.code << ": " << e.detail;
    Stream s;
    s.words.assign(stream_state_bytes(p) / 8, 0);
    init_stream(s.words.data(), p, 1700000000000, seed);
    EXPECT_TRUE(check_stream(s.bytes()));
    return s;
}

// The stream detectors this build offers.
std::vector<DetectorKind> kinds() {
    std::vector<DetectorKind> out;
    for (DetectorKind k : {DetectorKind::rcf, DetectorKind::adaptive, static_cast<DetectorKind>(7)}) {
        StreamParams p = params_of(k);
        if (!resolve_stream_params(&p)) out.push_back(k);
    }
    return out;
}

// Feeds n noisy points (mean, sd) every 5 minutes from *t.
void feed(Stream *s, std::int64_t *t, std::size_t n, double mean, double sd, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(mean, sd);
    for (std::size_t i = 0; i < n; i++) {
        s->observe(*t, noise(rng));
        *t += 300;
    }
}

}  // namespace

TEST(StreamParams, DefaultsAreFilledInAndKeptInTheState) {
    StreamParams p = params_of(DetectorKind::adaptive);
    ASSERT_FALSE(resolve_stream_params(&p));
    EXPECT_EQ(p.alpha, kAdaptiveAlpha);
    EXPECT_EQ(p.hourly, 0);
    EXPECT_GT(p.warmup, 0u);
    EXPECT_EQ(p.recent, kNoRecent);  // adaptive stays tiny
    Stream s = make(p);
    const StreamParams back = stream_params_of(s.header());
    EXPECT_EQ(back.kind, DetectorKind::adaptive);
    EXPECT_EQ(back.alpha, p.alpha);
    EXPECT_EQ(back.warmup, p.warmup);
    EXPECT_EQ(back.recent, kNoRecent);
    // Resolving what a state says gives the same numbers.
    StreamParams again = back;
    ASSERT_FALSE(resolve_stream_params(&again));
    EXPECT_EQ(stream_state_bytes(again), s.bytes().size());
}

TEST(StreamParams, OutOfRangeNumbersAreRefusedByName) {
    StreamParams p = params_of(DetectorKind::adaptive);
    p.alpha = 0.9;
    Error e = resolve_stream_params(&p);
    EXPECT_EQ(e.status, 422);
    EXPECT_STREQ(e.code, "invalid_parameter");
    EXPECT_NE(e.detail.find("alpha"), std::string::npos);
    p = params_of(DetectorKind::adaptive);
    p.hourly = 2;
    e = resolve_stream_params(&p);
    EXPECT_NE(e.detail.find("hourly"), std::string::npos);
    p = params_of(DetectorKind::adaptive);
    p.warmup = 2000000;
    e = resolve_stream_params(&p);
    EXPECT_NE(e.detail.find("warmup"), std::string::npos);
    p = params_of(DetectorKind::adaptive);
    p.recent = 1u << 20;
    e = resolve_stream_params(&p);
    EXPECT_NE(e.detail.find("recent"), std::string::npos);
}

TEST(StreamParams, BatchDetectorsAreNotStreams) {
    StreamParams p = params_of(DetectorKind::three_sigma);
    Error e = resolve_stream_params(&p);
    EXPECT_EQ(e.status, 422);
    EXPECT_STREQ(e.code, "invalid_detector");
    EXPECT_FALSE(is_stream_detector(DetectorKind::iforest));
    EXPECT_TRUE(is_stream_detector(DetectorKind::adaptive));
}

TEST(StreamState, AdaptiveAtItsDefaultsFitsIn256Bytes) {
    StreamParams p = params_of(DetectorKind::adaptive);
    ASSERT_FALSE(resolve_stream_params(&p));
    EXPECT_LE(stream_state_bytes(p), 256u);
    EXPECT_EQ(stream_state_bytes(p), 64u + sizeof(LikelihoodState) + sizeof(AdaptiveState));
    p.hourly = 1;
    EXPECT_EQ(stream_state_bytes(p), 64u + sizeof(LikelihoodState) + sizeof(AdaptiveState) + 24 * 24);
    p.recent = 10;
    EXPECT_EQ(stream_state_bytes(p) % 8, 0u);
    EXPECT_EQ(stream_state_bytes(p), 64u + sizeof(LikelihoodState) + sizeof(AdaptiveState) + 24 * 24 + 160);
}

TEST(StreamState, PatternAtItsDefaults) {
    StreamParams p = params_of(DetectorKind::pattern);
    ASSERT_FALSE(resolve_stream_params(&p));
    EXPECT_EQ(p.recent, 256u);
    EXPECT_EQ(pattern_state_bytes(), 64u + kPatternSlots * 40 + 616);
    EXPECT_EQ(stream_state_bytes(p), 64u + 2 * sizeof(LikelihoodState) + pattern_state_bytes() + 256 * 16);
    EXPECT_LE(stream_state_bytes(p), 32u * 1024);
}

TEST(Pattern, RemembersRecurringShapesAndFlagsANewOne) {
    Stream s = make(params_of(DetectorKind::pattern));
    std::mt19937_64 rng(4);
    std::normal_distribution<double> noise(0, 0.5);
    // A sawtooth of period 12 with a little noise, every 5 minutes.
    std::int64_t t = kMonday;
    int alarms = 0;
    for (int i = 0; i < 3000; i++, t += 300) {
        const StreamPoint pt = s.observe(t, (i % 12) * 10 + noise(rng));
        if (i > 1000) alarms += pt.anomaly_score >= 70;
    }
    EXPECT_EQ(alarms, 0);
    // The same values in an order never seen: a broken rhythm, within the range.
    double peak = 0;
    for (int i = 0; i < 12; i++, t += 300) peak = std::fmax(peak, s.observe(t, (i % 2) * 110 + noise(rng)).anomaly_score);
    EXPECT_GE(peak, 70);
}

TEST(Likelihood, AnAlarmIsHeldSoThatOneEventIsOneAlarm) {
    LikelihoodState s;
    likelihood_init(&s);
    // An alarm during the warm-up holds nothing: its scores are not answered.
    EXPECT_EQ(likelihood_hold(&s, 90, true, 288, false), 90);
    EXPECT_EQ(likelihood_hold(&s, 90, true, 288, true), 90);
    // Right after: damped below the decision point.
    EXPECT_LT(likelihood_hold(&s, 90, true, 288, true), 70);
    // Not learned (a skipped point, a retry): answered in full, and the
    // hold is not used up.
    const LikelihoodState before = s;
    EXPECT_EQ(likelihood_hold(&s, 90, false, 288, true), 90);
    EXPECT_EQ(std::memcmp(&before, &s, sizeof(s)), 0);
    for (int i = 0; i < 400; i++) likelihood_hold(&s, 10, true, 288, true);
    EXPECT_EQ(likelihood_hold(&s, 90, true, 288, true), 90);
    // hold=0 (kNoHold in the query): every alarm answered in full.
    LikelihoodState none;
    likelihood_init(&none);
    for (int i = 0; i < 3; i++) EXPECT_EQ(likelihood_hold(&none, 90, true, 0, true), 90);
}

TEST(Likelihood, TwoPiecesOfEvidenceCombineAsIndependent) {
    EXPECT_EQ(likelihood_combine(0, 0), 0);
    // Either alone answers as itself.
    EXPECT_NEAR(likelihood_combine(70, 0), 70, 1e-9);
    EXPECT_NEAR(likelihood_combine(0, 42), 42, 1e-9);
    // Two middling pieces of evidence make a strong one: r = 1/2 each
    // (about 37) adds up to r = 1, that is 70.
    const double half = sigma_anomaly_score(0.5);
    EXPECT_NEAR(likelihood_combine(half, half), 70, 1e-9);
    EXPECT_GT(likelihood_combine(half, half), std::fmax(half, half));
    // Symmetric, monotone, and bounded.
    EXPECT_EQ(likelihood_combine(30, 60), likelihood_combine(60, 30));
    EXPECT_LT(likelihood_combine(30, 60), likelihood_combine(31, 60));
    EXPECT_LE(likelihood_combine(100, 100), 100);
    EXPECT_GE(likelihood_combine(100, 0), 99.99);
}

TEST(StreamObserve, TheWarmUpAnswersLearningAndZero) {
    for (DetectorKind kind : kinds()) {
        StreamParams p = params_of(kind);
        p.warmup = 50;
        Stream s = make(p);
        std::int64_t t = kMonday;
        double last_confidence = -1;
        for (int i = 0; i < 50; i++) {
            // Even a wild value is not anomalous while learning.
            const StreamPoint pt = s.observe(t, i == 40 ? 1e6 : 10.0 + (i % 3));
            t += 300;
            EXPECT_EQ(pt.stage, StreamStage::learning) << detector_name(kind);
            EXPECT_EQ(pt.anomaly_score, 0);
            EXPECT_EQ(pt.points_processed, static_cast<std::uint64_t>(i + 1));
            EXPECT_GT(pt.confidence, last_confidence);
            last_confidence = pt.confidence;
        }
        const StreamPoint pt = s.observe(t, 10);
        EXPECT_EQ(pt.stage, StreamStage::inference);
        EXPECT_STREQ(stream_stage_name(pt.stage), "inference");
        EXPECT_GT(pt.confidence, last_confidence);
        EXPECT_LE(pt.confidence, 100);
    }
}

TEST(StreamObserve, APointAtOrBeforeTheLastLearnedIsScoredNotLearned) {
    for (DetectorKind kind : kinds()) {
        Stream s = make(params_of(kind));
        std::int64_t t = kMonday;
        feed(&s, &t, 600, 50, 2, 1);
        const std::string before(s.bytes());
        const std::int64_t last = t - 300;
        // A retry of the last point, an older one, and a spike in the past.
        for (std::int64_t when : {last, last - 300, kMonday}) {
            for (double v : {50.0, 500.0}) {
                const StreamPoint pt = s.observe(when, v);
                EXPECT_EQ(pt.stage, StreamStage::skipped) << detector_name(kind);
                EXPECT_STREQ(stream_stage_name(pt.stage), "skipped");
                EXPECT_EQ(pt.points_processed, 600u);
                EXPECT_EQ(std::string(s.bytes()), before) << "a skipped point changed the state";
            }
        }
        // A skipped point is scored as the next one would be (by adaptive,
        // which does not look at the time, exactly).
        Stream copy = s;
        const StreamPoint skipped = s.observe(last, 5000);
        const StreamPoint learned = copy.observe(t, 5000);
        if (kind == DetectorKind::adaptive) {
            EXPECT_EQ(skipped.anomaly_score, learned.anomaly_score);
            EXPECT_EQ(skipped.score, learned.score);
        }
        EXPECT_GT(skipped.anomaly_score, 70) << detector_name(kind);
    }
}

TEST(StreamObserve, ResumingFromACopyOfTheBytesAnswersTheSame) {
    for (DetectorKind kind : kinds()) {
        Stream a = make(params_of(kind), 42);
        std::int64_t t = kMonday;
        feed(&a, &t, 700, 10, 1, 3);
        // The checkpoint: bytes copied to a different address.
        Stream b;
        b.words.assign(a.words.size() + 3, 0);
        std::memcpy(b.words.data(), a.words.data(), a.bytes().size());
        b.words.resize(a.words.size());
        ASSERT_TRUE(check_stream(b.bytes()));
        std::mt19937_64 rng(9);
        std::normal_distribution<double> noise(10, 1);
        for (int i = 0; i < 500; i++) {
            const double v = i % 97 == 0 ? 30 : noise(rng);
            const StreamPoint x = a.observe(t, v), y = b.observe(t, v);
            t += 300;
            ASSERT_EQ(x.anomaly_score, y.anomaly_score) << detector_name(kind) << " at " << i;
            ASSERT_EQ(x.score, y.score);
            ASSERT_EQ(x.expected_value, y.expected_value);
        }
        EXPECT_EQ(a.bytes(), b.bytes());
    }
}

TEST(StreamRecentPoints, TheRingKeepsTheNewestOldestFirst) {
    StreamParams p = params_of(DetectorKind::adaptive);
    p.recent = 4;
    Stream s = make(p);
    StreamRecent out[8];
    EXPECT_EQ(stream_recent(s.header(), out, 8), 0u);
    for (int i = 0; i < 6; i++) s.observe(kMonday + i, i);
    s.observe(kMonday, 99);  // skipped: not kept
    ASSERT_EQ(stream_recent(s.header(), out, 8), 4u);
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(out[i].timestamp, kMonday + 2 + i);
        EXPECT_EQ(out[i].value, 2 + i);
    }
    ASSERT_EQ(stream_recent(s.header(), out, 2), 2u);
    EXPECT_EQ(out[0].value, 4);
    EXPECT_EQ(out[1].value, 5);
    EXPECT_TRUE(check_stream(s.bytes()));
}

TEST(Adaptive, FlagsASpikeAndAdaptsToALevelShift) {
    Stream s = make(params_of(DetectorKind::adaptive));
    std::int64_t t = kMonday;
    feed(&s, &t, 1000, 100, 5, 11);
    const StreamPoint spike = s.observe(t, 160);
    t += 300;
    EXPECT_GE(spike.anomaly_score, 70);
    EXPECT_NEAR(spike.expected_value, 100, 2);
    EXPECT_GT(spike.score, 10);
    feed(&s, &t, 400, 100, 5, 13);  // past the spike's alarm hold
    // The level moves to 200 and stays: alarms at first, then the band follows.
    std::mt19937_64 rng(12);
    std::normal_distribution<double> noise(200, 5);
    double first = 0;
    for (int i = 0; i < 1500; i++) {
        const StreamPoint pt = s.observe(t, noise(rng));
        t += 300;
        if (i == 0) first = pt.anomaly_score;
    }
    EXPECT_GE(first, 70);
    int alarms = 0;
    double expected = 0;
    for (int i = 0; i < 300; i++) {
        const StreamPoint pt = s.observe(t, noise(rng));
        t += 300;
        alarms += pt.anomaly_score >= 70;
        expected = pt.expected_value;
    }
    EXPECT_EQ(alarms, 0);
    EXPECT_NEAR(expected, 200, 3);
}

TEST(Adaptive, HourlyKnowsNoonFromThreeInTheMorning) {
    StreamParams p = params_of(DetectorKind::adaptive);
    p.hourly = 1;
    Stream hourly = make(p);
    Stream plain = make(params_of(DetectorKind::adaptive));
    std::mt19937_64 rng(5);
    std::normal_distribution<double> noise(0, 2);
    // Busy days (1000 at noon), quiet nights (100 at 3 a.m.), hourly points.
    auto level = [](std::int64_t t) {
        const double hour = static_cast<double>((t % 86400) / 3600);
        return 550 - 450 * std::cos((hour - 3) / 24 * 2 * M_PI);
    };
    std::int64_t t = kMonday;
    for (int i = 0; i < 24 * 60; i++, t += 3600) {
        const double v = level(t) + noise(rng);
        hourly.observe(t, v);
        plain.observe(t, v);
    }
    // The next day at 3 a.m. and at noon: noon's value at 3 a.m. is anomalous.
    const std::int64_t day = t - t % 86400 + 86400;
    Stream other = hourly;  // a separate future for noon: the 3 a.m. alarm lingers in the short average
    const StreamPoint night = hourly.observe(day + 3 * 3600, level(day + 12 * 3600));
    EXPECT_GE(night.anomaly_score, 70);
    EXPECT_NEAR(night.expected_value, level(day + 3 * 3600), 10);
    const StreamPoint noon = other.observe(day + 12 * 3600, level(day + 12 * 3600));
    EXPECT_LT(noon.anomaly_score, 70);
    EXPECT_NEAR(noon.expected_value, level(day + 12 * 3600), 10);
    // Without hourly, one band for day and night misses it.
    const StreamPoint blind = plain.observe(day + 3 * 3600, level(day + 12 * 3600));
    EXPECT_LT(blind.anomaly_score, 70);
}

TEST(Likelihood, TurnsANoisyRawScoreIntoAStableOne) {
    // Raw scores of a detector on a noisy but normal series: often large.
    LikelihoodState s;
    likelihood_init(&s);
    std::mt19937_64 rng(3);
    std::exponential_distribution<double> raw(1.0);
    int raw_over = 0, alarms = 0;
    for (int i = 0; i < 5000; i++) {
        const double r = raw(rng);
        raw_over += r > 3;  // what a fixed cut on the raw score would flag
        const double score = likelihood_update(&s, r, true);
        if (i > 500) alarms += score >= 70;
    }
    EXPECT_GT(raw_over, 100);
    EXPECT_EQ(alarms, 0);
    // A run of high raw scores is rare for this series: it scores high.
    double peak = 0;
    for (int i = 0; i < 5; i++) peak = std::fmax(peak, likelihood_update(&s, 12, true));
    EXPECT_GE(peak, 70);
    EXPECT_TRUE(likelihood_check(s));
}

TEST(Likelihood, TailProbabilitiesStayFiniteFarOut) {
    EXPECT_NEAR(log10_upper_tail(0), std::log10(0.5), 1e-12);
    EXPECT_NEAR(log10_upper_tail(4.264890794), -5, 1e-3);
    EXPECT_LT(log10_upper_tail(100), log10_upper_tail(40));
    EXPECT_TRUE(std::isfinite(log10_upper_tail(1e10)));
    EXPECT_EQ(log10_upper_tail(-1e300), 0);
}

TEST(CheckStream, RefusesWhatItCannotRun) {
    for (DetectorKind kind : kinds()) {
        Stream s = make(params_of(kind));
        std::int64_t t = kMonday;
        feed(&s, &t, 400, 5, 1, 8);
        const std::string good(s.bytes());
        ASSERT_TRUE(check_stream(good));
        auto aligned_check = [](const std::string &bytes) {
            std::vector<std::uint64_t> w((bytes.size() + 7) / 8 + 1, 0);
            std::memcpy(w.data(), bytes.data(), bytes.size());
            return check_stream(std::string_view(reinterpret_cast<const char *>(w.data()), bytes.size()));
        };
        // Truncated, mis-sized, lengthened.
        for (std::size_t cut : {std::size_t{0}, std::size_t{8}, std::size_t{63}, std::size_t{64},
                                good.size() / 2, good.size() - 8, good.size() - 1})
            EXPECT_FALSE(aligned_check(good.substr(0, cut))) << cut;
        EXPECT_FALSE(aligned_check(good + std::string(8, '\0')));
        // Wrong kind, format.
        std::string bad = good;
        bad[1] = static_cast<char>(DetectorKind::three_sigma);
        EXPECT_FALSE(aligned_check(bad));
        bad = good;
        bad[1] = static_cast<char>(99);
        EXPECT_FALSE(aligned_check(bad));
        bad = good;
        bad[0] = 2;
        EXPECT_FALSE(aligned_check(bad));
        // A non-finite number anywhere past the header's integers.
        const double nan = std::nan("");
        int caught = 0;
        for (std::size_t off = sizeof(StreamHeader); off + 8 <= good.size(); off += 8) {
            bad = good;
            std::memcpy(&bad[off], &nan, 8);
            caught += !aligned_check(bad);
        }
        EXPECT_GT(caught, 0);
        // The likelihood's numbers and the detector's first numbers.
        bad = good;
        std::memcpy(&bad[sizeof(StreamHeader) + 32], &nan, 8);
        EXPECT_FALSE(aligned_check(bad));
        bad = good;
        std::memcpy(&bad[s.header().detector_offset], &nan, 8);
        EXPECT_FALSE(aligned_check(bad));
        // Random bytes, and random damage to good ones: never a crash, and
        // whatever passes can be run.
        std::mt19937_64 rng(1);
        for (int i = 0; i < 3000; i++) {
            std::string r = good;
            if (i % 3 == 0) {
                for (char &c : r) c = static_cast<char>(rng());
            } else {
                for (int k = 0; k < 1 + i % 7; k++) r[rng() % r.size()] = static_cast<char>(rng());
            }
            std::vector<std::uint64_t> w(r.size() / 8);
            std::memcpy(w.data(), r.data(), r.size());
            if (check_stream(std::string_view(reinterpret_cast<const char *>(w.data()), r.size()))) {
                StreamHeader &h = *reinterpret_cast<StreamHeader *>(w.data());
                for (int k = 0; k < 20; k++) {
                    const StreamPoint pt = observe(h, h.last_timestamp == kNoTimestamp ? k : h.last_timestamp + 1 + k, k);
                    EXPECT_TRUE(pt.anomaly_score >= 0 && pt.anomaly_score <= 100);
                }
                StreamRecent out[4];
                stream_recent(h, out, 4);
            }
        }
    }
}
