// The durable store: one LevelDB database per anomaly_store directory.
// No nginx in here. LevelDB allows one process at a time (its LOCK file);
// which process holds it is decided in src/ngx/owner.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/detector.hpp"
#include "core/history.hpp"
#include "core/model.hpp"
#include "core/plot.hpp"
#include "core/transfer.hpp"

namespace leveldb {
class DB;
class Snapshot;
class WriteBatch;
}

namespace anomaly {

class Store {
public:
    enum class OpenResult { opened, locked, failed };

    // Opens (creating if missing) the database in dir. `locked` means another
    // process (or another Store of this one) holds it; `failed` fills *error
    // with a sentence for the log.
    static OpenResult open(const std::string &dir, std::unique_ptr<Store> *store,
                           std::string *error);

    // The pid of the process holding dir's LOCK, which LevelDB takes with
    // fcntl(F_SETLK): 0 when none does, -1 when one does that cannot be named
    // (another pid namespace), -2 when it cannot be told (no LOCK file yet, or
    // one that cannot be read). A process never sees its own lock. The LOCK
    // file stays open in this process from the first call on, since closing
    // any descriptor of it would drop a lock this process holds.
    static long lock_holder(const std::string &dir);
    ~Store();

    // Calls visit(series_id, image) for every stored version, in key order
    // (series by id, versions ascending), whatever the format it was written
    // in. False and *error on a read error or a record that does not decode.
    using ModelVisitor = std::function<void(std::string_view series_id, const std::string &image)>;
    bool for_each_model(const ModelVisitor &visit, std::string *error);

    struct NewVersion {
        std::string series_id;
        std::string model;            // its image, version already assigned
        std::string training_data;    // encode_training_data() bytes
        std::string plot_envelope;    // encode_plot_envelope() bytes; empty writes none
    };
    // What a commit deletes: one version, or a whole series.
    struct Removal {
        std::string series_id;
        std::uint32_t version = 0;  // 0: the whole series, every version and its stream checkpoint
    };
    // Writes all versions and deletes all removals in one WriteBatch with
    // sync=true: all or nothing. The batch also writes commits() + 1 under
    // kCommitCountKey, and each version's commit index keys ("x/", "y/") with
    // that number. A removed version loses its m/, d/, p/, x/ and y/ keys;
    // removing what is not there deletes nothing. Removals come first: a
    // version both removed and written in one commit is written.
    bool commit(const std::vector<NewVersion> &versions, const std::vector<Removal> &removals, std::string *error);
    bool commit(const std::vector<NewVersion> &versions, std::string *error) { return commit(versions, {}, error); }
    // A commit of removals only: it counts as a commit.
    bool remove(const std::vector<Removal> &removals, std::string *error) { return commit({}, removals, error); }

    // Writes imported versions (keeping their numbers, with m/, d/, p/, x/
    // and y/ keys for this store's next commit number) and stream
    // checkpoints in one WriteBatch with sync=true, counting one commit.
    // The records are as TransferReader gave them; whether they conflict
    // with versions already here is the caller's to check. A version that
    // is already here is replaced, and leaves no stale commit index key.
    bool import(const std::vector<TransferVersion> &versions, const std::vector<TransferStream> &streams,
                std::string *error);

    // One version's model record as stored (encode_model() bytes, or an old
    // format 1 record): false with *error empty when it is not on disk.
    bool read_model_record(std::string_view series_id, std::uint32_t version, std::string *record,
                           std::string *error);

    // The store as of one moment, for an export that is read in pieces while
    // commits go on. It must not outlive its Store. Reading through it
    // takes no lock of the Store's: a pool thread may export while another
    // commits.
    class Snapshot {
    public:
        ~Snapshot();
        Snapshot(const Snapshot &) = delete;
        Snapshot &operator=(const Snapshot &) = delete;
        // The commit count the snapshot shows (the export header's commits).
        std::uint64_t commits() const { return commits_; }

    private:
        friend class Store;
        Snapshot(leveldb::DB *db, const leveldb::Snapshot *snapshot) : db_(db), snapshot_(snapshot) {}
        leveldb::DB *db_;
        const leveldb::Snapshot *snapshot_;
        std::uint64_t commits_ = 0;
    };
    std::unique_ptr<Snapshot> snapshot();

    // Which records an export holds.
    struct ExportScope {
        std::string prefix;  // series ids that start with it; empty: every series
        // Optional: series ids it passes (say, those a new ring gives another node).
        std::function<bool(std::string_view series_id)> filter;
        // 0: every version. N: only the versions committed after commit N
        // (versions committed before the commit index was kept are never in
        // such an export). Removals are not exported.
        std::uint64_t since = 0;
    };
    // Called for each record; false stops the export (the client went away).
    struct ExportVisitor {
        std::function<bool(const TransferVersion &)> version;
        std::function<bool(const TransferStream &)> stream;
    };
    enum class ExportStep {
        done,     // every record was given
        more,     // about max_bytes were given: call again with after = *next
        stopped,  // a visitor returned false; *next is the last record it accepted
        failed,   // *error says why (a read error, a model record that does not decode)
    };
    // Gives the records of scope as snapshot shows them, in pieces: first
    // the versions (since 0: series by id, versions ascending, each with the
    // commit that wrote it, 0 when unknown; since N: in commit order, from
    // commit N + 1), then the stream checkpoints of the same series, by id.
    // Stream checkpoints are always exported, whatever since: a checkpoint
    // has no commit number, and the latest state is what an importer wants.
    // One that does not decode is skipped, as loading the store skips it.
    // after: empty to start, else the *next of the previous call, with the
    // same snapshot and scope. Returns after the record that takes the
    // bytes given (models, training data, plot envelopes, states) to
    // max_bytes or more, so each call gives at least one record.
    ExportStep export_records(const Snapshot &snapshot, const ExportScope &scope, std::string_view after,
                              std::size_t max_bytes, const ExportVisitor &visit, std::string *next,
                              std::string *error);

    // Stream checkpoints (CONTRACT section 6): each stream's latest state.
    struct Checkpoint {
        std::string series_id;
        std::string state;
        std::int64_t written_ms = 0;
    };
    // Writes them in one WriteBatch with sync=true, replacing the previous ones.
    bool write_checkpoints(const std::vector<Checkpoint> &checkpoints, std::string *error);
    // Calls visit(series_id, state, written_ms) for every checkpoint that
    // decodes; one that does not is counted in *damaged and skipped (that
    // stream starts again), the others still load. False on a read error.
    using StreamVisitor = std::function<void(std::string_view series_id, std::string_view state, std::int64_t written_ms)>;
    bool for_each_stream(const StreamVisitor &visit, std::uint64_t *damaged, std::string *error);
    // One stream's checkpoint: false with *error empty when there is none (or it does not decode).
    bool read_checkpoint(std::string_view series_id, std::string *state, std::int64_t *written_ms, std::string *error);

    // The anomaly history (CONTRACT section 8): events under "h/" + a
    // big-endian number the store counts on from its last one, oldest first.
    // Appends events (oldest first) and deletes all but the newest `keep`,
    // in one WriteBatch with sync=true.
    bool write_history(const std::vector<HistoryEvent> &events, std::uint64_t keep, std::string *error);
    // The newest `newest` events, oldest first; a record that does not decode
    // is counted in *damaged and skipped. False on a read error. A store
    // written before the history has none.
    bool read_history(std::uint64_t newest, std::vector<HistoryEvent> *events, std::uint64_t *damaged,
                      std::string *error);

    // Batches committed to this store since it was created (0 for a store
    // written before the count was kept), read at open and kept up to date.
    std::uint64_t commits() const { return commits_; }

    // Reads one version's model: false with *error empty when it is not on
    // disk (recovery after an owner died mid-commit), with *error set on failure.
    bool read_model(std::string_view series_id, std::uint32_t version, std::string *image,
                    std::string *error);

    bool read_training_data(std::string_view series_id, std::uint32_t version,
                            TrainingData *data, std::string *error);

    // What /plot draws of one version. A version committed without one (by a
    // server older than plot envelopes) has its training data summarised
    // instead, and the summary is kept for the next plot. So is one whose
    // record does not decode, without replacing the record.
    bool read_plot_envelope(std::string_view series_id, std::uint32_t version,
                            PlotEnvelope *envelope, std::string *error);

    // For a store another process holds open (LevelDB's LOCK): makes a copy
    // in scratch (hard links to the table files, copies of CURRENT, the
    // MANIFEST and the logs), opens the copy, calls visit for every model and
    // sets *commits, then removes the copy. A compaction in the holder can
    // delete a file while it is being copied: that gives false, and a later
    // call usually succeeds. What the holder commits after the copy is not
    // seen.
    // streams (optional) is called for every stream checkpoint of the copy.
    static bool read_copy(const std::string &dir, const std::string &scratch,
                          const ModelVisitor &visit,
                          std::uint64_t *commits, std::string *error,
                          const StreamVisitor *streams = nullptr);
    // Removes a copy left by a process that died while it read one.
    static void remove_copy(const std::string &scratch);

private:
    explicit Store(leveldb::DB *db) : db_(db) {}
    leveldb::DB *db_;
    bool next_history_key(std::uint64_t *next, std::string *error);
    bool add_removal(leveldb::WriteBatch *batch, const Removal &removal, std::string *error);
    bool write_commit(leveldb::WriteBatch *batch, std::uint64_t number, std::string *error);
    std::uint64_t commits_ = 0;
    std::uint64_t history_next_ = 0;  // the number of the next history record
    std::uint64_t history_first_ = 0; // of the oldest one kept
    bool history_next_known_ = false;
    std::string dir_;  // set when this Store holds dir_'s LOCK
};

// A spool file carries one validated fit from the worker that received it to
// the process that owns the store: the model, its plot envelope and its
// training data. Layout in store.cpp.
bool write_spool(const std::string &path, const std::string &image, const std::string &plot_envelope,
                 const std::string &training_data, std::string *error);
// Also reads a spool written before plot envelopes (one may be left across a
// binary upgrade): its plot envelope is then summarised from the training data.
bool read_spool(const std::string &path, std::string *image, std::string *plot_envelope,
                std::string *training_data, std::string *error);

}  // namespace anomaly
