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

namespace leveldb {
class DB;
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
    // Writes all versions in one WriteBatch with sync=true: all or nothing.
    // The batch also writes commits() + 1 under kCommitCountKey.
    bool commit(const std::vector<NewVersion> &versions, std::string *error);

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
