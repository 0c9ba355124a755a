// The store against a real LevelDB in a temporary directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <leveldb/db.h>

#include "core/encoding.hpp"
#include "core/stream.hpp"
#include "store/store.hpp"
#include "support.hpp"

using namespace anomaly;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/anomaly-store-test-XXXXXX";
    return mkdtemp(tmpl);
}

TrainingData data_of(std::uint32_t v, int n) {
    TrainingData d;
    for (int i = 0; i < n; i++) {
        d.timestamps.push_back(1700000000 + 60 * i);
        d.values.push_back(v * 100 + i % 7);
    }
    return d;
}

// As the fit thread hands a version over: with its plot envelope.
Store::NewVersion version_of(const std::string &series, std::uint32_t v, int n) {
    Store::NewVersion out;
    const TrainingData d = data_of(v, n);
    out.series_id = series;
    EXPECT_FALSE(train(d, DetectorParams(), &out.model));
    set_image_version(&out.model, v, 1764000000000 + v);
    out.training_data = encode_training_data(d);
    out.plot_envelope = encode_plot_envelope(summarize_for_plot(d));
    return out;
}

// As a server older than plot envelopes committed it.
Store::NewVersion old_version_of(const std::string &series, std::uint32_t v, int n) {
    Store::NewVersion out = version_of(series, v, n);
    out.plot_envelope.clear();
    return out;
}

bool same_envelope(const PlotEnvelope &a, const PlotEnvelope &b) {
    if (a.points != b.points || a.first_timestamp != b.first_timestamp || a.last_timestamp != b.last_timestamp ||
        a.columns.size() != b.columns.size())
        return false;
    for (std::size_t i = 0; i < a.columns.size(); i++)
        if (a.columns[i].column != b.columns[i].column || a.columns[i].min != b.columns[i].min ||
            a.columns[i].max != b.columns[i].max)
            return false;
    return true;
}

// Reads or writes one key of a closed store straight through LevelDB.
bool raw_get(const std::string &dir, const std::string &key, std::string *value) {
    leveldb::DB *db = nullptr;
    if (!leveldb::DB::Open(leveldb::Options(), dir, &db).ok()) return false;
    const bool found = db->Get(leveldb::ReadOptions(), key, value).ok();
    delete db;
    return found;
}

void raw_put(const std::string &dir, const std::string &key, const std::string &value) {
    leveldb::DB *db = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), dir, &db).ok());
    ASSERT_TRUE(db->Put(leveldb::WriteOptions(), key, value).ok());
    delete db;
}

// The old spool layout: u32 model length | model | training data.
void write_old_spool(const std::string &path, const std::string &image, const std::string &training_data) {
    const std::string m = encode_model_format1(anomaly_test::three_sigma_model_of(image));
    std::string bytes;
    for (int i = 0; i < 4; i++) bytes.push_back(static_cast<char>(m.size() >> (8 * i)));
    std::ofstream(path, std::ios::binary) << bytes << m << training_data;
}

}  // namespace

TEST(Store, CommitReopenAndRead) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("a", 2, 20), version_of("b", 1, 30)}, &error));
        ASSERT_TRUE(store->commit({version_of("a", 10, 5)}, &error));
    }
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    std::vector<std::pair<std::string, std::uint32_t>> seen;
    ASSERT_TRUE(store->for_each_model([&](std::string_view s, const std::string &m) { seen.emplace_back(s, image_version(m)); },
                                      &error));
    EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::uint32_t>>{{"a", 1}, {"a", 2}, {"a", 10}, {"b", 1}}));
    std::string m;
    ASSERT_TRUE(store->read_model("a", 2, &m, &error));
    EXPECT_EQ(header_of(m.data()).points, 20u);
    EXPECT_EQ(header_of(m.data()).trained_at_ms, 1764000000002);
    EXPECT_FALSE(store->read_model("a", 3, &m, &error));
    EXPECT_TRUE(error.empty()) << "missing is not an error";
    TrainingData d;
    ASSERT_TRUE(store->read_training_data("b", 1, &d, &error));
    EXPECT_EQ(d.values.size(), 30u);
    EXPECT_EQ(d.values[8], 101);
    EXPECT_FALSE(store->read_training_data("b", 2, &d, &error));
}

// The commit count survives a reopen and moves only with committed batches:
// a zone kept across owners compares its own count with it.
TEST(Store, CommitCountIsDurable) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        EXPECT_EQ(store->commits(), 0u);
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("b", 1, 10)}, &error));
        ASSERT_TRUE(store->commit({version_of("a", 2, 10)}, &error));
        EXPECT_EQ(store->commits(), 2u);
    }
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    EXPECT_EQ(store->commits(), 2u);
    ASSERT_TRUE(store->commit({version_of("a", 3, 10)}, &error));
    EXPECT_EQ(store->commits(), 3u);
    std::size_t models = 0;
    ASSERT_TRUE(store->for_each_model([&](std::string_view, const std::string &) { models++; }, &error));
    EXPECT_EQ(models, 4u) << "the count is not a model";
}

// A store held open by another Store (another nginx generation) is read
// through a copy: every model, the commit count, and no copy left behind.
TEST(Store, ReadCopyOfAHeldStore) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> holder;
    ASSERT_EQ(Store::open(dir, &holder, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(holder->commit({version_of("a", 1, 10), version_of("b", 1, 10)}, &error));
    ASSERT_TRUE(holder->commit({version_of("a", 2, 10)}, &error));
    std::unique_ptr<Store> second;
    ASSERT_EQ(Store::open(dir, &second, &error), Store::OpenResult::locked);

    std::vector<std::pair<std::string, std::uint32_t>> seen;
    std::uint64_t commits = 0;
    error.clear();
    ASSERT_TRUE(Store::read_copy(dir, dir + "/copy.1",
                                 [&](std::string_view s, const std::string &m) { seen.emplace_back(s, image_version(m)); },
                                 &commits, &error))
        << error;
    EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::uint32_t>>{{"a", 1}, {"a", 2}, {"b", 1}}));
    EXPECT_EQ(commits, 2u);
    EXPECT_NE(access((dir + "/copy.1").c_str(), F_OK), 0) << "the copy is removed";

    // The holder goes on committing; a second copy sees it.
    ASSERT_TRUE(holder->commit({version_of("c", 1, 10)}, &error));
    seen.clear();
    ASSERT_TRUE(Store::read_copy(dir, dir + "/copy.1",
                                 [&](std::string_view s, const std::string &m) { seen.emplace_back(s, image_version(m)); },
                                 &commits, &error));
    EXPECT_EQ(seen.size(), 4u);
    EXPECT_EQ(commits, 3u);
}

TEST(Store, OneOpenAtATime) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> first, second;
    ASSERT_EQ(Store::open(dir, &first, &error), Store::OpenResult::opened);
    EXPECT_EQ(Store::open(dir, &second, &error), Store::OpenResult::locked) << error;
    first.reset();
    EXPECT_EQ(Store::open(dir, &second, &error), Store::OpenResult::opened) << error;
}

namespace {

// In a child process: takes a write lock on path as LevelDB does (fcntl),
// or tries to. Returns the child's pid; it writes 'y' (locked) or 'n' to
// the pipe `told`, then holds the lock until the pipe `hold` is closed.
pid_t lock_in_child(const std::string &path, int told, const int hold[2]) {
    const pid_t child = fork();
    if (child != 0) return child;
    close(hold[1]);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    const char c = fd >= 0 && fcntl(fd, F_SETLK, &lock) == 0 ? 'y' : 'n';
    if (write(told, &c, 1) != 1) _exit(1);
    char ignored;
    while (read(hold[0], &ignored, 1) > 0) {
    }
    _exit(0);
}

}  // namespace

// Whether another process holds the store is asked of the lock, which names
// that process; asking never drops this process's own lock.
TEST(Store, TheLockNamesItsHolder) {
    const std::string dir = temp_dir();
    EXPECT_EQ(Store::lock_holder(dir), -2) << "no LOCK file yet";
    int told[2], hold[2];
    ASSERT_EQ(pipe(told), 0);
    ASSERT_EQ(pipe(hold), 0);
    const pid_t child = lock_in_child(dir + "/LOCK", told[1], hold);
    char c = 0;
    ASSERT_EQ(read(told[0], &c, 1), 1);
    ASSERT_EQ(c, 'y');
    EXPECT_EQ(Store::lock_holder(dir), child);
    std::unique_ptr<Store> store;
    std::string error;
    EXPECT_EQ(Store::open(dir, &store, &error), Store::OpenResult::locked) << error;
    close(hold[1]);
    waitpid(child, nullptr, 0);
    EXPECT_EQ(Store::lock_holder(dir), 0) << "released when the holder ended";

    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    EXPECT_EQ(Store::lock_holder(dir), 0) << "a process does not see its own lock";
    ASSERT_EQ(pipe(hold), 0);
    const pid_t other = lock_in_child(dir + "/LOCK", told[1], hold);
    close(hold[1]);
    ASSERT_EQ(read(told[0], &c, 1), 1);
    EXPECT_EQ(c, 'n') << "asking kept this process's lock";
    waitpid(other, nullptr, 0);
    close(told[0]);
    close(told[1]);
    close(hold[0]);
}

TEST(Store, UnusableDirectoryFails) {
    std::string error;
    std::unique_ptr<Store> store;
    const std::string file = temp_dir() + "/not-a-dir";
    std::ofstream(file) << "x";
    EXPECT_EQ(Store::open(file, &store, &error), Store::OpenResult::failed);
    EXPECT_FALSE(error.empty());
}

// A version's plot envelope is written in the commit's batch and read back
// as committed: /plot never reads the training data for it.
TEST(Store, PlotEnvelopeRoundTrip) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("a", 2, 5000)}, &error));
        PlotEnvelope e;
        ASSERT_TRUE(store->read_plot_envelope("a", 2, &e, &error)) << error;
        EXPECT_TRUE(same_envelope(e, summarize_for_plot(data_of(2, 5000))));
        EXPECT_EQ(e.columns.size(), static_cast<std::size_t>(kPlotColumns));
        EXPECT_FALSE(store->read_plot_envelope("a", 3, &e, &error)) << "no such version";
        EXPECT_FALSE(error.empty());
    }
    std::string value;
    ASSERT_TRUE(raw_get(dir, plot_envelope_key("a", 1), &value));
    EXPECT_EQ(value, version_of("a", 1, 10).plot_envelope);
    // Proof that the stored envelope is what is read: replace it, then read it.
    PlotEnvelope marked = summarize_for_plot(data_of(1, 10));
    marked.columns[0].max = 12345;
    raw_put(dir, plot_envelope_key("a", 1), encode_plot_envelope(marked));
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    PlotEnvelope e;
    ASSERT_TRUE(store->read_plot_envelope("a", 1, &e, &error)) << error;
    EXPECT_EQ(e.columns[0].max, 12345);
}

// A store written before plot envelopes (no p/ keys) still plots: the
// training data is summarised on the first read and the summary kept.
TEST(Store, PlotEnvelopeOfAVersionWrittenWithoutOne) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({old_version_of("old", 1, 3000), old_version_of("old", 2, 20)}, &error));
    }
    std::string value;
    ASSERT_FALSE(raw_get(dir, plot_envelope_key("old", 1), &value)) << "written as an old server did";
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        PlotEnvelope e;
        ASSERT_TRUE(store->read_plot_envelope("old", 1, &e, &error)) << error;
        EXPECT_TRUE(same_envelope(e, summarize_for_plot(data_of(1, 3000))));
        ASSERT_TRUE(store->read_plot_envelope("old", 1, &e, &error)) << "and again, from the kept summary";
        EXPECT_TRUE(same_envelope(e, summarize_for_plot(data_of(1, 3000))));
        EXPECT_EQ(store->commits(), 1u) << "keeping a summary is not a commit";
    }
    ASSERT_TRUE(raw_get(dir, plot_envelope_key("old", 1), &value));
    EXPECT_EQ(value, encode_plot_envelope(summarize_for_plot(data_of(1, 3000))));
    EXPECT_FALSE(raw_get(dir, plot_envelope_key("old", 2), &value)) << "only what was plotted";

    // A damaged envelope falls back to the training data too, and is left for an operator to see.
    raw_put(dir, plot_envelope_key("old", 2), "damaged");
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    PlotEnvelope e;
    ASSERT_TRUE(store->read_plot_envelope("old", 2, &e, &error)) << error;
    EXPECT_TRUE(same_envelope(e, summarize_for_plot(data_of(2, 20))));
    store.reset();
    ASSERT_TRUE(raw_get(dir, plot_envelope_key("old", 2), &value));
    EXPECT_EQ(value, "damaged");
}

// A store written before model images (format 1 records) opens unchanged
// and reads back as three-sigma images; new versions are written as images.
TEST(Store, Format1RecordsOpenUnchanged) {
    const std::string dir = temp_dir();
    std::string error;
    Store::NewVersion v = version_of("old", 1, 50);
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({v}, &error));
    }
    const std::string path = temp_dir() + "/1.1";
    write_old_spool(path, v.model, v.training_data);  // only to get the format 1 bytes
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    raw_put(dir, model_key("old", 1), bytes.substr(4, 56));
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    std::string m;
    ASSERT_TRUE(store->read_model("old", 1, &m, &error)) << error;
    EXPECT_EQ(m, v.model);
    std::size_t n = 0;
    ASSERT_TRUE(store->for_each_model([&](std::string_view, const std::string &image) { n += image == v.model; },
                                      &error));
    EXPECT_EQ(n, 1u);
}

TEST(Spool, RoundTripAndDamage) {
    const std::string path = temp_dir() + "/1.1";
    Store::NewVersion v = version_of("s", 1, 100);
    std::string error;
    ASSERT_TRUE(write_spool(path, v.model, v.plot_envelope, v.training_data, &error)) << error;
    std::string m;
    std::string envelope, data;
    ASSERT_TRUE(read_spool(path, &m, &envelope, &data, &error)) << error;
    EXPECT_EQ(header_of(m.data()).points, 100u);
    EXPECT_EQ(m, v.model);
    EXPECT_EQ(envelope, v.plot_envelope);
    EXPECT_EQ(data, v.training_data);
    const off_t size = static_cast<off_t>(5 + 4 + 64 + 4 + v.plot_envelope.size() + v.training_data.size());
    for (off_t n : {off_t{0}, off_t{3}, off_t{10}, off_t{5 + 4 + 64 + 2}, off_t{5 + 4 + 64 + 4 + 40}}) {
        ASSERT_TRUE(write_spool(path, v.model, v.plot_envelope, v.training_data, &error));
        ASSERT_EQ(truncate(path.c_str(), n), 0);
        EXPECT_FALSE(read_spool(path, &m, &envelope, &data, &error)) << n << " of " << size << " bytes";
    }
    EXPECT_FALSE(read_spool(path + ".missing", &m, &envelope, &data, &error));
}

// A spool written before plot envelopes (left across a binary upgrade) is
// still read; its envelope comes from its training data.
TEST(Spool, OldLayoutIsRead) {
    const std::string path = temp_dir() + "/1.3";
    Store::NewVersion v = version_of("s", 1, 2000);
    write_old_spool(path, v.model, v.training_data);
    std::string m;
    std::string envelope, data, error;
    ASSERT_TRUE(read_spool(path, &m, &envelope, &data, &error)) << error;
    EXPECT_EQ(header_of(m.data()).points, 2000u);
    EXPECT_EQ(m, v.model) << "the old record becomes the same image";
    EXPECT_EQ(data, v.training_data);
    EXPECT_EQ(envelope, v.plot_envelope);
    write_old_spool(path, v.model, v.training_data.substr(0, v.training_data.size() - 1));
    EXPECT_FALSE(read_spool(path, &m, &envelope, &data, &error)) << "damaged training data";
}

// Checkpoints replace the previous one of each stream, come back whole, and
// a damaged one is skipped without hiding the others.
TEST(Store, StreamCheckpoints) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->write_checkpoints({{"a", anomaly_test::adaptive_stream(5), 1000}, {"b", anomaly_test::adaptive_stream(9), 1000}}, &error));
        ASSERT_TRUE(store->write_checkpoints({{"a", anomaly_test::adaptive_stream(12), 2000}}, &error));
    }
    {  // a record that does not decode, as a torn or foreign write would leave
        leveldb::DB *db = nullptr;
        leveldb::Options o;
        ASSERT_TRUE(leveldb::DB::Open(o, dir, &db).ok());
        ASSERT_TRUE(db->Put(leveldb::WriteOptions(), stream_key("c"), "garbage").ok());
        delete db;
    }
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    std::map<std::string, std::uint64_t> seen;
    std::uint64_t damaged = 0;
    ASSERT_TRUE(store->for_each_stream(
        [&](std::string_view series, std::string_view state, std::int64_t written_ms) {
            EXPECT_TRUE(check_stream(state));
            seen[std::string(series)] = reinterpret_cast<const StreamHeader *>(state.data())->points_processed;
            EXPECT_EQ(written_ms, series == "a" ? 2000 : 1000);
        },
        &damaged, &error));
    EXPECT_EQ(damaged, 1u);
    EXPECT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen["a"], 12u);
    EXPECT_EQ(seen["b"], 9u);
    std::string state;
    std::int64_t ms = 0;
    EXPECT_TRUE(store->read_checkpoint("b", &state, &ms, &error));
    EXPECT_EQ(state, anomaly_test::adaptive_stream(9));
    EXPECT_FALSE(store->read_checkpoint("nope", &state, &ms, &error));
    EXPECT_TRUE(error.empty());
    EXPECT_FALSE(store->read_checkpoint("c", &state, &ms, &error));
    // Models are not disturbed by stream records.
    std::size_t models = 0;
    ASSERT_TRUE(store->for_each_model([&](std::string_view, const std::string &) { models++; }, &error));
    EXPECT_EQ(models, 0u);
}

namespace {

HistoryEvent history_event(int i) {
    return make_event("s" + std::to_string(i % 3), 1700000000 + i, i * 1.5, 80 + i % 20, 3.5 + i, 1,
                      static_cast<std::uint32_t>(1 + i % 2), 1764000000000 + i);
}

std::vector<int> history_numbers(Store *store, std::uint64_t newest, std::uint64_t *damaged) {
    std::vector<HistoryEvent> events;
    std::string error;
    EXPECT_TRUE(store->read_history(newest, &events, damaged, &error)) << error;
    std::vector<int> out;
    for (const HistoryEvent &e : events) out.push_back(static_cast<int>(e.timestamp - 1700000000));
    return out;
}

}  // namespace

// The anomaly history: appended oldest first, trimmed to the newest `keep`,
// read back newest-n oldest first, across a reopen (which counts on from the
// last record), with a damaged record skipped and counted.
TEST(Store, AnomalyHistory) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        std::uint64_t damaged = 0;
        EXPECT_TRUE(history_numbers(store.get(), 100, &damaged).empty()) << "a store without a history has none";
        std::vector<HistoryEvent> batch;
        for (int i = 0; i < 6; i++) batch.push_back(history_event(i));
        ASSERT_TRUE(store->write_history(batch, 10, &error)) << error;
        batch.clear();
        for (int i = 6; i < 13; i++) batch.push_back(history_event(i));
        ASSERT_TRUE(store->write_history(batch, 10, &error)) << error;
        EXPECT_EQ(history_numbers(store.get(), 100, &damaged), (std::vector<int>{3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
        EXPECT_EQ(history_numbers(store.get(), 4, &damaged), (std::vector<int>{9, 10, 11, 12}));
        EXPECT_EQ(damaged, 0u);
    }
    {  // a record that does not decode
        leveldb::DB *db = nullptr;
        leveldb::Options o;
        ASSERT_TRUE(leveldb::DB::Open(o, dir, &db).ok());
        std::string value;
        ASSERT_TRUE(db->Get(leveldb::ReadOptions(), history_key(11), &value).ok()) << "keys count from 0";
        ASSERT_TRUE(db->Put(leveldb::WriteOptions(), history_key(11), "garbage").ok());
        EXPECT_TRUE(db->Get(leveldb::ReadOptions(), history_key(2), &value).IsNotFound()) << "trimmed";
        delete db;
    }
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    std::uint64_t damaged = 0;
    EXPECT_EQ(history_numbers(store.get(), 3, &damaged), (std::vector<int>{10, 12}));
    EXPECT_EQ(damaged, 1u);
    // A new process counts on after the last record, and a smaller keep trims more.
    ASSERT_TRUE(store->write_history({history_event(13)}, 2, &error)) << error;
    damaged = 0;
    EXPECT_EQ(history_numbers(store.get(), 100, &damaged), (std::vector<int>{12, 13}));
    std::vector<HistoryEvent> events;
    ASSERT_TRUE(store->read_history(1, &events, &damaged, &error));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].series_id(), "s1");
    EXPECT_EQ(events[0].value, 13 * 1.5);
    EXPECT_EQ(events[0].version, 2u);
    // Models and streams are not disturbed by history records.
    std::size_t models = 0;
    ASSERT_TRUE(store->for_each_model([&](std::string_view, const std::string &) { models++; }, &error));
    EXPECT_EQ(models, 0u);
}

// Removals, the commit index, snapshots, exports and imports.
namespace {

// Every key of a closed store.
std::vector<std::string> raw_keys(const std::string &dir) {
    std::vector<std::string> keys;
    leveldb::DB *db = nullptr;
    if (!leveldb::DB::Open(leveldb::Options(), dir, &db).ok()) return keys;
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) keys.push_back(it->key().ToString());
    it.reset();
    delete db;
    return keys;
}

bool has_key(const std::vector<std::string> &keys, const std::string &key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// The keys that name series/version (m/, d/, p/, x/, y/), as "kind series v".
std::vector<std::string> version_keys(const std::vector<std::string> &keys) {
    std::vector<std::string> out;
    for (const std::string &k : keys) {
        std::string_view series;
        std::uint32_t version = 0;
        std::uint64_t commit = 0;
        if (k[0] == 'x' && parse_commit_index_key(k, &commit, &series, &version)) {
            out.push_back("x " + std::string(series) + " " + std::to_string(version) + " @" + std::to_string(commit));
        } else if ((k[0] == 'm' || k[0] == 'd' || k[0] == 'p' || k[0] == 'y') && k[1] == '/') {
            std::string m = k;
            m[0] = 'm';
            if (parse_model_key(m, &series, &version))
                out.push_back(std::string(1, k[0]) + " " + std::string(series) + " " + std::to_string(version));
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> all_keys_of(const std::string &series, std::uint32_t version, std::uint64_t commit) {
    const std::string sv = series + " " + std::to_string(version);
    return {"d " + sv, "m " + sv, "p " + sv, "x " + sv + " @" + std::to_string(commit), "y " + sv};
}

struct Exported {
    std::vector<TransferVersion> versions;
    std::vector<TransferStream> streams;
    int calls = 0;
};

// Runs an export to its end, max_bytes a call.
Store::ExportStep export_all(Store &store, const Store::Snapshot &snapshot, const Store::ExportScope &scope,
                             std::size_t max_bytes, Exported *out) {
    Store::ExportVisitor visit;
    visit.version = [out](const TransferVersion &v) {
        out->versions.push_back(v);
        return true;
    };
    visit.stream = [out](const TransferStream &s) {
        out->streams.push_back(s);
        return true;
    };
    std::string after, next, error;
    for (;;) {
        out->calls++;
        const Store::ExportStep step = store.export_records(snapshot, scope, after, max_bytes, visit, &next, &error);
        if (step != Store::ExportStep::more) {
            EXPECT_TRUE(step == Store::ExportStep::done) << error;
            return step;
        }
        EXPECT_FALSE(next.empty());
        after = next;
    }
}

std::vector<std::string> names(const Exported &e) {
    std::vector<std::string> out;
    for (const TransferVersion &v : e.versions)
        out.push_back(v.series_id + " v" + std::to_string(v.version) + " @" + std::to_string(v.commit));
    for (const TransferStream &s : e.streams) out.push_back("stream " + s.series_id);
    return out;
}

Store::Checkpoint checkpoint_of(const std::string &series, int points) {
    Store::Checkpoint c;
    c.series_id = series;
    c.state = anomaly_test::adaptive_stream(points);
    c.written_ms = 1764000000000 + points;
    return c;
}

}  // namespace

TEST(Store, CommitWritesTheCommitIndex) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("b", 1, 10)}, &error)) << error;
        ASSERT_TRUE(store->commit({version_of("a", 2, 10)}, &error)) << error;
    }
    std::vector<std::string> expected;
    for (auto keys : {all_keys_of("a", 1, 1), all_keys_of("a", 2, 2), all_keys_of("b", 1, 1)})
        expected.insert(expected.end(), keys.begin(), keys.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(version_keys(raw_keys(dir)), expected);
    std::string commit;
    ASSERT_TRUE(raw_get(dir, version_commit_key("a", 2), &commit));
    EXPECT_EQ(commit, encode_u64(2));
    // The index key's layout: "x/", the commit big-endian, the id, "/", the version big-endian.
    EXPECT_EQ(commit_index_key(0x0102, "a", 3), std::string("x/\0\0\0\0\0\0\x01\x02" "a/\0\0\0\x03", 16));
}

TEST(Store, RemoveOneVersion) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("a", 2, 10)}, &error)) << error;
        ASSERT_TRUE(store->write_checkpoints({checkpoint_of("a", 5)}, &error)) << error;
        ASSERT_TRUE(store->remove({{"a", 1}}, &error)) << error;
        EXPECT_EQ(store->commits(), 2u);  // a removal is a commit
        std::string image;
        EXPECT_FALSE(store->read_model("a", 1, &image, &error));
        EXPECT_TRUE(error.empty());
        EXPECT_TRUE(store->read_model("a", 2, &image, &error));
        // Removing what is not there deletes nothing, and still counts.
        ASSERT_TRUE(store->remove({{"a", 1}, {"nobody", 3}}, &error)) << error;
        EXPECT_EQ(store->commits(), 3u);
    }
    EXPECT_EQ(version_keys(raw_keys(dir)), all_keys_of("a", 2, 1));
    EXPECT_TRUE(has_key(raw_keys(dir), "s/a"));
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    EXPECT_EQ(store->commits(), 3u);
}

TEST(Store, RemoveAWholeSeries) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("ab", 1, 10)}, &error)) << error;
        ASSERT_TRUE(store->commit({version_of("a", 2, 10), old_version_of("a", 3, 10)}, &error)) << error;
        ASSERT_TRUE(store->write_checkpoints({checkpoint_of("a", 5), checkpoint_of("ab", 5)}, &error)) << error;
        ASSERT_TRUE(store->remove({{"a", 0}}, &error)) << error;
        EXPECT_EQ(store->commits(), 3u);
        std::string state;
        std::int64_t written_ms = 0;
        EXPECT_FALSE(store->read_checkpoint("a", &state, &written_ms, &error));
        EXPECT_TRUE(store->read_checkpoint("ab", &state, &written_ms, &error));
    }
    // "ab" shares a's first letter, not its keys.
    const std::vector<std::string> keys = raw_keys(dir);
    EXPECT_EQ(version_keys(keys), all_keys_of("ab", 1, 1));
    EXPECT_FALSE(has_key(keys, "s/a"));
    EXPECT_TRUE(has_key(keys, "s/ab"));
}

TEST(Store, ACommitWritesAndRemoves) {
    const std::string dir = temp_dir();
    std::string error;
    {
        std::unique_ptr<Store> store;
        ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
        ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("b", 1, 10)}, &error)) << error;
        // As anomaly_keep_versions 1 would: the new version and the old one's removal together.
        ASSERT_TRUE(store->commit({version_of("a", 2, 10)}, {{"a", 1}}, &error)) << error;
        // A series removed and written again in one commit keeps only what is written.
        ASSERT_TRUE(store->commit({version_of("b", 2, 10)}, {{"b", 0}}, &error)) << error;
        EXPECT_EQ(store->commits(), 3u);
    }
    std::vector<std::string> expected = all_keys_of("a", 2, 2);
    for (const std::string &k : all_keys_of("b", 2, 3)) expected.push_back(k);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(version_keys(raw_keys(dir)), expected);
}

TEST(Store, SnapshotIsUnaffectedByLaterWrites) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("b", 1, 10)}, &error)) << error;
    ASSERT_TRUE(store->write_checkpoints({checkpoint_of("a", 5)}, &error)) << error;
    std::unique_ptr<Store::Snapshot> snapshot = store->snapshot();
    EXPECT_EQ(snapshot->commits(), 1u);
    // After it: a new version, a removal, a newer checkpoint and a new stream.
    ASSERT_TRUE(store->commit({version_of("c", 1, 10)}, {{"a", 1}}, &error)) << error;
    ASSERT_TRUE(store->write_checkpoints({checkpoint_of("a", 9), checkpoint_of("z", 3)}, &error)) << error;
    Exported e;
    export_all(*store, *snapshot, {}, 1 << 20, &e);
    EXPECT_EQ(names(e), (std::vector<std::string>{"a v1 @1", "b v1 @1", "stream a"}));
    ASSERT_EQ(e.streams.size(), 1u);
    EXPECT_EQ(e.streams[0].state, anomaly_test::adaptive_stream(5));
    EXPECT_EQ(e.streams[0].written_ms, 1764000000005);
    EXPECT_EQ(store->snapshot()->commits(), 2u);
    Exported now;
    export_all(*store, *store->snapshot(), {}, 1 << 20, &now);
    EXPECT_EQ(names(now), (std::vector<std::string>{"b v1 @1", "c v1 @2", "stream a", "stream z"}));
}

TEST(Store, ExportSince) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(store->commit({version_of("b", 1, 10), version_of("a", 1, 10)}, &error)) << error;  // 1
    ASSERT_TRUE(store->commit({version_of("a", 2, 10)}, &error)) << error;                          // 2
    ASSERT_TRUE(store->commit({version_of("c", 1, 10), version_of("b", 2, 10)}, &error)) << error;  // 3
    ASSERT_TRUE(store->remove({{"a", 2}}, &error)) << error;                                        // 4
    ASSERT_TRUE(store->commit({version_of("a", 3, 10)}, &error)) << error;                          // 5
    ASSERT_TRUE(store->write_checkpoints({checkpoint_of("s", 4)}, &error)) << error;
    auto snapshot = store->snapshot();
    EXPECT_EQ(snapshot->commits(), 5u);
    Store::ExportScope scope;
    Exported all;
    export_all(*store, *snapshot, scope, 1 << 20, &all);
    EXPECT_EQ(names(all), (std::vector<std::string>{"a v1 @1", "a v3 @5", "b v1 @1", "b v2 @3", "c v1 @3", "stream s"}));
    // In commit order, from commit since + 1; streams whatever since.
    scope.since = 1;
    Exported since1;
    export_all(*store, *snapshot, scope, 1 << 20, &since1);
    EXPECT_EQ(names(since1), (std::vector<std::string>{"b v2 @3", "c v1 @3", "a v3 @5", "stream s"}));
    scope.since = 3;
    Exported since3;
    export_all(*store, *snapshot, scope, 1 << 20, &since3);
    EXPECT_EQ(names(since3), (std::vector<std::string>{"a v3 @5", "stream s"}));
    scope.since = 5;
    Exported since5;
    export_all(*store, *snapshot, scope, 1 << 20, &since5);
    EXPECT_EQ(names(since5), (std::vector<std::string>{"stream s"}));
    scope.since = UINT64_MAX;
    Exported last;
    export_all(*store, *snapshot, scope, 1 << 20, &last);
    EXPECT_EQ(names(last), (std::vector<std::string>{"stream s"}));
    // Every record is the store's own bytes.
    for (const TransferVersion &v : all.versions) {
        std::string record, image;
        ASSERT_TRUE(store->read_model_record(v.series_id, v.version, &record, &error));
        EXPECT_EQ(record, v.model);
        ASSERT_TRUE(store->read_model(v.series_id, v.version, &image, &error));
        EXPECT_EQ(image, v.image);
        EXPECT_EQ(v.training_data, version_of(v.series_id, v.version, 10).training_data);
        EXPECT_EQ(v.plot_envelope, version_of(v.series_id, v.version, 10).plot_envelope);
    }
}

TEST(Store, ExportByPrefixAndFilter) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(store->commit({version_of("cpu:1", 1, 10), version_of("cpu:2", 1, 10), version_of("mem:1", 1, 10),
                               version_of("cp", 1, 10)},
                              &error))
        << error;
    ASSERT_TRUE(store->commit({version_of("cpu:1", 2, 10)}, &error)) << error;
    ASSERT_TRUE(store->write_checkpoints({checkpoint_of("cpu:9", 4), checkpoint_of("mem:9", 4)}, &error)) << error;
    auto snapshot = store->snapshot();
    Store::ExportScope scope;
    scope.prefix = "cpu:";
    Exported cpu;
    export_all(*store, *snapshot, scope, 1 << 20, &cpu);
    EXPECT_EQ(names(cpu), (std::vector<std::string>{"cpu:1 v1 @1", "cpu:1 v2 @2", "cpu:2 v1 @1", "stream cpu:9"}));
    scope.filter = [](std::string_view id) { return id != "cpu:1"; };
    Exported filtered;
    export_all(*store, *snapshot, scope, 1 << 20, &filtered);
    EXPECT_EQ(names(filtered), (std::vector<std::string>{"cpu:2 v1 @1", "stream cpu:9"}));
    scope.since = 1;
    scope.filter = nullptr;
    Exported since;
    export_all(*store, *snapshot, scope, 1 << 20, &since);
    EXPECT_EQ(names(since), (std::vector<std::string>{"cpu:1 v2 @2", "stream cpu:9"}));
}

// An export read in pieces of any size gives what one call gives.
TEST(Store, ExportInPieces) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    for (std::uint32_t v = 1; v <= 5; v++) {
        std::vector<Store::NewVersion> batch;
        for (const char *s : {"s1", "s2", "s3", "s4"}) batch.push_back(version_of(s, v, 10 + v));
        ASSERT_TRUE(store->commit(batch, &error)) << error;
    }
    ASSERT_TRUE(store->write_checkpoints({checkpoint_of("s1", 4), checkpoint_of("s3", 4), checkpoint_of("t", 4)}, &error));
    auto snapshot = store->snapshot();
    for (std::uint64_t since : {0, 2}) {
        Store::ExportScope scope;
        scope.since = since;
        Exported whole;
        export_all(*store, *snapshot, scope, std::size_t{1} << 30, &whole);
        EXPECT_EQ(whole.calls, 1);
        EXPECT_EQ(whole.versions.size(), since == 0 ? 20u : 12u);
        EXPECT_EQ(whole.streams.size(), 3u);
        // Writes between the pieces change nothing.
        ASSERT_TRUE(store->commit({version_of("s0", 1, 10)}, {{"s2", 0}}, &error)) << error;
        for (std::size_t max : {std::size_t{1}, std::size_t{1000}, std::size_t{5000}}) {
            Exported pieces;
            export_all(*store, *snapshot, scope, max, &pieces);
            EXPECT_EQ(names(pieces), names(whole)) << max;
            if (max == 1) {
                EXPECT_EQ(pieces.calls, static_cast<int>(whole.versions.size() + whole.streams.size() + 1));
            }
            for (std::size_t i = 0; i < whole.versions.size(); i++)
                EXPECT_EQ(pieces.versions[i].training_data, whole.versions[i].training_data);
        }
    }
}

TEST(Store, ExportStopsWhenTheClientGoes) {
    const std::string dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(store->commit({version_of("a", 1, 10), version_of("b", 1, 10), version_of("c", 1, 10)}, &error));
    auto snapshot = store->snapshot();
    int given = 0;
    Store::ExportVisitor visit;
    visit.version = [&given](const TransferVersion &) { return ++given < 2; };
    visit.stream = [](const TransferStream &) { return true; };
    std::string next;
    EXPECT_EQ(store->export_records(*snapshot, {}, "", 1 << 20, visit, &next, &error), Store::ExportStep::stopped);
    EXPECT_EQ(next, model_key("a", 1));  // the last one accepted
    // A key no export gives is refused.
    EXPECT_EQ(store->export_records(*snapshot, {}, "h/x", 1 << 20, visit, &next, &error), Store::ExportStep::failed);
    EXPECT_FALSE(error.empty());
}

// Versions written by a build before the commit index: commit 0, and never in an export since N.
TEST(Store, ExportOfVersionsWithoutTheIndex) {
    const std::string dir = temp_dir();
    const Store::NewVersion v = version_of("old", 1, 10);
    std::string error;
    {
        std::unique_ptr<Store> created;
        ASSERT_EQ(Store::open(dir, &created, &error), Store::OpenResult::opened) << error;
    }
    raw_put(dir, model_key("old", 1), v.model);
    raw_put(dir, training_data_key("old", 1), v.training_data);
    raw_put(dir, std::string(kCommitCountKey), encode_u64(4));
    std::unique_ptr<Store> store;
    ASSERT_EQ(Store::open(dir, &store, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(store->commit({version_of("new", 1, 10)}, &error)) << error;
    auto snapshot = store->snapshot();
    Exported all;
    export_all(*store, *snapshot, {}, 1 << 20, &all);
    EXPECT_EQ(names(all), (std::vector<std::string>{"new v1 @5", "old v1 @0"}));
    EXPECT_TRUE(all.versions[1].plot_envelope.empty());
    Store::ExportScope scope;
    scope.since = 1;
    Exported since;
    export_all(*store, *snapshot, scope, 1 << 20, &since);
    EXPECT_EQ(names(since), (std::vector<std::string>{"new v1 @5"}));
}

// Store A exported through the format, imported into store B: every record equal.
TEST(Store, ImportRoundTrip) {
    const std::string a_dir = temp_dir(), b_dir = temp_dir();
    std::string error;
    std::unique_ptr<Store> a, b;
    ASSERT_EQ(Store::open(a_dir, &a, &error), Store::OpenResult::opened) << error;
    ASSERT_EQ(Store::open(b_dir, &b, &error), Store::OpenResult::opened) << error;
    ASSERT_TRUE(a->commit({version_of("x", 1, 10), old_version_of("y", 1, 12)}, &error)) << error;
    ASSERT_TRUE(a->commit({version_of("x", 2, 20)}, &error)) << error;
    ASSERT_TRUE(a->write_checkpoints({checkpoint_of("x", 7), checkpoint_of("st", 11)}, &error)) << error;
    ASSERT_TRUE(b->commit({version_of("other", 1, 10)}, &error)) << error;

    // Export A as GET /export would write it.
    auto snapshot = a->snapshot();
    std::string bytes;
    append_transfer_magic(&bytes);
    append_header(&bytes, TransferHeader{1, snapshot->commits(), 0, 1764000000000});
    Exported sent;
    Store::ExportVisitor visit;
    visit.version = [&](const TransferVersion &v) {
        sent.versions.push_back(v);
        return append_version(&bytes, v);
    };
    visit.stream = [&](const TransferStream &s) {
        sent.streams.push_back(s);
        return append_stream(&bytes, s);
    };
    std::string next;
    ASSERT_EQ(a->export_records(*snapshot, {}, "", 1 << 20, visit, &next, &error), Store::ExportStep::done) << error;
    append_end(&bytes, TransferEnd{sent.versions.size(), sent.streams.size(), snapshot->commits()});

    // Read it back and import it into B.
    TransferReader reader;
    reader.feed(bytes);
    reader.finish();
    std::vector<TransferVersion> versions;
    std::vector<TransferStream> streams;
    for (TransferReader::Item item; (item = reader.next()) != TransferReader::Item::end;) {
        ASSERT_NE(item, TransferReader::Item::error) << reader.error();
        if (item == TransferReader::Item::version) versions.push_back(reader.version());
        if (item == TransferReader::Item::stream) streams.push_back(reader.stream());
    }
    ASSERT_EQ(versions.size(), 3u);
    ASSERT_EQ(streams.size(), 2u);
    ASSERT_TRUE(b->import(versions, streams, &error)) << error;
    EXPECT_EQ(b->commits(), 2u);

    // B exports the same records, numbered by its own commit.
    Exported got;
    export_all(*b, *b->snapshot(), {}, 1 << 20, &got);
    EXPECT_EQ(names(got), (std::vector<std::string>{"other v1 @1", "x v1 @2", "x v2 @2", "y v1 @2", "stream st",
                                                     "stream x"}));
    ASSERT_EQ(got.versions.size(), 4u);
    for (std::size_t i = 0; i < 3; i++) {
        const TransferVersion &s = sent.versions[i], &g = got.versions[i + 1];
        EXPECT_EQ(g.series_id, s.series_id);
        EXPECT_EQ(g.version, s.version);
        EXPECT_EQ(g.model, s.model);
        EXPECT_EQ(g.image, s.image);
        EXPECT_EQ(g.training_data, s.training_data);
        EXPECT_EQ(g.plot_envelope, s.plot_envelope);
    }
    for (std::size_t i = 0; i < 2; i++) {
        EXPECT_EQ(got.streams[i].series_id, sent.streams[i].series_id);
        EXPECT_EQ(got.streams[i].state, sent.streams[i].state);
        EXPECT_EQ(got.streams[i].written_ms, sent.streams[i].written_ms);
    }
    // And B loads them as it loads its own: models, plots, checkpoints.
    std::vector<std::string> loaded;
    ASSERT_TRUE(b->for_each_model([&](std::string_view s, const std::string &m) {
        loaded.push_back(std::string(s) + " v" + std::to_string(image_version(m)));
    }, &error));
    EXPECT_EQ(loaded, (std::vector<std::string>{"other v1", "x v1", "x v2", "y v1"}));
    PlotEnvelope envelope;
    EXPECT_TRUE(b->read_plot_envelope("y", 1, &envelope, &error)) << error;  // summarised: it had none
    std::string state;
    std::int64_t written_ms = 0;
    ASSERT_TRUE(b->read_checkpoint("st", &state, &written_ms, &error));
    EXPECT_EQ(state, anomaly_test::adaptive_stream(11));

    // Imported again (a retried import): replaced, with no stale index key.
    ASSERT_TRUE(b->import({versions[0]}, {}, &error)) << error;
    Store::ExportScope scope;
    scope.since = 1;
    Exported again;
    export_all(*b, *b->snapshot(), scope, 1 << 20, &again);
    EXPECT_EQ(names(again), (std::vector<std::string>{"x v2 @2", "y v1 @2", "x v1 @3", "stream st", "stream x"}));
    b.reset();
    const std::vector<std::string> keys = version_keys(raw_keys(b_dir));
    EXPECT_EQ(std::count_if(keys.begin(), keys.end(), [](const std::string &k) { return k.rfind("x x 1", 0) == 0; }), 1);
}
