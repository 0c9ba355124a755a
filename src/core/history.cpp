#include "core/history.hpp"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/detector.hpp"
#include "core/model.hpp"
#include "core/render.hpp"

namespace anomaly {
namespace {

constexpr std::size_t kWords = sizeof(HistoryEvent) / 8;
// How long a writer waits for another that is writing its slot (a lap of
// the ring earlier) before it gives its event up.
constexpr int kWaitSpins = 1 << 12;

// Word by word with atomic accesses, so that a reader racing a writer reads
// whole words (and then throws the copy away) rather than racing plain memory.
void store_event(HistoryEvent *dst, const HistoryEvent &src) noexcept {
    std::uint64_t w[kWords];
    std::memcpy(w, &src, sizeof(src));
    auto *d = reinterpret_cast<std::uint64_t *>(dst);
    for (std::size_t i = 0; i < kWords; i++) __atomic_store_n(&d[i], w[i], __ATOMIC_RELAXED);
}

void load_event(HistoryEvent *dst, const HistoryEvent *src) noexcept {
    std::uint64_t w[kWords];
    const auto *s = reinterpret_cast<const std::uint64_t *>(src);
    for (std::size_t i = 0; i < kWords; i++) w[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
    std::memcpy(dst, w, sizeof(*dst));
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Takes the slot for sequence seq (odd word); false when a newer event has
// it, or when another writer still writes it after a short wait. That writer
// may be preempted, or dead: taking its slot over could let it finish over
// this event and leave a torn one, so this event is given up instead (and
// counted). A slot a dead writer left odd stays out of use.
bool take_slot(HistoryRing *ring, HistorySlot &slot, std::uint64_t seq) noexcept {
    std::uint64_t w = __atomic_load_n(&slot.word, __ATOMIC_RELAXED);
    for (int spins = 0;; spins++) {
        if (w != 0 && (w - 1) / 2 >= seq) break;
        if ((w & 1) != 0) {
            if (spins >= kWaitSpins) break;
            cpu_relax();
            w = __atomic_load_n(&slot.word, __ATOMIC_RELAXED);
            continue;
        }
        if (__atomic_compare_exchange_n(&slot.word, &w, 2 * seq + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return true;
    }
    __atomic_fetch_add(&ring->dropped, 1, __ATOMIC_RELAXED);
    return false;
}

void fill_slot(HistorySlot &slot, std::uint64_t seq, const HistoryEvent &event) noexcept {
    __atomic_thread_fence(__ATOMIC_RELEASE);
    HistoryEvent e = event;
    e.sequence = seq;
    store_event(&slot.event, e);
    __atomic_store_n(&slot.word, 2 * seq + 2, __ATOMIC_RELEASE);
}

void put_u32(std::string *out, std::uint32_t v) {
    for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string *out, std::uint64_t v) {
    for (int i = 0; i < 8; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_f64(std::string *out, double d) {
    std::uint64_t v;
    std::memcpy(&v, &d, 8);
    put_u64(out, v);
}
std::uint64_t get_u64(const unsigned char *p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
std::uint32_t get_u32(const unsigned char *p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
double get_f64(const unsigned char *p) {
    const std::uint64_t v = get_u64(p);
    double d;
    std::memcpy(&d, &v, 8);
    return d;
}

constexpr std::size_t kEventFixedBytes = 8 + 8 * 5;

}  // namespace

void history_init(HistoryRing *ring, std::uint64_t capacity) noexcept {
    ring->head = 0;
    ring->capacity = capacity;
}

HistoryEvent make_event(std::string_view series_id, std::int64_t timestamp, double value, double anomaly_score,
                        double score, std::uint8_t detector, std::uint32_t version, std::int64_t recorded_ms) noexcept {
    HistoryEvent e;
    std::memset(&e, 0, sizeof(e));
    e.recorded_ms = recorded_ms;
    e.timestamp = timestamp;
    e.value = value;
    e.anomaly_score = anomaly_score;
    e.score = score;
    e.version = version;
    e.detector = detector;
    e.id_len = static_cast<std::uint8_t>(std::min(series_id.size(), kHistoryIdLength));
    std::memcpy(e.id, series_id.data(), e.id_len);
    return e;
}

std::uint64_t history_record(HistoryRing *ring, const HistoryEvent &event) noexcept {
    const std::uint64_t seq = __atomic_fetch_add(&ring->head, 1, __ATOMIC_RELAXED);
    HistorySlot &slot = ring->slots()[seq % ring->capacity];
    if (take_slot(ring, slot, seq)) fill_slot(slot, seq, event);
    return seq;
}

std::uint64_t history_head(const HistoryRing *ring) noexcept { return __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE); }

SlotRead history_read(const HistoryRing *ring, std::uint64_t sequence, HistoryEvent *out) noexcept {
    if (ring->capacity == 0) return SlotRead::gone;
    if (sequence >= history_head(ring)) return SlotRead::gone;
    const HistorySlot &slot = ring->slots()[sequence % ring->capacity];
    const std::uint64_t w1 = __atomic_load_n(&slot.word, __ATOMIC_ACQUIRE);
    // Below its even word: claimed but not whole yet (or given up, which
    // looks the same until a later lap takes the slot).
    if (w1 < 2 * sequence + 2) return SlotRead::writing;
    if (w1 != 2 * sequence + 2) return SlotRead::gone;
    load_event(out, &slot.event);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    const std::uint64_t w2 = __atomic_load_n(&slot.word, __ATOMIC_RELAXED);
    if (w2 != w1 || out->sequence != sequence || out->id_len > kHistoryIdLength) return SlotRead::gone;
    return SlotRead::ok;
}

bool history_load(HistoryRing *ring, const std::vector<HistoryEvent> &events) noexcept {
    if (ring->capacity == 0) return false;
    const std::uint64_t n = std::min<std::uint64_t>(events.size(), ring->capacity);
    std::uint64_t expected = 0;
    // The sequences 0..n-1 are claimed at once: a writer racing the load gets later ones.
    if (!__atomic_compare_exchange_n(&ring->head, &expected, n, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return false;
    const std::size_t first = events.size() - static_cast<std::size_t>(n);
    for (std::uint64_t i = 0; i < n; i++) {
        HistorySlot &slot = ring->slots()[i % ring->capacity];
        if (take_slot(ring, slot, i)) fill_slot(slot, i, events[first + static_cast<std::size_t>(i)]);
    }
    return true;
}

HistoryPage history_query(const HistoryRing *ring, const HistoryQuery &query) {
    HistoryPage page;
    if (ring == nullptr || ring->capacity == 0 || query.limit == 0) return page;
    const std::uint64_t head = history_head(ring);
    const std::uint64_t tail = history_tail(head, ring->capacity);
    std::uint64_t s = std::min(head, query.before);
    // Sequences follow the time recorded but for writers racing each other:
    // a second of slack before the walk stops.
    const std::int64_t stop_ms = query.since_ms == INT64_MIN ? INT64_MIN : query.since_ms - 1000;
    page.events.reserve(std::min<std::size_t>(query.limit, 1024));
    std::size_t scanned = 0;
    while (s > tail) {
        if (scanned == query.scan) {  // looked at enough for one page: the cursor goes on from here
            page.more = true;
            page.next = s;
            return page;
        }
        scanned++;
        const std::uint64_t seq = s - 1;
        HistoryEvent e;
        if (history_read(ring, seq, &e) != SlotRead::ok) {
            s--;
            continue;
        }
        if (e.recorded_ms < stop_ms) break;
        if (e.recorded_ms >= query.since_ms && (query.series_id.empty() || e.series_id() == query.series_id)) {
            if (page.events.size() == query.limit) {
                page.more = true;
                page.next = page.events.back().sequence;
                return page;
            }
            page.events.push_back(e);
        }
        s--;
    }
    return page;
}

std::string history_key(std::uint64_t sequence) {
    std::string key(kHistoryKeyPrefix);
    for (int i = 7; i >= 0; i--) key.push_back(static_cast<char>((sequence >> (8 * i)) & 0xff));
    return key;
}

bool parse_history_key(std::string_view key, std::uint64_t *sequence) noexcept {
    if (key.size() != kHistoryKeyPrefix.size() + 8 || key.substr(0, kHistoryKeyPrefix.size()) != kHistoryKeyPrefix)
        return false;
    std::uint64_t v = 0;
    for (std::size_t i = kHistoryKeyPrefix.size(); i < key.size(); i++) v = (v << 8) | static_cast<unsigned char>(key[i]);
    *sequence = v;
    return true;
}

std::string encode_history_event(const HistoryEvent &e) {
    std::string out;
    out.reserve(kEventFixedBytes + e.id_len);
    out.push_back(static_cast<char>(kHistoryEventFormat));
    out.push_back(static_cast<char>(e.detector));
    out.push_back(static_cast<char>(e.id_len));
    out.push_back('\0');
    put_u32(&out, e.version);
    put_u64(&out, static_cast<std::uint64_t>(e.recorded_ms));
    put_u64(&out, static_cast<std::uint64_t>(e.timestamp));
    put_f64(&out, e.value);
    put_f64(&out, e.anomaly_score);
    put_f64(&out, e.score);
    out.append(e.id, e.id_len);
    return out;
}

bool decode_history_event(std::string_view bytes, HistoryEvent *e) noexcept {
    if (bytes.size() < kEventFixedBytes) return false;
    const auto *p = reinterpret_cast<const unsigned char *>(bytes.data());
    if (p[0] != kHistoryEventFormat || p[3] != 0) return false;
    const std::size_t id_len = p[2];
    if (id_len == 0 || id_len > kHistoryIdLength || bytes.size() != kEventFixedBytes + id_len) return false;
    std::memset(e, 0, sizeof(*e));
    e->detector = p[1];
    e->id_len = static_cast<std::uint8_t>(id_len);
    e->version = get_u32(p + 4);
    e->recorded_ms = static_cast<std::int64_t>(get_u64(p + 8));
    e->timestamp = static_cast<std::int64_t>(get_u64(p + 16));
    e->value = get_f64(p + 24);
    e->anomaly_score = get_f64(p + 32);
    e->score = get_f64(p + 40);
    std::memcpy(e->id, p + kEventFixedBytes, id_len);
    // What a server records: points of 0..9999-12-31, answered in that span.
    return e->timestamp >= 0 && e->timestamp <= kMaxTimestamp && e->recorded_ms >= 0 &&
           e->recorded_ms <= kMaxTimestamp * 1000 + 999;
}

namespace {

void append_event(std::string *out, const HistoryEvent &e) {
    *out += "{\"sequence\":" + std::to_string(e.sequence) + ",\"series_id\":";
    append_json_string(out, e.series_id());
    *out += ",\"timestamp\":" + std::to_string(e.timestamp) + ",\"value\":";
    append_double(out, e.value);
    *out += ",\"anomaly_score\":";
    append_double(out, e.anomaly_score);
    *out += ",\"score\":";
    append_double(out, e.score);
    *out += ",\"detector\":\"";
    *out += detector_name(static_cast<DetectorKind>(e.detector));
    *out += '"';
    if (e.version != 0) *out += ",\"version\":\"v" + std::to_string(e.version) + "\"";
    *out += ",\"recorded_at\":\"" + iso8601_ms(e.recorded_ms) + "\"}";
}

}  // namespace

std::string render_anomalies(const HistoryPage &page) {
    std::string out = "{\"anomalies\":[";
    out.reserve(64 + page.events.size() * 260);
    for (std::size_t i = 0; i < page.events.size(); i++) {
        if (i) out += ',';
        append_event(&out, page.events[i]);
    }
    out += "],\"next\":";
    out += page.more ? "\"" + std::to_string(page.next) + "\"" : std::string("null");
    out += '}';
    return out;
}

double anomaly_rate(std::uint64_t anomalies, std::uint64_t points_scored) noexcept {
    return points_scored == 0 ? 0.0 : static_cast<double>(anomalies) / static_cast<double>(points_scored);
}

void keep_top_series(std::vector<SeriesAnomalies> *series, std::size_t limit) {
    auto more = [](const SeriesAnomalies &a, const SeriesAnomalies &b) {
        return a.anomalies != b.anomalies ? a.anomalies > b.anomalies : a.series_id < b.series_id;
    };
    if (series->size() > limit) {
        std::partial_sort(series->begin(), series->begin() + static_cast<std::ptrdiff_t>(limit), series->end(), more);
        series->resize(limit);
    } else {
        std::sort(series->begin(), series->end(), more);
    }
}

std::string render_history_summary(const HistorySummary &s) {
    std::string out = "{\"points_scored\":" + std::to_string(s.points_scored) +
                      ",\"anomalies\":" + std::to_string(s.anomalies) + ",\"anomaly_rate\":";
    append_double(&out, anomaly_rate(s.anomalies, s.points_scored));
    out += ",\"history\":{\"capacity\":" + std::to_string(s.capacity) +
           ",\"recording\":" + (s.recording ? "true" : "false") + ",\"recorded\":" + std::to_string(s.recorded) +
           ",\"events\":" + std::to_string(s.held) + ",\"persisted\":" + std::to_string(s.persisted) + ",\"dropped\":" + std::to_string(s.dropped) +
           ",\"oldest\":";
    out += s.oldest_ms != 0 ? "\"" + iso8601_ms(s.oldest_ms) + "\"" : std::string("null");
    out += ",\"newest\":";
    out += s.newest_ms != 0 ? "\"" + iso8601_ms(s.newest_ms) + "\"" : std::string("null");
    out += "},\"series\":[";
    for (std::size_t i = 0; i < s.series.size(); i++) {
        const SeriesAnomalies &a = s.series[i];
        if (i) out += ',';
        out += "{\"series_id\":";
        append_json_string(&out, a.series_id);
        out += ",\"points_scored\":" + std::to_string(a.points_scored) + ",\"anomalies\":" +
               std::to_string(a.anomalies) + ",\"anomaly_rate\":";
        append_double(&out, anomaly_rate(a.anomalies, a.points_scored));
        out += '}';
    }
    out += "]}";
    return out;
}

void append_history_health(std::string *out, const HistorySummary &s) {
    *out += ",\"anomaly_history\":{\"capacity\":" + std::to_string(s.capacity) + ",\"events\":" + std::to_string(s.held) +
            ",\"recorded\":" + std::to_string(s.recorded) + ",\"persisted\":" + std::to_string(s.persisted) +
            ",\"dropped\":" + std::to_string(s.dropped) + ",\"points_scored\":" + std::to_string(s.points_scored) +
            ",\"anomalies\":" + std::to_string(s.anomalies) + "}";
}

void append_history_metrics(std::string *out, const HistorySummary &s) {
    struct Line {
        const char *name, *type, *help;
        std::uint64_t value;
    };
    const Line lines[] = {
        {"anomaly_points_scored_total", "counter", "Points /predict and /observe scored since the zone was created.",
         s.points_scored},
        {"anomaly_history_capacity", "gauge", "Events the anomaly history holds at most (anomaly_history).", s.capacity},
        {"anomaly_history_events", "gauge", "Events the anomaly history holds.", s.held},
        {"anomaly_history_recorded_total", "counter", "Anomalous points recorded in the anomaly history.", s.recorded},
        {"anomaly_history_persisted_total", "counter", "Events of the anomaly history written to the store.",
         s.persisted},
        {"anomaly_history_dropped_total", "counter",
         "Events given up because their slot was still being written a lap earlier.", s.dropped},
    };
    for (const Line &l : lines) {
        *out += std::string("# HELP ") + l.name + " " + l.help + "\n# TYPE " + l.name + " " + l.type + "\n" + l.name +
                " " + std::to_string(l.value) + "\n";
    }
}

bool parse_since(std::string_view t, std::int64_t *unix_ms) noexcept {
    if (t.empty()) return false;
    if (t.find_first_not_of("0123456789") == std::string_view::npos) {
        if (t.size() > 12) return false;
        std::int64_t v = 0;
        for (char c : t) v = v * 10 + (c - '0');
        if (v > kMaxTimestamp) return false;
        *unix_ms = v * 1000;
        return true;
    }
    bool whole_second = false;
    return parse_iso8601(t, unix_ms, &whole_second);
}

}  // namespace anomaly
