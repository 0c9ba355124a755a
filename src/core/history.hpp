// The anomaly history (CONTRACT section 8): a bounded ring of the anomalous
// points /predict and /observe answered, as plain data that lives in the
// shared zone, its on-disk encoding, and the answers of /anomalies and
// /anomalies/summary. No nginx in here.
//
// The ring takes no lock. A writer claims the next sequence number with an
// atomic add and writes its slot under that slot's sequence word: odd while
// the slot is being written (2s+1 for sequence s), even once it holds
// sequence s whole (2s+2), 0 while it never held one. A reader copies a
// slot and keeps the copy only if the word was even and the same before and
// after: a slot that changed under it (a writer lapped it) is skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace anomaly {

constexpr std::size_t kHistoryIdLength = 128;        // kMaxSeriesIdLength
constexpr std::uint64_t kDefaultHistory = 10000;     // anomaly_history
constexpr std::uint64_t kMaxHistory = 10000000;
constexpr std::uint8_t kHistoryEventFormat = 1;
constexpr std::uint8_t kNoDetector = 0xff;

// One anomalous point, as answered.
struct HistoryEvent {
    std::uint64_t sequence;     // the ring's number for it, in the order recorded
    std::int64_t recorded_ms;   // Unix ms when it was answered
    std::int64_t timestamp;     // the point's, Unix seconds
    double value;
    double anomaly_score;       // 0-100
    double score;               // the detector's own number
    std::uint32_t version;      // the version that judged it, 0 for a stream
    std::uint8_t detector;      // DetectorKind
    std::uint8_t id_len;
    char id[kHistoryIdLength];
    std::uint8_t reserved[2];

    std::string_view series_id() const { return std::string_view(id, id_len); }
};
static_assert(sizeof(HistoryEvent) % 8 == 0, "copied a word at a time");

struct HistorySlot {
    std::uint64_t word;         // see above
    HistoryEvent event;
};

// The ring's header; `capacity` slots follow it in the same allocation.
struct HistoryRing {
    std::uint64_t head;         // the next sequence to hand out
    std::uint64_t capacity;
    std::uint64_t dropped;      // events given up: their slot was busy (see history_record)
    std::uint64_t reserved[5];  // head alone on its cache line

    HistorySlot *slots() { return reinterpret_cast<HistorySlot *>(this + 1); }
    const HistorySlot *slots() const { return reinterpret_cast<const HistorySlot *>(this + 1); }
};
static_assert(std::is_trivially_copyable<HistoryRing>::value && std::is_standard_layout<HistoryRing>::value &&
                  std::is_trivially_copyable<HistorySlot>::value && std::is_standard_layout<HistorySlot>::value,
              "lives in shared memory");

// Bytes a ring of that many events takes (header included).
constexpr std::size_t history_bytes(std::uint64_t capacity) {
    return sizeof(HistoryRing) + static_cast<std::size_t>(capacity) * sizeof(HistorySlot);
}
// ring points to history_bytes(capacity) zeroed bytes.
void history_init(HistoryRing *ring, std::uint64_t capacity) noexcept;

// Fills an event's fields (sequence aside); the id is cut at kHistoryIdLength.
HistoryEvent make_event(std::string_view series_id, std::int64_t timestamp, double value, double anomaly_score,
                        double score, std::uint8_t detector, std::uint32_t version, std::int64_t recorded_ms) noexcept;

// Records an event under the next sequence; returns that sequence. Never
// blocks for long: an event whose slot another writer still writes after a
// short spin (a lap of the ring ago: a writer preempted, or dead), or a
// newer event already took, is given up and counted in `dropped`.
std::uint64_t history_record(HistoryRing *ring, const HistoryEvent &event) noexcept;
// The next sequence to be handed out: every event recorded so far is below it.
std::uint64_t history_head(const HistoryRing *ring) noexcept;
// The oldest sequence the ring can still hold.
inline std::uint64_t history_tail(std::uint64_t head, std::uint64_t capacity) {
    return head > capacity ? head - capacity : 0;
}

enum class SlotRead {
    ok,
    writing,  // claimed and not whole yet (or given up: the slot still holds an older lap)
    gone,     // overwritten by a newer event, or not handed out yet
};
// Copies the event of that sequence, if the ring holds it whole.
SlotRead history_read(const HistoryRing *ring, std::uint64_t sequence, HistoryEvent *out) noexcept;

// Puts events read back from disk (oldest first) into a ring nothing has been
// recorded in yet, renumbered from 0; false (and nothing done) when the ring
// already holds events. The newest `capacity` are kept.
bool history_load(HistoryRing *ring, const std::vector<HistoryEvent> &events) noexcept;

// What GET /anomalies asks for.
struct HistoryQuery {
    std::string_view series_id;          // "" for any
    std::int64_t since_ms = INT64_MIN;   // recorded at or after, Unix ms
    std::uint64_t before = UINT64_MAX;   // sequences below this (the cursor)
    std::size_t limit = 100;
    std::size_t scan = 100000;           // slots looked at, at most, by one page
};
struct HistoryPage {
    std::vector<HistoryEvent> events;    // newest first
    bool more = false;                   // older events may match: ask again with before = next
    std::uint64_t next = 0;
};
// Newest first. A page looks at no more than query.scan slots: when it
// stops there, `next` says where to go on even if it found fewer than limit.
// `since` filters the time recorded; since the sequence follows it (within
// the moment writers race), the walk stops a second past it.
HistoryPage history_query(const HistoryRing *ring, const HistoryQuery &query);

// ---- the disk: "h/" + 8-byte big-endian sequence -> encode_history_event() ----
// Format 1, little-endian:
//   u8 format (1) | u8 detector | u8 id length | u8 0 | u32 version
//   | i64 recorded_ms | i64 timestamp | f64 value | f64 anomaly_score | f64 score | id bytes
constexpr std::string_view kHistoryKeyPrefix = "h/";
std::string history_key(std::uint64_t sequence);
bool parse_history_key(std::string_view key, std::uint64_t *sequence) noexcept;
std::string encode_history_event(const HistoryEvent &event);
// False on another format, a short or overlong record, an empty or too long
// id, a timestamp or a time recorded outside 0..9999-12-31.
bool decode_history_event(std::string_view bytes, HistoryEvent *event) noexcept;

// ---- answers ----

// {"anomalies":[{"sequence":..,"series_id":..,"timestamp":..,"value":..,"anomaly_score":..,"score":..,
//   "detector":..,"version":"v3" (predict only),"recorded_at":"..."}],"next":"<sequence>"|null}
std::string render_anomalies(const HistoryPage &page);

struct SeriesAnomalies {
    std::string series_id;
    std::uint64_t points_scored = 0;
    std::uint64_t anomalies = 0;
};
struct HistorySummary {
    std::uint64_t points_scored = 0;
    std::uint64_t anomalies = 0;
    std::uint64_t capacity = 0;
    std::uint64_t recorded = 0;            // events recorded since the zone began (the head)
    std::uint64_t held = 0;                // events the ring holds
    std::int64_t oldest_ms = 0, newest_ms = 0;  // recorded_at of the oldest and newest held, 0 none
    std::uint64_t persisted = 0;           // sequences below this are on disk
    std::uint64_t dropped = 0;
    bool recording = true;
    std::vector<SeriesAnomalies> series;   // most anomalies first
};
// anomalies / points_scored, 0 when nothing was scored.
double anomaly_rate(std::uint64_t anomalies, std::uint64_t points_scored) noexcept;
// Keeps the `limit` series with the most anomalies, most first (ties by id).
void keep_top_series(std::vector<SeriesAnomalies> *series, std::size_t limit);
std::string render_history_summary(const HistorySummary &summary);
// /healthcheck's ,"anomaly_history":{"capacity":..,"events":..,"recorded":..,"persisted":..,"dropped":..}
void append_history_health(std::string *out, const HistorySummary &summary);
// /metrics's lines: anomaly_points_scored_total, anomaly_history_capacity,
// anomaly_history_events, anomaly_history_recorded_total,
// anomaly_history_persisted_total, anomaly_history_dropped_total.
void append_history_metrics(std::string *out, const HistorySummary &summary);

// Parses ?since=: Unix seconds (digits) or ISO 8601 (2024-01-02, 2024-01-02T03:04:05,
// with .fraction and Z or +hh:mm); false when it is neither. Unix ms out.
bool parse_since(std::string_view text, std::int64_t *unix_ms) noexcept;

}  // namespace anomaly
