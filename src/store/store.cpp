#include "store/store.hpp"

#include <cerrno>
#include <dirent.h>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <leveldb/db.h>
#include <leveldb/options.h>
#include <leveldb/write_batch.h>

#include "core/encoding.hpp"

namespace anomaly {

namespace {

// The stores this process holds open: LevelDB refuses a second open of one
// before it asks the lock, and a process does not see its own lock.
std::mutex open_mutex;
std::set<std::string> open_dirs;

}  // namespace

Store::OpenResult Store::open(const std::string &dir, std::unique_ptr<Store> *store,
                              std::string *error) {
    {
        std::lock_guard<std::mutex> guard(open_mutex);
        if (open_dirs.count(dir) != 0) {
            *error = "the store is already open in this process";
            return OpenResult::locked;
        }
    }
    leveldb::Options options;
    options.create_if_missing = true;
    options.paranoid_checks = true;        // refuse a damaged store instead of guessing
    options.write_buffer_size = 64 << 20;  // room for a few 1M-point fits before a flush
    // Training data is mostly doubles, which snappy cannot shrink; compressing
    // them only takes CPU from the workers during compactions.
    options.compression = leveldb::kNoCompression;
    for (int attempt = 1;; attempt++) {
        leveldb::DB *db = nullptr;
        leveldb::Status s = leveldb::DB::Open(options, dir, &db);
        if (s.ok()) {
            std::unique_ptr<Store> opened(new Store(db));
            // A count that cannot be read counts as 0: a zone that kept its models
            // then reads them again, which is always safe.
            std::string count;
            s = db->Get(leveldb::ReadOptions(), leveldb::Slice(kCommitCountKey.data(), kCommitCountKey.size()), &count);
            if (!s.ok() || !decode_u64(count, &opened->commits_)) opened->commits_ = 0;
            std::lock_guard<std::mutex> guard(open_mutex);
            open_dirs.insert(dir);
            opened->dir_ = dir;
            *store = std::move(opened);
            return OpenResult::opened;
        }
        *error = s.ToString();
        if (!s.IsIOError()) return OpenResult::failed;
        // Whether another process holds the store is asked of the lock itself.
        const long holder = lock_holder(dir);
        if (holder > 0 || holder == -1) return OpenResult::locked;
        // Nobody holds it: another I/O error, or a holder that let go just
        // before the lock was asked. Once more tells them apart.
        if (attempt == 2) return OpenResult::failed;
    }
}

Store::~Store() {
    delete db_;
    if (!dir_.empty()) {
        std::lock_guard<std::mutex> guard(open_mutex);
        open_dirs.erase(dir_);
    }
}

long Store::lock_holder(const std::string &dir) {
    struct Lock {
        int fd = -1;
        dev_t dev = 0;
        ino_t ino = 0;
    };
    static std::mutex mutex;
    static std::map<std::string, Lock> locks;  // never closed, see store.hpp
    const std::string path = dir + "/LOCK";
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return -2;
    std::lock_guard<std::mutex> guard(mutex);
    Lock &lock = locks[path];
    if (lock.fd != -1 && (lock.dev != st.st_dev || lock.ino != st.st_ino)) {
        // The file was replaced: nobody can reach the old one any more, so
        // dropping a lock of ours on it harms no one.
        ::close(lock.fd);
        lock.fd = -1;
    }
    if (lock.fd == -1) {
        lock.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (lock.fd == -1) return -2;
        struct stat opened;
        if (::fstat(lock.fd, &opened) == 0) {
            lock.dev = opened.st_dev;
            lock.ino = opened.st_ino;
        }
    }
    struct flock query {};
    query.l_type = F_WRLCK;
    query.l_whence = SEEK_SET;  // the whole file, as LevelDB locks it
    if (::fcntl(lock.fd, F_GETLK, &query) != 0) return -2;
    if (query.l_type == F_UNLCK) return 0;
    return query.l_pid > 0 ? static_cast<long>(query.l_pid) : -1;
}

namespace {

bool copy_file(const std::string &from, const std::string &to, std::string *error);
bool list_dir(const std::string &dir, std::vector<std::string> *names);
void remove_tree(const std::string &dir);

// LevelDB's own files: tables are immutable once written, so they are linked;
// CURRENT, MANIFEST-* and *.log change, so they are copied, CURRENT first.
bool copy_store(const std::string &dir, const std::string &scratch, std::string *error) {
    remove_tree(scratch);
    if (::mkdir(scratch.c_str(), 0700) != 0) {
        *error = "cannot create " + scratch + ": " + std::strerror(errno);
        return false;
    }
    if (!copy_file(dir + "/CURRENT", scratch + "/CURRENT", error)) return false;
    std::vector<std::string> names;
    if (!list_dir(dir, &names)) {
        *error = "cannot list " + dir + ": " + std::strerror(errno);
        return false;
    }
    auto ends_with = [](const std::string &s, const char *suffix) {
        const std::size_t n = std::strlen(suffix);
        return s.size() > n && s.compare(s.size() - n, n, suffix) == 0;
    };
    for (const std::string &name : names) {
        if (name.rfind("MANIFEST-", 0) == 0 && !copy_file(dir + "/" + name, scratch + "/" + name, error))
            return false;
    }
    for (const std::string &name : names) {
        const std::string from = dir + "/" + name, to = scratch + "/" + name;
        // A file a compaction removed meanwhile is skipped: if the copied
        // MANIFEST still needs it, opening the copy says so.
        if (ends_with(name, ".ldb") || ends_with(name, ".sst")) {
            if (::link(from.c_str(), to.c_str()) != 0 && errno != ENOENT && !copy_file(from, to, error))
                return false;
        } else if (ends_with(name, ".log") && !copy_file(from, to, error) && errno != ENOENT) {
            return false;
        }
    }
    return true;
}

}  // namespace

void Store::remove_copy(const std::string &scratch) { remove_tree(scratch); }

bool Store::read_copy(const std::string &dir, const std::string &scratch,
                      const ModelVisitor &visit, std::uint64_t *commits, std::string *error,
                      const StreamVisitor *streams) {
    bool ok = copy_store(dir, scratch, error);
    if (ok) {
        // The copy may end in the middle of a log record the holder was
        // writing: read what is whole rather than refuse the copy. The log
        // is replayed into memory and reused, not written out as tables.
        leveldb::Options options;
        options.create_if_missing = false;
        options.paranoid_checks = false;
        options.compression = leveldb::kNoCompression;
        options.reuse_logs = true;
        options.write_buffer_size = std::size_t{1} << 30;
        leveldb::DB *db = nullptr;
        leveldb::Status s = leveldb::DB::Open(options, scratch, &db);
        if (!s.ok()) {
            *error = "the copy does not open: " + s.ToString();
            ok = false;
        } else {
            Store copy(db);
            std::string count;
            s = db->Get(leveldb::ReadOptions(), leveldb::Slice(kCommitCountKey.data(), kCommitCountKey.size()), &count);
            *commits = 0;
            if (s.ok() && !decode_u64(count, commits)) {
                *error = "the commit count record does not decode";
                ok = false;
            }
            ok = ok && copy.for_each_model(visit, error);
            std::uint64_t damaged = 0;
            if (ok && streams != nullptr) ok = copy.for_each_stream(*streams, &damaged, error);
        }
    }
    remove_tree(scratch);
    return ok;
}

bool Store::for_each_model(const ModelVisitor &visit, std::string *error) {
    leveldb::ReadOptions ro;
    ro.fill_cache = false;  // a one-off scan at start-up
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
    const std::string prefix(kModelKeyPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        std::string_view key(it->key().data(), it->key().size());
        std::string_view series;
        std::uint32_t version = 0;
        std::string model;
        if (!parse_model_key(key, &series, &version) ||
            !decode_model(std::string_view(it->value().data(), it->value().size()), &model) ||
            image_version(model) != version) {
            *error = "the record " + std::string(key.substr(0, 160)) + " does not decode";
            return false;
        }
        visit(series, model);
    }
    if (!it->status().ok()) {
        *error = it->status().ToString();
        return false;
    }
    return true;
}

bool Store::write_checkpoints(const std::vector<Checkpoint> &checkpoints, std::string *error) {
    leveldb::WriteBatch batch;
    for (const Checkpoint &c : checkpoints) batch.Put(stream_key(c.series_id), encode_checkpoint(c.state, c.written_ms));
    leveldb::WriteOptions wo;
    wo.sync = true;  // a checkpoint's age is what a restart loses
    leveldb::Status s = db_->Write(wo, &batch);
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    return true;
}

bool Store::for_each_stream(const StreamVisitor &visit, std::uint64_t *damaged, std::string *error) {
    leveldb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
    const std::string prefix(kStreamKeyPrefix);
    std::string state;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        std::string_view series;
        std::int64_t written_ms = 0;
        if (!parse_stream_key(std::string_view(it->key().data(), it->key().size()), &series) ||
            !decode_checkpoint(std::string_view(it->value().data(), it->value().size()), &state, &written_ms)) {
            ++*damaged;
            continue;
        }
        visit(series, state, written_ms);
    }
    if (!it->status().ok()) {
        *error = it->status().ToString();
        return false;
    }
    return true;
}

// The history's first and last records, found once: records are numbered
// consecutively, so the next count on from the last, and trimming deletes
// from the first by number, with no scan over the records deleted before.
bool Store::next_history_key(std::uint64_t *next, std::string *error) {
    if (history_next_known_) {
        *next = history_next_;
        return true;
    }
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
    const std::string prefix(kHistoryKeyPrefix);
    std::uint64_t number = 0;
    history_first_ = history_next_ = 0;
    it->Seek(prefix);
    if (it->Valid() && parse_history_key(std::string_view(it->key().data(), it->key().size()), &number))
        history_first_ = number;
    std::string past = prefix;
    past.back()++;  // "h0": just past every "h/" key
    it->Seek(past);
    if (it->Valid()) it->Prev();
    else it->SeekToLast();
    if (it->Valid() && parse_history_key(std::string_view(it->key().data(), it->key().size()), &number))
        history_next_ = number + 1;
    if (!it->status().ok()) {
        *error = it->status().ToString();
        return false;
    }
    history_next_known_ = true;
    *next = history_next_;
    return true;
}

bool Store::write_history(const std::vector<HistoryEvent> &events, std::uint64_t keep, std::string *error) {
    std::uint64_t next = 0;
    if (!next_history_key(&next, error)) return false;
    leveldb::WriteBatch batch;
    for (const HistoryEvent &e : events) batch.Put(history_key(next++), encode_history_event(e));
    // What fell out of the ring: every record before the newest `keep`
    // (at most kHistoryTrim a write, after a restart with a much smaller ring).
    constexpr std::uint64_t kHistoryTrim = 100000;
    std::uint64_t first = history_first_;
    for (std::uint64_t n = 0; next > keep && first < next - keep && n < kHistoryTrim; first++, n++)
        batch.Delete(history_key(first));
    leveldb::WriteOptions wo;
    wo.sync = true;
    leveldb::Status s = db_->Write(wo, &batch);
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    history_next_ = next;
    history_first_ = first;
    return true;
}

bool Store::read_history(std::uint64_t newest, std::vector<HistoryEvent> *events, std::uint64_t *damaged,
                         std::string *error) {
    events->clear();
    std::uint64_t next = 0;
    if (!next_history_key(&next, error)) return false;
    if (newest == 0 || next == 0) return true;
    leveldb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
    const std::string prefix(kHistoryKeyPrefix);
    it->Seek(history_key(next > newest ? next - newest : 0));
    for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
        HistoryEvent e;
        std::uint64_t number = 0;
        if (!parse_history_key(std::string_view(it->key().data(), it->key().size()), &number) ||
            !decode_history_event(std::string_view(it->value().data(), it->value().size()), &e)) {
            ++*damaged;
            continue;
        }
        events->push_back(e);
    }
    if (!it->status().ok()) {
        *error = it->status().ToString();
        return false;
    }
    return true;
}

bool Store::read_checkpoint(std::string_view series_id, std::string *state, std::int64_t *written_ms,
                            std::string *error) {
    std::string value;
    leveldb::Status s = db_->Get(leveldb::ReadOptions(), stream_key(series_id), &value);
    if (s.IsNotFound()) return false;
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    return decode_checkpoint(value, state, written_ms);
}

namespace {

leveldb::Slice slice(std::string_view s) { return leveldb::Slice(s.data(), s.size()); }

// Every key of the store that starts with prefix, from the database as it is.
bool keys_with_prefix(leveldb::DB *db, const std::string &prefix,
                      const std::function<void(std::string_view key, std::string_view value)> &visit,
                      std::string *error) {
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next())
        visit(std::string_view(it->key().data(), it->key().size()),
              std::string_view(it->value().data(), it->value().size()));
    if (!it->status().ok()) {
        *error = it->status().ToString();
        return false;
    }
    return true;
}

// Deletes the commit index key ("x/") of a version, found by its "y/" value.
void delete_index_key(leveldb::WriteBatch *batch, std::string_view series_id, std::uint32_t version,
                      std::string_view commit_record) {
    std::uint64_t commit = 0;
    if (decode_u64(commit_record, &commit)) batch->Delete(commit_index_key(commit, series_id, version));
}

// A version's keys, with the commit index for commit number `commit`.
void put_version(leveldb::WriteBatch *batch, std::string_view series_id, std::uint32_t version,
                 std::string_view model_record, std::string_view training_data, std::string_view plot_envelope,
                 std::uint64_t commit) {
    batch->Put(model_key(series_id, version), slice(model_record));
    batch->Put(training_data_key(series_id, version), slice(training_data));
    if (!plot_envelope.empty()) batch->Put(plot_envelope_key(series_id, version), slice(plot_envelope));
    batch->Put(commit_index_key(commit, series_id, version), leveldb::Slice());
    batch->Put(version_commit_key(series_id, version), encode_u64(commit));
}

}  // namespace

// The deletes of one removal, found in the database as it is before the batch.
bool Store::add_removal(leveldb::WriteBatch *batch, const Removal &r, std::string *error) {
    if (r.version != 0) {
        std::string commit;
        leveldb::Status s = db_->Get(leveldb::ReadOptions(), version_commit_key(r.series_id, r.version), &commit);
        if (!s.ok() && !s.IsNotFound()) {
            *error = s.ToString();
            return false;
        }
        if (s.ok()) delete_index_key(batch, r.series_id, r.version, commit);
        batch->Delete(model_key(r.series_id, r.version));
        batch->Delete(training_data_key(r.series_id, r.version));
        batch->Delete(plot_envelope_key(r.series_id, r.version));
        batch->Delete(version_commit_key(r.series_id, r.version));
        return true;
    }
    // Every key of the series, whatever is left of each version.
    const std::string id = r.series_id + "/";
    for (const char *kind : {"m/", "d/", "p/"}) {
        if (!keys_with_prefix(db_, kind + id, [batch](std::string_view key, std::string_view) { batch->Delete(slice(key)); },
                              error))
            return false;
    }
    const std::string commits = std::string(version_commit_key(r.series_id, 0)).substr(0, 2 + id.size());
    const bool ok = keys_with_prefix(
        db_, commits,
        [&](std::string_view key, std::string_view value) {
            std::uint32_t version = 0;
            for (std::size_t i = key.size() - 4; i < key.size(); i++)
                version = (version << 8) | static_cast<unsigned char>(key[i]);
            delete_index_key(batch, r.series_id, version, value);
            batch->Delete(slice(key));
        },
        error);
    if (!ok) return false;
    batch->Delete(stream_key(r.series_id));
    return true;
}

bool Store::write_commit(leveldb::WriteBatch *batch, std::uint64_t number, std::string *error) {
    batch->Put(slice(kCommitCountKey), encode_u64(number));
    leveldb::WriteOptions wo;
    wo.sync = true;  // a 200 promises durability
    leveldb::Status s = db_->Write(wo, batch);
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    commits_ = number;
    return true;
}

bool Store::commit(const std::vector<NewVersion> &versions, const std::vector<Removal> &removals,
                   std::string *error) {
    const std::uint64_t number = commits_ + 1;
    leveldb::WriteBatch batch;
    for (const Removal &r : removals)
        if (!add_removal(&batch, r, error)) return false;
    for (const NewVersion &v : versions)
        put_version(&batch, v.series_id, image_version(v.model), encode_model(v.model), v.training_data,
                    v.plot_envelope, number);
    return write_commit(&batch, number, error);
}

bool Store::import(const std::vector<TransferVersion> &versions, const std::vector<TransferStream> &streams,
                   std::string *error) {
    const std::uint64_t number = commits_ + 1;
    leveldb::WriteBatch batch;
    for (const TransferVersion &v : versions) {
        // A version imported again: its old commit index key goes, and so
        // does an envelope the new record has none of.
        std::string commit;
        leveldb::Status s = db_->Get(leveldb::ReadOptions(), version_commit_key(v.series_id, v.version), &commit);
        if (!s.ok() && !s.IsNotFound()) {
            *error = s.ToString();
            return false;
        }
        if (s.ok()) delete_index_key(&batch, v.series_id, v.version, commit);
        if (v.plot_envelope.empty()) batch.Delete(plot_envelope_key(v.series_id, v.version));
        put_version(&batch, v.series_id, v.version, v.model, v.training_data, v.plot_envelope, number);
    }
    for (const TransferStream &st : streams) batch.Put(stream_key(st.series_id), encode_checkpoint(st.state, st.written_ms));
    return write_commit(&batch, number, error);
}

bool Store::read_model_record(std::string_view series_id, std::uint32_t version, std::string *record,
                              std::string *error) {
    leveldb::Status s = db_->Get(leveldb::ReadOptions(), model_key(series_id, version), record);
    if (s.IsNotFound()) return false;
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    return true;
}

Store::Snapshot::~Snapshot() { db_->ReleaseSnapshot(snapshot_); }

std::unique_ptr<Store::Snapshot> Store::snapshot() {
    std::unique_ptr<Snapshot> snap(new Snapshot(db_, db_->GetSnapshot()));
    // The count the snapshot itself holds, not commits_: a commit may be
    // between its write and its count's update in another thread.
    leveldb::ReadOptions ro;
    ro.snapshot = snap->snapshot_;
    std::string count;
    if (!db_->Get(ro, slice(kCommitCountKey), &count).ok() || !decode_u64(count, &snap->commits_)) snap->commits_ = 0;
    return snap;
}

namespace {

// Reads one version's records from a snapshot into *v (its model checked as
// the load checks it). False with *error empty when the version is not there.
bool read_version_at(leveldb::DB *db, const leveldb::ReadOptions &ro, std::string_view series_id,
                     std::uint32_t version, TransferVersion *v, std::string *error) {
    leveldb::Status s = db->Get(ro, model_key(series_id, version), &v->model);
    if (s.IsNotFound()) return false;
    if (s.ok()) s = db->Get(ro, training_data_key(series_id, version), &v->training_data);
    if (!s.ok()) {
        *error = "cannot read " + std::string(series_id) + " v" + std::to_string(version) + ": " + s.ToString();
        return false;
    }
    s = db->Get(ro, plot_envelope_key(series_id, version), &v->plot_envelope);
    if (s.IsNotFound()) {
        v->plot_envelope.clear();
    } else if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    if (!decode_model(v->model, &v->image) || image_version(v->image) != version) {
        *error = "the model of " + std::string(series_id) + " v" + std::to_string(version) + " does not decode";
        return false;
    }
    v->series_id.assign(series_id);
    v->version = version;
    return true;
}

bool in_scope(const Store::ExportScope &scope, std::string_view series_id) {
    return series_id.substr(0, scope.prefix.size()) == scope.prefix && (!scope.filter || scope.filter(series_id));
}

std::string since_key(std::uint64_t since) {
    std::string k = commit_index_key(since + 1, "", 0);
    return k.substr(0, 10);  // "x/" and the commit: before every key of that commit
}

}  // namespace

Store::ExportStep Store::export_records(const Snapshot &snapshot, const ExportScope &scope, std::string_view after,
                                        std::size_t max_bytes, const ExportVisitor &visit, std::string *next,
                                        std::string *error) {
    leveldb::ReadOptions ro;
    ro.snapshot = snapshot.snapshot_;
    ro.fill_cache = false;  // a one-off scan: leave the cache to predictions' plots
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
    std::size_t given = 0;
    *next = std::string(after);
    auto failed = [&](const std::string &what) {
        *error = what;
        return ExportStep::failed;
    };

    // The phase `after` is in: its key's kind.
    const std::string_view versions_kind = scope.since == 0 ? kModelKeyPrefix : kCommitIndexPrefix;
    const bool in_versions = after.empty() || after.substr(0, 2) == versions_kind;
    if (!in_versions && after.substr(0, 2) != kStreamKeyPrefix)
        return failed("the export cannot continue from that key: it is not one this export gave");

    // Nothing is committed after the last commit number there can be.
    if (in_versions && scope.since != UINT64_MAX) {
        if (!after.empty()) it->Seek(slice(after));
        else if (scope.since == 0) it->Seek(std::string(kModelKeyPrefix) + scope.prefix);
        else it->Seek(since_key(scope.since));
        if (!after.empty() && it->Valid() && it->key() == slice(after)) it->Next();
        const std::string first = scope.since == 0 ? std::string(kModelKeyPrefix) + scope.prefix
                                                   : std::string(kCommitIndexPrefix);
        for (; it->Valid() && it->key().starts_with(first); it->Next()) {
            const std::string_view key(it->key().data(), it->key().size());
            std::string_view series;
            std::uint32_t version = 0;
            std::uint64_t commit = 0;
            TransferVersion v;
            if (scope.since == 0) {
                if (!parse_model_key(key, &series, &version))
                    return failed("the key " + std::string(key.substr(0, 160)) + " is not a model key");
                if (!in_scope(scope, series)) continue;
                std::string record;
                leveldb::Status s = db_->Get(ro, version_commit_key(series, version), &record);
                if (s.ok() && decode_u64(record, &commit)) v.commit = commit;
                else if (!s.ok() && !s.IsNotFound()) return failed(s.ToString());
            } else {
                if (!parse_commit_index_key(key, &commit, &series, &version)) continue;
                if (!in_scope(scope, series)) continue;
                // A key its version's "y/" does not name is stale: skip it.
                std::string record;
                std::uint64_t current = 0;
                leveldb::Status s = db_->Get(ro, version_commit_key(series, version), &record);
                if (!s.ok() && !s.IsNotFound()) return failed(s.ToString());
                if (!s.ok() || !decode_u64(record, &current) || current != commit) continue;
                v.commit = commit;
            }
            std::string why;
            if (!read_version_at(db_, ro, series, version, &v, &why)) {
                if (!why.empty()) return failed(why);
                continue;  // a commit index key whose version is gone
            }
            if (!visit.version(v)) return ExportStep::stopped;
            next->assign(key);
            given += v.model.size() + v.training_data.size() + v.plot_envelope.size() + v.series_id.size();
            if (given >= max_bytes) return ExportStep::more;
        }
        if (!it->status().ok()) return failed(it->status().ToString());
    }
    if (in_versions) after = {};

    const std::string streams = std::string(kStreamKeyPrefix) + scope.prefix;
    if (!after.empty()) {
        it->Seek(slice(after));
        if (it->Valid() && it->key() == slice(after)) it->Next();
    } else {
        it->Seek(streams);
    }
    for (; it->Valid() && it->key().starts_with(streams); it->Next()) {
        const std::string_view key(it->key().data(), it->key().size());
        std::string_view series;
        TransferStream st;
        if (!parse_stream_key(key, &series) || !in_scope(scope, series)) continue;
        if (!decode_checkpoint(std::string_view(it->value().data(), it->value().size()), &st.state, &st.written_ms))
            continue;
        st.series_id.assign(series);
        if (!visit.stream(st)) return ExportStep::stopped;
        next->assign(key);
        given += st.state.size() + st.series_id.size();
        if (given >= max_bytes) return ExportStep::more;
    }
    if (!it->status().ok()) return failed(it->status().ToString());
    next->clear();
    return ExportStep::done;
}

bool Store::read_model(std::string_view series_id, std::uint32_t version, std::string *model,
                       std::string *error) {
    std::string value;
    leveldb::Status s = db_->Get(leveldb::ReadOptions(), model_key(series_id, version), &value);
    if (s.IsNotFound()) return false;
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    if (!decode_model(value, model) || image_version(*model) != version) {
        *error = "the model of " + std::string(series_id) + " does not decode";
        return false;
    }
    return true;
}

bool Store::read_training_data(std::string_view series_id, std::uint32_t version,
                               TrainingData *data, std::string *error) {
    std::string value;
    leveldb::Status s =
        db_->Get(leveldb::ReadOptions(), training_data_key(series_id, version), &value);
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    if (!decode_training_data(value, data)) {
        *error = "the training data of " + std::string(series_id) + " does not decode";
        return false;
    }
    return true;
}

bool Store::read_plot_envelope(std::string_view series_id, std::uint32_t version,
                               PlotEnvelope *envelope, std::string *error) {
    const std::string key = plot_envelope_key(series_id, version);
    std::string value;
    leveldb::Status s = db_->Get(leveldb::ReadOptions(), key, &value);
    if (s.ok() && decode_plot_envelope(value, envelope)) return true;
    if (!s.ok() && !s.IsNotFound()) {
        *error = s.ToString();
        return false;
    }
    const bool absent = !s.ok();
    // Derived data: whatever is wrong with it, the training data can give it again.
    TrainingData data;
    if (!read_training_data(series_id, version, &data, error)) return false;
    value = encode_plot_envelope(summarize_for_plot(data));
    if (!decode_plot_envelope(value, envelope)) {
        *error = "the training data of " + std::string(series_id) + " cannot be plotted";
        return false;
    }
    // Not synced and not counted as a commit: a lost write is summarised again.
    if (absent) db_->Put(leveldb::WriteOptions(), key, value);
    return true;
}

namespace {

bool write_all(int fd, const char *p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

std::string errno_text(const std::string &what, const std::string &path) {
    return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

namespace {

bool copy_file(const std::string &from, const std::string &to, std::string *error) {
    int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        *error = errno_text("cannot open", from);
        return false;
    }
    int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        *error = errno_text("cannot create", to);
        ::close(in);
        return false;
    }
    char buf[1 << 16];
    bool ok = true;
    for (;;) {
        ssize_t n = ::read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *error = errno_text("cannot read", from);
            ok = false;
        }
        if (n <= 0) break;
        if (!write_all(out, buf, static_cast<std::size_t>(n))) {
            *error = errno_text("cannot write", to);
            ok = false;
            break;
        }
    }
    ::close(in);
    if (::close(out) != 0 && ok) {
        *error = errno_text("cannot write", to);
        ok = false;
    }
    return ok;
}

bool list_dir(const std::string &dir, std::vector<std::string> *names) {
    DIR *d = ::opendir(dir.c_str());
    if (d == nullptr) return false;
    try {
        while (dirent *e = ::readdir(d)) {
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names->emplace_back(e->d_name);
        }
    } catch (...) {
        ::closedir(d);
        throw;
    }
    ::closedir(d);
    return true;
}

// The copy's directory holds files only.
void remove_tree(const std::string &dir) {
    std::vector<std::string> names;
    list_dir(dir, &names);
    for (const std::string &name : names) ::unlink((dir + "/" + name).c_str());
    ::rmdir(dir.c_str());
}

}  // namespace

// Spool layout, format 2:
//   u32 0xffffffff | u8 2 | u32 model length | model record
//   | u32 plot envelope length | plot envelope record | training data record (the rest)
// Format 1, written before plot envelopes, has no marker and no envelope:
//   u32 model length | model record | training data record
// No model record is 0xffffffff bytes long, so the first u32 tells them apart
// (and a server that reads only format 1 finds format 2 damaged, not wrong).
// Not synced: durability comes from the LevelDB write.
namespace {

constexpr std::uint32_t kSpoolMarker = 0xffffffff;
constexpr std::uint8_t kSpoolFormat = 2;

void put_u32(std::string *out, std::uint64_t v) {
    for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool get_u32(std::string_view bytes, std::size_t at, std::uint32_t *v) {
    if (bytes.size() < 4 || at > bytes.size() - 4) return false;
    *v = 0;
    for (int i = 0; i < 4; i++) *v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
    return true;
}

// Splits off a u32 length and that many bytes at *at.
bool get_record(std::string_view bytes, std::size_t *at, std::string_view *record) {
    std::uint32_t n = 0;
    if (!get_u32(bytes, *at, &n) || bytes.size() - *at - 4 < n) return false;
    *record = bytes.substr(*at + 4, n);
    *at += 4 + std::size_t{n};
    return true;
}

}  // namespace

bool write_spool(const std::string &path, const std::string &model, const std::string &envelope, const std::string &d,
                 std::string *error) {
    const std::string m = encode_model(model);
    std::string head;
    head.reserve(17 + m.size());
    put_u32(&head, kSpoolMarker);
    head.push_back(static_cast<char>(kSpoolFormat));
    put_u32(&head, m.size());
    head += m;
    put_u32(&head, envelope.size());
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = errno_text("cannot create", path);
        return false;
    }
    bool ok = write_all(fd, head.data(), head.size()) && write_all(fd, envelope.data(), envelope.size()) &&
              write_all(fd, d.data(), d.size());
    if (!ok) *error = errno_text("cannot write", path);
    if (::close(fd) != 0 && ok) {
        *error = errno_text("cannot write", path);
        ok = false;
    }
    if (!ok) ::unlink(path.c_str());
    return ok;
}

bool read_spool(const std::string &path, std::string *model, std::string *plot_envelope, std::string *training_data,
                std::string *error) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error = errno_text("cannot open", path);
        return false;
    }
    struct stat st;
    std::string bytes;
    bool ok = ::fstat(fd, &st) == 0;
    if (ok) {
        bytes.resize(static_cast<std::size_t>(st.st_size));
        std::size_t got = 0;
        while (ok && got < bytes.size()) {
            ssize_t r = ::pread(fd, &bytes[got], bytes.size() - got, static_cast<off_t>(got));
            if (r < 0 && errno == EINTR) continue;
            ok = r > 0;
            if (ok) got += static_cast<std::size_t>(r);
        }
    }
    if (!ok) *error = errno_text("cannot read", path);
    ::close(fd);
    if (!ok) return false;
    const std::string_view all(bytes);
    std::uint32_t marker = 0;
    std::size_t at = 0;
    std::string_view m, envelope;
    PlotEnvelope summary;
    if (get_u32(all, 0, &marker) && marker == kSpoolMarker) {
        at = 5;
        ok = all.size() > 4 && static_cast<std::uint8_t>(all[4]) == kSpoolFormat && get_record(all, &at, &m) &&
             decode_model(m, model) && get_record(all, &at, &envelope) && decode_plot_envelope(envelope, &summary);
        if (ok) plot_envelope->assign(envelope);
    } else {
        // Format 1: the training data gives the envelope.
        TrainingData data;
        ok = get_record(all, &at, &m) && decode_model(m, model) && decode_training_data(all.substr(at), &data);
        if (ok) *plot_envelope = encode_plot_envelope(summarize_for_plot(data));
    }
    if (!ok) {
        *error = "the spool file " + path + " is damaged";
        return false;
    }
    training_data->assign(all.substr(at));
    return true;
}

}  // namespace anomaly
