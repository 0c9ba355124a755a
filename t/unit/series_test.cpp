// Series ids ([A-Za-z0-9._:-]{1,128}) and version names ("v3", "V3", "3").
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/series.hpp"

using namespace anomaly;

TEST(SeriesId, LengthLimitIs128) {
    EXPECT_TRUE(is_valid_series_id(std::string(1, 'a')));
    EXPECT_TRUE(is_valid_series_id(std::string(127, 'a')));
    EXPECT_TRUE(is_valid_series_id(std::string(128, 'a')));
    EXPECT_FALSE(is_valid_series_id(std::string(129, 'a')));
    EXPECT_FALSE(is_valid_series_id(std::string(1000, 'a')));
}

TEST(SeriesId, EmptyRejected) { EXPECT_FALSE(is_valid_series_id("")); }

TEST(SeriesId, EveryAllowedCharacterClass) {
    const std::string upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const std::string lower = "abcdefghijklmnopqrstuvwxyz";
    const std::string digits = "0123456789";
    for (const std::string &s : {upper, lower, digits, std::string("."), std::string("_"), std::string(":"),
                                 std::string("-"), std::string("sensor_1"), std::string("host-a.cpu:0")}) {
        EXPECT_TRUE(is_valid_series_id(s)) << s;
        for (char c : s) EXPECT_TRUE(is_valid_series_id(std::string(1, c))) << c;
    }
}

// Every byte outside the alphabet, alone and in the middle of a valid id.
TEST(SeriesId, EveryOtherByteRejected) {
    const std::string allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
    int rejected = 0;
    for (int b = 0; b < 256; b++) {
        const char c = static_cast<char>(b);
        if (allowed.find(c) != std::string::npos) continue;
        std::string alone(1, c);
        std::string inside = std::string("ab") + c + "cd";
        EXPECT_FALSE(is_valid_series_id(alone)) << "byte " << b;
        EXPECT_FALSE(is_valid_series_id(inside)) << "byte " << b;
        rejected++;
    }
    EXPECT_EQ(rejected, 256 - 66);
}

TEST(SeriesId, NamedTroublemakersRejected) {
    for (const char *bad : {"a/b", "/", "../x", "a%2Fb", "%", "a b", " ", "a\tb", "a\"b", "a\\b", "a?b", "a#b",
                            "a+b", "a,b", "a;b", "a=b", "\xc3\xa9"}) {
        EXPECT_FALSE(is_valid_series_id(bad)) << bad;
    }
}

TEST(SeriesId, EmbeddedNulRejected) {
    EXPECT_FALSE(is_valid_series_id(std::string_view("a\0b", 3)));
    EXPECT_FALSE(is_valid_series_id(std::string_view("\0", 1)));
    EXPECT_FALSE(is_valid_series_id(std::string_view("ab\0", 3)));
    // The string_view length is what counts: 128 valid bytes then a NUL is 129.
    std::string s(128, 'a');
    s.push_back('\0');
    EXPECT_FALSE(is_valid_series_id(s));
}

TEST(Version, AcceptedForms) {
    std::uint32_t v = 0;
    EXPECT_TRUE(parse_version("v3", &v));
    EXPECT_EQ(v, 3u);
    v = 0;
    EXPECT_TRUE(parse_version("3", &v));
    EXPECT_EQ(v, 3u);
    v = 0;
    EXPECT_TRUE(parse_version("V3", &v));
    EXPECT_EQ(v, 3u);
    EXPECT_TRUE(parse_version("v1", &v));
    EXPECT_EQ(v, 1u);
    EXPECT_TRUE(parse_version("v10", &v));
    EXPECT_EQ(v, 10u);
    EXPECT_TRUE(parse_version("1234567", &v));
    EXPECT_EQ(v, 1234567u);
}

TEST(Version, LargestIsUint32Max) {
    std::uint32_t v = 0;
    EXPECT_TRUE(parse_version("v4294967295", &v));
    EXPECT_EQ(v, 4294967295u);
    v = 0;
    EXPECT_TRUE(parse_version("4294967295", &v));
    EXPECT_EQ(v, 4294967295u);
}

TEST(Version, Rejected) {
    for (const char *bad : {"", "v", "V", "v0", "0", "-1", "v-1", "3.0", "v3.0", "v4294967296", "4294967296",
                            "v99999999999", "v18446744073709551617", " v3", "v3 ", "v 3", "vv3", "x3", "3v", "+3",
                            "0x3", "v3a"}) {
        std::uint32_t v = 777;
        EXPECT_FALSE(parse_version(bad, &v)) << '"' << bad << '"';
        EXPECT_EQ(v, 777u) << "a rejected version leaves the output alone: " << bad;
    }
    std::uint32_t v = 777;
    EXPECT_FALSE(parse_version(std::string_view("v3\0", 3), &v));
    EXPECT_FALSE(parse_version(std::string_view("\0" "3", 2), &v));
}
