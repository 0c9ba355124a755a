#include "core/transfer.hpp"

#include <algorithm>

#include "core/crc32.hpp"
#include "core/encoding.hpp"
#include "core/series.hpp"
#include "core/stream.hpp"

namespace anomaly {

namespace {

constexpr std::size_t kFrameHead = 5;  // type and length
constexpr std::size_t kFrameTail = 4;  // CRC-32
constexpr std::size_t kHeaderPayload = 4 + 8 + 8 + 8;
constexpr std::size_t kEndPayload = 8 + 8 + 8;

void put_be(std::string *out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_be(std::string_view bytes, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
}

// Frames a payload already appended after a 5-byte placeholder at start.
void close_frame(std::string *out, std::size_t start, TransferType type) {
    const std::size_t length = out->size() - start - kFrameHead;
    (*out)[start] = static_cast<char>(type);
    for (int i = 0; i < 4; i++) (*out)[start + 1 + i] = static_cast<char>((length >> (8 * (3 - i))) & 0xff);
    put_be(out, crc32(std::string_view(out->data() + start, out->size() - start)), 4);
}

std::size_t open_frame(std::string *out) {
    const std::size_t start = out->size();
    out->append(kFrameHead, '\0');
    return start;
}

void put_bytes(std::string *out, std::string_view bytes) {
    put_be(out, bytes.size(), 4);
    out->append(bytes);
}

// Reads big-endian fields of one payload; any overrun sets failed.
class Fields {
public:
    explicit Fields(std::string_view bytes) : bytes_(bytes) {}
    std::uint64_t number(int n) {
        if (failed_ || bytes_.size() - at_ < static_cast<std::size_t>(n)) {
            failed_ = true;
            return 0;
        }
        const std::uint64_t v = get_be(bytes_, at_, n);
        at_ += static_cast<std::size_t>(n);
        return v;
    }
    std::string_view bytes(std::size_t n) {
        if (failed_ || bytes_.size() - at_ < n) {
            failed_ = true;
            return {};
        }
        const std::string_view v = bytes_.substr(at_, n);
        at_ += n;
        return v;
    }
    std::string_view id() { return bytes(static_cast<std::size_t>(number(1))); }
    std::string_view sized() { return bytes(static_cast<std::size_t>(number(4))); }
    bool failed() const { return failed_; }
    bool whole() const { return !failed_ && at_ == bytes_.size(); }

private:
    std::string_view bytes_;
    std::size_t at_ = 0;
    bool failed_ = false;
};

const char *type_name(std::uint8_t type) {
    switch (static_cast<TransferType>(type)) {
    case TransferType::header: return "header";
    case TransferType::version: return "version";
    case TransferType::stream: return "stream";
    case TransferType::end: return "end";
    }
    return "unknown";
}

// A series id for a message: the id when valid, else a note that it is not.
std::string named(std::string_view id) {
    if (is_valid_series_id(id)) return "\"" + std::string(id) + "\"";
    return "a series id that is not valid";
}

}  // namespace

void append_transfer_magic(std::string *out) { out->append(kTransferMagic); }

void append_header(std::string *out, const TransferHeader &h) {
    const std::size_t start = open_frame(out);
    put_be(out, h.format, 4);
    put_be(out, h.commits, 8);
    put_be(out, h.since, 8);
    put_be(out, static_cast<std::uint64_t>(h.created_ms), 8);
    close_frame(out, start, TransferType::header);
}

bool append_version(std::string *out, const TransferVersion &v) {
    const std::uint64_t payload = 1 + std::uint64_t{v.series_id.size()} + 4 + 8 + 12 + v.model.size() +
                                  v.training_data.size() + v.plot_envelope.size();
    if (v.series_id.size() > 255 || payload > kMaxTransferPayload) return false;
    out->reserve(out->size() + kFrameHead + payload + kFrameTail);
    const std::size_t start = open_frame(out);
    put_be(out, v.series_id.size(), 1);
    out->append(v.series_id);
    put_be(out, v.version, 4);
    put_be(out, v.commit, 8);
    put_bytes(out, v.model);
    put_bytes(out, v.training_data);
    put_bytes(out, v.plot_envelope);
    close_frame(out, start, TransferType::version);
    return true;
}

bool append_stream(std::string *out, const TransferStream &s) {
    const std::uint64_t payload = 1 + std::uint64_t{s.series_id.size()} + 8 + 4 + s.state.size();
    if (s.series_id.size() > 255 || payload > kMaxTransferPayload) return false;
    out->reserve(out->size() + kFrameHead + payload + kFrameTail);
    const std::size_t start = open_frame(out);
    put_be(out, s.series_id.size(), 1);
    out->append(s.series_id);
    put_be(out, static_cast<std::uint64_t>(s.written_ms), 8);
    put_bytes(out, s.state);
    close_frame(out, start, TransferType::stream);
    return true;
}

void append_end(std::string *out, const TransferEnd &e) {
    const std::size_t start = open_frame(out);
    put_be(out, e.versions, 8);
    put_be(out, e.streams, 8);
    put_be(out, e.commits, 8);
    close_frame(out, start, TransferType::end);
}

void TransferReader::feed(std::string_view bytes) {
    if (finished_) {
        if (state_ != State::failed) fail(consumed_ + (buffer_.size() - pos_), "bytes were fed after the export's end was announced");
        return;
    }
    // Drop what was read before the buffer grows: it holds one record and
    // what arrived after it, however long the export.
    if (pos_ == buffer_.size()) {
        buffer_.clear();
        pos_ = 0;
    } else if (pos_ > 0 && pos_ >= buffer_.size() / 2) {
        buffer_.erase(0, pos_);
        pos_ = 0;
    }
    buffer_.append(bytes);
}

void TransferReader::finish() { finished_ = true; }

void TransferReader::consume(std::size_t n) {
    pos_ += n;
    consumed_ += n;
}

TransferReader::Item TransferReader::fail(std::uint64_t at, const std::string &what) {
    state_ = State::failed;
    error_ = "at byte " + std::to_string(at) + " of the export, " + what;
    return Item::error;
}

TransferReader::Item TransferReader::next() {
    const std::string_view unread = std::string_view(buffer_).substr(pos_);
    switch (state_) {
    case State::failed: return Item::error;
    case State::done: return Item::end;
    case State::magic: {
        const std::size_t n = std::min(unread.size(), kTransferMagic.size());
        if (unread.substr(0, n) != kTransferMagic.substr(0, n))
            return fail(0, "the bytes are not an anomaly export (it starts with \"anomaly-export\" and a newline)");
        if (n < kTransferMagic.size()) {
            if (finished_) return fail(unread.size(), "the export ends inside its magic: it is truncated");
            return Item::need_more;
        }
        consume(kTransferMagic.size());
        state_ = State::header;
        return next();
    }
    case State::after_end:
        if (!unread.empty()) return fail(consumed_, "there are bytes after the end record");
        if (!finished_) return Item::need_more;
        state_ = State::done;
        return Item::end;
    case State::header:
    case State::body: break;
    }

    const std::uint64_t at = consumed_;
    if (unread.empty()) {
        if (finished_) return fail(at, "the export ends without its end record: it is truncated");
        return Item::need_more;
    }
    // What the first bytes of a record tell is checked before its payload arrives.
    const auto type = static_cast<std::uint8_t>(unread[0]);
    if (type < 1 || type > 4) return fail(at, "a record has the unknown type " + std::to_string(type));
    if (state_ == State::header && type != static_cast<std::uint8_t>(TransferType::header))
        return fail(at, std::string("the first record is a ") + type_name(type) + " record, not the header");
    if (state_ == State::body && type == static_cast<std::uint8_t>(TransferType::header))
        return fail(at, "a second header record follows the first");
    if (unread.size() < kFrameHead) {
        if (finished_) return fail(at, "the export ends in the middle of a record: it is truncated");
        return Item::need_more;
    }
    const std::uint64_t length = get_be(unread, 1, 4);
    if (length > kMaxTransferPayload)
        return fail(at, "a " + std::string(type_name(type)) + " record says it is " + std::to_string(length) +
                            " bytes long, more than the " + std::to_string(kMaxTransferPayload) + " a record may be");
    if ((type == static_cast<std::uint8_t>(TransferType::header) && length != kHeaderPayload) ||
        (type == static_cast<std::uint8_t>(TransferType::end) && length != kEndPayload))
        return fail(at, "the " + std::string(type_name(type)) + " record is " + std::to_string(length) +
                            " bytes long, not " + std::to_string(type == 1 ? kHeaderPayload : kEndPayload));
    const std::size_t whole = kFrameHead + static_cast<std::size_t>(length) + kFrameTail;
    if (unread.size() < whole) {
        // Nothing is reserved for the length said: memory follows the bytes that came.
        if (finished_) return fail(at, "the export ends in the middle of a record: it is truncated");
        return Item::need_more;
    }
    const std::uint32_t stored = static_cast<std::uint32_t>(get_be(unread, whole - kFrameTail, 4));
    if (crc32(unread.substr(0, whole - kFrameTail)) != stored)
        return fail(at, "the " + std::string(type_name(type)) + " record's CRC-32 does not match its bytes (it is damaged)");
    const std::string_view payload = unread.substr(kFrameHead, static_cast<std::size_t>(length));
    Item item = Item::error;
    switch (static_cast<TransferType>(type)) {
    case TransferType::header: item = read_header(payload, at); break;
    case TransferType::version: item = read_version(payload, at); break;
    case TransferType::stream: item = read_stream(payload, at); break;
    case TransferType::end: item = read_end(payload, at); break;
    }
    if (item == Item::error) return item;
    consume(whole);
    if (item == Item::end) return next();  // whole only once nothing follows
    return item;
}

TransferReader::Item TransferReader::read_header(std::string_view payload, std::uint64_t at) {
    Fields f(payload);
    TransferHeader h;
    h.format = static_cast<std::uint32_t>(f.number(4));
    h.commits = f.number(8);
    h.since = f.number(8);
    h.created_ms = static_cast<std::int64_t>(f.number(8));
    if (!f.whole()) return fail(at, "the header record does not hold its fields");
    if (h.format != kTransferFormat)
        return fail(at, "the export is in format " + std::to_string(h.format) + ", and this build reads format " +
                            std::to_string(kTransferFormat));
    header_ = h;
    state_ = State::body;
    return Item::header;
}

TransferReader::Item TransferReader::read_version(std::string_view payload, std::uint64_t at) {
    Fields f(payload);
    const std::string_view id = f.id();
    const std::uint32_t version = static_cast<std::uint32_t>(f.number(4));
    const std::uint64_t commit = f.number(8);
    const std::string_view model = f.sized(), data = f.sized(), envelope = f.sized();
    if (!f.whole()) return fail(at, "a version record's lengths do not add up to its size");
    if (!is_valid_series_id(id)) return fail(at, "a version record has " + named(id) + " ([A-Za-z0-9._:-]{1,128})");
    const std::string which = "the version record of \"" + std::string(id) + "\" v" + std::to_string(version);
    if (version == 0) return fail(at, "a version record of \"" + std::string(id) + "\" has version 0");
    TransferVersion v;
    if (!decode_model(model, &v.image)) return fail(at, which + " has a model record that does not decode");
    if (image_version(v.image) != version)
        return fail(at, which + " holds the model of v" + std::to_string(image_version(v.image)));
    TrainingData training;
    if (!decode_training_data(data, &training)) return fail(at, which + " has training data that does not decode");
    PlotEnvelope plot;
    if (!envelope.empty() && !decode_plot_envelope(envelope, &plot))
        return fail(at, which + " has a plot envelope that does not decode");
    v.series_id.assign(id);
    v.version = version;
    v.commit = commit;
    v.model.assign(model);
    v.training_data.assign(data);
    v.plot_envelope.assign(envelope);
    version_ = std::move(v);
    versions_++;
    return Item::version;
}

TransferReader::Item TransferReader::read_stream(std::string_view payload, std::uint64_t at) {
    Fields f(payload);
    const std::string_view id = f.id();
    const std::int64_t written_ms = static_cast<std::int64_t>(f.number(8));
    const std::string_view state = f.sized();
    if (!f.whole()) return fail(at, "a stream record's lengths do not add up to its size");
    if (!is_valid_series_id(id)) return fail(at, "a stream record has " + named(id) + " ([A-Za-z0-9._:-]{1,128})");
    TransferStream s;
    // A std::string's buffer is aligned for any scalar (operator new), as check_stream wants.
    s.state.assign(state);
    if (state.size() < sizeof(StreamHeader) || state.size() > kMaxStreamBytes || state.size() % 8 != 0 ||
        !check_stream(s.state))
        return fail(at, "the stream record of \"" + std::string(id) + "\" has a state this build cannot run");
    s.series_id.assign(id);
    s.written_ms = written_ms;
    stream_ = std::move(s);
    streams_++;
    return Item::stream;
}

TransferReader::Item TransferReader::read_end(std::string_view payload, std::uint64_t at) {
    Fields f(payload);
    TransferEnd e;
    e.versions = f.number(8);
    e.streams = f.number(8);
    e.commits = f.number(8);
    if (!f.whole()) return fail(at, "the end record does not hold its fields");
    if (e.versions != versions_ || e.streams != streams_)
        return fail(at, "the end record counts " + std::to_string(e.versions) + " versions and " +
                            std::to_string(e.streams) + " streams, but the export holds " + std::to_string(versions_) +
                            " and " + std::to_string(streams_) + " (records are missing)");
    if (e.commits != header_.commits)
        return fail(at, "the end record says " + std::to_string(e.commits) + " commits and the header " +
                            std::to_string(header_.commits));
    end_ = e;
    state_ = State::after_end;
    return Item::end;
}

}  // namespace anomaly
