#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets (clang, ASan, UBSan) and runs each
# for FUZZ_SECONDS (default 60). Crashes land in build/fuzz/<target>/ and fail
# the run; add each as a regression case to t/fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
out=build/fuzz
mkdir -p "$out"
core="src/core/request.cpp src/core/encoding.cpp src/core/series.cpp src/core/detector.cpp src/core/plot.cpp src/core/model.cpp src/core/parameters.cpp src/core/stream.cpp src/core/csv.cpp src/core/score.cpp src/core/render.cpp src/core/history.cpp $(echo src/core/detectors/*.cpp src/core/streams/*.cpp)"
core="$core src/core/transfer.cpp"
flags="-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I src"
status=0
for target in fit_body predict_body observe_body records stream_state csv_body transfer_body; do
    clang++ $flags -o "$out/$target" "t/fuzz/$target.cpp" $core -lsimdjson
    corpus=t/fuzz/corpus/${target%_body}
    [ "$target" = records ] && corpus=t/fuzz/corpus/records
    [ "$target" = stream_state ] && corpus=t/fuzz/corpus/streams
    mkdir -p "$corpus" "$out/$target.work"
    cp -n "$corpus"/* "$out/$target.work/" 2>/dev/null || true
    echo "fuzz: $target for ${seconds}s"
    if ! (cd "$out" && "./$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
            -artifact_prefix="$target-" "$target.work" 2>&1 | tail -4); then
        status=1
    fi
    if ls "$out/$target-"* >/dev/null 2>&1; then echo "fuzz: $target found a crash: $(ls "$out/$target-"*)"; status=1; fi
done
exit $status
