// Helpers for bench/run.sh, built on the same core and store as the module:
//   tools body N FILE        writes a fit body of N points
//   tools parse FILE         times simdjson alone on FILE (best of 5), in ms
//   tools seed DIR N POINTS [VERSIONS]  stores series s0..s<N-1>, one version each (or VERSIONS)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>

#include <simdjson.h>

#include "core/detector.hpp"
#include "core/encoding.hpp"
#include "store/store.hpp"

using namespace anomaly;

namespace {

int write_body(long n, const char *path) {
    std::mt19937_64 rng(42);
    std::normal_distribution<double> noise(100.0, 5.0);
    std::string out = "{\"timestamps\":[";
    for (long i = 0; i < n; i++) {
        if (i) out += ',';
        out += std::to_string(1700000000L + i * 60);
    }
    out += "],\"values\":[";
    char buf[32];
    for (long i = 0; i < n; i++) {
        if (i) out += ',';
        std::snprintf(buf, sizeof(buf), "%.4f", noise(rng));
        out += buf;
    }
    out += "]}";
    std::ofstream(path, std::ios::binary) << out;
    return 0;
}

// The least a parser must do with a fit body: visit every number. Both
// simdjson APIs are timed (best of 5 each, warm parsers) and the faster one
// is the baseline.
int time_parse(const char *path) {
    simdjson::padded_string json = simdjson::padded_string::load(path);
    simdjson::ondemand::parser on_demand;
    simdjson::dom::parser dom;
    double best = 1e9;
    double sink = 0;
    for (int round = 0; round < 10; round++) {
        auto start = std::chrono::steady_clock::now();
        if (round % 2 == 0) {
            simdjson::ondemand::document doc = on_demand.iterate(json);
            for (std::int64_t t : doc["timestamps"].get_array()) sink += static_cast<double>(t);
            for (double v : doc["values"].get_array()) sink += v;
        } else {
            simdjson::dom::element root = dom.parse(json);
            for (std::int64_t t : root["timestamps"].get_array()) sink += static_cast<double>(t);
            for (double v : root["values"].get_array()) sink += v;
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (ms < best) best = ms;
    }
    if (sink == 42) std::cerr << "";  // keep the sums alive
    std::printf("%.3f\n", best);
    return 0;
}

int seed(const char *dir, long n, long points, long versions) {
    std::unique_ptr<Store> store;
    std::string error;
    if (Store::open(dir, &store, &error) != Store::OpenResult::opened) {
        std::cerr << "seed: " << error << "\n";
        return 1;
    }
    std::mt19937_64 rng(7);
    std::normal_distribution<double> noise(55.0, 3.0);
    std::vector<Store::NewVersion> batch;
    TrainingData data;
    for (long k = 0; k < n * versions; k++) {
        const long i = k % n;
        data.timestamps.clear();
        data.values.clear();
        for (long p = 0; p < points; p++) {
            data.timestamps.push_back(1700000000L + p * 60);
            data.values.push_back(noise(rng));
        }
        Store::NewVersion v;
        v.series_id = "s" + std::to_string(i);
        if (Error e = train(data, DetectorParams(), &v.model)) {
            std::cerr << "seed: " << e.detail << "\n";
            return 1;
        }
        set_image_version(&v.model, static_cast<std::uint32_t>(k / n + 1), 1700000000000LL);
        v.training_data = encode_training_data(data);
        batch.push_back(std::move(v));
        if (batch.size() == (points > 100 ? 1000u : 10000u) || k == n * versions - 1) {
            if (!store->commit(batch, &error)) {
                std::cerr << "seed: " << error << "\n";
                return 1;
            }
            batch.clear();
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "body" && argc == 4) return write_body(std::atol(argv[2]), argv[3]);
    if (cmd == "parse" && argc == 3) return time_parse(argv[2]);
    if (cmd == "seed" && (argc == 5 || argc == 6))
        return seed(argv[2], std::atol(argv[3]), std::atol(argv[4]), argc == 6 ? std::atol(argv[5]) : 1);
    std::cerr << "usage: tools body N FILE | parse FILE | seed DIR N POINTS [VERSIONS]\n";
    return 2;
}
