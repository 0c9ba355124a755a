#include "ngx/owner.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <vector>

#include "core/encoding.hpp"
#include "core/error.hpp"
#include "core/lifecycle.hpp"
#include "core/ring.hpp"
#include "core/transfer.hpp"
#include "store/store.hpp"

namespace anomaly {

namespace {

constexpr ngx_msec_t kOwnerCheck = 200;        // how soon a dead owner is replaced
constexpr ngx_msec_t kRetryAfterFailure = 1000; // store unopenable or unwritable
constexpr std::size_t kBatchJobs = 512;
constexpr std::uint64_t kBatchPoints = 4000000;
constexpr int kOrphanSpoolSeconds = 60;

struct Runtime;

struct TakeoverCtx {
    Store::OpenResult result = Store::OpenResult::failed;
    std::string error;
    std::int64_t loaded = -1;     // versions read from disk, -1 when the zone had them
    std::int64_t load_ms = 0;
    std::uint64_t zone_commits = 0;  // when the zone was behind the store: its count
    std::uint64_t disk_commits = 0;  //   and the store's
    bool copy_allowed = false;       // the store has been held by a stranger for a while
    std::int64_t copy_loaded = -1;   // versions read from a copy of a store held by another generation
    std::int64_t copy_ms = 0;
    std::string copy_error;
};

struct CommitCtx {
    bool store_lost = false;   // the store failed a write and was closed
    std::string error;
};

struct ReadCtx {
    std::string error;         // a failure of the task itself, for the log
};

// An export or an import in its pool task.
struct TransferCtx {
    std::string error;         // for the log
    bool store_lost = false;   // the store failed a write and was closed
};

struct CheckpointCtx {
    std::string error;         // a write that failed, for the log
    std::uint64_t written = 0; // streams written by the last run
    std::uint64_t restored = 0; // broken streams put back from their checkpoints
    std::uint64_t restarted = 0; // broken streams without one, started again
    // The anomaly history: a sequence found being written at the last run;
    // found so again, its writer is taken to be dead and it is passed over.
    std::uint64_t history_stuck = UINT64_MAX;
};

struct Runtime {
    StoreSettings settings;
    std::string spool_dir;
    ngx_log_t *log = nullptr;
    void (*on_wakeup)() = nullptr;

    // Touched only by this process's store tasks: commits and reads share
    // it (LevelDB is safe for concurrent use), closing it takes it alone.
    std::unique_ptr<Store> store;
    std::shared_mutex store_mutex;
    bool owner = false;
    bool takeover_running = false;
    bool commit_running = false;
    bool read_running = false;
    ngx_msec_t next_takeover = 0;
    ngx_uint_t locked_by_stranger = 0;  // takeovers refused with no live owner
    std::string last_error;           // last store error logged, to log each once
    std::string last_copy_error;      // the same for copies of a store held by another

    ngx_event_t timer{};
    ngx_connection_t *wakeup = nullptr;  // our datagram socket
    int send_fd = -1;
    std::uint32_t name_hash = 0;
    // Spool files are <pid>.<seq>. seq counts on from the moment this process
    // started, in microseconds after boot: a later process given the same pid
    // starts beyond every number this one drew (at most one a microsecond),
    // so it never writes over a dead worker's queued fit.
    std::uint64_t spool_seq = 0;

    ngx_thread_task_t takeover_task{};
    TakeoverCtx takeover;
    ngx_thread_task_t commit_task{};
    CommitCtx commit;
    // Plot reads run in a task of their own, so that they never delay a commit.
    ngx_thread_task_t read_task{};
    ReadCtx read;
    // Stream checkpoints, in a task of their own every settings.checkpoint.
    ngx_thread_task_t checkpoint_task{};
    CheckpointCtx checkpoint;
    bool checkpoint_running = false;
    ngx_msec_t next_checkpoint = 0;

    // Fits and imports assign and publish versions one at a time.
    std::mutex version_writes;
    // A delete and the stream checkpoints never interleave: a checkpoint
    // taken before a delete must not be written after it.
    std::mutex stream_writes;
    // What deletes unlinked from the zone, freed by the timer once every
    // process has passed it (Zone::reclaim).
    std::mutex retired_mutex;
    std::vector<Zone::Retired> retired;

    ngx_thread_task_t export_task{};
    TransferCtx exporting;
    bool export_running = false;
    ngx_thread_task_t import_task{};
    TransferCtx importing;
    bool import_running = false;
};

// Pool tasks and waits of this process that hold zone pointers (hold_zone).
int zone_holds = 0;

Runtime *rt = nullptr;

// Fits this process validated while it owned the store, waiting for commit.
struct HeldFit {
    std::string model;  // its image
    std::string plot_envelope;
    std::string training_data;
};
std::mutex held_mutex;
std::unordered_map<std::uint64_t, HeldFit> held_fits;



Shared *sh() { return rt->settings.zone->shared(); }


// Abstract-namespace socket names vanish with their process: no files to clean.
socklen_t wakeup_address(ngx_pid_t pid, sockaddr_un *addr) {
    std::memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    int n = std::snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, "ngx-anomaly.%08x.%ld",
                          rt->name_hash, static_cast<long>(pid));
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

void send_wakeup(ngx_pid_t pid, char what) {
    if (pid <= 0 || rt->send_fd == -1) return;
    sockaddr_un addr;
    socklen_t len = wakeup_address(pid, &addr);
    // Lost wake-ups are harmless: everyone also polls (kOwnerCheck, fit timers).
    (void)sendto(rt->send_fd, &what, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr *>(&addr), len);
}

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ---- takeover: runs in a pool thread ----

void remove_orphan_spools() {
    DIR *dir = opendir(rt->spool_dir.c_str());
    if (dir == nullptr) return;
    const time_t now = time(nullptr);
    while (dirent *e = readdir(dir)) {
        long pid = 0;
        unsigned long long seq = 0;
        std::string path = rt->spool_dir + "/" + e->d_name;
        // An export whose sender died before it opened the file.
        if (std::sscanf(e->d_name, "export.%ld.%llu", &pid, &seq) == 2) {
            struct stat st;
            if (stat(path.c_str(), &st) == 0 && now - st.st_mtime >= kOrphanSpoolSeconds &&
                !ProcessId{static_cast<ngx_pid_t>(pid), 0}.alive())
                unlink(path.c_str());
            continue;
        }
        if (std::sscanf(e->d_name, "%ld.%llu", &pid, &seq) != 2) continue;
        struct stat st;
        if (stat(path.c_str(), &st) != 0 || now - st.st_mtime < kOrphanSpoolSeconds) continue;
        if (!rt->settings.zone->spool_in_use(static_cast<ngx_pid_t>(pid), seq))
            unlink(path.c_str());
    }
    closedir(dir);
}

// A copy of the store is named after its reader, copy.<pid>.<start>, so that
// a later process given the same pid does not keep a dead reader's copy.
std::string copy_dir(ProcessId reader) {
    return rt->settings.dir + "/copy." + std::to_string(reader.pid) + "." + std::to_string(reader.start);
}

// Copies of the store (load_from_copy) whose reader died before removing them:
// their links would keep old table files on disk.
void remove_orphan_copies() {
    DIR *dir = opendir(rt->settings.dir.c_str());
    if (dir == nullptr) return;
    std::vector<std::string> dead;
    while (dirent *e = readdir(dir)) {
        long pid = 0;
        unsigned long long start = 0;
        char rest = 0;
        const int n = std::sscanf(e->d_name, "copy.%ld.%llu%c", &pid, &start, &rest);
        // copy.<pid>, from an older build, goes by the pid alone (start 0).
        if (n != 2 && !(n == 1 && std::sscanf(e->d_name, "copy.%ld%c", &pid, &rest) == 1)) continue;
        const ProcessId reader{static_cast<ngx_pid_t>(pid), start};
        if (reader != ProcessId::self() && !reader.alive()) dead.emplace_back(e->d_name);
    }
    closedir(dir);
    for (const std::string &name : dead) Store::remove_copy(rt->settings.dir + "/" + name);
}

// Versions read from disk go into the zone a batch at a time.
// A stream checkpoint read from disk (or a copy) into the zone. replace: the
// disk is newer than the zone's streams (they came from a copy while another
// nginx generation held the store, and learned nothing since: observes wait).
Store::StreamVisitor stream_loader(Zone *zone, bool *zone_full, bool replace = false) {
    return [zone, zone_full, replace](std::string_view series, std::string_view state, std::int64_t written_ms) {
        if (!*zone_full && !zone->load_stream(series, state, written_ms, replace)) *zone_full = true;
    };
}

// The newest events of the anomaly history, back into a ring nothing has
// been recorded in yet. A failure costs the history, not the start.
void load_history(Store *store) {
    Zone *zone = rt->settings.zone;
    const HistoryRing *ring = zone->history();
    if (ring == nullptr || history_head(ring) != 0) return;
    std::vector<HistoryEvent> events;
    std::uint64_t damaged = 0;
    std::string error;
    if (!store->read_history(ring->capacity, &events, &damaged, &error)) {
        ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly: the anomaly history could not be read: %s", error.c_str());
        return;
    }
    if (damaged > 0)
        ngx_log_error(NGX_LOG_WARN, rt->log, 0, "anomaly: %uL anomaly history records do not decode; skipped",
                      damaged);
    if (!events.empty()) zone->load_history(events);
}

bool load_models(Store *store, std::string *error, bool replace_streams) {
    Zone *zone = rt->settings.zone;
    bool zone_full = false;
    std::uint64_t damaged = 0;
    bool ok = store->for_each_model(
        [&](std::string_view series, const std::string &image) {
            if (!zone_full && !zone->load_version(series, image)) zone_full = true;
        },
        error);
    ok = ok && store->for_each_stream(stream_loader(zone, &zone_full, replace_streams), &damaged, error);
    if (ok && damaged > 0)
        ngx_log_error(NGX_LOG_WARN, rt->log, 0,
                      "anomaly: %uL stream checkpoints do not decode; those streams start again", damaged);
    if (ok) load_history(store);
    if (ok && zone_full)
        *error = "not every stored version and stream fits in the shared zone; raise the size in the "
                 "anomaly_zone directive";
    if (ok && !zone_full) return true;
    zone->lock();
    sh()->load_incomplete = zone_full ? 507 : 503;
    zone->unlock();
    return false;
}

// A dead owner may have written a batch without publishing it: finish it
// from what is on disk, or queue it again if it never got there.
void recover_claims(Store *store, std::vector<Zone::Claim> &claims) {
    Zone *zone = rt->settings.zone;
    std::vector<Zone::Claim> done, again;
    for (Zone::Claim &c : claims) {
        std::string image, error;
        if (c.version != 0 && c.node != nullptr && store->read_model(c.series_id, c.version, &image, &error)) {
            if (!zone->fill_recovered_slot(&c, image)) {
                c.fail_status = 507;
                c.fail_code = "zone_full";
                c.fail_detail = "The fit is durable, but the shared zone has no room for it; raise the "
                                "anomaly_zone size and reload nginx.";
            }
            done.push_back(std::move(c));
        } else {
            again.push_back(std::move(c));
        }
    }
    zone->finish_commit(done, nullptr);
    zone->requeue(again);
    for (const Zone::Claim &c : done) send_wakeup(c.submitter.pid, 'd');
}

// Whether the owner the zone names still holds the store. Asked of LevelDB's
// LOCK, not of the pid: a dead owner's pid may already belong to another
// process (one that kill(pid, 0) cannot tell apart).
bool owner_holds_store() {
    ProcessId owner;
    {
        ZoneLock guard(rt->settings.zone);
        owner = ProcessId{sh()->owner_pid, sh()->owner_start};
    }
    if (owner.none()) return false;
    // A process never sees its own lock: this one knows whether it is the owner.
    if (owner.pid == ngx_pid) return owner == ProcessId::self();
    const long holder = Store::lock_holder(rt->settings.dir);
    if (holder >= 0) return holder == owner.pid;
    return owner.alive();  // the lock cannot tell
}

void recover_committing(Store *store) {
    for (;;) {
        std::vector<Zone::Claim> claims;
        rt->settings.zone->committing_jobs(&claims, kBatchJobs);
        if (claims.empty()) return;
        recover_claims(store, claims);
    }
}

// A worker of this zone holds the store or is opening it.
bool held_by_us() {
    if (owner_holds_store()) return true;
    ProcessId opening;
    {
        ZoneLock guard(rt->settings.zone);
        opening = sh()->opening;
    }
    return !opening.none() && opening != ProcessId::self() && opening.alive();
}

// Makes this process the one named in *who (the zone's copy reader or
// opener) unless a live one is named there already. /proc is read outside
// the zone's lock.
bool name_me_unless_alive(ProcessId Shared::*who) {
    ProcessId seen;
    {
        ZoneLock guard(rt->settings.zone);
        seen = sh()->*who;
    }
    const ProcessId me = ProcessId::self();
    if (!seen.none() && seen != me && seen.alive()) return false;
    ZoneLock guard(rt->settings.zone);
    if (sh()->*who != seen) return false;
    sh()->*who = me;
    return true;
}

// The store is locked and no worker of this zone owns it: another nginx
// generation holds it, as during a binary upgrade (USR2) until the old
// workers exit. A new zone is filled from a copy of the store so that
// predictions are answered at once; fits wait until the store is released,
// and the worker that then opens it reads again whatever was committed since.
void load_from_copy(TakeoverCtx *ctx) {
    Zone *zone = rt->settings.zone;
    if (sh()->loaded || held_by_us() || !name_me_unless_alive(&Shared::copy_reader)) return;
    struct Done {  // however the read ends, another worker may try again
        Zone *zone;
        ~Done() {
            zone->lock();
            if (zone->shared()->copy_reader == ProcessId::self()) zone->shared()->copy_reader = ProcessId{};
            zone->unlock();
        }
    } done{zone};
    const auto started = std::chrono::steady_clock::now();
    bool zone_full = false;
    std::uint64_t commits = 0;
    ctx->copy_error.clear();
    const Store::StreamVisitor streams = stream_loader(zone, &zone_full);
    const bool ok = Store::read_copy(
        rt->settings.dir, copy_dir(ProcessId::self()),
        [&](std::string_view series, const std::string &image) {
            if (!zone_full && !zone->load_version(series, image)) zone_full = true;
        },
        &commits, &ctx->copy_error, &streams);
    zone->lock();
    if (ok && !sh()->loaded) {
        sh()->loaded = 1;
        sh()->from_copy = 1;
        sh()->store_commits = commits;
        if (zone_full) sh()->load_incomplete = 507;
        if (sh()->owner_pid == 0) {
            sh()->store_state = StoreState::waiting;
            sh()->store_error[0] = '\0';
        }
        ctx->copy_loaded = static_cast<std::int64_t>(sh()->versions_stored);
    }
    zone->unlock();
    ctx->copy_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - started).count();
}

void takeover_thread(void *data, ngx_log_t *) {
    // LevelDB starts its compaction thread from the threads that call it, and
    // a new thread inherits the priority of the one that made it.
    BackgroundPriority background;
    TakeoverCtx *ctx = static_cast<TakeoverCtx *>(data);
    try {
        ctx->error.clear();
        std::unique_ptr<Store> store;
        ctx->copy_loaded = -1;
        Zone *zone = rt->settings.zone;
        const ProcessId me = ProcessId::self();
        name_me_unless_alive(&Shared::opening);
        ctx->result = Store::open(rt->settings.dir, &store, &ctx->error);
        zone->lock();
        if (sh()->opening == me) sh()->opening = ProcessId{};
        if (ctx->result == Store::OpenResult::opened) {
            sh()->owner_pid = me.pid;
            sh()->owner_start = me.start;
        }
        bool loaded = sh()->loaded;
        const bool from_copy = sh()->from_copy;
        const std::uint64_t zone_commits = sh()->store_commits;
        zone->unlock();
        if (ctx->result == Store::OpenResult::locked && ctx->copy_allowed) load_from_copy(ctx);
        if (ctx->result != Store::OpenResult::opened) return;
        ctx->loaded = -1;
        ctx->zone_commits = ctx->disk_commits = 0;
        if (loaded && (from_copy || zone_commits != store->commits())) {
            // Another generation of nginx (a binary upgrade rolled back, or
            // anomaly_store pointed elsewhere in a reload) committed while this
            // zone was kept. Reading the versions again makes the zone match
            // the disk, so no new fit is given a version number already stored.
            ctx->zone_commits = zone_commits;
            ctx->disk_commits = store->commits();
            loaded = false;
        }
        if (!loaded) {
            auto started = std::chrono::steady_clock::now();
            zone->set_store_state(StoreState::loading, nullptr);
            if (!load_models(store.get(), &ctx->error, from_copy)) {
                // Serve what fitted; the log and /healthcheck say what did not.
                zone->set_store_state(StoreState::loading, ctx->error.c_str());
            }
            zone->lock();
            sh()->loaded = 1;
            sh()->from_copy = 0;
            sh()->store_commits = store->commits();
            ctx->loaded = static_cast<std::int64_t>(sh()->versions_stored);
            zone->unlock();
            ctx->load_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - started).count();
        }
        recover_committing(store.get());
        remove_orphan_spools();
        remove_orphan_copies();
        if (ctx->error.empty()) zone->set_store_state(StoreState::ready, nullptr);
        else zone->set_store_state(StoreState::ready, ctx->error.c_str());
        std::unique_lock<std::shared_mutex> exclusive(rt->store_mutex);
        rt->store = std::move(store);
    } catch (const std::exception &e) {
        // The store (if opened) is closed by now: let any worker take it again.
        Zone *zone = rt->settings.zone;
        zone->lock();
        if (sh()->owner_pid == ngx_pid) sh()->owner_pid = 0;
        if (sh()->opening == ProcessId::self()) sh()->opening = ProcessId{};
        zone->unlock();
        ctx->result = Store::OpenResult::failed;
        try {
            ctx->error = e.what();
        } catch (const std::exception &) {
            ctx->error.clear();
        }
    }
}

// ---- stream checkpoints: run in a pool thread, and at exit ----

// A stream whose holder died mid-update and whose state failed its check:
// its checkpoint goes back in, or it starts again when it has none.
void restore_stream(Store *store, StreamSlot *s, CheckpointCtx *ctx) {
    Zone *zone = rt->settings.zone;
    const std::string_view series(reinterpret_cast<const char *>(s->series->id), s->series->id_len);
    std::string state;
    std::int64_t written_ms = 0;
    std::string error;
    const bool found = store->read_checkpoint(series, &state, &written_ms, &error) && state.size() == s->bytes;
    if (!error.empty()) return;  // the next run tries again
    if (zone->lock_stream(s, true) != Zone::StreamAccess::locked) return;
    if (found) {
        std::memcpy(s->state(), state.data(), state.size());
        s->checkpoint_ms = written_ms;
        ctx->restored++;
    } else {
        // What it was created with is in its state: an update never writes
        // the parameters, so a half-updated state still tells them.
        StreamParams params = stream_params_of(*s->state());
        if (resolve_stream_params(&params) || stream_state_bytes(params) != s->bytes) {
            zone->unlock_stream(s);  // cannot be started again in its slot: it stays broken (503)
            return;
        }
        init_stream(s->state(), params, now_ms(), reinterpret_cast<std::uintptr_t>(s));
        s->checkpoint_ms = 0;
        ctx->restarted++;
    }
    s->checkpointed = s->changes;
    __atomic_store_n(&s->broken, std::uint8_t{0}, __ATOMIC_RELEASE);
    zone->unlock_stream(s);
}

// Writes every stream changed since its last checkpoint, in batches of
// about kCheckpointBatchBytes, each state copied under the stream's lock
// (a stream busy at that moment waits for the next run).
constexpr std::size_t kCheckpointBatchBytes = 32u << 20;

void write_history(Store *store, CheckpointCtx *ctx);

void write_checkpoints(Store *store, CheckpointCtx *ctx) {
    Zone *zone = rt->settings.zone;
    ctx->written = 0;
    std::vector<Store::Checkpoint> batch;
    std::vector<std::pair<StreamSlot *, std::uint64_t>> taken;
    std::size_t batch_bytes = 0;
    const std::int64_t now = now_ms();
    auto flush = [&]() {
        if (batch.empty()) return true;
        std::string error;
        if (!store->write_checkpoints(batch, &error)) {
            ctx->error = error;
            return false;
        }
        for (auto &t : taken) {
            t.first->checkpointed = t.second;
            __atomic_store_n(&t.first->checkpoint_ms, now, __ATOMIC_RELAXED);
        }
        ctx->written += batch.size();
        batch.clear();
        taken.clear();
        batch_bytes = 0;
        return true;
    };
    for (StreamSlot *s = zone->first_stream(); s != nullptr; s = s->next) {
        if (__atomic_load_n(&s->removed, __ATOMIC_ACQUIRE)) continue;
        if (__atomic_load_n(&s->broken, __ATOMIC_ACQUIRE)) {
            restore_stream(store, s, ctx);
            continue;
        }
        if (__atomic_load_n(&s->changes, __ATOMIC_ACQUIRE) == s->checkpointed) continue;
        Store::Checkpoint c;
        c.series_id.assign(reinterpret_cast<const char *>(s->series->id), s->series->id_len);
        c.state.resize(s->bytes);  // allocated before the lock: nothing under it may throw
        c.written_ms = now;
        if (zone->lock_stream(s) != Zone::StreamAccess::locked) continue;
        const std::uint64_t changes = s->changes;
        std::memcpy(&c.state[0], s->state(), s->bytes);
        zone->unlock_stream(s);
        batch_bytes += c.state.size();
        batch.push_back(std::move(c));
        taken.emplace_back(s, changes);
        if (batch_bytes >= kCheckpointBatchBytes && !flush()) return;
    }
    if (!flush()) return;
    write_history(store, ctx);
    zone->lock();
    if (ctx->written > 0) sh()->last_checkpoint_ms = now;
    sh()->checkpoints_written += ctx->written;
    zone->unlock();
}

// Writes the events of the anomaly history recorded since the last write,
// and drops from the store those that fell out of the ring. An event still
// being written stops the write there, till the next run.
constexpr std::size_t kHistoryBatch = 16384;

void write_history(Store *store, CheckpointCtx *ctx) {
    Zone *zone = rt->settings.zone;
    const HistoryRing *ring = zone->history();
    if (ring == nullptr) return;
    const std::uint64_t head = history_head(ring);
    std::uint64_t from = std::max(zone->history_persisted(), history_tail(head, ring->capacity));
    std::vector<HistoryEvent> events;
    while (from < head) {
        events.clear();
        std::uint64_t upto = from;
        bool stopped = false;
        for (std::uint64_t seq = from; seq < head && events.size() < kHistoryBatch; seq++) {
            HistoryEvent e;
            const SlotRead read = history_read(ring, seq, &e);
            if (read == SlotRead::writing && ctx->history_stuck != seq) {
                ctx->history_stuck = seq;
                stopped = true;
                break;
            }
            if (read == SlotRead::ok) events.push_back(e);
            upto = seq + 1;
        }
        if (upto == from) return;
        std::string error;
        if (!store->write_history(events, ring->capacity, &error)) {
            ctx->error = "anomaly history: " + error;
            return;
        }
        zone->set_history_persisted(upto);
        from = upto;
        if (stopped) return;
    }
}

void checkpoint_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    CheckpointCtx *ctx = static_cast<CheckpointCtx *>(data);
    try {
        ctx->error.clear();
        ctx->restored = ctx->restarted = 0;
        std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
        std::lock_guard<std::mutex> streams(rt->stream_writes);
        if (rt->store) write_checkpoints(rt->store.get(), ctx);
    } catch (const std::exception &e) {
        ctx->error = e.what();
    }
}

void checkpoint_done(ngx_event_t *) noexcept {
    rt->checkpoint_running = false;
    rt->next_checkpoint = ngx_current_msec + rt->settings.checkpoint;
    const CheckpointCtx &c = rt->checkpoint;
    if (!c.error.empty()) ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly stream checkpoint failed: %s", c.error.c_str());
    if (c.restored + c.restarted > 0)
        ngx_log_error(NGX_LOG_WARN, rt->log, 0,
                      "anomaly: %uL streams left half-updated by a worker that died were put back from their "
                      "checkpoints, %uL without one started again",
                      c.restored, c.restarted);
}

void kick_checkpoint() {
    if (!rt->owner || rt->checkpoint_running) return;
    if (static_cast<ngx_msec_int_t>(ngx_current_msec - rt->next_checkpoint) < 0) return;
    rt->checkpoint_task.ctx = &rt->checkpoint;
    if (ngx_thread_task_post(rt->settings.pool, &rt->checkpoint_task) != NGX_OK) return;
    rt->checkpoint_running = true;
}

// ---- commit: runs in a pool thread ----

void release_store_after_failure(const std::string &error) {
    {
        std::unique_lock<std::shared_mutex> exclusive(rt->store_mutex);  // waits for a read in flight
        rt->store.reset();
    }
    Zone *zone = rt->settings.zone;
    {
        ZoneLock guard(zone);
        if (sh()->owner_pid == ngx_pid) sh()->owner_pid = 0;
    }
    zone->set_store_state(StoreState::unavailable, error.c_str());
}

// ---- plot reads: run in a pool thread, beside commits ----

// What /plot draws of a version, its encoded plot envelope; false with
// *error empty when the version is not in the store.
bool read_plot_data(Store *store, std::string_view series, std::uint32_t version, std::string *out,
                    std::string *error) {
    PlotEnvelope envelope;
    if (!store->read_plot_envelope(series, version, &envelope, error)) return false;
    *out = encode_plot_envelope(envelope);
    return true;
}

// What /plot draws of each claimed version, a few KB read from the store,
// handed back through the zone.
void read_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    ReadCtx *ctx = static_cast<ReadCtx *>(data);
    ctx->error.clear();
    Zone *zone = rt->settings.zone;
    std::vector<Zone::Claim> reads;
    try {
        zone->claim_reads(&reads);
        std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
        for (Zone::Claim &c : reads) {
            std::string error;
            try {
                if (!rt->store) error = "the store was closed";
                else if (!read_plot_data(rt->store.get(), c.series_id, c.version, &c.data, &error) && error.empty())
                    error = "the version is not in the store";
            } catch (const std::exception &e) {
                error = e.what();
            }
            if (!error.empty()) {
                c.fail_status = 503;
                c.fail_code = "store_unavailable";
                c.fail_detail = "The plot's data could not be read from the store; the error log says why.";
                ctx->error = "plot of \"" + std::string(c.series_id) + "\" v" + std::to_string(c.version) +
                             ": " + error;
            }
        }
    } catch (const std::exception &e) {
        for (Zone::Claim &c : reads) {
            c.fail_status = 503;
            c.fail_code = "store_unavailable";
            c.fail_detail.clear();
        }
        try {
            ctx->error = e.what();
        } catch (const std::exception &) {
            ctx->error.clear();
        }
    }
    zone->finish_reads(reads);
    for (const Zone::Claim &c : reads) send_wakeup(c.submitter.pid, 'd');
}

// ---- deletes: run in the commit task, in order with the fits ----

std::int64_t now_ms();

// Removes a version (or a whole series) from the store, durably, then from
// the zone; the answer goes in claim->data.
void remove_series(Zone::Claim *c, CommitCtx *ctx) {
    Zone *zone = rt->settings.zone;
    std::size_t bound = 0;
    switch (zone->removable(c->series_id, c->version, &bound)) {
    case Lookup::found:
        break;
    case Lookup::not_loaded:
        c->fail_status = 503;
        c->data = render_error(make_error(0, "store_loading", "The models are still being read from the store; try again shortly."));
        return;
    case Lookup::series_not_found:
        c->fail_status = 404;
        c->data = render_error(make_error(0, "series_not_found", "No series with this id has been fitted or observed."));
        return;
    case Lookup::version_not_found:
        c->fail_status = 404;
        c->data = render_error(make_error(0, "version_not_found", "This series has no such version."));
        return;
    }
    std::string error;
    bool ok;
    std::uint64_t commits = 0;
    std::uint32_t versions = 0;
    bool stream = false;
    {
        // The order the checkpoints take them in: a checkpoint taken before
        // the delete is written before it, and none after it.
        std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
        std::lock_guard<std::mutex> streams(rt->stream_writes);
        ok = rt->store && rt->store->remove({Store::Removal{std::string(c->series_id), c->version}}, &error);
        if (ok) {
            commits = rt->store->commits();
            std::lock_guard<std::mutex> guard(rt->retired_mutex);
            rt->retired.reserve(rt->retired.size() + bound);
            zone->remove(c->series_id, c->version, &rt->retired, &versions, &stream);
        } else if (error.empty()) {
            error = "the store was closed";
        }
    }
    if (!ok) {
        ctx->store_lost = true;
        ctx->error = error;
        c->fail_status = 503;
        const std::string_view reason = public_reason(error);
        c->data = render_error(make_error(
            503, "store_unavailable",
            reason.empty() ? std::string("The store could not make the delete durable; the error log says why.")
                           : "The store could not make the delete durable (" + std::string(reason) + ")."));
        release_store_after_failure(error);
        return;
    }
    {
        ZoneLock guard(zone);
        sh()->store_commits = commits;
    }
    c->data = render_removed(c->series_id, c->version, versions, stream);
}

// ---- export: runs in a pool thread, one at a time ----

// Writes all of data to fd; false with *error on failure.
bool write_all(int fd, const std::string &data, std::string *error) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *error = std::string("write: ") + std::strerror(errno);
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

bool abandoned(Job *job) { return __atomic_load_n(&job->abandoned, __ATOMIC_ACQUIRE) != 0; }

constexpr std::size_t kExportPiece = 4 << 20;  // bytes of records a store call gives at a time

// The store as of one moment (a LevelDB snapshot), written to the export's
// file piece by piece while its submitter sends what is there.
void export_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    TransferCtx *ctx = static_cast<TransferCtx *>(data);
    ctx->error.clear();
    Zone *zone = rt->settings.zone;
    Zone::Claim c;
    if (!zone->claim_transfer(JobKind::exporting, &c)) return;
    const std::string path(c.path);
    int fd = -1;
    try {
        fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
        // Which series go: a prefix of their ids, and the servers of a ring
        // with the one whose series these are.
        const std::string prefix(c.series_id);
        std::unique_ptr<HashRing> ring;
        std::string node;
        if (!c.extra.empty()) {
            const std::size_t bar = c.extra.find('|');
            std::vector<std::string> servers;
            std::string why;
            if (bar == std::string_view::npos || !parse_ring(c.extra.substr(0, bar), &servers, &why))
                throw std::runtime_error("a ring filter that does not parse: " + why);
            ring.reset(new HashRing(servers));
            node.assign(c.extra.substr(bar + 1));
        }
        std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
        if (!rt->store) throw std::runtime_error("the store was closed");
        Store::ExportScope scope;
        scope.prefix = prefix;
        scope.since = c.since;
        if (ring) scope.filter = [&](std::string_view id) { return ring->owner(id) == node; };
        {
            // The streams' states as of now, not of their last checkpoint.
            std::lock_guard<std::mutex> streams(rt->stream_writes);
            CheckpointCtx checkpoint;
            write_checkpoints(rt->store.get(), &checkpoint);
            if (!checkpoint.error.empty()) throw std::runtime_error("stream checkpoints: " + checkpoint.error);
        }
        std::unique_ptr<Store::Snapshot> snapshot = rt->store->snapshot();
        const std::uint64_t commits = snapshot->commits();

        std::string out;
        append_transfer_magic(&out);
        TransferHeader header;
        header.commits = commits;
        header.since = c.since;
        header.created_ms = now_ms();
        append_header(&out, header);
        std::uint64_t written = 0;
        std::string why;
        if (!write_all(fd, out, &why)) throw std::runtime_error(why);
        written += out.size();
        zone->set_progress(c.job, written, commits);

        TransferEnd end;
        end.commits = commits;
        bool too_large = false;
        Store::ExportVisitor visit;
        visit.version = [&](const TransferVersion &v) {
            if (!append_version(&out, v)) return !(too_large = true);
            end.versions++;
            return true;
        };
        visit.stream = [&](const TransferStream &st) {
            if (!append_stream(&out, st)) return !(too_large = true);
            end.streams++;
            return true;
        };
        std::string after, next;
        for (;;) {
            if (abandoned(c.job)) break;
            // A reload or a stop waits for the pool's tasks: it does not
            // wait for a whole export, which the client then sees cut short.
            if (ngx_exiting || ngx_quit || ngx_terminate) throw std::runtime_error("nginx is reloading or stopping");
            out.clear();
            std::string error;
            const Store::ExportStep step =
                rt->store->export_records(*snapshot, scope, after, kExportPiece, visit, &next, &error);
            if (step == Store::ExportStep::failed) throw std::runtime_error(error);
            if (too_large) throw std::runtime_error("a record too large for the export format");
            if (!write_all(fd, out, &why)) throw std::runtime_error(why);
            written += out.size();
            zone->set_progress(c.job, written, commits);
            if (step == Store::ExportStep::done) break;
            after = next;
        }
        if (!abandoned(c.job)) {
            out.clear();
            append_end(&out, end);
            if (!write_all(fd, out, &why)) throw std::runtime_error(why);
            written += out.size();
            zone->set_progress(c.job, written, commits);
        }
    } catch (const std::exception &e) {
        c.fail_status = 503;
        try {
            ctx->error = "export: " + std::string(e.what());
            c.data = render_error(make_error(0, "store_unavailable", "The export could not be read from the store; the error log says why."));
        } catch (const std::exception &) {
        }
    }
    if (fd >= 0) ::close(fd);
    // The submitter opened the file already, or never will.
    if (c.fail_status != 0 || abandoned(c.job)) ::unlink(path.c_str());
    zone->finish_job(c);
    send_wakeup(c.submitter.pid, 'd');
}

// ---- import: runs in a pool thread, one at a time ----

constexpr std::size_t kImportBatchBytes = 16 << 20;  // record bytes a synced write takes at a time

// Reads an export from the file nginx kept the request body in, and makes
// its versions and streams durable and visible in batches, in order with
// the fits. A version the node has, byte for byte, is passed over (a rerun
// of an interrupted import); one it has with other bytes stops the import.
void import_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    TransferCtx *ctx = static_cast<TransferCtx *>(data);
    ctx->error.clear();
    ctx->store_lost = false;
    Zone *zone = rt->settings.zone;
    Zone::Claim c;
    if (!zone->claim_transfer(JobKind::importing, &c)) return;
    ImportFigures figures;
    std::string code, detail;
    int fd = -1;
    try {
        if (int status = sh()->load_incomplete) {
            c.fail_status = status;
            code = status == 507 ? "zone_full" : "store_unavailable";
            detail = "Imports are refused until every stored version is in the zone; the error log says why.";
        } else {
            fd = ::open(std::string(c.path).c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) throw std::runtime_error("cannot open the request body: " + std::string(std::strerror(errno)));
        }
        TransferReader reader;
        std::vector<TransferVersion> versions;
        std::vector<TransferStream> streams;
        std::set<std::pair<std::string, std::uint32_t>> batched;  // versions in this batch
        std::set<std::string> batched_streams;
        std::set<std::string> seen;
        std::size_t batch_bytes = 0;
        auto flush = [&]() {
            if (versions.empty() && streams.empty()) return true;
            std::lock_guard<std::mutex> guard(rt->version_writes);
            std::string error;
            bool ok;
            {
                std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
                ok = rt->store && rt->store->import(versions, streams, &error);
                if (ok) {
                    ZoneLock lock(zone);
                    sh()->store_commits = rt->store->commits();
                }
            }
            if (!ok) {
                ctx->store_lost = true;
                ctx->error = error;
                c.fail_status = 503;
                code = "store_unavailable";
                detail = "The store could not make the import durable; the error log says why. What the answer "
                         "counts as imported is stored.";
                release_store_after_failure(error);
                return false;
            }
            bool full = false;
            for (const TransferVersion &v : versions) {
                if (!full && zone->load_version(v.series_id, v.image)) figures.versions_imported++;
                else full = true;
            }
            for (const TransferStream &st : streams) {
                if (!full && zone->load_stream(st.series_id, st.state, st.written_ms)) figures.streams_imported++;
                else full = true;
            }
            if (full) {
                // On disk and not in the zone: as after a start into a zone
                // too small, fits are refused until it is raised.
                ZoneLock lock(zone);
                sh()->load_incomplete = 507;
                c.fail_status = 507;
                code = "zone_full";
                detail = "The shared zone has no room for the imported versions, which are stored: raise the "
                         "anomaly_zone size and reload nginx.";
                return false;
            }
            versions.clear();
            streams.clear();
            batched.clear();
            batched_streams.clear();
            batch_bytes = 0;
            return true;
        };
        auto note_series = [&](const std::string &id) {
            if (seen.insert(id).second) figures.series.push_back(id);
        };
        std::vector<char> buf(1 << 20);
        bool eof = fd < 0, stop = fd < 0;
        while (!stop) {
            TransferReader::Item item = reader.next();
            if (item == TransferReader::Item::need_more) {
                if (eof) {
                    reader.finish();
                    item = reader.next();
                } else {
                    const ssize_t n = ::read(fd, buf.data(), buf.size());
                    if (n < 0 && errno == EINTR) continue;
                    if (n < 0) throw std::runtime_error("reading the request body: " + std::string(std::strerror(errno)));
                    if (n == 0) eof = true;
                    else reader.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
                    continue;
                }
            }
            switch (item) {
            case TransferReader::Item::need_more:
                break;
            case TransferReader::Item::header:
                figures.source_commits = reader.header().commits;
                break;
            case TransferReader::Item::version: {
                const TransferVersion &v = reader.version();
                note_series(v.series_id);
                Zone::Present present = zone->has_version(v.series_id, v.version, v.image);
                if (present == Zone::Present::absent && batched.count({v.series_id, v.version}) != 0) {
                    for (const TransferVersion &b : versions)
                        if (b.series_id == v.series_id && b.version == v.version)
                            present = b.image == v.image ? Zone::Present::same : Zone::Present::conflict;
                }
                if (present == Zone::Present::same) {
                    figures.versions_present++;
                } else if (present == Zone::Present::conflict) {
                    c.fail_status = 409;
                    code = "version_conflict";
                    detail = "This node has version v" + std::to_string(v.version) + " of " + v.series_id +
                             " with another model: the import stopped there. Delete that version here, or import "
                             "into another node.";
                    stop = true;
                } else {
                    batch_bytes += v.model.size() + v.training_data.size() + v.plot_envelope.size();
                    batched.insert({v.series_id, v.version});
                    versions.push_back(std::move(reader.version()));  // the reader refills it
                }
                break;
            }
            case TransferReader::Item::stream: {
                const TransferStream &st = reader.stream();
                note_series(st.series_id);
                if (zone->find_stream(st.series_id) != nullptr || batched_streams.count(st.series_id) != 0) {
                    figures.streams_kept++;
                } else {
                    batch_bytes += st.state.size();
                    batched_streams.insert(st.series_id);
                    streams.push_back(std::move(reader.stream()));
                }
                break;
            }
            case TransferReader::Item::end:
                stop = true;
                break;
            case TransferReader::Item::error:
                c.fail_status = 400;
                code = "malformed_export";
                detail = "The body is not a whole export: " + reader.error() +
                         (reader.error().empty() || reader.error().back() == '.' ? "" : ".") +
                         " What came before it was imported.";
                stop = true;
                break;
            }
            if (batch_bytes >= kImportBatchBytes && !flush()) stop = true;
        }
        // What came before a conflict or a damaged record is imported too;
        // a failing flush puts its own error in the answer.
        if (c.fail_status == 0 || c.fail_status == 409 || c.fail_status == 400) flush();
    } catch (const std::exception &e) {
        c.fail_status = 503;
        code = "store_unavailable";
        detail = "The import failed; the error log says why. What the answer counts as imported is stored.";
        try {
            ctx->error = "import: " + std::string(e.what());
        } catch (const std::exception &) {
        }
    }
    if (fd >= 0) ::close(fd);
    try {
        c.data = render_imported(figures, code, detail);
    } catch (const std::exception &) {
        c.data.clear();
    }
    zone->finish_job(c);
    send_wakeup(c.submitter.pid, 'd');
}

// ---- commit: runs in a pool thread ----

void commit_thread(void *data, ngx_log_t *) {
    BackgroundPriority background;
    CommitCtx *ctx = static_cast<CommitCtx *>(data);
    ctx->store_lost = false;
    ctx->error.clear();
    Zone *zone = rt->settings.zone;
    std::vector<Zone::Claim> claims;
    std::unique_lock<std::mutex> versions(rt->version_writes, std::defer_lock);
    try {
        zone->claim_pending(&claims, kBatchJobs, kBatchPoints);
        if (claims.empty()) return;
        versions.lock();
        if (claims.size() == 1 && claims[0].remove) {
            remove_series(&claims[0], ctx);
            zone->finish_job(claims[0]);
            send_wakeup(claims[0].submitter.pid, 'd');
            return;
        }

        std::vector<Store::NewVersion> batch(claims.size());
        std::vector<std::string> models(claims.size());  // their images
        for (std::size_t i = 0; i < claims.size(); i++) {
            std::string error;
            bool found = false;
            if (claims[i].in_memory) {
                std::lock_guard<std::mutex> guard(held_mutex);
                auto it = claims[i].submitter == ProcessId::self() ? held_fits.find(claims[i].spool_seq)
                                                                   : held_fits.end();
                if (it != held_fits.end()) {
                    models[i] = std::move(it->second.model);
                    batch[i].plot_envelope = std::move(it->second.plot_envelope);
                    batch[i].training_data = std::move(it->second.training_data);
                    held_fits.erase(it);
                    found = true;
                } else {
                    error = "it was held by a process that no longer owns the store";
                }
            } else {
                found = read_spool(spool_path(claims[i].submitter.pid, claims[i].spool_seq), &models[i],
                                   &batch[i].plot_envelope, &batch[i].training_data, &error);
            }
            if (!found) {
                claims[i].fail_status = 503;
                claims[i].fail_code = "store_unavailable";
                claims[i].fail_detail = "The fit could not be handed to the store; the error log says why.";
                ctx->error = "a fit of \"" + std::string(claims[i].series_id) + "\" could not be handed to the store: " + error;
            }
        }
        if (int status = sh()->load_incomplete) {
            const std::string detail = status == 507
                                           ? "Fits are refused until every stored version is in the zone: raise the "
                                             "anomaly_zone size and reload nginx."
                                           : "Fits are refused: not every stored version could be read; the error "
                                             "log says why.";
            for (Zone::Claim &c : claims) {
                c.fail_status = status;
                c.fail_code = status == 507 ? "zone_full" : "store_unavailable";
                c.fail_detail = detail;
            }
        }
        std::vector<std::size_t> image_bytes(claims.size());
        for (std::size_t i = 0; i < claims.size(); i++) image_bytes[i] = models[i].size();
        zone->assign_versions(&claims, image_bytes);

        // anomaly_keep_versions: the versions these fits push out go in
        // the same batch.
        std::vector<Zone::VersionRef> past;
        zone->past_retention(claims, rt->settings.keep_versions, &past);
        std::vector<Store::Removal> removals;
        removals.reserve(past.size());
        for (const Zone::VersionRef &v : past) removals.push_back(Store::Removal{std::string(v.first), v.second});

        const std::int64_t trained_at = now_ms();
        std::vector<Store::NewVersion> ready;
        ready.reserve(claims.size());
        for (std::size_t i = 0; i < claims.size(); i++) {
            if (claims[i].fail_status != 0) continue;
            set_image_version(&models[i], claims[i].version, trained_at);
            // The slot is not published until the batch is durable: filled without the lock.
            std::memcpy(claims[i].slot, models[i].data(), models[i].size());
            batch[i].series_id.assign(claims[i].series_id);
            batch[i].model = std::move(models[i]);
            ready.push_back(std::move(batch[i]));
        }
        std::string error;
        bool ok = true;
        if (!ready.empty()) {
            std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
            ok = rt->store->commit(ready, removals, &error);
        }
        if (!ok) {
            ctx->store_lost = true;
            ctx->error = error;
            // Clients get the system's reason; file names stay in the log.
            const std::string_view reason = public_reason(error);
            std::string detail = reason.empty()
                                     ? std::string("The store could not make the fit durable; the error log says why.")
                                     : "The store could not make the fit durable (" + std::string(reason) + ").";
            zone->finish_commit(claims, detail.c_str());
            release_store_after_failure(error);
        } else {
            std::uint64_t commits;
            {
                std::shared_lock<std::shared_mutex> shared(rt->store_mutex);
                commits = rt->store->commits();
            }
            zone->finish_commit(claims, nullptr);
            if (!removals.empty()) {
                // After the new versions are in place (their slots were
                // reserved), and named by the removals' own strings: an
                // abandoned job is gone once finish_commit returns.
                past.clear();
                for (const Store::Removal &v : removals) past.emplace_back(v.series_id, v.version);
                std::lock_guard<std::mutex> guard(rt->retired_mutex);
                rt->retired.reserve(rt->retired.size() + past.size());
                zone->drop_versions(past, &rt->retired);
            }
            ZoneLock guard(zone);
            sh()->store_commits = commits;
        }
    } catch (const std::exception &e) {
        // Out of memory or similar: fail the batch rather than leave it hanging.
        // finish_commit reads no model when given an error: nothing here allocates.
        zone->finish_commit(claims, "The fit could not be committed: the server ran out of memory.");
        try {
            ctx->error = e.what();
        } catch (const std::exception &) {
            ctx->error.clear();
        }
    }
    for (const Zone::Claim &c : claims) {
        if (!c.in_memory) unlink(spool_path(c.submitter.pid, c.spool_seq).c_str());
        send_wakeup(c.submitter.pid, 'd');
    }
}

// ---- event loop side ----

void log_store_error(ngx_uint_t level, const std::string &error) {
    if (error == rt->last_error) return;  // once per distinct error, not every retry
    rt->last_error = error;
    ngx_log_error(level, rt->log, 0, "anomaly store \"%s\": %s", rt->settings.dir.c_str(),
                  error.c_str());
}

void kick_reads() {
    if (!rt->owner || rt->read_running) return;
    if (__atomic_load_n(&sh()->reads_queued, __ATOMIC_RELAXED) == 0) return;
    rt->read_task.ctx = &rt->read;
    if (ngx_thread_task_post(rt->settings.pool, &rt->read_task) != NGX_OK) return;
    rt->read_running = true;
}

void kick_transfers();

// Commits, and plot reads, exports and imports beside them.
void kick_commit() {
    kick_reads();
    kick_transfers();
    if (!rt->owner || rt->commit_running) return;
    if (sh()->jobs_pending == 0) return;
    rt->commit_task.ctx = &rt->commit;
    if (ngx_thread_task_post(rt->settings.pool, &rt->commit_task) != NGX_OK) return;
    rt->commit_running = true;
}

void kick_transfers() {
    if (!rt->owner) return;
    if (!rt->export_running && rt->settings.zone->has_pending(JobKind::exporting)) {
        rt->export_task.ctx = &rt->exporting;
        if (ngx_thread_task_post(rt->settings.pool, &rt->export_task) == NGX_OK) rt->export_running = true;
    }
    if (!rt->import_running && rt->settings.zone->has_pending(JobKind::importing)) {
        rt->import_task.ctx = &rt->importing;
        if (ngx_thread_task_post(rt->settings.pool, &rt->import_task) == NGX_OK) rt->import_running = true;
    }
}

void export_done(ngx_event_t *) noexcept {
    rt->export_running = false;
    if (!rt->exporting.error.empty()) ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly %s", rt->exporting.error.c_str());
    kick_transfers();
}

void import_done(ngx_event_t *) noexcept {
    rt->import_running = false;
    if (rt->importing.store_lost) {
        rt->owner = false;
        rt->next_takeover = ngx_current_msec + kRetryAfterFailure;
    }
    if (!rt->importing.error.empty()) ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly %s", rt->importing.error.c_str());
    kick_transfers();
}

void read_done(ngx_event_t *) noexcept {
    rt->read_running = false;
    if (!rt->read.error.empty()) ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly: %s", rt->read.error.c_str());
    kick_reads();
}

void commit_done(ngx_event_t *) noexcept {
    rt->commit_running = false;
    if (rt->commit.store_lost) {
        rt->owner = false;
        rt->next_takeover = ngx_current_msec + kRetryAfterFailure;
    }
    try {
        if (rt->commit.store_lost) {
            log_store_error(NGX_LOG_ERR, "write failed, store closed: " + rt->commit.error);
        } else if (!rt->commit.error.empty()) {
            ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly commit failed: %s",
                          rt->commit.error.c_str());
        }
    } catch (const std::exception &) {
        ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly commit failed");
    }
    kick_commit();
}

void takeover_finished();

void takeover_done(ngx_event_t *) noexcept {
    rt->takeover_running = false;
    try {
        takeover_finished();
    } catch (const std::exception &e) {
        rt->next_takeover = ngx_current_msec + kRetryAfterFailure;
        ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly store takeover: %s", e.what());
    }
}

void takeover_finished() {
    switch (rt->takeover.result) {
    case Store::OpenResult::opened:
        rt->owner = true;
        rt->locked_by_stranger = 0;
        rt->last_error.clear();
        ngx_log_error(NGX_LOG_NOTICE, rt->log, 0, "anomaly store \"%s\" opened by this worker",
                      rt->settings.dir.c_str());
        if (rt->takeover.disk_commits != rt->takeover.zone_commits)
            ngx_log_error(NGX_LOG_NOTICE, rt->log, 0,
                          "anomaly: another nginx generation committed to the store since this zone read it "
                          "(%uL commits, now %uL): the versions were read again",
                          rt->takeover.zone_commits, rt->takeover.disk_commits);
        if (rt->takeover.loaded >= 0)
            ngx_log_error(NGX_LOG_NOTICE, rt->log, 0, "anomaly: loaded %L versions from the store in %L ms",
                          rt->takeover.loaded, rt->takeover.load_ms);
        if (!rt->takeover.error.empty()) log_store_error(NGX_LOG_ERR, rt->takeover.error);
        kick_commit();
        break;
    case Store::OpenResult::locked:
        // Normal for a moment while another worker opens it or a dying owner
        // closes it; for seconds on end, someone else holds it.
        rt->next_takeover = ngx_current_msec + kOwnerCheck;
        if (rt->takeover.copy_loaded >= 0) {
            ngx_log_error(NGX_LOG_NOTICE, rt->log, 0,
                          "anomaly store \"%s\" is held by another process (an nginx binary upgrade?): "
                          "read %L versions from a copy in %L ms; fits wait until it is released",
                          rt->settings.dir.c_str(), rt->takeover.copy_loaded, rt->takeover.copy_ms);
        } else if (!rt->takeover.copy_error.empty() && rt->takeover.copy_error != rt->last_copy_error) {
            rt->last_copy_error = rt->takeover.copy_error;
            ngx_log_error(NGX_LOG_WARN, rt->log, 0, "anomaly store \"%s\": cannot read a copy of it: %s",
                          rt->settings.dir.c_str(), rt->takeover.copy_error.c_str());
        }
        if (!held_by_us()) {
            if (++rt->locked_by_stranger == 25)
                log_store_error(NGX_LOG_WARN, "held by a process that is not one of this nginx's workers "
                                              "(another nginx, or an old generation still exiting): " +
                                                  rt->takeover.error);
        } else {
            rt->locked_by_stranger = 0;
        }
        break;
    case Store::OpenResult::failed:
        rt->next_takeover = ngx_current_msec + kRetryAfterFailure;
        rt->settings.zone->set_store_state(StoreState::unavailable, rt->takeover.error.c_str());
        log_store_error(NGX_LOG_ERR, rt->takeover.error);
        break;
    }
}

void try_takeover() {
    if (rt->owner || rt->takeover_running || ngx_quit || ngx_terminate) return;
    if (static_cast<ngx_msec_int_t>(ngx_current_msec - rt->next_takeover) < 0) return;
    if (owner_holds_store()) return;
    // A worker on its way out (reload, binary upgrade, quit) takes the store
    // only to commit its own fits still queued, when nobody else will.
    if (ngx_exiting && !rt->settings.zone->has_pending_from(ProcessId::self(), true)) return;
    rt->takeover_task.ctx = &rt->takeover;
    // Only a store held for two checks in a row (400 ms) by no worker of this
    // zone is copied: not one that another worker is opening at this moment.
    rt->takeover.copy_allowed = rt->locked_by_stranger >= 2;
    if (ngx_thread_task_post(rt->settings.pool, &rt->takeover_task) == NGX_OK)
        rt->takeover_running = true;
}

// What deletes unlinked: this process marks that it holds nothing of the
// zone now, and the owner frees what every process has passed.
void reclaim_deleted() {
    Zone *zone = rt->settings.zone;
    if (zone_holds == 0 && !rt->commit_running && !rt->checkpoint_running && !rt->import_running) zone->quiescent();
    std::unique_lock<std::mutex> guard(rt->retired_mutex, std::try_to_lock);
    if (guard.owns_lock() && !rt->retired.empty()) zone->reclaim(&rt->retired);
}

void timer_handler(ngx_event_t *ev) noexcept {
    try {
        reclaim_deleted();
        try_takeover();
        if (rt->owner) {
            kick_commit();
            kick_checkpoint();
            rt->settings.zone->collect_orphans();
        }
        if (rt->on_wakeup) rt->on_wakeup();
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly store timer: %s", e.what());
    }
    ngx_add_timer(ev, kOwnerCheck);
}

void wakeup_handler(ngx_event_t *rev) noexcept {
    char buf[64];
    while (recv(rt->wakeup->fd, buf, sizeof(buf), 0) > 0) {
    }
    if (ngx_handle_read_event(rev, 0) != NGX_OK) return;
    kick_commit();
    if (rt->on_wakeup) rt->on_wakeup();
}

}  // namespace

std::string spool_path(ngx_pid_t submitter, std::uint64_t seq) {
    return rt->spool_dir + "/" + std::to_string(submitter) + "." + std::to_string(seq);
}

bool hand_over(std::uint64_t seq, std::string model, std::string plot_envelope, std::string training_data,
               bool *in_memory, std::string *error) {
    // A spool file costs a write and a read of the whole training data; the
    // owner keeps its own fits in memory instead. The start time tells this
    // process from a dead owner that had the same pid.
    *in_memory = __atomic_load_n(&sh()->owner_pid, __ATOMIC_RELAXED) == ngx_pid &&
                 __atomic_load_n(&sh()->owner_start, __ATOMIC_RELAXED) == ProcessId::self().start;
    if (*in_memory) {
        std::lock_guard<std::mutex> guard(held_mutex);
        held_fits[seq] = HeldFit{std::move(model), std::move(plot_envelope), std::move(training_data)};
        return true;
    }
    return write_spool(spool_path(ngx_pid, seq), model, plot_envelope, training_data, error);
}

namespace {

// Removes a spool file from a pool thread: unlink() is disk work.
struct SpoolRemoval {
    ngx_thread_task_t task{};
    std::string path;
};

void remove_spool_thread(void *data, ngx_log_t *) {
    unlink(static_cast<SpoolRemoval *>(data)->path.c_str());
}

void spool_removed(ngx_event_t *ev) noexcept { delete static_cast<SpoolRemoval *>(ev->data); }

}  // namespace

void discard_handed_over(std::uint64_t seq, bool in_memory) {
    if (in_memory) {
        std::lock_guard<std::mutex> guard(held_mutex);
        held_fits.erase(seq);
        return;
    }
    auto *removal = new SpoolRemoval();
    removal->path = spool_path(ngx_pid, seq);
    removal->task.ctx = removal;
    removal->task.handler = remove_spool_thread;
    removal->task.event.handler = spool_removed;
    removal->task.event.data = removal;
    removal->task.event.log = rt->log;
    // Not posted: the owner removes spool files nobody refers to once they
    // are a minute old.
    if (ngx_thread_task_post(rt->settings.pool, &removal->task) != NGX_OK) delete removal;
}

constexpr int kBackgroundNice = 19;

BackgroundPriority::BackgroundPriority() : tid_(static_cast<int>(syscall(SYS_gettid))) {
    errno = 0;
    previous_ = getpriority(PRIO_PROCESS, static_cast<id_t>(tid_));
    if (errno != 0) previous_ = 0;
    if (previous_ < kBackgroundNice) setpriority(PRIO_PROCESS, static_cast<id_t>(tid_), kBackgroundNice);
}

BackgroundPriority::~BackgroundPriority() {
    if (previous_ < kBackgroundNice) setpriority(PRIO_PROCESS, static_cast<id_t>(tid_), previous_);
}

std::uint64_t next_spool_seq() { return ++rt->spool_seq; }

void hold_zone() { zone_holds++; }
void release_zone() { zone_holds--; }

std::string export_path(std::uint64_t seq) {
    return rt->spool_dir + "/export." + std::to_string(ngx_pid) + "." + std::to_string(seq);
}

void store_wake_owner() {
    if (rt == nullptr) return;
    ngx_pid_t pid = sh()->owner_pid;
    if (pid == ngx_pid) kick_commit();
    else send_wakeup(pid, 'j');
}

ngx_int_t store_start(ngx_cycle_t *cycle, const StoreSettings &settings, void (*on_wakeup)()) {
    rt = new Runtime();
    rt->settings = settings;
    (void)ProcessId::self();  // before any thread asks for it
    settings.zone->claim_stats_slot();
    timespec boot{};
    clock_gettime(CLOCK_BOOTTIME, &boot);
    rt->spool_seq = static_cast<std::uint64_t>(boot.tv_sec) * 1000000 + static_cast<std::uint64_t>(boot.tv_nsec) / 1000;
    rt->spool_dir = settings.dir + "/spool";
    rt->log = cycle->log;
    rt->on_wakeup = on_wakeup;
    rt->name_hash = ngx_crc32_short(reinterpret_cast<u_char *>(rt->settings.dir.data()),
                                    rt->settings.dir.size());
    if (mkdir(rt->spool_dir.c_str(), 0700) != 0 && errno != EEXIST) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "anomaly: cannot create \"%s\"; fits will fail until it can be",
                      rt->spool_dir.c_str());
    }

    rt->send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un addr;
    socklen_t len = wakeup_address(ngx_pid, &addr);
    if (rt->send_fd == -1 || fd == -1 || bind(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno, "anomaly: wake-up socket failed");
        if (fd != -1) close(fd);
        return NGX_ERROR;
    }
    rt->wakeup = ngx_get_connection(fd, cycle->log);
    if (rt->wakeup == nullptr) {
        close(fd);
        return NGX_ERROR;
    }
    rt->wakeup->read->handler = wakeup_handler;
    rt->wakeup->read->log = cycle->log;
    rt->wakeup->write->log = cycle->log;
    if (ngx_handle_read_event(rt->wakeup->read, 0) != NGX_OK) return NGX_ERROR;

    rt->takeover_task.handler = takeover_thread;
    rt->takeover_task.event.handler = takeover_done;
    rt->takeover_task.event.log = cycle->log;
    rt->commit_task.handler = commit_thread;
    rt->commit_task.event.handler = commit_done;
    rt->commit_task.event.log = cycle->log;
    rt->read_task.handler = read_thread;
    rt->read_task.event.handler = read_done;
    rt->read_task.event.log = cycle->log;
    rt->checkpoint_task.handler = checkpoint_thread;
    rt->checkpoint_task.event.handler = checkpoint_done;
    rt->checkpoint_task.event.log = cycle->log;
    rt->export_task.handler = export_thread;
    rt->export_task.event.handler = export_done;
    rt->export_task.event.log = cycle->log;
    rt->import_task.handler = import_thread;
    rt->import_task.event.handler = import_done;
    rt->import_task.event.log = cycle->log;
    rt->next_checkpoint = ngx_current_msec + settings.checkpoint;

    rt->timer.handler = timer_handler;
    rt->timer.log = cycle->log;
    rt->timer.data = rt;
    rt->timer.cancelable = 1;  // never holds up a graceful exit
    try_takeover();
    ngx_add_timer(&rt->timer, kOwnerCheck);
    return NGX_OK;
}

void store_stop() {
    if (rt == nullptr) return;
    // The thread pool has drained by now (its exit_process runs before ours).
    if (rt->wakeup != nullptr) {
        ngx_close_connection(rt->wakeup);
        rt->wakeup = nullptr;
    }
    if (rt->send_fd != -1) close(rt->send_fd);
    if (rt->store) {
        // The streams this process's zone changed since the last checkpoint,
        // before another process takes the store (or nginx stops).
        try {
            write_checkpoints(rt->store.get(), &rt->checkpoint);
            if (!rt->checkpoint.error.empty())
                ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly stream checkpoint at exit failed: %s",
                              rt->checkpoint.error.c_str());
        } catch (const std::exception &e) {
            ngx_log_error(NGX_LOG_ERR, rt->log, 0, "anomaly stream checkpoint at exit failed: %s", e.what());
        }
        rt->store.reset();
        Zone *zone = rt->settings.zone;
        zone->lock();
        if (sh()->owner_pid == ngx_pid) sh()->owner_pid = 0;
        zone->unlock();
    }
    {
        // Freed now if every other process has passed it; else left in the
        // zone until it restarts (a delete in the last moments of an owner).
        std::lock_guard<std::mutex> guard(rt->retired_mutex);
        rt->settings.zone->quiescent();
        // The other workers pass a quiescent point every kOwnerCheck: wait
        // for a few of those rather than leave the memory behind.
        for (int i = 0; i < 5 && !rt->settings.zone->reclaim(&rt->retired); i++) usleep(kOwnerCheck * 1000 / 2);
        if (!rt->settings.zone->reclaim(&rt->retired))
            ngx_log_error(NGX_LOG_NOTICE, rt->log, 0,
                          "anomaly: %uz blocks of deleted versions stay in the zone until nginx restarts",
                          rt->retired.size());
    }
    rt->settings.zone->release_stats_slot();
    if (rt->timer.timer_set) ngx_del_timer(&rt->timer);
    delete rt;
    rt = nullptr;
}

}  // namespace anomaly
