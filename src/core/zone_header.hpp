// The first bytes of the anomaly_zone: which build laid it out. nginx keeps a
// zone of the same name and size across a reload and hands it to the new
// configuration, whose code must not read another build's layout as its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace anomaly {

constexpr std::uint64_t kZoneMagic = 0x7a796c616d6f6e61ULL;  // "anomalyz" in memory, little-endian

struct ZoneHeader {
    std::uint64_t magic;
    std::uint32_t layout;     // the layout version of everything after the header
    std::uint32_t reserved;
    std::uint64_t zone_size;  // bytes, as nginx mapped the zone
};
static_assert(std::is_trivially_copyable<ZoneHeader>::value && std::is_standard_layout<ZoneHeader>::value,
              "lives in shared memory");

inline ZoneHeader make_zone_header(std::uint32_t layout, std::uint64_t zone_size) {
    return ZoneHeader{kZoneMagic, layout, 0, zone_size};
}

// Why a zone nginx hands over at a reload cannot be used by this build, or ""
// when it can. `found` is the header at the zone's start (nullptr if none).
inline std::string zone_header_problem(const ZoneHeader *found, std::string_view zone_name,
                                       std::uint32_t layout, std::uint64_t zone_size) {
    const std::string zone = "anomaly_zone \"" + std::string(zone_name) + "\"";
    const std::string restart = "; restart nginx instead of reloading";
    const std::string mine = "this build " + std::to_string(layout);
    if (found == nullptr || found->magic != kZoneMagic)
        return zone + " was laid out by another build of the module (a layout without a number, " + mine + ")" +
               restart;
    if (found->layout != layout)
        return zone + " was laid out by another build of the module (layout " + std::to_string(found->layout) +
               ", " + mine + ")" + restart;
    if (found->zone_size != zone_size)
        return zone + " says it has " + std::to_string(found->zone_size) + " bytes, but nginx mapped " +
               std::to_string(zone_size) + restart;
    return "";
}

}  // namespace anomaly
