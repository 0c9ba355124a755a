// Which node of a cluster holds a series: the same answer as the front
// nginx's `upstream { hash $series_id consistent; }` (CONTRACT section 9),
// so that a node can tell which of its series belong elsewhere after a node
// is added or removed, and export exactly those.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace anomaly {

// nginx's ketama ring (ngx_http_upstream_hash_module.c,
// ngx_http_upstream_init_chash and ngx_http_upstream_get_chash_peer), for
// servers of weight 1 that are all up:
//  - each server is split into host and port at its last ':' when only
//    digits follow it ("127.0.0.1:8081" -> "127.0.0.1", "8081"), and gets
//    160 points: crc32(host "\0" port prev) where prev is the previous
//    point's hash as 4 little-endian bytes (0 for the first point);
//  - the points of every server are sorted by hash; of points with the same
//    hash only the first is kept (the earlier server in the list, as glibc's
//    stable qsort leaves them);
//  - a key goes to the first point whose hash is >= crc32(key), wrapping
//    around to the first point past the last.
// Servers must be spelt as in the front's `server` lines: nginx hashes the
// text ("localhost:8081" and "127.0.0.1:8081" are different points).
class HashRing {
public:
    static constexpr int kPointsPerServer = 160;

    // servers: "host:port", at least one (parse_ring checks them).
    explicit HashRing(const std::vector<std::string> &servers);

    // The server that nginx sends key to. key is the hash's value as nginx
    // sees it (for $arg_k, the argument's raw, still percent-encoded bytes).
    // nginx spreads an empty key round-robin instead; series ids are never empty.
    const std::string &owner(std::string_view key) const;

    const std::vector<std::string> &servers() const { return servers_; }
    // The ring's points (hash, index in servers()), ascending, for tests.
    const std::vector<std::pair<std::uint32_t, std::uint32_t>> &points() const { return points_; }

private:
    std::vector<std::string> servers_;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> points_;  // hash, index in servers_, ascending
};

constexpr std::size_t kMaxRingServers = 64;

// A ring as a query argument gives it: "127.0.0.1:8081,127.0.0.1:8082".
// Refuses an empty list or an empty item, a server without ":port" (a port
// from 1 to 65535), a host with characters no address has, a server named
// twice, and more than kMaxRingServers; *error is one sentence.
bool parse_ring(std::string_view comma_separated, std::vector<std::string> *servers, std::string *error);

}  // namespace anomaly
