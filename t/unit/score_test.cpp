// Batch scoring without nginx: each point's answer equals what /predict
// (judge) or /observe (observe) answers for it, and the JSON and CSV answers.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/csv.hpp"
#include "core/render.hpp"
#include "core/score.hpp"
#include "core/stream.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::noisy;

namespace {

// An image in 8-byte aligned memory, as the zone holds it.
struct Image {
    explicit Image(const std::string &bytes) : words(new std::uint64_t[(bytes.size() + 7) / 8]) {
        std::memcpy(words.get(), bytes.data(), bytes.size());
    }
    const ModelHeader &header() const { return header_of(words.get()); }
    std::unique_ptr<std::uint64_t[]> words;
};

TrainingData with_spikes(std::size_t n) {
    TrainingData d = noisy(n, 50, 2, 11);
    for (std::size_t i = 100; i < n; i += 250) d.values[i] += 40;
    return d;
}

}  // namespace

TEST(ScoreWithImage, EachPointAsJudgeAnswersIt) {
    const TrainingData training = noisy(500, 50, 2, 3);
    const TrainingData points = with_spikes(1000);
    for (DetectorKind kind : {DetectorKind::three_sigma, DetectorKind::robust, DetectorKind::seasonal,
                              DetectorKind::iforest}) {
        DetectorParams params;
        params.kind = kind;
        std::string bytes;
        ASSERT_FALSE(train(training, params, &bytes));
        Image image(bytes);
        const JudgeDefaults defaults{2.5, Tail::upper};
        std::vector<PointScore> scores;
        score_with_image(image.header(), points, defaults, &scores);
        ASSERT_EQ(scores.size(), points.values.size());
        std::size_t anomalies = 0;
        for (std::size_t i = 0; i < scores.size(); i++) {
            const Judgement j = judge(image.header(), points.values[i], points.timestamps[i], defaults);
            EXPECT_EQ(scores[i].anomaly, j.anomaly) << i;
            EXPECT_EQ(scores[i].anomaly_score, j.anomaly_score) << i;
            EXPECT_EQ(scores[i].score, j.score) << i;
            EXPECT_EQ(scores[i].has_expected, j.has_expected) << i;
            if (j.has_expected) {
                EXPECT_EQ(scores[i].expected_value, j.expected_value) << i;
            }
            anomalies += scores[i].anomaly ? 1 : 0;
        }
        EXPECT_GE(anomalies, 3u) << detector_name(kind);  // the spikes
    }
}

TEST(ScoreWithTraining, TrainsOnThePointsThenJudgesThem) {
    const TrainingData points = with_spikes(1000);
    DetectorParams params;
    params.kind = DetectorKind::robust;
    std::vector<PointScore> scores;
    ASSERT_FALSE(score_with_training(points, params, 10, JudgeDefaults{}, &scores));
    std::string bytes;
    ASSERT_FALSE(train(points, params, &bytes));
    Image image(bytes);
    for (std::size_t i = 0; i < scores.size(); i++) {
        const Judgement j = judge(image.header(), points.values[i], points.timestamps[i], JudgeDefaults{});
        EXPECT_EQ(scores[i].anomaly, j.anomaly);
        EXPECT_EQ(scores[i].anomaly_score, j.anomaly_score);
    }
    EXPECT_TRUE(scores[100].anomaly);
    EXPECT_FALSE(scores[101].anomaly);

    Error e = score_with_training(noisy(5, 1, 1, 1), params, 10, JudgeDefaults{}, &scores);
    EXPECT_STREQ(e.code, "too_few_points");
    TrainingData flat = noisy(20, 1, 1, 1);
    for (double &v : flat.values) v = 7;
    params.kind = DetectorKind::three_sigma;
    e = score_with_training(flat, params, 10, JudgeDefaults{}, &scores);
    EXPECT_STREQ(e.code, "constant_series");
}

TEST(ScoreWithStream, EachPointAsObserveAnswersIt) {
    const TrainingData points = with_spikes(1500);
    for (DetectorKind kind : {DetectorKind::rcf, DetectorKind::adaptive, DetectorKind::pattern}) {
        StreamParams params;
        params.kind = kind;
        std::vector<PointScore> scores;
        ASSERT_FALSE(score_with_stream(params, points, 70, stream_seed("s1"), 1700000000000, &scores));
        ASSERT_EQ(scores.size(), points.values.size());

        StreamParams resolved = params;
        ASSERT_FALSE(resolve_stream_params(&resolved));
        std::string state(stream_state_bytes(resolved), '\0');
        init_stream(&state[0], resolved, 1700000000000, stream_seed("s1"));
        StreamHeader &h = *reinterpret_cast<StreamHeader *>(&state[0]);
        std::size_t anomalies = 0;
        for (std::size_t i = 0; i < points.values.size(); i++) {
            const StreamPoint p = observe(h, points.timestamps[i], points.values[i]);
            EXPECT_EQ(scores[i].anomaly, observed_anomaly(p, 70)) << detector_name(kind) << " " << i;
            EXPECT_EQ(scores[i].anomaly_score, p.anomaly_score) << i;
            EXPECT_EQ(scores[i].score, p.score) << i;
            EXPECT_EQ(scores[i].has_expected, p.has_expected) << i;
            anomalies += scores[i].anomaly ? 1 : 0;
        }
        EXPECT_GE(anomalies, 1u) << detector_name(kind);
    }
}

TEST(ScoreWithStream, ParameterErrors) {
    StreamParams params;
    params.kind = DetectorKind::rcf;
    params.shingle = 100000;
    std::vector<PointScore> scores;
    Error e = score_with_stream(params, noisy(10, 1, 1, 1), 70, 1, 0, &scores);
    EXPECT_EQ(e.status, 422);
    EXPECT_STREQ(e.code, "invalid_parameter");
}

TEST(ScoreAnswer, Json) {
    TrainingData points;
    points.timestamps = {10, 20, 30};
    points.values = {1.5, 99, -2};
    std::vector<PointScore> scores(3);
    scores[0] = PointScore{false, 12.5, 0.5, true, 2};
    scores[1] = PointScore{true, 95, 8, true, 2};
    scores[2] = PointScore{false, 30, -1, false, 0};
    ScoreSummary summary;
    summary.series_id = "s\"1";
    summary.kind = DetectorKind::three_sigma;
    summary.version = 3;
    std::string out;
    render_score_json(&out, summary, points, scores);
    EXPECT_EQ(out,
              "{\"series_id\":\"s\\\"1\",\"version\":\"v3\",\"detector\":\"three_sigma\",\"points\":3,"
              "\"anomalies\":1,\"timestamps\":[10,20,30],\"values\":[1.5,99,-2],\"anomaly\":[false,true,false],"
              "\"anomaly_score\":[12.5,95,30],\"expected_value\":[2,2,null]}");
    summary.version = 0;
    summary.kind = DetectorKind::rcf;
    summary.only_anomalies = true;
    render_score_json(&out, summary, points, scores);
    EXPECT_EQ(out,
              "{\"series_id\":\"s\\\"1\",\"detector\":\"rcf\",\"points\":3,\"anomalies\":1,\"timestamps\":[20],"
              "\"values\":[99],\"anomaly\":[true],\"anomaly_score\":[95],\"expected_value\":[2]}");
}

TEST(ScoreAnswer, CsvFromJsonAndFromCsv) {
    TrainingData points;
    points.timestamps = {10, 20};
    points.values = {1.5, 99};
    std::vector<PointScore> scores(2);
    scores[1] = PointScore{true, 95.25, 8, false, 0};
    ScoreSummary summary;
    std::string out;
    render_score_csv(&out, summary, nullptr, points, scores);
    EXPECT_EQ(out, "timestamp,value,anomaly,anomaly_score\r\n10,1.5,false,0\r\n20,99,true,95.25\r\n");

    CsvTable table;
    TrainingData parsed;
    FitLimits limits;
    limits.min_points = 1;
    ASSERT_FALSE(parse_csv_body("note,value,timestamp\n\"a, b\",1.50,1970-01-01T00:00:10Z\n\"say \"\"x\"\"\",99,20\n",
                                limits, true, &table, &parsed));
    render_score_csv(&out, summary, &table, parsed, scores);
    EXPECT_EQ(out,
              "note,value,timestamp,anomaly,anomaly_score\r\n"
              "\"a, b\",1.50,1970-01-01T00:00:10Z,false,0\r\n"
              "\"say \"\"x\"\"\",99,20,true,95.25\r\n");
    summary.only_anomalies = true;
    render_score_csv(&out, summary, &table, parsed, scores);
    EXPECT_EQ(out, "note,value,timestamp,anomaly,anomaly_score\r\n\"say \"\"x\"\"\",99,20,true,95.25\r\n");
}

TEST(MediaTypes, ContentTypeAndAccept) {
    EXPECT_TRUE(is_csv_media_type("text/csv"));
    EXPECT_TRUE(is_csv_media_type("Text/CSV; charset=utf-8"));
    EXPECT_TRUE(is_csv_media_type(" text/csv ;header=present"));
    EXPECT_FALSE(is_csv_media_type("text/csvx"));
    EXPECT_FALSE(is_csv_media_type("text/plain"));
    EXPECT_FALSE(is_csv_media_type(""));

    EXPECT_TRUE(accepts_csv("text/csv"));
    EXPECT_TRUE(accepts_csv("TEXT/CSV;charset=utf-8"));
    EXPECT_TRUE(accepts_csv("application/json;q=0.5, text/csv"));
    EXPECT_TRUE(accepts_csv("text/html, text/csv;q=0.9, */*;q=0.8"));
    EXPECT_TRUE(accepts_csv("*/*, text/csv"));
    EXPECT_FALSE(accepts_csv(""));
    EXPECT_FALSE(accepts_csv("*/*"));
    EXPECT_FALSE(accepts_csv("application/json"));
    EXPECT_FALSE(accepts_csv("application/json, text/csv;q=0.5"));
    EXPECT_FALSE(accepts_csv("text/csv;q=0"));
    EXPECT_FALSE(accepts_csv("text/csv;q=0.000"));
    EXPECT_FALSE(accepts_csv("text/csvfile"));
    EXPECT_FALSE(accepts_csv("text/*"));
}

TEST(ScoreWithStream, SeedAsTheZoneGivesIt) {
    // CRC-32 of "123456789" is 0xCBF43926 (nginx's ngx_crc32_short), mixed
    // as Zone::create_stream mixes it.
    EXPECT_EQ(stream_seed("123456789"), 0xCBF43926ull * 0x9e3779b97f4a7c15ull + 9);
    EXPECT_EQ(stream_seed(""), 0u);
    EXPECT_NE(stream_seed("a"), stream_seed("b"));
}

TEST(ScoreAnswer, ValuesReadBackExactly) {
    TrainingData points;
    const double values[] = {0.1, -0.5, 1e-6, 1.5e-6, 123456.789, 999999999.5, 1e9, 3.141592653589793, -2.25,
                             1e300, -1e-300, 0, -0.0, 100, 0.000123, 7.0000001, 123.456789, 0.3, 2.675,
                             9007199.254740993, 4.35, 1234567.1234567, 3.3333333333333335e+21};
    std::int64_t t = 1;
    for (double v : values) {
        points.timestamps.push_back(t++);
        points.values.push_back(v);
    }
    std::vector<PointScore> scores(points.values.size());
    ScoreSummary summary;
    std::string out;
    render_score_json(&out, summary, points, scores);
    const std::size_t from = out.find("\"values\":[") + 10;
    const char *p = out.c_str() + from;
    for (double v : values) {
        char *end = nullptr;
        const double got = std::strtod(p, &end);
        ASSERT_NE(end, p);
        EXPECT_EQ(got, v) << std::string(p, static_cast<std::size_t>(end - p));
        EXPECT_EQ(std::signbit(got), std::signbit(v));
        p = end + 1;
    }
    EXPECT_NE(out.find("[0.1,-0.5,0.000001,1.5e-06,123456.789,999999999.5,1e+09,"), std::string::npos) << out;
    // Not 3333333333333333508096: a whole number beyond 64 bits, which
    // many JSON parsers refuse.
    EXPECT_NE(out.find(",3.3333333333333335e+21]"), std::string::npos) << out;
}
