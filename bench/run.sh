#!/usr/bin/env bash
# make bench: measures predict and observe against nginx's own `return 200`,
# fits of 10 to 1M points, fits per second, observe batches, and predict and
# observe latency under concurrent large fits, in two setups. Prints a markdown table and writes RESULTS.md.
# BENCH_PARTS=a,b runs only those parts (predict, iforest, observe, fit, mixed,
# score, alerts, lifecycle) and writes the table to build/bench/RESULTS-parts.md instead.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
export BENCH_DIR=$top/bench
work=$top/build/bench
tools=$work/tools
nginx=${NGINX_BIN:-/usr/sbin/nginx}
duration=${BENCH_DURATION:-8}
series_max=${BENCH_SERIES:-1000000}
port=${BENCH_PORT:-18090}
mkdir -p "$work"

note() { echo "bench: $*" >&2; }
parts=${BENCH_PARTS:-all}
part() { [ "$parts" = all ] || [[ ",$parts," == *",$1,"* ]]; }

healthcheck() { curl -sf "http://127.0.0.1:$port/healthcheck"; }
field() { perl -MJSON::PP -e 'my $j = decode_json(<STDIN>); my $v = $j; $v = $v->{$_} for split /\./, $ARGV[0]; print $v' "$1"; }

start_nginx() {  # $1 workers, $2 affinity line; $store and $keep choose the store and anomaly_keep_versions
    local run=$work/run
    mkdir -p "$run"
    MODULE=$top/build/ngx_http_anomaly_module.so WORKERS=$1 AFFINITY=$2 RUN=$run STORE=${store:-$work/store} \
        KEEP=${keep:-all} PORT=$port \
        envsubst '${MODULE} ${WORKERS} ${AFFINITY} ${RUN} ${STORE} ${KEEP} ${PORT}' < bench/nginx.conf > "$run/nginx.conf"
    "$nginx" -p "$run/" -c "$run/nginx.conf"
    local t0=$SECONDS
    until [ "$(healthcheck 2>/dev/null | field store.state 2>/dev/null)" = ready ]; do
        sleep 0.2
        if [ $((SECONDS - t0)) -gt 120 ]; then note "nginx did not become ready"; tail "$run/error.log"; exit 1; fi
    done
    note "ready after $((SECONDS - t0)) s with $(healthcheck | field versions_stored) versions"
}

stop_nginx() {
    local pid
    pid=$(cat "$work/run/nginx.pid" 2>/dev/null) || return 0
    kill -QUIT "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$work/run/nginx.pid"
}
trap stop_nginx EXIT

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

# wrk_run NAME CONNS SCRIPT [env...] -> sets rps p50 p99
wrk_run() {
    local conns=$1 script=$2; shift 2
    local out
    out=$(env "$@" $wrk_prefix wrk -t"$wrk_threads" -c"$conns" -d"${duration}s" --timeout 10s \
          -s "bench/wrk/$script" "http://127.0.0.1:$port" | grep '^RESULT')
    rps=$(sed -E 's/.*rps=([^ ]+).*/\1/' <<<"$out")
    p50=$(sed -E 's/.*p50_ms=([^ ]+).*/\1/' <<<"$out")
    p99=$(sed -E 's/.*p99_ms=([^ ]+).*/\1/' <<<"$out")
    local bad
    bad=$(sed -E 's/.*non2xx=([0-9]+) errors=([0-9]+).*/\1+\2/' <<<"$out")
    if [ "$((bad))" != 0 ]; then note "$script $*: $bad failed requests"; fi
}

# Each observe run starts its timestamps past every earlier run's.
observe_run=0
next_t0() { observe_run=$((observe_run + 1)); t0=$((1700000000 + observe_run * 100000000)); }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# ---- preparation ----
note "building tools"
g++ -std=c++17 -O2 -I src -o "$tools" bench/tools.cpp src/store/store.cpp src/core/*.cpp src/core/detectors/*.cpp src/core/streams/*.cpp \
    -lleveldb -lsimdjson -lpthread
for n in 10 1000 100000 1000000; do
    [ -f "$work/body-$n.json" ] || "$tools" body "$n" "$work/body-$n.json"
done
# The zone's fixed part (statistics, tree root) is measured on an empty store
# so that the per-version figure counts versions only.
rm -rf "$work/store"
start_nginx 1 ""
free_empty=$(healthcheck | field zone.bytes_free)
stop_nginx
rm -rf "$work/store"
t0=$(date +%s.%N)
"$tools" seed "$work/store" "$series_max" 10
note "seeded $series_max series in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
parse_ms=$("$tools" parse "$work/body-1000000.json")

declare -A predict_p99 observe_p99 fit_1m_server fit_1m_client
if part lifecycle; then
    # 1000 series of 100 versions each, 1000 points a version, written to a
    # store of their own (the export and import measure moves them).
    lifecycle_versions=${BENCH_LIFECYCLE_VERSIONS:-100}
    rm -rf "$work/store-lifecycle"
    t0=$(date +%s.%N)
    "$tools" seed "$work/store-lifecycle" 1000 1000 "$lifecycle_versions"
    note "seeded 1000 series x $lifecycle_versions versions in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi
for setup in pinned auto; do
    if [ $setup = pinned ]; then
        start_nginx 1 "worker_cpu_affinity 01;"
        wrk_prefix="taskset -c 1"; wrk_threads=1
    else
        start_nginx auto ""
        wrk_prefix=""; wrk_threads=2
    fi
    if [ $setup = pinned ]; then  # the seeded series only, one version each
        versions=$(healthcheck | field versions_stored)
        bytes_per_version=$(( (free_empty - $(healthcheck | field zone.bytes_free)) / versions ))
    fi

    if part predict; then
        # predict against return 200, alternating, at 1, 10k and 1M series
        for series in 1 10000 "$series_max"; do
            for round in 1 2; do
                wrk_run 100 predict.lua TARGET=baseline SERIES="$series"
                b_rps=$rps; b_p50=$p50; b_p99=$p99
                wrk_run 100 predict.lua SERIES="$series"
                row "$setup" "predict, $series series (round $round)" "$rps" "$p50" "$p99" "$(ratio "$rps" "$b_rps")"
                row "$setup" "return 200, same requests (round $round)" "$b_rps" "$b_p50" "$b_p99" "1.00"
                predict_p99[$setup.$series]=$p99
            done
        done
    fi

    if part iforest; then
        # predict with an Isolation Forest version (100 trees, 256 points a
        # tree) of a 1000-point series, against return 200, alternating
        curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/body-1000.json" \
            "http://127.0.0.1:$port/fit/forest?detector=iforest" || { note "iforest fit failed"; exit 1; }
        for round in 1 2; do
            wrk_run 100 predict.lua TARGET=baseline ID=forest
            b_rps=$rps; b_p50=$p50; b_p99=$p99
            wrk_run 100 predict.lua ID=forest
            row "$setup" "predict, iforest version, 100 trees (round $round)" "$rps" "$p50" "$p99" "$(ratio "$rps" "$b_rps")"
            row "$setup" "return 200, same requests (round $round)" "$b_rps" "$b_p50" "$b_p99" "1.00"
        done
        if [ $setup = pinned ]; then
            forest_bytes=$(curl -sf "http://127.0.0.1:$port/healthcheck" | perl -MJSON::PP -e \
                'my $j = decode_json(<STDIN>); print join(", ", map { "$_->{name} " . ($_->{zone_bytes_per_version} // "-") } @{$j->{detectors}})')
        fi
    fi

    if part observe; then
        # streams: single-point observes against return 200 (10,000 adaptive
        # streams; 1,000 of pattern and of rcf, whose states are 28 KB and 172 KB;
        # timestamps increasing so every point is learned), then 1000-point
        # batches into one stream on one connection: the points a worker core
        # learns per second.
        declare -A stream_count=([adaptive]=10000 [pattern]=1000 [rcf]=1000)
        for det in adaptive pattern rcf; do
            n=${stream_count[$det]}
            for round in 1 2; do
                wrk_run 100 observe.lua TARGET=baseline SERIES=$n DETECTOR=$det PREFIX=o_${det}_
                b_rps=$rps; b_p50=$p50; b_p99=$p99
                next_t0
                wrk_run 100 observe.lua SERIES=$n DETECTOR=$det PREFIX=o_${det}_ T0="$t0"
                row "$setup" "observe 1 point, $det, $n streams (round $round)" "$rps" "$p50" "$p99" "$(ratio "$rps" "$b_rps")"
                row "$setup" "return 200, same requests (round $round)" "$b_rps" "$b_p50" "$b_p99" "1.00"
                observe_p99[$setup.$det]=$p99
            done
        done
        for det in rcf pattern; do
            next_t0
            out=$(env POINTS=1000 DETECTOR=$det PREFIX=batch_${det}_ T0="$t0" $wrk_prefix wrk -t1 -c1 -d"${duration}s" --timeout 30s \
                  -s bench/wrk/observe.lua "http://127.0.0.1:$port" | grep '^RESULT')
            b_rps=$(sed -E 's/.*rps=([^ ]+).*/\1/' <<<"$out")
            row "$setup" "observe 1000-point batches, $det, 1 connection" "$b_rps" "$(sed -E 's/.*p50_ms=([^ ]+).*/\1/' <<<"$out")" \
                "$(sed -E 's/.*p99_ms=([^ ]+).*/\1/' <<<"$out")" "$(awk -v r="$b_rps" 'BEGIN { printf "%.0f points/s", r * 1000 }')"
        done
        if [ $setup = pinned ]; then
            stream_bytes=$(healthcheck | perl -MJSON::PP -e \
                'my $j = decode_json(<STDIN>); print join(", ", map { "$_->{name} " . ($_->{zone_bytes_per_stream} // "-") } grep { $_->{kind} eq "stream" } @{$j->{detectors}})')
        fi
    fi

    if part fit; then
        # single fits: client time and server-side training latency, after one
        # untimed fit of the same size (a worker's first large fit also grows its
        # heap and its parser; that first time is reported on its own row)
        for n in 10 1000 100000 1000000; do
            first_ms=$(curl -s -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
                --data-binary "@$work/body-$n.json" "http://127.0.0.1:$port/fit/bench_size_$n" |
                awk '{ printf "%.3f", $1 * 1000 }')
            if [ "$n" = 1000000 ]; then row "$setup" "fit $n points, the first in this nginx (client ms)" "-" "$first_ms" "-" "-"; fi
            before_count=$(healthcheck | field training_latency_ms.count)
            before_avg=$(healthcheck | field training_latency_ms.avg)
            total=0
            for rep in 1 2 3; do
                t=$(curl -s -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
                    --data-binary "@$work/body-$n.json" "http://127.0.0.1:$port/fit/bench_size_$n")
                total=$(awk -v a="$total" -v b="$t" 'BEGIN{print a + b}')
            done
            after_count=$(healthcheck | field training_latency_ms.count)
            after_avg=$(healthcheck | field training_latency_ms.avg)
            server_ms=$(awk -v c1="$before_count" -v a1="$before_avg" -v c2="$after_count" -v a2="$after_avg" \
                'BEGIN { printf "%.3f", (a2 * c2 - a1 * c1) / (c2 - c1) }')
            client_ms=$(awk -v t="$total" 'BEGIN { printf "%.3f", t / 3 * 1000 }')
            row "$setup" "fit $n points (client ms / server ms)" "-" "$client_ms" "$server_ms" "-"
            if [ "$n" = 1000000 ]; then fit_1m_server[$setup]=$server_ms; fit_1m_client[$setup]=$client_ms; fi
        done

        wrk_run 32 fit.lua POINTS=1000
        row "$setup" "fits of 1000 points, 32 connections" "$rps" "$p50" "$p99" "-"
    fi

    # ---- score: /score against fits of the same body ----
    if part score; then
        # The 100k-point body: fitted, scored with ?detector=three_sigma
        # (trained on the body itself, nothing stored; target within 3x of
        # the fit), scored against the stored version, and scored with
        # ?detector=rcf (a fresh forest over every point; target 50,000
        # points/s a core, pinned is one core). Client ms, mean of 3 after
        # one untimed request of each.
        score_ms() {  # URL -> mean client ms of 3, after a warm-up
            local url=$1 total=0 out rep
            for rep in 0 1 2 3; do
                out=$(curl -s -o /dev/null -w '%{time_total} %{http_code}' -H 'Content-Type: application/json' \
                      --data-binary "@$work/body-100000.json" "$url")
                if [ "${out#* }" != 200 ]; then note "$url answered ${out#* }"; exit 1; fi
                [ "$rep" = 0 ] || total=$(awk -v a="$total" -v b="${out% *}" 'BEGIN { print a + b }')
            done
            awk -v t="$total" 'BEGIN { printf "%.1f", t / 3 * 1000 }'
        }
        fit_ms=$(score_ms "http://127.0.0.1:$port/fit/bench_score")
        sigma_ms=$(score_ms "http://127.0.0.1:$port/score/bench_score?detector=three_sigma")
        version_ms=$(score_ms "http://127.0.0.1:$port/score/bench_score")
        rcf_ms=$(score_ms "http://127.0.0.1:$port/score/bench_score?detector=rcf")
        row "$setup" "fit 100000 points (client ms)" "-" "$fit_ms" "-" "1.00"
        row "$setup" "score 100000 points, ?detector=three_sigma (client ms; ratio to the fit, target <= 3)" "-" \
            "$sigma_ms" "-" "$(ratio "$sigma_ms" "$fit_ms")"
        row "$setup" "score 100000 points against the stored version (client ms)" "-" "$version_ms" "-" \
            "$(ratio "$version_ms" "$fit_ms")"
        row "$setup" "score 100000 points, ?detector=rcf (client ms; points/s, target >= 50000 a core)" "-" \
            "$rcf_ms" "-" "$(awk -v ms="$rcf_ms" 'BEGIN { printf "%.0f points/s", 100000 / (ms / 1000) }')"
    fi

    # ---- alerts: predict with the history and an alert location ----
    if part alerts; then
        # A series that is never anomalous (1000 points around 100, predicted
        # at 100), through the plain /predict/ and through /predict-alert/
        # (anomaly_alert configured), alternating. The anomaly history is the
        # zone's, so both have it.
        curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/body-1000.json" \
            "http://127.0.0.1:$port/fit/calm" || { note "alerts: fit of calm failed"; exit 1; }
        # Three rounds, and the ratio of the sums: one round is at the
        # mercy of whatever else the machine runs.
        a_sum=0; p_sum=0
        for round in 1 2 3; do
            wrk_run 100 predict.lua ID=calm VALUE=100
            p_rps=$rps; p_p50=$p50; p_p99=$p99
            wrk_run 100 predict.lua ID=calm VALUE=100 LOCATION=/predict-alert/
            row "$setup" "predict with anomaly_alert, never anomalous (round $round)" "$rps" "$p50" "$p99" "$(ratio "$rps" "$p_rps") vs predict"
            row "$setup" "predict, same requests (round $round)" "$p_rps" "$p_p50" "$p_p99" "1.00"
            a_sum=$(awk -v a="$a_sum" -v b="$rps" 'BEGIN { print a + b }')
            p_sum=$(awk -v a="$p_sum" -v b="$p_rps" 'BEGIN { print a + b }')
        done
        row "$setup" "predict with anomaly_alert over predict, 3 rounds" "-" "-" "-" "$(ratio "$a_sum" "$p_sum") (target 0.95)"
        alerts_sent=$(healthcheck | field alerts.sent)
        [ "$alerts_sent" = 0 ] || note "alerts: $alerts_sent alerts were sent for a series meant never to be anomalous"
    fi

    if part lifecycle; then
        # Export and import of the seeded store, predict p99 with and
        # without an export running, and the zone's free bytes around a
        # delete and a retention pass.
        stop_nginx
        store=$work/store-lifecycle start_nginx "$( [ $setup = pinned ] && echo 1 || echo auto )" \
            "$( [ $setup = pinned ] && echo 'worker_cpu_affinity 01;' )"
        stored=$(healthcheck | field versions_stored)
        wrk_run 100 predict.lua SERIES=1000
        quiet_p99=$p99; quiet_rps=$rps
        t0=$(date +%s.%N)
        curl -sf -D "$work/export.headers" -o "$work/export.bin" "http://127.0.0.1:$port/export" ||
            { note "export failed"; exit 1; }
        export_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        export_mb=$(awk -v n="$(stat -c %s "$work/export.bin")" 'BEGIN { printf "%.0f", n / 1e6 }')
        row "$setup" "export of $stored versions of 1000 points ($export_mb MB, $export_s s)" \
            "$(awk -v n="$stored" -v s="$export_s" 'BEGIN { printf "%.0f versions/s", n / s }')" "-" "-" "-"
        # predict while exports run back to back (to /dev/null: the disk
        # is the export's own spool file)
        ( end=$((SECONDS + duration + 1)); while [ $SECONDS -lt $end ]; do
            curl -sf -o /dev/null "http://127.0.0.1:$port/export" || break; done ) &
        export_pid=$!
        sleep 0.5
        wrk_run 100 predict.lua SERIES=1000
        wait $export_pid || true
        row "$setup" "predict, 1000 series, quiet (p99 ms)" "$quiet_rps" "-" "$quiet_p99" "1.00"
        row "$setup" "predict, 1000 series, during exports (p99 ratio, target <= 2)" "$rps" "$p50" "$p99" \
            "$(ratio "$p99" "$quiet_p99")"
        stop_nginx
        rm -rf "$work/store-import"
        store=$work/store-import start_nginx "$( [ $setup = pinned ] && echo 1 || echo auto )" \
            "$( [ $setup = pinned ] && echo 'worker_cpu_affinity 01;' )"
        t0=$(date +%s.%N)
        imported=$(curl -sf -H 'Content-Type: application/octet-stream' --data-binary "@$work/export.bin" \
            "http://127.0.0.1:$port/import" | field versions_imported) || { note "import failed"; exit 1; }
        import_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        row "$setup" "import of $imported versions into an empty node ($import_s s)" \
            "$(awk -v n="$imported" -v s="$import_s" 'BEGIN { printf "%.0f versions/s", n / s }')" "-" "-" "-"
        # Delete: 200 versions of one 1000-point series fitted, then deleted.
        free0=$(healthcheck | field zone.bytes_free)
        for v in $(seq 200); do
            curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/body-1000.json" \
                "http://127.0.0.1:$port/fit/zone_probe?detector=iforest" || { note "fit failed"; exit 1; }
        done
        free1=$(healthcheck | field zone.bytes_free)
        curl -sf -o /dev/null -X DELETE "http://127.0.0.1:$port/series/zone_probe" || { note "delete failed"; exit 1; }
        sleep 1
        free2=$(healthcheck | field zone.bytes_free)
        row "$setup" "zone free bytes: before $free0, 200 iforest versions $free1, deleted $free2" "-" "-" "-" \
            "$(awk -v a="$free0" -v b="$free1" -v c="$free2" 'BEGIN { printf "%.3f%% of free, %.2f%% of what they took", (a - c) * 100 / a, (a - c) * 100 / (a - b) }')"
        stop_nginx
        # Retention: anomaly_keep_versions 3, 200 fits of one series.
        rm -rf "$work/store-import"
        keep=3 store=$work/store-import start_nginx "$( [ $setup = pinned ] && echo 1 || echo auto )" \
            "$( [ $setup = pinned ] && echo 'worker_cpu_affinity 01;' )"
        for v in 1 2 3; do
            curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/body-1000.json" \
                "http://127.0.0.1:$port/fit/kept?detector=iforest" || { note "fit failed"; exit 1; }
        done
        sleep 1
        free3=$(healthcheck | field zone.bytes_free)
        for v in $(seq 197); do
            curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/body-1000.json" \
                "http://127.0.0.1:$port/fit/kept?detector=iforest" || { note "fit failed"; exit 1; }
        done
        sleep 1
        free4=$(healthcheck | field zone.bytes_free)
        row "$setup" "zone free bytes, anomaly_keep_versions 3: 3 iforest versions $free3, after 200 fits $free4" "-" "-" "-" \
            "$(awk -v a="$free3" -v b="$free4" 'BEGIN { printf "%.3f%% of free", (a - b) * 100 / a }')"
        stop_nginx
        unset store keep
        start_nginx "$( [ $setup = pinned ] && echo 1 || echo auto )" "$( [ $setup = pinned ] && echo 'worker_cpu_affinity 01;' )"
    fi

    if part mixed; then
        # predict under 8 connections of 100k-point fits
        (env POINTS=100000 $wrk_prefix wrk -t1 -c8 -d"$((duration + 2))s" --timeout 30s -s bench/wrk/fit.lua \
            "http://127.0.0.1:$port" > "$work/mixed-fit.txt") &
        fit_pid=$!
        sleep 1
        wrk_run 100 predict.lua SERIES=10000
        wait $fit_pid
        mixed_fits=$(grep '^RESULT' "$work/mixed-fit.txt" | sed -E 's/.*requests=([0-9]+).*/\1/')
        row "$setup" "predict, 10000 series, with 8 conns of 100k-point fits ($mixed_fits fits)" "$rps" "$p50" "$p99" \
            "$(ratio "$p99" "${predict_p99[$setup.10000]:-0}") p99 ratio"

        # single-point rcf observes under 8 connections of 100k-point fits
        (env POINTS=100000 $wrk_prefix wrk -t1 -c8 -d"$((duration + 2))s" --timeout 30s -s bench/wrk/fit.lua \
            "http://127.0.0.1:$port" > "$work/mixed-fit.txt") &
        fit_pid=$!
        sleep 1
        next_t0
        wrk_run 100 observe.lua SERIES=1000 DETECTOR=rcf PREFIX=o_rcf_ T0="$t0"
        wait $fit_pid
        mixed_fits=$(grep '^RESULT' "$work/mixed-fit.txt" | sed -E 's/.*requests=([0-9]+).*/\1/')
        row "$setup" "observe 1 point, rcf, with 8 conns of 100k-point fits ($mixed_fits fits)" "$rps" "$p50" "$p99" \
            "$(ratio "$p99" "${observe_p99[$setup.rcf]:-0}") p99 ratio"
    fi

    stop_nginx
done

declare -p fit_1m_server >/dev/null 2>&1 || true
table=$(printf '%s\n' "| setup | test | requests/s | p50 ms | p99 ms | ratio |" "|---|---|---|---|---|---|" "${rows[@]}")
echo "$table"
if [ "$parts" != all ]; then
    echo "$table" > "$work/RESULTS-parts.md"
    note "wrote $work/RESULTS-parts.md (parts: $parts)"
    exit 0
fi
{
    echo "# Benchmark results"
    echo
    echo "Measured by \`make bench\` on $(date -u +%Y-%m-%d)."
    echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), $("$nginx" -v 2>&1 | sed 's/.*: //')."
    echo "wrk 100 connections, ${duration} s a run. pinned: 1 worker on CPU 0, wrk on CPU 1. auto: worker_processes auto, wrk unpinned."
    echo "Predict ratio: predict requests/s over the return 200 requests/s of the same round."
    echo
    echo "$table"
    echo
    echo "- simdjson alone parses the 1M-point body ($(( $(stat -c %s "$work/body-1000000.json") / 1000000 )) MB) in $parse_ms ms (the faster of its DOM and On Demand APIs, warm parsers, best of 5 each); a 1M-point fit (mean of 3, after one untimed fit of the same size) takes ${fit_1m_server[auto]} ms in the server (parse, validate, train, durable) with worker_processes auto, ${fit_1m_server[pinned]} ms pinned: $(ratio "${fit_1m_server[auto]}" "$parse_ms")x and $(ratio "${fit_1m_server[pinned]}" "$parse_ms")x."
    echo "- Shared memory per stored version (3-sigma model, one version per series, ids s0..s$((series_max - 1))): $bytes_per_version bytes, measured as the zone's free bytes empty minus loaded with $versions versions."
    echo "- Zone bytes per version by detector, as /healthcheck counts them (the image's slab chunk and its slot; the series node is not included): $forest_bytes."
    echo "- Zone bytes per stream by detector at default parameters, as /healthcheck counts them (the state and its lock header, as the slab allocates them; the series node is not included): $stream_bytes."
    echo
    cat bench/profile-notes.md
} > bench/RESULTS.md
note "wrote bench/RESULTS.md"
