#include "store/store.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <leveldb/db.h>
#include <leveldb/options.h>
#include <leveldb/write_batch.h>

#include "core/encoding.hpp"

namespace anomaly {

Store::OpenResult Store::open(const std::string &dir, std::unique_ptr<Store> *store,
                              std::string *error) {
    leveldb::Options options;
    options.create_if_missing = true;
    options.paranoid_checks = true;        // refuse a damaged store instead of guessing
    options.write_buffer_size = 64 << 20;  // room for a few 1M-point fits before a flush
    // Training data is mostly doubles, which snappy cannot shrink; compressing
    // them only takes CPU from the workers during compactions.
    options.compression = leveldb::kNoCompression;
    leveldb::DB *db = nullptr;
    leveldb::Status s = leveldb::DB::Open(options, dir, &db);
    if (s.ok()) {
        std::unique_ptr<Store> opened(new Store(db));
        std::string count;
        s = db->Get(leveldb::ReadOptions(), leveldb::Slice(kCommitCountKey.data(), kCommitCountKey.size()), &count);
        if (s.ok() && !decode_u64(count, &opened->commits_)) {
            *error = "the commit count record does not decode";
            return OpenResult::failed;
        }
        if (!s.ok() && !s.IsNotFound()) {
            *error = s.ToString();
            return OpenResult::failed;
        }
        *store = std::move(opened);
        return OpenResult::opened;
    }
    *error = s.ToString();
    // LevelDB reports a held LOCK as an IO error on the LOCK file.
    if (s.IsIOError() && error->find("LOCK") != std::string::npos &&
        (error->find("unavailable") != std::string::npos ||
         error->find("already held") != std::string::npos)) {
        return OpenResult::locked;
    }
    return OpenResult::failed;
}

Store::~Store() { delete db_; }

bool Store::for_each_model(const std::function<void(std::string_view, const Model &)> &visit,
                           std::string *error) {
    leveldb::ReadOptions ro;
    ro.fill_cache = false;  // a one-off scan at start-up
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
    const std::string prefix(kModelKeyPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        std::string_view key(it->key().data(), it->key().size());
        std::string_view series;
        std::uint32_t version = 0;
        Model model;
        if (!parse_model_key(key, &series, &version) ||
            !decode_model(std::string_view(it->value().data(), it->value().size()), &model) ||
            model.version != version) {
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

bool Store::commit(const std::vector<NewVersion> &versions, std::string *error) {
    leveldb::WriteBatch batch;
    for (const NewVersion &v : versions) {
        batch.Put(model_key(v.series_id, v.model.version), encode_model(v.model));
        batch.Put(training_data_key(v.series_id, v.model.version), v.training_data);
    }
    batch.Put(leveldb::Slice(kCommitCountKey.data(), kCommitCountKey.size()), encode_u64(commits_ + 1));
    leveldb::WriteOptions wo;
    wo.sync = true;  // a 200 promises durability
    leveldb::Status s = db_->Write(wo, &batch);
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    commits_++;
    return true;
}

bool Store::read_model(std::string_view series_id, std::uint32_t version, Model *model,
                       std::string *error) {
    std::string value;
    leveldb::Status s = db_->Get(leveldb::ReadOptions(), model_key(series_id, version), &value);
    if (s.IsNotFound()) return false;
    if (!s.ok()) {
        *error = s.ToString();
        return false;
    }
    if (!decode_model(value, model) || model->version != version) {
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

// Spool layout: u32 little-endian model length, the model record, the
// training data record. Not synced: durability comes from the LevelDB write.
bool write_spool(const std::string &path, const Model &model, const std::string &d,
                 std::string *error) {
    const std::string m = encode_model(model);
    unsigned char len[4];
    for (int i = 0; i < 4; i++) len[i] = static_cast<unsigned char>(m.size() >> (8 * i));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = errno_text("cannot create", path);
        return false;
    }
    bool ok = write_all(fd, reinterpret_cast<const char *>(len), 4) &&
              write_all(fd, m.data(), m.size()) && write_all(fd, d.data(), d.size());
    if (!ok) *error = errno_text("cannot write", path);
    if (::close(fd) != 0 && ok) {
        *error = errno_text("cannot write", path);
        ok = false;
    }
    if (!ok) ::unlink(path.c_str());
    return ok;
}

bool read_spool(const std::string &path, Model *model, std::string *training_data,
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
    std::uint32_t mlen = 0;
    if (bytes.size() >= 4) {
        for (int i = 0; i < 4; i++)
            mlen |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    }
    if (bytes.size() < 4 || bytes.size() - 4 < mlen ||
        !decode_model(std::string_view(bytes).substr(4, mlen), model)) {
        *error = "the spool file " + path + " is damaged";
        return false;
    }
    training_data->assign(bytes, 4 + mlen, std::string::npos);
    return true;
}

}  // namespace anomaly
