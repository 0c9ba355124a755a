// The export format: what the writers write, the reader reads back, and
// every export the reader refuses.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/crc32.hpp"
#include "core/encoding.hpp"
#include "core/plot.hpp"
#include "core/transfer.hpp"
#include "support.hpp"

using namespace anomaly;
using anomaly_test::adaptive_stream;
using anomaly_test::noisy;

namespace {

TransferVersion version_of(const std::string &id, std::uint32_t v, bool with_plot = true, std::size_t n = 50) {
    const TrainingData d = noisy(n, 10 * v, 1, v);
    TransferVersion out;
    out.series_id = id;
    out.version = v;
    out.commit = 100 + v;
    std::string image;
    EXPECT_FALSE(train(d, DetectorParams(), &image));
    set_image_version(&image, v, 1764000000000 + v);
    out.model = encode_model(image);
    out.training_data = encode_training_data(d);
    if (with_plot) out.plot_envelope = encode_plot_envelope(summarize_for_plot(d));
    return out;
}

TransferStream stream_of(const std::string &id, int points) {
    TransferStream s;
    s.series_id = id;
    s.written_ms = 1764000000123;
    s.state = adaptive_stream(points);
    return s;
}

TransferHeader header_of_export(std::uint64_t commits = 7) {
    TransferHeader h;
    h.commits = commits;
    h.since = 0;
    h.created_ms = 1764000000999;
    return h;
}

struct Export {
    std::string bytes;
    std::vector<TransferVersion> versions;
    std::vector<TransferStream> streams;
};

Export sample() {
    Export e;
    e.versions = {version_of("sensor_1", 1), version_of("sensor_1", 2, false), version_of("cpu.load:host-7", 1)};
    e.streams = {stream_of("stream.a", 30)};
    append_transfer_magic(&e.bytes);
    append_header(&e.bytes, header_of_export());
    EXPECT_TRUE(append_version(&e.bytes, e.versions[0]));
    EXPECT_TRUE(append_stream(&e.bytes, e.streams[0]));
    EXPECT_TRUE(append_version(&e.bytes, e.versions[1]));
    EXPECT_TRUE(append_version(&e.bytes, e.versions[2]));
    append_end(&e.bytes, TransferEnd{3, 1, 7});
    return e;
}

// What a reader gave, in order, as one comparable value.
struct Read {
    std::vector<TransferReader::Item> items;
    TransferHeader header;
    std::vector<TransferVersion> versions;
    std::vector<TransferStream> streams;
    TransferEnd end;
    std::string error;
    std::uint64_t offset = 0;
};

void take(TransferReader &reader, TransferReader::Item item, Read *out) {
    out->items.push_back(item);
    switch (item) {
    case TransferReader::Item::header: out->header = reader.header(); break;
    case TransferReader::Item::version: out->versions.push_back(reader.version()); break;
    case TransferReader::Item::stream: out->streams.push_back(reader.stream()); break;
    case TransferReader::Item::end: out->end = reader.end(); break;
    case TransferReader::Item::error: out->error = reader.error(); break;
    case TransferReader::Item::need_more: break;
    }
}

bool terminal(TransferReader::Item item) {
    return item == TransferReader::Item::end || item == TransferReader::Item::error;
}

// Feeds bytes in pieces of `piece` bytes (0: all at once), reading after
// each, then finishes; need_more answers are not recorded.
Read read_all(std::string_view bytes, std::size_t piece = 0) {
    TransferReader reader;
    Read out;
    if (piece == 0) piece = bytes.size() + 1;
    for (std::size_t at = 0; at < bytes.size(); at += piece) {
        reader.feed(bytes.substr(at, piece));
        for (TransferReader::Item item; (item = reader.next()) != TransferReader::Item::need_more;) {
            take(reader, item, &out);
            if (terminal(item)) break;
        }
        if (!out.items.empty() && terminal(out.items.back())) break;
    }
    if (out.items.empty() || !terminal(out.items.back())) {
        reader.finish();
        for (TransferReader::Item item;;) {
            item = reader.next();
            EXPECT_NE(item, TransferReader::Item::need_more);
            take(reader, item, &out);
            if (terminal(item)) break;
        }
    }
    out.offset = reader.offset();
    return out;
}

bool same(const TransferVersion &a, const TransferVersion &b) {
    return a.series_id == b.series_id && a.version == b.version && a.commit == b.commit && a.model == b.model &&
           a.training_data == b.training_data && a.plot_envelope == b.plot_envelope;
}

bool same(const TransferStream &a, const TransferStream &b) {
    return a.series_id == b.series_id && a.written_ms == b.written_ms && a.state == b.state;
}

// The reader's error for bytes, which it must refuse.
std::string refusal(const std::string &bytes) {
    const Read r = read_all(bytes);
    EXPECT_EQ(r.items.back(), TransferReader::Item::error);
    EXPECT_EQ(r.error.rfind("at byte ", 0), 0u) << r.error;
    return r.error;
}

std::string without_end() {
    Export e = sample();
    std::string bytes = e.bytes;
    bytes.resize(bytes.size() - (5 + 24 + 4));
    return bytes;
}

}  // namespace

TEST(Transfer, MagicIsFifteenBytes) {
    std::string out;
    append_transfer_magic(&out);
    EXPECT_EQ(out, std::string("anomaly-export\n"));
    EXPECT_EQ(out.size(), 15u);
}

TEST(Transfer, FramesAreBigEndianWithCrc) {
    std::string out;
    append_end(&out, TransferEnd{1, 2, 0x0102030405060708});
    ASSERT_EQ(out.size(), 5u + 24 + 4);
    EXPECT_EQ(out[0], 4);
    EXPECT_EQ(out.substr(1, 4), std::string("\0\0\0\x18", 4));
    EXPECT_EQ(out.substr(5, 8), std::string("\0\0\0\0\0\0\0\x01", 8));
    EXPECT_EQ(out.substr(21, 8), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
    const std::uint32_t crc = crc32(std::string_view(out).substr(0, 29));
    const std::string tail = {static_cast<char>(crc >> 24), static_cast<char>(crc >> 16), static_cast<char>(crc >> 8),
                              static_cast<char>(crc)};
    EXPECT_EQ(out.substr(29), tail);
}

TEST(Transfer, RoundTripOfEveryRecord) {
    const Export e = sample();
    const Read r = read_all(e.bytes);
    using I = TransferReader::Item;
    ASSERT_EQ(r.items, (std::vector<I>{I::header, I::version, I::stream, I::version, I::version, I::end})) << r.error;
    EXPECT_EQ(r.header.format, 1u);
    EXPECT_EQ(r.header.commits, 7u);
    EXPECT_EQ(r.header.since, 0u);
    EXPECT_EQ(r.header.created_ms, 1764000000999);
    ASSERT_EQ(r.versions.size(), 3u);
    EXPECT_TRUE(same(r.versions[0], e.versions[0]));
    EXPECT_TRUE(same(r.versions[1], e.versions[1]));
    EXPECT_TRUE(same(r.versions[2], e.versions[2]));
    EXPECT_TRUE(r.versions[1].plot_envelope.empty());
    for (const TransferVersion &v : r.versions) {
        std::string image;
        ASSERT_TRUE(decode_model(v.model, &image));
        EXPECT_EQ(v.image, image);
        EXPECT_EQ(image_version(v.image), v.version);
    }
    ASSERT_EQ(r.streams.size(), 1u);
    EXPECT_TRUE(same(r.streams[0], e.streams[0]));
    EXPECT_EQ(r.end.versions, 3u);
    EXPECT_EQ(r.end.streams, 1u);
    EXPECT_EQ(r.end.commits, 7u);
    EXPECT_EQ(r.offset, e.bytes.size());
}

TEST(Transfer, AnEmptyExportIsWhole) {
    std::string bytes;
    append_transfer_magic(&bytes);
    append_header(&bytes, header_of_export(0));
    append_end(&bytes, TransferEnd{0, 0, 0});
    using I = TransferReader::Item;
    EXPECT_EQ(read_all(bytes).items, (std::vector<I>{I::header, I::end}));
}

TEST(Transfer, AFormat1ModelRecordIsCarriedAsIs) {
    TransferVersion v = version_of("old", 4);
    std::string image;
    ASSERT_TRUE(decode_model(v.model, &image));
    v.model = encode_model_format1(anomaly_test::three_sigma_model_of(image));
    std::string bytes;
    append_transfer_magic(&bytes);
    append_header(&bytes, header_of_export());
    ASSERT_TRUE(append_version(&bytes, v));
    append_end(&bytes, TransferEnd{1, 0, 7});
    const Read r = read_all(bytes);
    ASSERT_EQ(r.items.back(), TransferReader::Item::end) << r.error;
    EXPECT_EQ(r.versions[0].model, v.model);
    EXPECT_EQ(image_version(r.versions[0].image), 4u);
}

// However the bytes arrive, the reader gives the same records.
TEST(Transfer, OneByteAtATimeReadsTheSame) {
    const Export e = sample();
    const Read whole = read_all(e.bytes);
    for (std::size_t piece : {1, 2, 3, 7, 64, 1000}) {
        const Read r = read_all(e.bytes, piece);
        EXPECT_EQ(r.items, whole.items) << piece;
        ASSERT_EQ(r.versions.size(), whole.versions.size());
        for (std::size_t i = 0; i < r.versions.size(); i++) {
            EXPECT_TRUE(same(r.versions[i], whole.versions[i]));
            EXPECT_EQ(r.versions[i].image, whole.versions[i].image);
        }
        ASSERT_EQ(r.streams.size(), 1u);
        EXPECT_TRUE(same(r.streams[0], whole.streams[0]));
        EXPECT_EQ(r.offset, e.bytes.size());
    }
    // And so do the refusals, at the same byte.
    std::string damaged = e.bytes;
    damaged[200] ^= 1;
    const std::string error = read_all(damaged).error;
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(read_all(damaged, 1).error, error);
    EXPECT_EQ(read_all(without_end(), 1).error, read_all(without_end()).error);
}

// The end is only reported once nothing can follow it.
TEST(Transfer, EndWaitsForFinish) {
    const Export e = sample();
    TransferReader reader;
    reader.feed(e.bytes);
    int records = 0;
    TransferReader::Item item;
    while ((item = reader.next()) != TransferReader::Item::need_more) {
        ASSERT_NE(item, TransferReader::Item::error) << reader.error();
        ASSERT_NE(item, TransferReader::Item::end);
        records++;
    }
    EXPECT_EQ(records, 5);
    EXPECT_EQ(reader.offset(), e.bytes.size());
    reader.finish();
    EXPECT_EQ(reader.next(), TransferReader::Item::end);
    EXPECT_EQ(reader.next(), TransferReader::Item::end);
    EXPECT_EQ(reader.end().versions, 3u);
}

TEST(Transfer, MovingAVersionOut) {
    const Export e = sample();
    TransferReader reader;
    reader.feed(e.bytes);
    ASSERT_EQ(reader.next(), TransferReader::Item::header);
    ASSERT_EQ(reader.next(), TransferReader::Item::version);
    const std::string data = std::move(reader.version().training_data);
    EXPECT_EQ(data, e.versions[0].training_data);
}

TEST(Transfer, RefusesBadMagic) {
    EXPECT_NE(refusal("anomaly-expert\n").find("not an anomaly export"), std::string::npos);
    // Known at the first wrong byte, before the rest arrives.
    TransferReader reader;
    reader.feed("{\"");
    EXPECT_EQ(reader.next(), TransferReader::Item::error);
    EXPECT_NE(refusal("anomaly-ex").find("truncated"), std::string::npos);
    EXPECT_NE(refusal("").find("truncated"), std::string::npos);
}

TEST(Transfer, RefusesABadCrc) {
    Export e = sample();
    // A byte inside the first version's training data.
    e.bytes[15 + 37 + 200] ^= 0x20;
    const std::string error = refusal(e.bytes);
    EXPECT_NE(error.find("CRC-32"), std::string::npos) << error;
    EXPECT_EQ(error.rfind("at byte 52 ", 0), 0u) << error;  // the version record starts after the header's 37 bytes
    // The CRC itself damaged.
    Export f = sample();
    f.bytes[15 + 36] ^= 1;
    EXPECT_NE(refusal(f.bytes).find("CRC-32"), std::string::npos);
}

TEST(Transfer, RefusesTruncation) {
    const Export e = sample();
    // Inside a record, at every length short of the end record.
    for (std::size_t cut : {16, 20, 51, 60, 300, 1000}) {
        const std::string error = refusal(e.bytes.substr(0, cut));
        EXPECT_NE(error.find("truncated"), std::string::npos) << cut << ": " << error;
    }
    EXPECT_NE(refusal(e.bytes.substr(0, e.bytes.size() - 1)).find("middle of a record"), std::string::npos);
    // Whole records, but no end.
    const std::string error = refusal(without_end());
    EXPECT_NE(error.find("without its end record"), std::string::npos) << error;
    EXPECT_EQ(error, "at byte " + std::to_string(without_end().size()) +
                         " of the export, the export ends without its end record: it is truncated");
}

TEST(Transfer, RefusesAnythingAfterTheEnd) {
    Export e = sample();
    std::string after = e.bytes;
    ASSERT_TRUE(append_version(&after, version_of("late", 1)));
    EXPECT_NE(refusal(after).find("after the end record"), std::string::npos);
    EXPECT_NE(refusal(e.bytes + "\n").find("after the end record"), std::string::npos);
    std::string twice = e.bytes;
    append_end(&twice, TransferEnd{3, 1, 7});
    EXPECT_NE(refusal(twice).find("after the end record"), std::string::npos);
}

TEST(Transfer, RefusesWrongCounts) {
    for (const TransferEnd &end : {TransferEnd{2, 1, 7}, TransferEnd{3, 0, 7}, TransferEnd{4, 1, 7}, TransferEnd{3, 1, 8}}) {
        std::string bytes = without_end();
        append_end(&bytes, end);
        const std::string error = refusal(bytes);
        EXPECT_NE(error.find("end record"), std::string::npos) << error;
    }
}

TEST(Transfer, RefusesRecordsOutOfOrder) {
    std::string bytes;
    append_transfer_magic(&bytes);
    ASSERT_TRUE(append_version(&bytes, version_of("s", 1)));
    EXPECT_NE(refusal(bytes).find("not the header"), std::string::npos);
    // Known from the record's first byte.
    TransferReader reader;
    reader.feed(bytes.substr(0, 16));
    EXPECT_EQ(reader.next(), TransferReader::Item::error);

    bytes.clear();
    append_transfer_magic(&bytes);
    append_header(&bytes, header_of_export());
    append_header(&bytes, header_of_export());
    EXPECT_NE(refusal(bytes).find("second header"), std::string::npos);

    bytes.clear();
    append_transfer_magic(&bytes);
    append_end(&bytes, TransferEnd{});
    EXPECT_NE(refusal(bytes).find("not the header"), std::string::npos);
}

TEST(Transfer, RefusesBadFraming) {
    std::string bytes;
    append_transfer_magic(&bytes);
    append_header(&bytes, header_of_export());
    std::string unknown = bytes + std::string("\x05\0\0\0\0", 5);
    EXPECT_NE(refusal(unknown).find("unknown type 5"), std::string::npos);
    // Too long, said before the payload arrives.
    TransferReader reader;
    reader.feed(bytes + std::string("\x02\x10\0\0\x01", 5));
    EXPECT_EQ(reader.next(), TransferReader::Item::header);
    EXPECT_EQ(reader.next(), TransferReader::Item::error);
    EXPECT_NE(reader.error().find("more than the 268435456"), std::string::npos) << reader.error();
    // A header of another size.
    std::string short_header;
    append_transfer_magic(&short_header);
    short_header += std::string("\x01\0\0\0\x04\0\0\0\x01", 9);
    EXPECT_NE(refusal(short_header).find("not 28"), std::string::npos);
    // Lengths inside a version that overrun its record: written with a valid CRC.
    TransferVersion v = version_of("s", 1);
    std::string one;
    ASSERT_TRUE(append_version(&one, v));
    std::string payload = one.substr(5, one.size() - 9);
    payload[1 + 1 + 4 + 8] = 0x7f;  // the model's length
    std::string framed = std::string(1, '\x02') + one.substr(1, 4) + payload;
    const std::uint32_t crc = crc32(framed);
    for (int i = 3; i >= 0; i--) framed.push_back(static_cast<char>(crc >> (8 * i)));
    std::string overrun = bytes + framed;
    append_end(&overrun, TransferEnd{1, 0, 7});
    EXPECT_NE(refusal(overrun).find("do not add up"), std::string::npos);
}

TEST(Transfer, RefusesAnotherFormat) {
    std::string bytes;
    append_transfer_magic(&bytes);
    TransferHeader h = header_of_export();
    h.format = 2;
    append_header(&bytes, h);
    append_end(&bytes, TransferEnd{0, 0, 7});
    EXPECT_NE(refusal(bytes).find("format 2"), std::string::npos);
}

// A version or stream record whose bytes the store could not use.
TEST(Transfer, RefusesBadRecords) {
    auto with_version = [](const TransferVersion &v) {
        std::string bytes;
        append_transfer_magic(&bytes);
        append_header(&bytes, header_of_export());
        EXPECT_TRUE(append_version(&bytes, v));
        append_end(&bytes, TransferEnd{1, 0, 7});
        return bytes;
    };
    TransferVersion v = version_of("s", 3);
    v.series_id = "a/b";
    EXPECT_NE(refusal(with_version(v)).find("not valid"), std::string::npos);
    v.series_id = "";
    EXPECT_NE(refusal(with_version(v)).find("not valid"), std::string::npos);
    v.series_id = std::string(129, 'x');
    EXPECT_NE(refusal(with_version(v)).find("not valid"), std::string::npos);

    v = version_of("s", 3);
    v.model = "not a model";
    EXPECT_NE(refusal(with_version(v)).find("model record that does not decode"), std::string::npos);
    v.model.clear();
    EXPECT_NE(refusal(with_version(v)).find("model record that does not decode"), std::string::npos);

    v = version_of("s", 3);
    v.version = 4;  // the image says 3
    const std::string mismatch = refusal(with_version(v));
    EXPECT_NE(mismatch.find("\"s\" v4 holds the model of v3"), std::string::npos) << mismatch;
    v.version = 0;
    EXPECT_NE(refusal(with_version(v)).find("version 0"), std::string::npos);

    v = version_of("s", 3);
    v.training_data.pop_back();
    EXPECT_NE(refusal(with_version(v)).find("training data"), std::string::npos);
    v = version_of("s", 3);
    v.plot_envelope[0] = 9;
    EXPECT_NE(refusal(with_version(v)).find("plot envelope"), std::string::npos);

    auto with_stream = [](const TransferStream &s) {
        std::string bytes;
        append_transfer_magic(&bytes);
        append_header(&bytes, header_of_export());
        EXPECT_TRUE(append_stream(&bytes, s));
        append_end(&bytes, TransferEnd{0, 1, 7});
        return bytes;
    };
    TransferStream s = stream_of("st", 5);
    s.state[0] = 9;  // its format
    EXPECT_NE(refusal(with_stream(s)).find("state this build cannot run"), std::string::npos);
    s = stream_of("st", 5);
    s.state.resize(s.state.size() - 8);
    EXPECT_NE(refusal(with_stream(s)).find("state this build cannot run"), std::string::npos);
    s = stream_of("st", 5);
    s.state.resize(20);
    EXPECT_NE(refusal(with_stream(s)).find("state this build cannot run"), std::string::npos);
    s = stream_of("st/x", 5);
    EXPECT_NE(refusal(with_stream(s)).find("not valid"), std::string::npos);
}

TEST(Transfer, WritersRefuseWhatCannotBeFramed) {
    std::string out = "x";
    TransferVersion v = version_of("s", 1);
    v.series_id = std::string(256, 'a');
    EXPECT_FALSE(append_version(&out, v));
    TransferStream s = stream_of("s", 1);
    s.series_id = std::string(300, 'a');
    EXPECT_FALSE(append_stream(&out, s));
    EXPECT_EQ(out, "x");
}

TEST(Transfer, FeedingAfterFinishIsAnError) {
    TransferReader reader;
    reader.finish();
    reader.feed("anomaly-export\n");
    EXPECT_EQ(reader.next(), TransferReader::Item::error);
}
