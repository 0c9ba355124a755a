// The store against a real LevelDB in a temporary directory.
#include <gtest/gtest.h>

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
