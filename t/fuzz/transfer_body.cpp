// libFuzzer target: POST /import bodies (the export format, transfer.hpp).
// Whatever the reader accepts must be what the writers write: the records it
// gave, written again, are exactly the bytes it read, and read back the
// same. Feeding the bytes in pieces gives the same answer as all at once.
// Each input is also read with its records' CRCs set right, so that the
// fuzzer reaches the checks behind the CRC.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/crc32.hpp"
#include "core/encoding.hpp"
#include "core/series.hpp"
#include "core/stream.hpp"
#include "core/transfer.hpp"

namespace {

using anomaly::TransferReader;

struct Read {
    std::vector<TransferReader::Item> items;
    std::string rewritten;  // the magic and every record given, written again
    std::string records;
    std::string error;
    std::uint64_t offset = 0;
    bool whole = false;
};

Read read(std::string_view bytes, std::size_t piece) {
    TransferReader reader;
    Read out;
    auto drain = [&]() {
        for (;;) {
            const TransferReader::Item item = reader.next();
            if (item == TransferReader::Item::need_more) return false;
            out.items.push_back(item);
            switch (item) {
            case TransferReader::Item::header: anomaly::append_header(&out.records, reader.header()); break;
            case TransferReader::Item::version: {
                const anomaly::TransferVersion &v = reader.version();
                std::string image;
                if (!anomaly::is_valid_series_id(v.series_id) || v.version == 0 ||
                    !anomaly::decode_model(v.model, &image) || image != v.image ||
                    anomaly::image_version(image) != v.version)
                    __builtin_trap();
                if (!anomaly::append_version(&out.records, v)) __builtin_trap();
                break;
            }
            case TransferReader::Item::stream: {
                const anomaly::TransferStream &s = reader.stream();
                if (!anomaly::is_valid_series_id(s.series_id) || !anomaly::check_stream(s.state)) __builtin_trap();
                if (!anomaly::append_stream(&out.records, s)) __builtin_trap();
                break;
            }
            case TransferReader::Item::end:
                anomaly::append_end(&out.records, reader.end());
                out.whole = true;
                return true;
            case TransferReader::Item::error:
                out.error = reader.error();
                if (out.error.rfind("at byte ", 0) != 0) __builtin_trap();
                return true;
            case TransferReader::Item::need_more: break;
            }
        }
    };
    bool done = false;
    for (std::size_t at = 0; at < bytes.size() && !done; at += piece) {
        reader.feed(bytes.substr(at, piece));
        done = drain();
    }
    if (!done) {
        reader.finish();
        if (!drain()) __builtin_trap();  // after finish() there is always an answer
    }
    // The answer does not change once given.
    const TransferReader::Item last = out.items.back();
    if (reader.next() != last) __builtin_trap();
    out.offset = reader.offset();
    if (out.offset >= anomaly::kTransferMagic.size()) anomaly::append_transfer_magic(&out.rewritten);
    out.rewritten += out.records;
    // An end record followed by more bytes was read, though never given.
    if (!out.whole && out.offset == out.rewritten.size() + 5 + 24 + 4) anomaly::append_end(&out.rewritten, reader.end());
    return out;
}

void check(std::string_view bytes) {
    const Read whole = read(bytes, bytes.size() + 1);
    // Everything read is exactly what the writers write.
    if (whole.offset > bytes.size() || whole.rewritten != bytes.substr(0, whole.offset)) __builtin_trap();
    if (whole.whole && whole.offset != bytes.size()) __builtin_trap();
    // And reads back the same.
    if (whole.whole) {
        const Read again = read(whole.rewritten, whole.rewritten.size() + 1);
        if (!again.whole || again.items != whole.items || again.rewritten != whole.rewritten) __builtin_trap();
    }
    // In pieces, the same records, the same verdict and the same error.
    for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}}) {
        if (piece >= bytes.size()) break;
        const Read pieces = read(bytes, piece);
        if (pieces.items != whole.items || pieces.rewritten != whole.rewritten || pieces.error != whole.error ||
            pieces.offset != whole.offset)
            __builtin_trap();
    }
}

// The input with every whole record's CRC made right.
std::string with_crcs(std::string_view bytes) {
    std::string out(bytes);
    std::size_t at = anomaly::kTransferMagic.size();
    while (at + 5 <= out.size()) {
        std::uint64_t length = 0;
        for (int i = 1; i <= 4; i++) length = (length << 8) | static_cast<unsigned char>(out[at + i]);
        if (length > out.size() - at - 5 || out.size() - at - 5 - length < 4) break;
        const std::uint32_t crc = anomaly::crc32(std::string_view(out).substr(at, 5 + length));
        for (int i = 0; i < 4; i++) out[at + 5 + length + i] = static_cast<char>(crc >> (8 * (3 - i)));
        at += 5 + length + 4;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char *>(data), size);
    check(bytes);
    const std::string fixed = with_crcs(bytes);
    if (fixed != bytes) check(fixed);
    return 0;
}
