// libFuzzer target: stream states as a checkpoint or a dead worker leaves
// them. check_stream must refuse what it cannot run, without crashing; a
// state it accepts must take more points without crashing or leaving its
// own checks.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/encoding.hpp"
#include "core/stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    using namespace anomaly;
    // As a checkpoint record, and as the raw state in an aligned buffer.
    std::string state;
    std::int64_t ms = 0;
    (void)decode_checkpoint(std::string_view(reinterpret_cast<const char *>(data), size), &state, &ms);
    std::vector<std::uint64_t> buf(size / 8 + 1);
    if (size) std::memcpy(buf.data(), data, size);
    const std::string_view bytes(reinterpret_cast<const char *>(buf.data()), size);
    if (!check_stream(bytes)) return 0;
    auto &h = *reinterpret_cast<StreamHeader *>(buf.data());
    // Timestamps as a parsed body gives them (0 to kMaxTimestamp), moving on
    // from the state's last one.
    const std::int64_t last = h.last_timestamp == kNoTimestamp ? 0 : h.last_timestamp;
    const std::int64_t t0 = last < 0 || last > kMaxTimestamp - 16 ? 0 : last;
    for (int i = 1; i <= 16; i++) {
        const StreamPoint p = observe(h, t0 + i, i % 5 == 0 ? 1e6 : static_cast<double>(i % 3));
        if (!(p.anomaly_score >= 0 && p.anomaly_score <= 100)) __builtin_trap();
    }
    if (!check_stream(bytes)) __builtin_trap();
    return 0;
}
