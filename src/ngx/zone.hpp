// The anomaly_zone: models, the queue of fits waiting to be made durable, and
// statistics, in nginx shared memory. Fixed layouts only: pointers here point
// into the zone itself (it is mapped at the same address in every worker),
// never into process memory. One lock, the slab pool's mutex, which nginx's
// master releases if a worker dies holding it.
#pragma once

#include "ngx/ngx.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/alert.hpp"
#include "core/detector.hpp"
#include "core/model.hpp"
#include "core/histogram.hpp"
#include "core/history.hpp"
#include "core/render.hpp"
#include "core/metrics.hpp"
#include "core/series.hpp"
#include "core/stream.hpp"
#include "core/zone_header.hpp"

namespace anomaly {

// The layout of Shared and of everything it points to. Raise it with any
// change to those types: a reload refuses a zone of another layout.
// 2: processes named by pid and start time, a statistics slot per worker,
// RateWindow slots of one word.
// 3: versions are model images of any size (SeriesNode::versions points to
// them), predictions counted per detector.
// 4: streams (SeriesNode::stream, StreamSlot), observe statistics.
// 5: alerts (Shared::alerts), the anomaly history (Shared::history,
// SeriesNode's scored counters).
// 6: deletes and retention (SeriesNode::first and removed, StreamSlot::prev
// and removed, Shared::epoch, WorkerStats::quiescent), export and import jobs.
constexpr std::uint32_t kZoneLayout = 6;
constexpr std::size_t kDetectorSlots = 8;  // predictions counted by DetectorKind

constexpr ngx_uint_t kStatSlots = 32;      // statistics slots, one per worker process
constexpr std::size_t kStoreErrorLength = 240;
constexpr std::size_t kJobErrorLength = 240;
// Plot reads queued or running at once, across the zone: a plot beyond this
// is answered 503 server_busy rather than queued without bound.
constexpr std::uint32_t kMaxReads = 64;

enum class StoreState : std::uint32_t {
    starting = 0,  // nobody has opened the store yet
    loading,       // the owner is reading versions from disk into the zone
    ready,
    unavailable,   // the store cannot be opened or written; see store_error
    waiting,       // another nginx generation holds the store (a binary upgrade):
                   // models were read from a copy, fits wait for the store
};
const char *store_state_name(StoreState s);

// A process, told apart from a later one given the same pid: its pid and its
// start time (clock ticks after boot, field 22 of /proc/<pid>/stat). The zone
// names workers this way, since Linux hands a dead worker's pid out again.
struct ProcessId {
    ngx_pid_t pid;        // 0: none
    std::uint64_t start;  // 0: unknown (no /proc): the pid alone counts

    // This process; first called at process start, before any thread uses it.
    static ProcessId self();
    // Whether that process still runs (a zombie does not). About 10 us: it
    // reads /proc/<pid>/stat.
    bool alive() const;
    bool none() const { return pid == 0; }
    bool operator==(const ProcessId &o) const { return pid == o.pid && start == o.start; }
    bool operator!=(const ProcessId &o) const { return !(*this == o); }
};
static_assert(std::is_trivially_copyable<ProcessId>::value && std::is_standard_layout<ProcessId>::value,
              "lives in shared memory");

struct EndpointStats {
    LatencyHistogram latency;
    std::uint64_t statuses[kStatusSlots];  // answers by status_slot()
    RateWindow rate;                       // answers per second
    std::int64_t in_flight;                // requests begun and not yet answered
};

struct WorkerStats {
    EndpointStats predict;
    EndpointStats fit;
    EndpointStats observe;
    EndpointStats score;
    std::uint64_t anomalies;   // predictions and observed points that answered true
    // Predictions answered (batch detectors) and points observed (stream
    // detectors), by DetectorKind.
    std::uint64_t by_detector[kDetectorSlots];
    std::uint64_t points_observed;
    ProcessId process;         // the worker counting here, none when free
    // The anomaly history's overall counts (anomalies.cpp): points that
    // /predict and /observe scored, and the anomalous ones among them.
    std::uint64_t history_points;
    std::uint64_t history_anomalies;
    // The last Shared::epoch this process saw while it held no pointer into
    // the zone beyond one event handler (see Zone::quiescent): memory
    // unlinked at an epoch every live process has passed can be freed.
    std::uint64_t quiescent;
};

struct SeriesNode {
    ngx_rbtree_node_t node;    // key: crc32 of the id
    SeriesNode *next;          // the next node of its hash bucket
    std::uint32_t latest;      // newest visible version, 0 when none
    std::uint32_t reserved;    // versions claimed by the commit in flight
    std::uint32_t capacity;    // slots in versions
    std::uint32_t first;       // the version in versions[0] (old ones deleted or past retention)
    std::uint32_t count;       // versions it has (not null in versions)
    // versions[v - first] is version v's image, nullptr while there is none
    // (read under the lock only). Images are immutable once published: a
    // worker finds one under the lock and judges with it after letting go,
    // so a deleted image is freed only once every process has passed a
    // quiescent point (Zone::reclaim).
    const ModelHeader **versions;
    // The series' stream, nullptr until its first observe. Set under the
    // lock once the stream is whole, read without it; a delete unlinks it
    // and frees it as it frees images.
    struct StreamSlot *stream;
    // The anomaly history's counts (CONTRACT section 8), since the zone
    // began: points predicted or observed, and how many were anomalous.
    // Added to without any lock. A series is linked into
    // Shared::anomalous (by next_anomalous) at its first anomaly.
    std::uint64_t points_scored;
    std::uint64_t anomalies;
    SeriesNode *next_anomalous;
    std::uint8_t removed;      // deleted: unlinked from everything, freed after a grace period
    std::uint8_t in_anomalous; // linked into Shared::anomalous
    std::uint8_t id_len;
    u_char id[1];
};

// A stream in the zone: its lock, what the checkpoints need, and the state
// (stream.hpp) right after this header. A worker updates the state in place
// while it holds the stream's own lock, never the zone's: observes of
// different series never wait for each other, nor for fits.
struct StreamSlot {
    // The holder: its pid in the high 32 bits, the low 32 bits of its start
    // time below (see lock_stream), 0 when free. nginx's master releases only
    // the slab mutex of a worker that died; this one is taken over by the
    // next worker that finds its holder gone.
    std::uint64_t lock;
    std::uint64_t changes;         // points learned since it came into this zone
    std::uint64_t checkpointed;    // `changes` of the last checkpoint the owner took
    std::int64_t checkpoint_ms;    // Unix ms of the last durable checkpoint, 0 none yet
    StreamSlot *next;              // every stream of the zone, newest first
    StreamSlot *prev;              // (a delete unlinks one under the lock)
    SeriesNode *series;
    std::uint32_t bytes;           // of the state
    std::uint8_t updating;         // set while the holder changes the state
    std::uint8_t broken;           // its holder died mid-update and the state failed check_stream:
                                   // the owner puts its checkpoint back (or starts it again)
    std::uint8_t removed;          // deleted: no more checkpoints
    std::uint8_t reserved;
    // 64 bytes: with the 168 of an adaptive state, one 256-byte slab chunk.
    // What the stream was created with is in its state (stream_params_of).

    StreamHeader *state() { return reinterpret_cast<StreamHeader *>(this + 1); }
    const StreamHeader *state() const { return reinterpret_cast<const StreamHeader *>(this + 1); }
    DetectorKind kind() const { return state()->kind; }  // set at creation, never changed
};
static_assert(sizeof(StreamSlot) == 64, "the state after a StreamSlot is 8-byte aligned; 64 keeps an adaptive stream in 256 bytes");

// Alerts (alert.cpp): their counters and the suppression table, zone-wide,
// updated with atomic operations only (no lock).
struct AlertState {
    std::uint64_t sent;        // background subrequests issued
    std::uint64_t delivered;   // of those, answered 2xx by the alert location
    std::uint64_t failed;      // deliveries that failed, and alerts that could not be issued
    std::uint64_t suppressed;  // anomalous answers within their series' anomaly_alert_interval
    std::uint64_t untracked;   // of those, suppressed because the table had no slot for the series
    std::uint32_t failing;     // deliveries are failing: logged once when it became so
    std::uint32_t slot_count;  // of slots, a power of two
    AlertSlot slots[1];        // slot_count of them, per series (decide_alert)
};

enum class JobState : std::uint32_t { pending, committing, done, failed };
// read: what /plot draws of a version; remove: a delete (version 0: the
// whole series); export and import: see lifecycle.cpp.
enum class JobKind : std::uint8_t { fit, read, remove, exporting, importing };
constexpr std::size_t kJobPathLength = 256;

// One fit on its way to the store.
struct Job {
    ngx_queue_t link;
    std::uint64_t id;
    ProcessId submitter;          // the worker holding the client's request
    JobState state;
    std::uint32_t version;        // assigned when committing
    std::uint32_t status;         // HTTP status when failed
    std::uint64_t spool_seq;      // spool file <submitter pid>.<spool_seq>
    std::uint64_t points;
    std::uint8_t in_memory;       // kept in the submitter's memory: it owned the store
    JobKind kind;
    // The submitter stopped waiting (nginx ended the request, or its deadline
    // passed while the owner was committing): whoever finishes it frees it.
    std::uint8_t abandoned;
    std::uint32_t data_len;       // a finished read's answer, in the zone
    u_char *data;
    std::uint8_t id_len;
    u_char series_id[kMaxSeriesIdLength];
    char code[32];                // error code when failed
    char error[kJobErrorLength];  // error detail when failed
    // Export and import: the file the owner writes the export to, or reads
    // the import from; *progress counts bytes written (export) as the owner
    // goes, which the submitter sends on.
    char path[kJobPathLength];
    std::uint64_t progress;
    std::uint64_t counts[4];      // a remove's or an import's figures (lifecycle.cpp)
};

struct Shared {
    ZoneHeader header;             // first: read before anything else at a reload
    // Lookups go through the hash buckets (one or two cache misses); the
    // tree keeps the series in a stable order for /series pages.
    ngx_rbtree_t tree;
    ngx_rbtree_node_t sentinel;
    SeriesNode **buckets;
    std::uint32_t bucket_mask;
    std::uint64_t series_trained;  // series with at least one version
    std::uint64_t versions_stored;
    std::uint64_t kind_versions[kDetectorSlots];  // versions by DetectorKind
    std::uint64_t kind_bytes[kDetectorSlots];     // zone bytes they take: image chunks and slots
    // Streams: a list read without the lock (the newest published last),
    // counts by DetectorKind and the zone bytes they take.
    StreamSlot *streams;
    std::uint64_t stream_count;
    std::uint64_t kind_streams[kDetectorSlots];
    std::uint64_t kind_stream_bytes[kDetectorSlots];
    std::int64_t last_checkpoint_ms;  // Unix ms of the last checkpoint written, 0 none
    std::uint64_t checkpoints_written; // stream states written by checkpoints

    // The process that has the store open, 0 none. Whether it still holds it
    // is asked of the store's LOCK (see owner.cpp), not of its pid.
    ngx_pid_t owner_pid;
    std::uint64_t owner_start;     // its ProcessId::start
    std::int64_t last_write_ms;    // Unix ms of the last durable write, 0 none
    StoreState store_state;
    ngx_uint_t loaded;             // versions on disk have been read into this zone
    // The store's commit count when this zone last matched it. An owner that
    // finds another count on disk (another nginx generation wrote meanwhile)
    // reads the versions again before it assigns new version numbers.
    std::uint64_t store_commits;
    ProcessId copy_reader;         // the worker reading the models from a copy, none
    ngx_uint_t from_copy;          // the models came from a copy: read the store again on open
    ProcessId opening;             // a worker of this zone opening the store (log replay can be slow)
    // Not every stored version could be read into the zone (507 zone_full or
    // 503 store_unavailable, 0 if all were): fits are refused, since a new
    // version of a series could overwrite one on disk that was left out.
    int load_incomplete;
    char store_error[kStoreErrorLength];

    ngx_queue_t jobs;
    std::uint64_t next_job_id;
    std::uint32_t reads_queued;    // read jobs in jobs, at most kMaxReads
    ngx_atomic_t jobs_pending;     // read without the lock as a hint

    WorkerStats stats[kStatSlots];

    AlertState *alerts;
    // ---- the anomaly history (CONTRACT section 8), anomalies.cpp ----
    // The ring of anomalous points, allocated when the zone is made, with
    // anomaly_history events; nullptr when that was 0. A reload keeps it.
    HistoryRing *history;
    // Every series with at least one anomaly, newest first: a list that only
    // grows, read without the lock (/anomalies/summary).
    SeriesNode *anomalous;
    // Sequences below this are on disk, or were given up by the owner
    // (written by the owner under the lock).
    std::uint64_t history_persisted;

    // ---- deletes (CONTRACT section 9) ----
    // Advanced (under the lock) each time something is unlinked to be freed.
    std::uint64_t epoch;
    std::uint64_t versions_deleted;   // by DELETE, and by anomaly_keep_versions
    std::uint64_t series_deleted;
    // Some process shares a statistics slot (more than kStatSlots of them):
    // its quiescent points cannot be told apart, so nothing is freed.
    ngx_uint_t slots_shared;
};

// Shared memory holds plain data only: no constructors or destructors run
// there, and every process reads the same bytes.
template <typename T>
constexpr bool kPlainData = std::is_trivially_copyable<T>::value && std::is_standard_layout<T>::value;
static_assert(kPlainData<AlertState> && kPlainData<AlertSlot>, "types in the anomaly_zone must be plain data");
static_assert(kPlainData<Shared> && kPlainData<Job> && kPlainData<SeriesNode> && kPlainData<WorkerStats> &&
                  kPlainData<EndpointStats> && kPlainData<ModelHeader> && kPlainData<ZoneHeader> &&
                  kPlainData<ProcessId> && kPlainData<StreamSlot> && kPlainData<StreamHeader>,
              "types in the anomaly_zone must be plain data");

// What a predict (or plot) finds.
enum class Lookup { found, not_loaded, series_not_found, version_not_found };

// What became of a job its submitter stopped waiting for.
enum class Abandoned {
    withdrawn,  // it was still queued: removed; what was handed over must be discarded
    flagged,    // the owner is at work on it: it frees the job when done
    freed,      // it had finished: freed
};

class Zone {
public:
    // cycle: the configuration that declares the zone.
    explicit Zone(ngx_cycle_t *cycle) : cycle_(cycle) {}

    // From the shm_zone->init callback. data is the zone of the previous
    // configuration when nginx keeps the memory (a reload with the same name
    // and size): its header must be this build's, or the reload is refused.
    static ngx_int_t init(ngx_shm_zone_t *shm_zone, void *data);
    static Zone *from(ngx_shm_zone_t *shm_zone) { return static_cast<Zone *>(shm_zone->data); }

    ngx_cycle_t *cycle() const { return cycle_; }

    Shared *shared() const { return sh_; }
    AlertState *alerts() const { return sh_->alerts; }
    ngx_slab_pool_t *pool() const { return pool_; }
    const ngx_str_t &name() const { return name_; }
    size_t bytes_total() const { return size_; }

    void lock() { ngx_shmtx_lock(&pool_->mutex); }
    void unlock() { ngx_shmtx_unlock(&pool_->mutex); }

    // version 0 means the latest. *out is the version's image in the zone,
    // to be read in place: it never changes. *node (when asked) is its
    // series' node, for the history's counts.
    Lookup find_model(std::string_view series_id, std::uint32_t version, const ModelHeader **out,
                      SeriesNode **node = nullptr);
    // Up to limit versions of a series (for /series/{id}), oldest first
    // after version `after` (0: from v1), or newest first before it (0: from
    // the latest); *more says whether any follow.
    Lookup versions(std::string_view series_id, std::uint32_t after, std::size_t limit, bool newest,
                    std::vector<VersionSummary> *out, bool *more);

    struct SeriesSummary {
        std::uint8_t id_len = 0;
        char id[kMaxSeriesIdLength];  // fixed: copied under the lock without allocating
        VersionSummary latest;         // when has_versions
        std::uint32_t versions = 0;    // how many
        bool has_versions = false;
        bool has_stream = false;
        StreamSummary stream;          // when has_stream
        std::uint64_t points_scored = 0;  // the history's counts (SeriesNode)
        std::uint64_t anomalies = 0;
        std::string_view series_id() const { return std::string_view(id, id_len); }
    };
    // Up to limit series with a version or a stream, in the zone's order (by hash, then
    // id), starting after the series `after` ("" for the first page). *more
    // says whether any follow.
    Lookup list_series(std::string_view after, std::size_t limit, std::vector<SeriesSummary> *out, bool *more);

    // This process's statistics: its own slot once claim_stats_slot() found one.
    WorkerStats &my_stats() { return sh_->stats[stats_slot_ < kStatSlots ? stats_slot_ : ngx_worker % kStatSlots]; }
    // At process start: a free slot, else one whose process is gone (its counts
    // stay in the totals), else one shared with another live worker.
    void claim_stats_slot();
    // At exit: frees the slot for the next worker.
    void release_stats_slot();

    // --- fits (any worker) ---
    // Queues a fit; nullptr when the zone has no room.
    Job *add_job(std::string_view series_id, std::uint64_t points, std::uint64_t spool_seq, bool in_memory);
    // Asks the owner for what /plot draws of a version; nullptr when kMaxReads
    // are queued (*busy set) or the zone has no room.
    Job *add_read(std::string_view series_id, std::uint32_t version, bool *busy);
    // Asks the owner to delete a version (0: the whole series); nullptr when
    // the zone has no room.
    Job *add_remove(std::string_view series_id, std::uint32_t version);
    // Asks the owner for an export or an import (lifecycle.cpp): path is the
    // file, prefix a series id prefix (export), extra the ring filter
    // (export), since the commit count (export); nullptr when the zone has
    // no room.
    Job *add_transfer(JobKind kind, std::string_view path, std::string_view prefix, std::string_view extra,
                      std::uint64_t since);
    // An export job's state and the bytes written so far, read in one go.
    JobState transfer_state(Job *job, std::uint64_t *progress, std::uint64_t *commits);
    // Takes a finished job's outcome and frees it; false while still running.
    // A pending job is withdrawn when withdraw is set: failed with 503
    // store_unavailable and withdraw as the detail.
    // A read's answer stays in the zone (outcome->data) until free_data().
    bool take_result(Job *job, const char *withdraw, Job *outcome);
    void free_data(u_char *data);
    // The submitter no longer waits for the job (see Abandoned).
    Abandoned abandon(Job *job);

    // --- the store owner ---
    struct Claim {
        Job *job = nullptr;
        SeriesNode *node = nullptr;
        std::uint64_t spool_seq = 0;
        bool in_memory = false;
        ProcessId submitter{};
        std::uint32_t version = 0;
        std::string_view series_id;      // points into the job
        std::uint32_t fail_status = 0;   // set when this fit cannot be committed
        const char *fail_code = nullptr;
        std::string fail_detail;
        std::string data;                // a read's answer
        ModelHeader *slot = nullptr;     // where the image goes, reserved by assign_versions
        bool remove = false;             // a delete, not a fit
        // An export or an import: views into the job, which stays while it runs.
        std::string_view path, extra;
        std::uint64_t since = 0;
    };
    // Marks pending jobs as committing: at most max_jobs, about max_points points.
    void claim_pending(std::vector<Claim> *claims, std::size_t max_jobs, std::uint64_t max_points);
    // Whether a job of that kind waits for the owner.
    bool has_pending(JobKind kind);
    // Marks the oldest pending export or import (kind) as running; false when none.
    bool claim_transfer(JobKind kind, Claim *claim);
    // The owner's progress on an export: bytes written, the commit count of its snapshot.
    void set_progress(Job *job, std::uint64_t bytes, std::uint64_t commits);
    // Ends a remove, an import or an export: done with the claim's data as
    // the answer's body (status: fail_status, 200 when 0).
    void finish_job(const Claim &claim);
    // Marks pending reads as running (at most kMaxReads).
    void claim_reads(std::vector<Claim> *claims);
    // Ends reads: done with the claim's data, or failed with its fail_* fields.
    void finish_reads(const std::vector<Claim> &claims);
    // Gives each claim that has not failed the next version of its series and
    // reserves the zone memory its publication needs (zone_full otherwise):
    // a slot of image_bytes[i] bytes for claims[i], which the caller fills
    // without the lock. Versions are assigned only here so that a failed fit
    // leaves no gap.
    void assign_versions(std::vector<Claim> *claims, const std::vector<std::size_t> &image_bytes);
    // Publishes the filled slots of a committed batch, fails claims that
    // failed, or fails them all with 503 store_unavailable when commit_error
    // is set (their slots are freed).
    void finish_commit(const std::vector<Claim> &claims, const char *commit_error);
    // Fills claim->slot with a version the store has (recovery of a dead
    // owner's batch), for finish_commit to publish; false when the zone is full.
    bool fill_recovered_slot(Claim *claim, const std::string &image);
    // Jobs a dead owner left half-committed (at most max_jobs a call); the
    // new owner looks each up on disk.
    void committing_jobs(std::vector<Claim> *claims, std::size_t max_jobs);
    // Puts claims back in the queue (their batch never reached the disk).
    void requeue(const std::vector<Claim> &claims);
    // Whether a job still refers to a spool file.
    bool spool_in_use(ngx_pid_t submitter, std::uint64_t spool_seq);
    // Whether fits this process submitted are still waiting to be committed,
    // or were being committed by an owner that is gone (an exiting worker
    // then takes the store to finish them: nobody else may). Whether the
    // owner is gone is the caller's to say: the store's LOCK tells.
    bool has_pending_from(ProcessId submitter, bool owner_gone);
    // Frees finished jobs whose worker is gone.
    void collect_orphans();

    // Inserts a version read from disk at start, or imported (kept if the
    // zone has it already: versions never change); false when the zone is full.
    bool load_version(std::string_view series_id, const std::string &image);
    // The versions of each detector in the zone and the bytes they take
    // (kDetectorSlots each), copied under the lock.
    void detector_counts(std::uint64_t *versions, std::uint64_t *bytes);
    // Counts an answered prediction of a detector.
    void count_prediction(DetectorKind kind) {
        const auto i = static_cast<std::size_t>(kind);
        if (i < kDetectorSlots) __atomic_fetch_add(&my_stats().by_detector[i], 1, __ATOMIC_RELAXED);
    }

    void set_store_state(StoreState state, const char *error);

    // --- deletes and retention (CONTRACT section 9): the owner alone ---
    // Workers read images, nodes and streams after letting go of the lock,
    // so what a delete unlinks is freed later: once every live process has
    // passed a quiescent point (an event-loop timer while none of its pool
    // tasks or waits holds a zone pointer) after the unlinking.
    struct Retired {
        void *mem;
        std::uint64_t epoch;
    };
    using VersionRef = std::pair<std::string_view, std::uint32_t>;  // a series and one of its versions
    // This process holds no pointer into the zone now (a timer's call).
    void quiescent();
    // Frees what in *retired every live process has passed; false when
    // something is left for a later call.
    bool reclaim(std::vector<Retired> *retired);
    // What a remove would find: found, series_not_found or version_not_found
    // (version 0: the whole series, versions and stream). *bound: blocks it
    // may unlink, to reserve before the lock.
    Lookup removable(std::string_view series_id, std::uint32_t version, std::size_t *bound);
    // Unlinks the version (0: every version, the stream, the series) and
    // adds what to free to *retired (its capacity reserved by the caller);
    // *versions and *stream say what went.
    void remove(std::string_view series_id, std::uint32_t version, std::vector<Retired> *retired,
                std::uint32_t *versions, bool *stream);
    // The versions anomaly_keep_versions drops once the claims' new versions
    // are published: those older than each series' newest `keep`.
    void past_retention(const std::vector<Claim> &claims, std::uint32_t keep, std::vector<VersionRef> *out);
    // Unlinks such versions (after their removal is durable).
    void drop_versions(const std::vector<VersionRef> &versions, std::vector<Retired> *retired);

    // --- import (lifecycle.cpp): the owner alone ---
    enum class Present { absent, same, conflict };
    // Whether the zone has that version of a series, and with these bytes.
    Present has_version(std::string_view series_id, std::uint32_t version, std::string_view image);

    // --- streams ---
    // What /series/{id} shows of a series' stream, read without any lock
    // (the numbers of one moment, each whole); false when it has none.
    bool stream_summary(std::string_view series_id, StreamSummary *out);
    static StreamSummary summary_of_stream(const StreamSlot *s);
    // The stream of a series, without the zone's lock; nullptr when none.
    StreamSlot *find_stream(std::string_view series_id);
    // The series' stream, created with params (resolved) and its state
    // initialised unless it exists; nullptr when the zone has no room.
    StreamSlot *create_stream(std::string_view series_id, const StreamParams &params, std::int64_t now_ms);
    // Puts a checkpoint read from disk into the zone, unless the zone has
    // that stream already (it is newer), or replace is set (the disk is
    // newer: the zone's came from a copy); false when the zone is full.
    bool load_stream(std::string_view series_id, std::string_view state, std::int64_t checkpoint_ms,
                     bool replace = false);
    // Every stream, newest first: the list only grows, read without the lock.
    StreamSlot *first_stream() const { return __atomic_load_n(&sh_->streams, __ATOMIC_ACQUIRE); }

    enum class StreamAccess {
        locked,
        busy,    // a live process holds it (longer than a short spin)
        broken,  // its state is being restored from its checkpoint
    };
    // Takes the stream's lock. A holder found dead is replaced; if it died
    // in the middle of an update, the state is checked (check_stream) and
    // marked broken when it fails.
    // even_broken: the owner, to restore a broken stream.
    StreamAccess lock_stream(StreamSlot *s, bool even_broken = false);
    void unlock_stream(StreamSlot *s) { __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE); }
    // The streams of each detector and the zone bytes they take (kDetectorSlots each).
    void stream_counts(std::uint64_t *streams, std::uint64_t *bytes);

    // --- the anomaly history (anomalies.cpp, owner.cpp) ---
    // What anomaly_history asked for, before init: explicit is false for
    // the default, which shrinks to fit an eighth of a small zone.
    void want_history(std::uint64_t events, bool explicit_size) {
        history_wanted_ = events;
        history_explicit_ = explicit_size;
    }
    HistoryRing *history() const { return sh_->history; }
    // A series' node, found without the lock; nullptr when it has none.
    SeriesNode *series_node(std::string_view series_id);
    // Counts an answer of a series: a relaxed add, and a second one when it
    // had anomalies (linking the series into Shared::anomalous at its first).
    void count_scored(SeriesNode *node, std::uint64_t points, std::uint64_t anomalies);
    // The series with at least one anomaly and their counts, without the lock.
    void anomalous_series(std::vector<SeriesAnomalies> *out);
    // Points scored and anomalies, over every worker's slot.
    void history_totals(std::uint64_t *points, std::uint64_t *anomalies);
    // Puts events read from disk (oldest first) into the ring, if nothing
    // has been recorded in it yet; they count as persisted.
    bool load_history(const std::vector<HistoryEvent> &events);
    std::uint64_t history_persisted();
    void set_history_persisted(std::uint64_t sequence);

private:
    Job *add(JobKind kind, std::string_view series_id, std::uint32_t version, std::uint64_t points,
             std::uint64_t spool_seq, bool in_memory);
    void free_job_locked(Job *job);
    SeriesNode *find_node(std::string_view series_id, std::uint32_t hash);
    Lookup trained_node_locked(std::string_view series_id, std::uint32_t hash, SeriesNode **node);
    SeriesNode *find_or_add_node(std::string_view series_id);
    // Makes room in node->versions for version v; false when the zone is full.
    bool ensure_slot(SeriesNode *node, std::uint32_t v);
    // After versions were unlinked: moves the array down to its oldest
    // version and shrinks it.
    void compact_locked(SeriesNode *node);
    void unlink_version_locked(SeriesNode *node, std::uint32_t v, std::vector<Retired> *retired);
    void unlink_node_locked(SeriesNode *node, std::vector<Retired> *retired);
    std::uint64_t retire_epoch_locked() { return ++sh_->epoch; }
    StreamSlot *publish_stream(std::string_view series_id, StreamSlot *slot, std::size_t bytes);
    void fail_job_locked(Job *job, std::uint32_t status, const char *code, const char *detail);
    ngx_int_t init_history(ngx_log_t *log);

    ngx_cycle_t *cycle_ = nullptr;
    ngx_slab_pool_t *pool_ = nullptr;
    Shared *sh_ = nullptr;
    ngx_str_t name_{};
    size_t size_ = 0;
    ngx_uint_t stats_slot_ = kStatSlots;  // none claimed yet
    std::uint64_t history_wanted_ = kDefaultHistory;
    bool history_explicit_ = false;
};

// Holds the zone's lock for a scope, however it is left. Nothing done under
// it may allocate process memory or throw: a worker that unwound while
// holding the lock would leave every other worker waiting for it.
class ZoneLock {
public:
    explicit ZoneLock(Zone *zone) : zone_(zone) { zone_->lock(); }
    ~ZoneLock() { zone_->unlock(); }
    ZoneLock(const ZoneLock &) = delete;
    ZoneLock &operator=(const ZoneLock &) = delete;

private:
    Zone *zone_;
};

}  // namespace anomaly
