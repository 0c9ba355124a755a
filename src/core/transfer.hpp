// The export format ("anomaly export", format 1): what GET /export streams
// and POST /import reads (CONTRACT section 9), for backups, restores and
// moving series between nodes. Every field is described in
// docs/export-format.md; in short, after a 15-byte magic, framed records:
//
//   u8 type | u32 payload length | payload | u32 CRC-32 of the 5 + length bytes before it
//
// a header first, then versions and stream checkpoints in any order, then an
// end record that counts them. All integers are big-endian. A record's
// payloads (model records, training data, plot envelopes, stream states)
// are the store's own bytes, unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace anomaly {

constexpr std::string_view kTransferMagic = "anomaly-export\n";  // 15 bytes
constexpr std::uint32_t kTransferFormat = 1;
// A record's payload at most: a version's training data of about 28 million
// points (a fit of more, with anomaly_max_points raised, cannot be exported).
constexpr std::uint32_t kMaxTransferPayload = 256u << 20;

enum class TransferType : std::uint8_t { header = 1, version = 2, stream = 3, end = 4 };

struct TransferHeader {
    std::uint32_t format = kTransferFormat;
    std::uint64_t commits = 0;     // the store's commit count the export is consistent with
    std::uint64_t since = 0;       // the ?since= asked, 0 for everything
    std::int64_t created_ms = 0;   // Unix milliseconds
};

struct TransferVersion {
    std::string series_id;
    std::uint32_t version = 0;
    std::uint64_t commit = 0;      // the store commit that wrote it, 0 when unknown
    std::string model;             // the model record, as kept under "m/" (encode_model())
    std::string training_data;     // as kept under "d/" (encode_training_data())
    std::string plot_envelope;     // as kept under "p/"; empty when the version has none
    // Filled by the reader, not written: the image decode_model() gives of model.
    std::string image;
};

struct TransferStream {
    std::string series_id;
    std::int64_t written_ms = 0;   // when the checkpoint was written, Unix milliseconds
    std::string state;             // the raw state (stream.hpp), as decode_checkpoint() gives it
};

struct TransferEnd {
    std::uint64_t versions = 0;    // version records written
    std::uint64_t streams = 0;     // stream records written
    std::uint64_t commits = 0;     // the header's commit count again
};

// Writers, appending to *out. A version or stream whose id is longer than
// 255 bytes, or whose record would pass kMaxTransferPayload, is not written:
// false, *out unchanged.
void append_transfer_magic(std::string *out);
void append_header(std::string *out, const TransferHeader &header);
bool append_version(std::string *out, const TransferVersion &version);
bool append_stream(std::string *out, const TransferStream &stream);
void append_end(std::string *out, const TransferEnd &end);

// Reads an export as its bytes arrive (a request body in pieces, a file),
// holding at most the record being read besides what was fed and not yet
// read. It checks everything an importer relies on: the magic, each
// record's framing, length and CRC, the order (the header first and once,
// the end last and once), each payload's fields, series ids, versions,
// that every model, training data, plot envelope and stream state decodes
// as the store would read it, and that the end's counts are those read.
// It cannot tell that a series' version appears twice: the importer can.
//
//   TransferReader reader;
//   reader.feed(piece); ... reader.finish();
//   for (;;) switch (reader.next()) { case need_more: feed more ...; case version: ...; }
class TransferReader {
public:
    enum class Item {
        need_more,  // feed more bytes (or call finish())
        header,     // header() holds the header record
        version,    // version() holds a version record, with its image
        stream,     // stream() holds a stream record
        // The end record was read, finish() was called and nothing follows:
        // the export is whole. end() holds the record. Returned again by
        // every later call.
        end,
        // error() says what is wrong; returned again by every later call.
        error,
    };

    void feed(std::string_view bytes);
    // No more bytes will come: an export without its end record is then
    // reported as truncated.
    void finish();
    Item next();

    const TransferHeader &header() const { return header_; }
    const TransferVersion &version() const { return version_; }
    TransferVersion &version() { return version_; }  // to move its bytes out
    const TransferStream &stream() const { return stream_; }
    TransferStream &stream() { return stream_; }
    const TransferEnd &end() const { return end_; }
    // One sentence naming the byte offset and what is wrong.
    const std::string &error() const { return error_; }
    // Bytes read so far: the magic and every whole record read (the end
    // record too, while the reader waits to see that nothing follows it).
    std::uint64_t offset() const { return consumed_; }

private:
    enum class State { magic, header, body, after_end, done, failed };
    Item fail(std::uint64_t at, const std::string &what);
    Item read_header(std::string_view payload, std::uint64_t at);
    Item read_version(std::string_view payload, std::uint64_t at);
    Item read_stream(std::string_view payload, std::uint64_t at);
    Item read_end(std::string_view payload, std::uint64_t at);
    void consume(std::size_t n);

    std::string buffer_;
    std::size_t pos_ = 0;          // where the unread bytes start in buffer_
    std::uint64_t consumed_ = 0;   // offset in the export of buffer_[pos_]
    State state_ = State::magic;
    bool finished_ = false;
    std::uint64_t versions_ = 0, streams_ = 0;
    TransferHeader header_;
    TransferVersion version_;
    TransferStream stream_;
    TransferEnd end_;
    std::string error_;
};

}  // namespace anomaly
