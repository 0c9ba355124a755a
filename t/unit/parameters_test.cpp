// A fit's detector and parameters: directives, then the body's "detector",
// then query arguments; every bad value named in a 422.
#include <gtest/gtest.h>

#include <string>

#include "core/parameters.hpp"
#include "core/request.hpp"
#include "support.hpp"

using namespace anomaly;

TEST(FitArguments, DefaultsAreTheChallengesModel) {
    DetectorParams p;
    ASSERT_FALSE(apply_fit_arguments("", "", &p));
    EXPECT_EQ(p.kind, DetectorKind::three_sigma);
    EXPECT_EQ(p.sigma, 0) << "the predicting location's anomaly_sigma";
    EXPECT_EQ(p.tail, kTailFromLocation);
}

TEST(FitArguments, QueryOverridesBodyOverridesDirectives) {
    DetectorParams p;
    p.kind = DetectorKind::robust;  // anomaly_detector robust;
    ASSERT_FALSE(apply_fit_arguments("x=1&trees=50", "", &p));
    EXPECT_EQ(p.kind, DetectorKind::robust);
    EXPECT_EQ(p.trees, 50u);
    ASSERT_FALSE(apply_fit_arguments("", "seasonal", &p));
    EXPECT_EQ(p.kind, DetectorKind::seasonal);
    ASSERT_FALSE(apply_fit_arguments("detector=iforest&contamination=0.02&sample=128&sigma=2.5&tail=upper&season=week",
                                     "robust", &p));
    EXPECT_EQ(p.kind, DetectorKind::iforest);
    EXPECT_EQ(p.contamination, 0.02);
    EXPECT_EQ(p.sample, 128u);
    EXPECT_EQ(p.sigma, 2.5);
    EXPECT_EQ(p.tail, static_cast<std::uint8_t>(Tail::upper));
    EXPECT_EQ(p.season, Season::week);
}

TEST(FitArguments, BadValuesAreNamed) {
    struct Case {
        const char *args;
        const char *code;
        const char *mentions;
    } cases[] = {
        {"detector=prophet", "invalid_detector", "three_sigma, robust, seasonal, iforest"},
        {"detector=", "invalid_detector", "detector"},
        {"sigma=0", "invalid_parameter", "sigma"},
        {"sigma=-1", "invalid_parameter", "sigma"},
        {"sigma=1001", "invalid_parameter", "at most 1000"},
        {"sigma=nan", "invalid_parameter", "sigma"},
        {"sigma=0x10", "invalid_parameter", "sigma"},
        {"sigma=1e999", "invalid_parameter", "sigma"},
        {"tail=sideways", "invalid_parameter", "both, upper or lower"},
        {"season=month", "invalid_parameter", "day or week"},
        {"trees=0", "invalid_parameter", "trees"},
        {"trees=1001", "invalid_parameter", "trees"},
        {"trees=ten", "invalid_parameter", "trees"},
        {"sample=1", "invalid_parameter", "sample"},
        {"contamination=0.5", "invalid_parameter", "below 0.5"},
        {"contamination=0", "invalid_parameter", "contamination"},
        {"sigma=2&sigma=3", "invalid_parameter", "more than once"},
    };
    for (const Case &c : cases) {
        DetectorParams p;
        const Error e = apply_fit_arguments(c.args, "", &p);
        EXPECT_EQ(e.status, 422) << c.args;
        EXPECT_STREQ(e.code, c.code) << c.args;
        EXPECT_NE(e.detail.find(c.mentions), std::string::npos) << c.args << ": " << e.detail;
    }
    DetectorParams p;
    EXPECT_STREQ(apply_fit_arguments("", "Robust", &p).code, "invalid_detector") << "names are exact";
}

TEST(FitBody, DetectorKey) {
    FitLimits limits;
    limits.min_points = 2;
    TrainingData d;
    std::string detector = "stale";
    anomaly_test::Body plain(R"({"timestamps":[1,2,3],"values":[1,2,4]})");
    ASSERT_FALSE(parse_fit_body(plain.data(), plain.size(), limits, &d, &detector));
    EXPECT_EQ(detector, "");
    anomaly_test::Body named(R"({"detector":"iforest","timestamps":[1,2,3],"values":[1,2,4]})");
    ASSERT_FALSE(parse_fit_body(named.data(), named.size(), limits, &d, &detector));
    EXPECT_EQ(detector, "iforest");
    anomaly_test::Body data(R"({"data":[{"timestamp":1,"value":1},{"timestamp":2,"value":3}],"detector":"robust"})");
    ASSERT_FALSE(parse_fit_body(data.data(), data.size(), limits, &d, &detector));
    EXPECT_EQ(detector, "robust");
    anomaly_test::Body number(R"({"detector":3,"timestamps":[1,2,3],"values":[1,2,4]})");
    EXPECT_STREQ(parse_fit_body(number.data(), number.size(), limits, &d, &detector).code, "malformed_json");
    anomaly_test::Body twice(R"({"detector":"a","detector":"b","timestamps":[1,2,3],"values":[1,2,4]})");
    EXPECT_STREQ(parse_fit_body(twice.data(), twice.size(), limits, &d, &detector).code, "malformed_json");
    // The slow path (a number the DOM parser refuses) reads it too.
    anomaly_test::Body slow(R"({"detector":"seasonal","timestamps":[1,2,3],"values":[1,2,1e999999]})");
    const Error e = parse_fit_body(slow.data(), slow.size(), limits, &d, &detector);
    EXPECT_STREQ(e.code, "invalid_value");
}
