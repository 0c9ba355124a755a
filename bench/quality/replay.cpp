// Offline replay of NAB-layout series through the stream detectors, for
// tuning them without a server. Every file under <nab>/data is replayed in
// order from its first point, one observe per row, exactly as a client
// POSTing /observe would (a new stream per file, seeded by its name); the
// anomaly_score / 100 of every row is written to a JSON file, which
// nab_score.py then scores (all profiles of <nab>/config/profiles.json, at
// NAB's optimal threshold). It also prints observe's speed per detector.
//
// Build and run from the repository root:
//   g++ -std=c++17 -O2 -Isrc -o build/replay bench/quality/replay.cpp src/core/stream.cpp \
//       src/core/streams/*.cpp src/core/model.cpp src/core/detector.cpp src/core/detectors/*.cpp \
//       src/core/series.cpp src/core/request.cpp src/core/encoding.cpp -lsimdjson
//   build/replay /work/shared/nab-dev build/replay.json adaptive adaptive:hourly=1 ...
// A detector is a name, optionally with parameters: name:key=value,key=value
// (warmup, recent, alpha, hourly, trees, sample, shingle, decay).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/model.hpp"
#include "core/stream.hpp"

using namespace anomaly;
namespace fs = std::filesystem;

namespace {

struct Series {
    std::string rel;  // category/file.csv
    std::vector<std::int64_t> timestamps;
    std::vector<double> values;
};

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "YYYY-MM-DD HH:MM:SS" (UTC) to Unix seconds.
bool parse_time(const std::string &s, std::int64_t *out) {
    int y, mo, d, h, mi, se;
    if (std::sscanf(s.c_str(), "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &se) != 6) return false;
    *out = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 + mi * 60 + se;
    return true;
}

bool read_series(const fs::path &path, Series *s) {
    std::ifstream in(path);
    std::string line;
    if (!std::getline(in, line)) return false;
    while (std::getline(in, line)) {
        const std::size_t comma = line.find(',');
        if (comma == std::string::npos) continue;
        std::int64_t t;
        if (!parse_time(line.substr(0, comma), &t)) return false;
        s->timestamps.push_back(t);
        s->values.push_back(std::strtod(line.c_str() + comma + 1, nullptr));
    }
    return true;
}

bool parse_detector(const std::string &spec, StreamParams *p) {
    const std::size_t colon = spec.find(':');
    if (!detector_from_name(spec.substr(0, colon), &p->kind)) return false;
    if (colon == std::string::npos) return true;
    std::stringstream rest(spec.substr(colon + 1));
    std::string kv;
    while (std::getline(rest, kv, ',')) {
        const std::size_t eq = kv.find('=');
        if (eq == std::string::npos) return false;
        const std::string k = kv.substr(0, eq);
        const double v = std::strtod(kv.c_str() + eq + 1, nullptr);
        if (k == "warmup") p->warmup = static_cast<std::uint32_t>(v);
        else if (k == "recent") p->recent = static_cast<std::uint32_t>(v);
        else if (k == "alpha") p->alpha = v;
        else if (k == "hourly") p->hourly = static_cast<std::uint8_t>(v);
        else if (k == "trees") p->trees = static_cast<std::uint32_t>(v);
        else if (k == "sample") p->sample = static_cast<std::uint32_t>(v);
        else if (k == "shingle") p->shingle = static_cast<std::uint32_t>(v);
        else if (k == "decay") p->decay = v;
        else return false;
    }
    return true;
}

std::uint64_t fnv(const std::string &s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s NAB_DIR OUT.json DETECTOR[:k=v,...] ...\n", argv[0]);
        return 2;
    }
    const fs::path nab = argv[1];
    std::vector<Series> corpus;
    for (const auto &entry : fs::recursive_directory_iterator(nab / "data")) {
        if (entry.path().extension() != ".csv") continue;
        Series s;
        s.rel = fs::relative(entry.path(), nab / "data").generic_string();
        if (!read_series(entry.path(), &s)) {
            std::fprintf(stderr, "%s: cannot read\n", entry.path().c_str());
            return 1;
        }
        corpus.push_back(std::move(s));
    }
    std::sort(corpus.begin(), corpus.end(), [](const Series &a, const Series &b) { return a.rel < b.rel; });

    std::string json = "{";
    for (int a = 3; a < argc; a++) {
        StreamParams p;
        if (!parse_detector(argv[a], &p)) {
            std::fprintf(stderr, "%s: not a detector with parameters\n", argv[a]);
            return 2;
        }
        if (Error e = resolve_stream_params(&p)) {
            std::fprintf(stderr, "%s: %s\n", argv[a], e.detail.c_str());
            return 2;
        }
        const std::size_t bytes = stream_state_bytes(p);
        std::vector<std::uint64_t> state(bytes / 8);
        double seconds = 0;
        std::size_t points = 0;
        json += (a > 3 ? ",\"" : "\"") + std::string(argv[a]) + "\":{";
        for (std::size_t f = 0; f < corpus.size(); f++) {
            const Series &s = corpus[f];
            init_stream(state.data(), p, 0, fnv(s.rel));
            std::vector<double> scores(s.values.size());
            const auto t0 = std::chrono::steady_clock::now();
            for (std::size_t i = 0; i < s.values.size(); i++)
                scores[i] = observe(*reinterpret_cast<StreamHeader *>(state.data()), s.timestamps[i], s.values[i])
                                .anomaly_score;
            seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            points += s.values.size();
            json += (f ? ",\"" : "\"") + s.rel + "\":[";
            for (std::size_t i = 0; i < scores.size(); i++) {
                char buf[32];
                std::snprintf(buf, sizeof buf, "%s%.9g", i ? "," : "", scores[i] / 100);
                json += buf;
            }
            json += "]";
        }
        json += "}";
        std::printf("%-40s %8zu bytes  %10.0f points/s\n", argv[a], bytes, points / seconds);
    }
    std::fflush(stdout);
    json += "}\n";
    std::ofstream(argv[2]) << json;

    // Scored by nab_score.py, beside this file.
    const std::string here = fs::path(__FILE__).parent_path().string();
    const std::string cmd = "python3 - '" + nab.string() + "' '" + argv[2] + "' <<'PY'\n"
        "import json, os, sys\n"
        "sys.path.insert(0, '" + here + "')\n"
        "import nab_score as ns\n"
        "nab, out = sys.argv[1], sys.argv[2]\n"
        "corpus = ns.read_corpus(nab)\n"
        "profiles = ns.load_profiles(os.path.join(nab, 'config', 'profiles.json'))\n"
        "runs = json.load(open(out))\n"
        "print('%-40s %9s %9s %9s' % ('detector', 'standard', 'low_FP', 'low_FN'))\n"
        "for det, per in runs.items():\n"
        "    files = [(ns.LabelledFile(rel, ts, w), per[rel]) for rel, ts, vals, w in corpus]\n"
        "    r = ns.nab_scores(files, profiles)\n"
        "    print('%-40s' % det + ''.join(' %9.1f' % r[p.name]['score'] for p in profiles))\n"
        "PY";
    return std::system(cmd.c_str()) == 0 ? 0 : 1;
}
