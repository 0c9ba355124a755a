// What /observe parses, answers and stores, without nginx: its bodies, its
// answer, its parameters and the checkpoint record.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/encoding.hpp"
#include "core/parameters.hpp"
#include "core/render.hpp"
#include "core/request.hpp"
#include "core/stream.hpp"
#include "support.hpp"

using namespace anomaly;

namespace {

Error parse(const std::string &body, ObserveInput *out, std::size_t max_points = 1000) {
    std::string padded = body;
    padded.append(kJsonPadding, '\0');
    return parse_observe_body(padded.data(), body.size(), max_points, out);
}

}  // namespace

TEST(ObserveBody, OnePoint) {
    ObserveInput in;
    ASSERT_FALSE(parse(R"({"timestamp": 1700000000, "value": 4.5})", &in));
    EXPECT_FALSE(in.many);
    ASSERT_EQ(in.points.values.size(), 1u);
    EXPECT_EQ(in.points.timestamps[0], 1700000000);
    EXPECT_EQ(in.points.values[0], 4.5);
    ASSERT_FALSE(parse(R"({"timestamp": "1700000001", "value": -1})", &in));
    EXPECT_EQ(in.points.timestamps[0], 1700000001);
}

TEST(ObserveBody, ManyInEitherShapeAndAnyOrder) {
    ObserveInput in;
    // Repeated and earlier timestamps are the stream's to skip, not errors;
    // equal values are a stream's normal life.
    ASSERT_FALSE(parse(R"({"timestamps": [3, 3, 1], "values": [5, 5, 5]})", &in));
    EXPECT_TRUE(in.many);
    EXPECT_EQ(in.points.values.size(), 3u);
    ASSERT_FALSE(parse(R"({"data": [{"timestamp": 10, "value": 1}]})", &in));
    EXPECT_TRUE(in.many);  // one point, but asked as many: arrays in the answer
    EXPECT_EQ(in.points.timestamps[0], 10);
}

TEST(ObserveBody, Errors) {
    ObserveInput in;
    Error e = parse(R"({"value": 3})", &in);
    EXPECT_EQ(e.status, 422);
    EXPECT_STREQ(e.code, "invalid_timestamp");
    e = parse(R"({"timestamp": 1, "value": "x"})", &in);
    EXPECT_STREQ(e.code, "invalid_value");
    e = parse(R"({"timestamps": [1, 2], "values": [1, null]})", &in);
    EXPECT_STREQ(e.code, "invalid_value");
    EXPECT_NE(e.detail.find("values[1]"), std::string::npos) << e.detail;
    e = parse(R"({"timestamps": [1, 2], "values": [1]})", &in);
    EXPECT_STREQ(e.code, "length_mismatch");
    e = parse(R"({"timestamps": [], "values": []})", &in);
    EXPECT_STREQ(e.code, "too_few_points");
    e = parse(R"({"timestamps": [1, 2, 3], "values": [1, 2, 3]})", &in, 2);
    EXPECT_STREQ(e.code, "too_many_points");
    e = parse(R"({"timestamps": [1, 2], "values": [1, 1e999]})", &in);
    EXPECT_STREQ(e.code, "invalid_value");
    for (const char *bad : {"", "[]", "{", "42", R"({"points": []})", R"({"timestamp": 1})"}) {
        e = parse(bad, &in);
        EXPECT_EQ(e.status, 400) << bad;
        EXPECT_STREQ(e.code, "malformed_json") << bad;
    }
}

TEST(ObserveAnswer, OnePointAndMany) {
    StreamPoint learning;
    learning.stage = StreamStage::learning;
    learning.anomaly_score = 99;  // never anomalous while learning
    learning.points_processed = 1;
    StreamPoint spike;
    spike.stage = StreamStage::inference;
    spike.anomaly_score = 85;
    spike.score = 4.5;
    spike.has_expected = true;
    spike.expected_value = 10;
    spike.confidence = 50;
    spike.points_processed = 2;
    StreamPoint retry = spike;
    retry.stage = StreamStage::skipped;
    std::string out;
    render_observation(&out, "s\"1", DetectorKind::adaptive, &spike, 1, false, 70);
    EXPECT_EQ(out, R"({"series_id":"s\"1","detector":"adaptive","anomaly":true,"anomaly_score":85,"score":4.5,)"
                   R"("expected_value":10,"stage":"inference","confidence":50,"points_processed":2})");
    render_observation(&out, "s", DetectorKind::adaptive, &spike, 1, false, 90);
    EXPECT_NE(out.find("\"anomaly\":false"), std::string::npos) << "the location's threshold decides";
    const StreamPoint three[] = {learning, spike, retry};
    render_observation(&out, "s", DetectorKind::rcf, three, 3, true, 70);
    EXPECT_NE(out.find(R"("points":3,"learned":2,"skipped":1,"anomalies":2)"), std::string::npos) << out;
    EXPECT_NE(out.find(R"("anomaly":[false,true,true])"), std::string::npos) << out;
    EXPECT_NE(out.find(R"("expected_value":[null,10,10])"), std::string::npos) << out;
    EXPECT_NE(out.find(R"("stage":["learning","inference","skipped"])"), std::string::npos) << out;
    EXPECT_NE(out.find(R"("points_processed":[1,2,2])"), std::string::npos) << out;
}

TEST(StreamParameters, QueryAndErrors) {
    StreamParams p;
    ASSERT_FALSE(apply_observe_arguments("detector=adaptive&alpha=0.05&hourly=on&unrelated=1", &p));
    EXPECT_EQ(p.kind, DetectorKind::adaptive);
    EXPECT_EQ(p.alpha, 0.05);
    EXPECT_EQ(p.hourly, 1);
    EXPECT_GT(p.warmup, 0u) << "resolved: the detector's default warm-up";
    StreamParams q;
    Error e = apply_observe_arguments("detector=three_sigma", &q);
    EXPECT_STREQ(e.code, "invalid_detector");
    e = apply_observe_arguments("detector=adaptive&alpha=2", &q);
    EXPECT_STREQ(e.code, "invalid_parameter");
    e = apply_observe_arguments("detector=adaptive&alpha=0.1&alpha=0.2", &q);
    EXPECT_STREQ(e.code, "invalid_parameter");
    e = apply_observe_arguments("detector=adaptive&hourly=maybe", &q);
    EXPECT_STREQ(e.code, "invalid_parameter");
    e = apply_observe_arguments("detector=adaptive&warmup=-1", &q);
    EXPECT_STREQ(e.code, "invalid_parameter");
    // A fit never trains a stream detector.
    DetectorParams fit;
    e = apply_fit_arguments("detector=adaptive", "", &fit);
    EXPECT_STREQ(e.code, "invalid_detector");
    EXPECT_NE(e.detail.find("/observe"), std::string::npos) << e.detail;
}

TEST(Checkpoint, RoundTripAndDamage) {
    const std::string state = anomaly_test::adaptive_stream(50, 1);
    const std::string record = encode_checkpoint(state, 123456);
    std::string back;
    std::int64_t ms = 0;
    ASSERT_TRUE(decode_checkpoint(record, &back, &ms));
    EXPECT_EQ(back, state);
    EXPECT_EQ(ms, 123456);
    EXPECT_FALSE(decode_checkpoint(record.substr(0, record.size() - 8), &back, &ms)) << "truncated";
    std::string other = record;
    other[0] = 9;
    EXPECT_FALSE(decode_checkpoint(other, &back, &ms)) << "unknown format";
    EXPECT_FALSE(decode_checkpoint("", &back, &ms));
    std::string_view series;
    EXPECT_TRUE(parse_stream_key(stream_key("cpu.host-1"), &series));
    EXPECT_EQ(series, "cpu.host-1");
    EXPECT_FALSE(parse_stream_key(model_key("cpu", 1), &series));
}
