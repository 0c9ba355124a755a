#include "core/ring.hpp"

#include <algorithm>
#include <strings.h>

#include "core/crc32.hpp"

namespace anomaly {

namespace {

// nginx's split of a server into host and port: the port is the run of
// digits after the last ':', when the whole tail is digits; otherwise the
// whole server is the host and the port is empty ("unix:" servers, which a
// ring never has, are hashed without their prefix).
void split_server(std::string_view server, std::string_view *host, std::string_view *port) {
    if (server.size() >= 5 && strncasecmp(server.data(), "unix:", 5) == 0) {
        *host = server.substr(5);
        *port = {};
        return;
    }
    for (std::size_t j = 0; j < server.size(); j++) {
        const char c = server[server.size() - j - 1];
        if (c == ':') {
            *host = server.substr(0, server.size() - j - 1);
            *port = server.substr(server.size() - j);
            return;
        }
        if (c < '0' || c > '9') break;
    }
    *host = server;
    *port = {};
}

}  // namespace

HashRing::HashRing(const std::vector<std::string> &servers) : servers_(servers) {
    points_.reserve(servers_.size() * kPointsPerServer);
    for (std::size_t s = 0; s < servers_.size(); s++) {
        std::string_view host, port;
        split_server(servers_[s], &host, &port);
        std::uint32_t base = crc32(host);
        base = crc32(base, std::string_view("", 1));
        base = crc32(base, port);
        std::uint32_t previous = 0;
        for (int j = 0; j < kPointsPerServer; j++) {
            const char bytes[4] = {static_cast<char>(previous & 0xff), static_cast<char>((previous >> 8) & 0xff),
                                   static_cast<char>((previous >> 16) & 0xff),
                                   static_cast<char>((previous >> 24) & 0xff)};
            const std::uint32_t hash = crc32(base, std::string_view(bytes, 4));
            points_.emplace_back(hash, static_cast<std::uint32_t>(s));
            previous = hash;
        }
    }
    std::stable_sort(points_.begin(), points_.end(),
                     [](const auto &a, const auto &b) { return a.first < b.first; });
    points_.erase(std::unique(points_.begin(), points_.end(),
                              [](const auto &a, const auto &b) { return a.first == b.first; }),
                  points_.end());
}

const std::string &HashRing::owner(std::string_view key) const {
    static const std::string none;
    if (points_.empty()) return none;
    const std::uint32_t hash = crc32(key);
    auto it = std::lower_bound(points_.begin(), points_.end(), hash,
                               [](const auto &point, std::uint32_t h) { return point.first < h; });
    if (it == points_.end()) it = points_.begin();  // past the last point: around to the first
    return servers_[it->second];
}

namespace {

bool valid_port(std::string_view port) {
    if (port.empty() || port.size() > 5) return false;
    unsigned value = 0;
    for (char c : port) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value >= 1 && value <= 65535;
}

// A name or an IPv4 address, or an IPv6 address in brackets.
bool valid_host(std::string_view host) {
    if (host.empty() || host.size() > 255) return false;
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') return false;
        for (char c : host.substr(1, host.size() - 2)) {
            const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                            c == '.';
            if (!ok) return false;
        }
        return true;
    }
    for (char c : host) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '-' || c == '_';
        if (!ok) return false;
    }
    return true;
}

std::string quoted(std::string_view s) {
    std::string out = "\"";
    out.append(s.substr(0, 80));
    if (s.size() > 80) out += "...";
    return out + "\"";
}

}  // namespace

bool parse_ring(std::string_view text, std::vector<std::string> *servers, std::string *error) {
    servers->clear();
    if (text.empty()) {
        *error = "the ring names no server";
        return false;
    }
    for (std::size_t start = 0;;) {
        const std::size_t comma = text.find(',', start);
        const std::string_view server = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
        if (server.empty()) {
            *error = "the ring has an empty server name (two commas, or one at an end)";
            return false;
        }
        const std::size_t colon = server.rfind(':');
        if (colon == std::string_view::npos || !valid_port(server.substr(colon + 1))) {
            *error = "the ring's server " + quoted(server) + " has no :port (from 1 to 65535)";
            return false;
        }
        if (!valid_host(server.substr(0, colon))) {
            *error = "the ring's server " + quoted(server) + " does not start with a host name or address";
            return false;
        }
        if (std::find(servers->begin(), servers->end(), server) != servers->end()) {
            *error = "the ring names the server " + quoted(server) + " twice";
            return false;
        }
        if (servers->size() == kMaxRingServers) {
            *error = "the ring names more than " + std::to_string(kMaxRingServers) + " servers";
            return false;
        }
        servers->emplace_back(server);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return true;
}

}  // namespace anomaly
