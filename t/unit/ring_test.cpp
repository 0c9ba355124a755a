// The consistent-hash ring against nginx's own choices.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/crc32.hpp"
#include "core/ring.hpp"

using namespace anomaly;

namespace {

const std::vector<std::string> kThree = {"127.0.0.1:38081", "127.0.0.1:38082", "127.0.0.1:38083"};

}  // namespace

TEST(Crc32, MatchesZlib) {
    EXPECT_EQ(crc32(""), 0u);
    EXPECT_EQ(crc32("123456789"), 0xcbf43926u);
    EXPECT_EQ(crc32("The quick brown fox jumps over the lazy dog"), 0x414fa339u);
    // Continued over pieces as over the whole.
    EXPECT_EQ(crc32(crc32("12345"), "6789"), 0xcbf43926u);
}

// The owners below are what nginx 1.22.1 (/usr/sbin/nginx, Debian) chose:
// t/data/ring/owners.sh starts a front with
//   upstream ring { hash $arg_k consistent; server 127.0.0.1:38081; ... :38082; ... :38083; }
// proxying to three servers that each `return 200 "<their address>"`, and
// asks GET /?k=<key> for each key. 403 keys (series-1 ... series-400 and
// those below) all agreed with HashRing when this test was written.
TEST(HashRing, OwnersAsNginxChoseThem) {
    const HashRing ring(kThree);
    const std::map<std::string, std::string> nginx = {
        {"sensor_1", "127.0.0.1:38083"},        {"sensor_2", "127.0.0.1:38081"},
        {"a", "127.0.0.1:38081"},               {"b", "127.0.0.1:38083"},
        {"cpu.load:host-7", "127.0.0.1:38082"}, {"series-1", "127.0.0.1:38082"},
        {"series-2", "127.0.0.1:38082"},        {"series-3", "127.0.0.1:38081"},
        {"series-4", "127.0.0.1:38081"},        {"series-5", "127.0.0.1:38082"},
        {"series-6", "127.0.0.1:38082"},        {"x%2Fy", "127.0.0.1:38083"},
        {"wrap-3125", "127.0.0.1:38083"},       {"wrap-9430", "127.0.0.1:38083"},
        {"wrap-13571", "127.0.0.1:38083"},      {"low-6062", "127.0.0.1:38083"},
    };
    for (const auto &[key, server] : nginx) EXPECT_EQ(ring.owner(key), server) << key;
}

TEST(HashRing, PointsAreSortedAndUnique) {
    const HashRing ring(kThree);
    ASSERT_EQ(ring.points().size(), 3u * HashRing::kPointsPerServer);  // no two collide here
    for (std::size_t i = 1; i < ring.points().size(); i++)
        EXPECT_LT(ring.points()[i - 1].first, ring.points()[i].first);
}

TEST(HashRing, Deterministic) {
    const HashRing one(kThree), two(kThree);
    for (int i = 0; i < 1000; i++) {
        const std::string key = "k" + std::to_string(i);
        EXPECT_EQ(one.owner(key), two.owner(key));
        EXPECT_EQ(&one.owner(key), &one.owner(key));
    }
}

// A key past the last point goes to the first point's server; one at or
// below the first point too.
TEST(HashRing, WrapsAround) {
    const HashRing ring(kThree);
    const auto &points = ring.points();
    const std::string &first = ring.servers()[points.front().second];
    // wrap-9430 hashes to 0xffff2281, past the last point; low-6062 to 0x000e0245, before the first.
    ASSERT_GT(crc32("wrap-9430"), points.back().first);
    ASSERT_LE(crc32("low-6062"), points.front().first);
    EXPECT_EQ(ring.owner("wrap-9430"), first);
    EXPECT_EQ(ring.owner("low-6062"), first);
    // And the point itself: a key whose hash equals a point's belongs to it.
    int checked = 0;
    for (int i = 0; i < 200000 && checked < 50; i++) {
        const std::string key = "p" + std::to_string(i);
        const std::uint32_t h = crc32(key);
        auto it = std::lower_bound(points.begin(), points.end(), h,
                                   [](const auto &p, std::uint32_t v) { return p.first < v; });
        const auto &point = it == points.end() ? points.front() : *it;
        EXPECT_EQ(ring.owner(key), ring.servers()[point.second]);
        checked++;
    }
}

// nginx's split: the port is what follows the last ':' when only digits do.
TEST(HashRing, HostAndPortAsNginxSplitsThem) {
    // The same host and port spelt differently are different points.
    const HashRing a({"localhost:8081", "127.0.0.1:8082"}), b({"127.0.0.1:8081", "127.0.0.1:8082"});
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        const std::string key = "k" + std::to_string(i);
        differ += (a.owner(key) == "localhost:8081") != (b.owner(key) == "127.0.0.1:8081");
    }
    EXPECT_GT(differ, 0);
    // The first point of "h:1" is crc32("h" "\0" "1" + four zero bytes).
    const HashRing one({"h:1"});
    const std::uint32_t first = crc32(std::string("h\0001\0\0\0\0", 7));
    bool found = false;
    for (const auto &p : one.points()) found = found || p.first == first;
    EXPECT_TRUE(found);
}

// Adding a 4th server to 3 moves about a quarter of the keys, all onto it.
TEST(HashRing, AddingAServerMovesAQuarterOntoIt) {
    const HashRing three(kThree);
    std::vector<std::string> four_servers = kThree;
    four_servers.push_back("127.0.0.1:38084");
    const HashRing four(four_servers);
    int moved = 0;
    for (int i = 0; i < 10000; i++) {
        const std::string key = "series-" + std::to_string(i);
        if (three.owner(key) != four.owner(key)) {
            moved++;
            EXPECT_EQ(four.owner(key), "127.0.0.1:38084") << key;
        }
    }
    EXPECT_GT(moved, 1500);
    EXPECT_LT(moved, 3500);
    // Removing it again moves back exactly those keys.
    for (int i = 0; i < 10000; i++) {
        const std::string key = "series-" + std::to_string(i);
        if (four.owner(key) != "127.0.0.1:38084") {
            EXPECT_EQ(three.owner(key), four.owner(key));
        }
    }
}

TEST(HashRing, OneServerOwnsEverything) {
    const HashRing ring({"10.0.0.1:80"});
    for (int i = 0; i < 100; i++) EXPECT_EQ(ring.owner("s" + std::to_string(i)), "10.0.0.1:80");
}

TEST(ParseRing, Accepts) {
    std::vector<std::string> servers;
    std::string error;
    ASSERT_TRUE(parse_ring("127.0.0.1:8081,127.0.0.1:8082", &servers, &error)) << error;
    EXPECT_EQ(servers, (std::vector<std::string>{"127.0.0.1:8081", "127.0.0.1:8082"}));
    ASSERT_TRUE(parse_ring("node-1.example:65535", &servers, &error)) << error;
    EXPECT_EQ(servers.size(), 1u);
    ASSERT_TRUE(parse_ring("[::1]:8081,[2001:db8::7]:80", &servers, &error)) << error;
    EXPECT_EQ(servers[1], "[2001:db8::7]:80");
    std::string many;
    for (int i = 1; i <= 64; i++) many += (i > 1 ? "," : "") + std::string("10.0.0.1:") + std::to_string(i);
    EXPECT_TRUE(parse_ring(many, &servers, &error)) << error;
    EXPECT_EQ(servers.size(), 64u);
}

TEST(ParseRing, Refuses) {
    std::string many;
    for (int i = 1; i <= 65; i++) many += (i > 1 ? "," : "") + std::string("10.0.0.1:") + std::to_string(i);
    for (const char *bad : {"", ",", "a:1,", ",a:1", "a:1,,b:2", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
                            "127.0.0.1:65536", "127.0.0.1:80x", ":8081", "a b:80", "unix:/tmp/s.sock",
                            "a:1,a:1", "[::1:80", "a:1, b:2", "a/b:80"}) {
        std::vector<std::string> servers;
        std::string error;
        EXPECT_FALSE(parse_ring(bad, &servers, &error)) << bad;
        EXPECT_FALSE(error.empty()) << bad;
    }
    std::vector<std::string> servers;
    std::string error;
    EXPECT_FALSE(parse_ring(many, &servers, &error));
    EXPECT_NE(error.find("64"), std::string::npos) << error;
}
