// CRC-32 (IEEE 802.3, reflected, polynomial 0xedb88320): zlib's crc32() and
// nginx's ngx_crc32_long(). The export format checks its records with it,
// and the consistent-hash ring must hash exactly as nginx does.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace anomaly {

namespace detail {

constexpr std::array<std::uint32_t, 256> make_crc32_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; i++) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}

inline constexpr std::array<std::uint32_t, 256> kCrc32Table = make_crc32_table();

}  // namespace detail

// As zlib's crc32(crc, bytes, n): start from 0, and pass the result back in
// to continue over the next bytes (crc32(crc32(0, a), b) == crc32(0, a + b)).
inline std::uint32_t crc32(std::uint32_t crc, std::string_view bytes) noexcept {
    crc = ~crc;
    for (char ch : bytes) crc = detail::kCrc32Table[(crc ^ static_cast<unsigned char>(ch)) & 0xff] ^ (crc >> 8);
    return ~crc;
}

inline std::uint32_t crc32(std::string_view bytes) noexcept { return crc32(0, bytes); }

}  // namespace anomaly
