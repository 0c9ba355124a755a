#include "core/alert.hpp"

#include <cstdio>
#include <ctime>
#include <utility>

#include "core/render.hpp"

namespace anomaly {

std::string iso8601_seconds(std::int64_t unix_seconds) {
    const time_t secs = static_cast<time_t>(unix_seconds);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == nullptr) return "1970-01-01T00:00:00Z";
    char buf[40];
    const std::size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf, n);
}

std::string render_alert_body(const AlertEvent &e) {
    std::string out;
    out.reserve(320);
    out += "{\"series_id\":";
    append_json_string(&out, e.series_id);
    out += ",\"timestamp\":" + std::to_string(e.timestamp);
    out += ",\"time\":\"" + iso8601_seconds(e.timestamp) + "\"";
    out += ",\"value\":";
    append_double(&out, e.value);
    out += ",\"anomaly_score\":";
    append_double(&out, e.anomaly_score);
    out += ",\"score\":";
    append_double(&out, e.score);
    out += ",\"detector\":\"";
    out += detector_name(e.detector);
    out += "\",\"version\":";
    out += e.version == 0 ? std::string("null") : "\"v" + std::to_string(e.version) + "\"";
    out += ",\"anomalies\":" + std::to_string(e.anomalies);
    out += ",\"suppressed\":" + std::to_string(e.suppressed);
    out += '}';
    return out;
}

std::string render_alert_metrics(const AlertCounts &c) {
    std::string out;
    out += "# HELP anomaly_alerts_total Alerts of anomalous answers: sent (subrequests issued to anomaly_alert's "
           "location), delivered (answered 2xx), failed (not delivered, or not issued), suppressed (within "
           "anomaly_alert_interval of the series' last alert).\n";
    out += "# TYPE anomaly_alerts_total counter\n";
    const std::pair<const char *, std::uint64_t> outcomes[] = {
        {"sent", c.sent}, {"delivered", c.delivered}, {"failed", c.failed}, {"suppressed", c.suppressed}};
    for (const auto &o : outcomes)
        out += std::string("anomaly_alerts_total{outcome=\"") + o.first + "\"} " + std::to_string(o.second) + "\n";
    out += "# HELP anomaly_alerts_untracked_total Alerts suppressed because the suppression table had no room "
           "for their series.\n";
    out += "# TYPE anomaly_alerts_untracked_total counter\n";
    out += "anomaly_alerts_untracked_total " + std::to_string(c.untracked) + "\n";
    out += "# HELP anomaly_alerts_failing 1 while deliveries fail (since the last failure, none delivered).\n";
    out += "# TYPE anomaly_alerts_failing gauge\n";
    out += std::string("anomaly_alerts_failing ") + (c.failing ? "1" : "0") + "\n";
    return out;
}

void append_alert_health(std::string *out, const AlertCounts &c) {
    *out += ",\"alerts\":{\"sent\":" + std::to_string(c.sent) + ",\"delivered\":" + std::to_string(c.delivered) +
            ",\"failed\":" + std::to_string(c.failed) + ",\"suppressed\":" + std::to_string(c.suppressed) +
            ",\"untracked\":" + std::to_string(c.untracked) + ",\"failing\":" + (c.failing ? "true" : "false") +
            "}";
}

std::uint64_t alert_key(std::string_view series_id) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then a final mix
    for (unsigned char c : series_id) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h == 0 ? 1 : h;
}

namespace {

std::uint64_t load(const std::uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

// The series' slot: the one holding its key, else a free one taken, else the
// first whose series was last alerted an interval ago or more (the same one
// for every process that looks at once, so they agree); nullptr when none.
AlertSlot *slot_for(AlertSlot *slots, std::size_t mask, std::uint64_t key, std::int64_t now_ms,
                    std::int64_t interval_ms) noexcept {
    const std::size_t start = static_cast<std::size_t>(key) & mask;
    for (std::size_t i = 0; i < kAlertProbe && i <= mask; i++) {
        AlertSlot *s = &slots[(start + i) & mask];
        std::uint64_t found = load(&s->key);
        if (found == key) return s;
        if (found == 0) {
            if (__atomic_compare_exchange_n(&s->key, &found, key, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return s;
            if (found == key) return s;
        }
    }
    for (std::size_t i = 0; i < kAlertProbe && i <= mask; i++) {
        AlertSlot *s = &slots[(start + i) & mask];
        std::uint64_t held = load(&s->key);
        if (held == key) return s;
        const std::int64_t last = __atomic_load_n(&s->last_sent_ms, __ATOMIC_ACQUIRE);
        if (last != 0 && now_ms - last < interval_ms) continue;
        if (__atomic_compare_exchange_n(&s->key, &held, key, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            // The series it held was quiet for an interval: its suppressed
            // count goes with it.
            __atomic_store_n(&s->suppressed, 0, __ATOMIC_RELEASE);
            return s;
        }
        if (held == key) return s;
        return nullptr;  // another process took it for another series
    }
    return nullptr;
}

}  // namespace

AlertDecision decide_alert(AlertSlot *slots, std::size_t slot_count, std::uint64_t key, std::int64_t now_ms,
                           std::int64_t interval_ms) noexcept {
    AlertDecision d;
    if (interval_ms <= 0) {
        d.send = true;
        return d;
    }
    // A slot can change hands between finding it and deciding on it (its
    // series expired and another took it): then the series is looked up again.
    for (int attempt = 0; attempt < 4; attempt++) {
        AlertSlot *s = slot_for(slots, slot_count - 1, key, now_ms, interval_ms);
        if (s == nullptr) break;
        for (;;) {
            std::int64_t last = __atomic_load_n(&s->last_sent_ms, __ATOMIC_ACQUIRE);
            if (load(&s->key) != key) break;
            if (last != 0 && now_ms - last < interval_ms) {
                __atomic_fetch_add(&s->suppressed, 1, __ATOMIC_RELAXED);
                return d;
            }
            if (__atomic_compare_exchange_n(&s->last_sent_ms, &last, now_ms, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                d.send = true;
                d.suppressed = __atomic_exchange_n(&s->suppressed, 0, __ATOMIC_ACQ_REL);
                return d;
            }
        }
    }
    d.untracked = true;
    return d;
}

}  // namespace anomaly
