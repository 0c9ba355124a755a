// The header of the anomaly_zone: a reload refuses a zone another build laid out.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/zone_header.hpp"

using namespace anomaly;

namespace {

constexpr std::uint32_t kLayout = 7;
constexpr std::uint64_t kSize = 64 * 1024 * 1024;

TEST(ZoneHeader, ThisBuildsZoneIsAccepted) {
    const ZoneHeader h = make_zone_header(kLayout, kSize);
    EXPECT_EQ(zone_header_problem(&h, "models", kLayout, kSize), "");
}

TEST(ZoneHeader, AnotherLayoutIsRefusedWithBothNumbers) {
    const ZoneHeader h = make_zone_header(kLayout - 1, kSize);
    EXPECT_EQ(zone_header_problem(&h, "models", kLayout, kSize),
              "anomaly_zone \"models\" was laid out by another build of the module (layout 6, this build 7); "
              "restart nginx instead of reloading");
}

TEST(ZoneHeader, ANewerLayoutIsRefusedToo) {
    const ZoneHeader h = make_zone_header(kLayout + 1, kSize);
    EXPECT_NE(zone_header_problem(&h, "models", kLayout, kSize).find("(layout 8, this build 7)"), std::string::npos);
}

TEST(ZoneHeader, AZoneWithoutHeaderIsRefused) {
    // A build before the header began its zone with a red-black tree: pointers.
    unsigned char bytes[sizeof(ZoneHeader)];
    std::memset(bytes, 0x5a, sizeof(bytes));
    ZoneHeader h;
    std::memcpy(&h, bytes, sizeof(h));
    EXPECT_EQ(zone_header_problem(&h, "m", kLayout, kSize),
              "anomaly_zone \"m\" was laid out by another build of the module (a layout without a number, "
              "this build 7); restart nginx instead of reloading");
    EXPECT_NE(zone_header_problem(nullptr, "m", kLayout, kSize), "");
}

TEST(ZoneHeader, AnotherSizeIsRefused) {
    const ZoneHeader h = make_zone_header(kLayout, kSize / 2);
    const std::string problem = zone_header_problem(&h, "models", kLayout, kSize);
    EXPECT_NE(problem.find("33554432 bytes"), std::string::npos) << problem;
    EXPECT_NE(problem.find("restart nginx instead of reloading"), std::string::npos) << problem;
}

TEST(ZoneHeader, MagicSpellsTheModuleInMemory) {
    const ZoneHeader h = make_zone_header(kLayout, kSize);
    char text[8];
    std::memcpy(text, &h.magic, sizeof(text));
    if (text[0] == 'a') {  // little-endian machines
        EXPECT_EQ(std::string(text, 8), "anomalyz");
    }
    EXPECT_EQ(h.reserved, 0u);
    EXPECT_EQ(h.zone_size, kSize);
}

}  // namespace
