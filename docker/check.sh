#!/usr/bin/env bash
# docker/check.sh (make docker-check): builds docker/Dockerfile and runs the
# image, on a machine with no registry and no container runtime. Needs root.
#
#  1. debian:bookworm-slim is made here: `debootstrap --variant=minbase
#     bookworm`, trimmed the way Docker's slim images are (no docs, man pages
#     or locales, policy-rc.d, apt cleaning), and imported with podman as
#     docker.io/library/debian:bookworm-slim. The imported image, or else the
#     debootstrap root, is reused by later runs.
#  2. podman build --isolation=chroot --format docker -f docker/Dockerfile
#     -t anomaly-nginx . (the docker format keeps HEALTHCHECK), with the layer
#     cache, and never pulling.
#  3. podman image mount, and the image's own ENTRYPOINT + CMD, with its Env,
#     as its USER, in a chroot of that root mounted read-only, with a tmpfs on
#     /tmp and a host directory as the store volume (owned like the image's
#     directory, as a new named volume is), in new mount, pid and network
#     namespaces: nginx is pid 1 and listens on the image's port 8080 without
#     taking the host's. The stdout and stderr files are given to the image's
#     user, as runc and crun do with a container's stdio.
#  4. fit and predict with conf/examples/, /healthcheck, the image's
#     HEALTHCHECK command, the users of the master and the workers, the logs,
#     then a stop with the image's STOPSIGNAL; a second start on the same
#     store with other ANOMALY_* settings serves the stored version; a store
#     the user cannot write stops the entrypoint with a message.
#
# It prints the image size, the build time and the whole time. Any failure
# exits non-zero. Processes and mounts are cleaned up at exit.
#
#   ANOMALY_CHECK_DIR      state: debootstrap root, logs, stores (/var/tmp/anomaly-docker-check)
#   ANOMALY_CHECK_STORAGE  podman storage: "vfs", or "default" (overlay when the kernel allows)
#   DEBIAN_MIRROR          debootstrap and image mirror (http://deb.debian.org/debian)
# shellcheck disable=SC2016  # ${...} in single quotes is for podman, dpkg-query and the inner bash
set -Eeuo pipefail
cd "$(dirname "$0")/.."

started=$EPOCHREALTIME
image=anomaly-nginx
base=docker.io/library/debian:bookworm-slim
state=${ANOMALY_CHECK_DIR:-/var/tmp/anomaly-docker-check}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}

say() { printf 'docker-check: %s\n' "$*"; }
fail() { printf 'docker-check: FAIL: %s\n' "$*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
trap 'rc=$?; fail "line $LINENO: \"$BASH_COMMAND\" exited with $rc"' ERR
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, podman image mount, chroot, namespaces)"

# ---- cleanup ----------------------------------------------------------------
upid=""       # the unshare process of a running container
cpid=""       # its pid 1 (nginx's master), as the host numbers it
mounted=""    # the image is mounted

# Lazily unmount everything under a directory (a debootstrap that was cut short
# can leave /proc and /sys mounted in its target), deepest first.
unmount_under() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m"; done
}

cleanup() {
    local rc=$?
    trap - ERR
    set +e
    if [ -n "$upid" ] && kill -0 "$upid" 2>/dev/null; then
        [ -n "$cpid" ] && kill -KILL "$cpid" 2>/dev/null   # pid 1: its namespace goes with it
        kill -KILL "$upid" 2>/dev/null
        wait "$upid" 2>/dev/null
    fi
    if [ -n "$mounted" ]; then "${podman[@]}" image unmount "$image" > /dev/null || rc=1; fi
    [ -d "$state" ] && unmount_under "$state"
    exit "$rc"
}
trap cleanup EXIT

# ---- tools ------------------------------------------------------------------
need=()
command -v debootstrap > /dev/null || need+=(debootstrap)
command -v podman > /dev/null || need+=(podman)
command -v curl > /dev/null || need+=(curl)
command -v ip > /dev/null || need+=(iproute2)
python3 -c 'import yaml' 2> /dev/null || need+=(python3-yaml)
{ command -v unshare && command -v nsenter; } > /dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    say "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" > /dev/null
fi
mkdir -p "$state"

# podman's default storage is overlay; where the kernel cannot mount overlay,
# use vfs in a storage of its own (drivers cannot share one storage).
storage=${ANOMALY_CHECK_STORAGE:-}
if [ -z "$storage" ]; then
    t=$(mktemp -d "$state/overlay-test.XXXXXX")
    mkdir "$t/l" "$t/u" "$t/w" "$t/m"
    if mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" 2> /dev/null; then
        umount "$t/m"
        storage=default
    else
        storage=vfs
    fi
    rm -rf "$t"
fi
case $storage in
    default) podman=(podman) ;;
    vfs) podman=(podman --storage-driver vfs --root "$state/storage-vfs" --runroot "$state/runroot-vfs") ;;
    *) fail "ANOMALY_CHECK_STORAGE must be vfs or default, not $storage" ;;
esac
say "podman $(podman --version | awk '{print $3}'), storage: $("${podman[@]}" info --format '{{.Store.GraphDriverName}}')"

# ---- 1. debian:bookworm-slim ------------------------------------------------
# What debuerreotype does to Docker's debian images, and what slim removes.
slimify() {
    local r=$1
    printf '#!/bin/sh\n# Services do not start during image builds.\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
    chmod 0755 "$r/usr/sbin/policy-rc.d"
    printf 'force-unsafe-io\n' > "$r/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    cat > "$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
    local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
    printf 'DPkg::Post-Invoke { %s };\nAPT::Update::Post-Invoke { %s };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
        "$clean" "$clean" > "$r/etc/apt/apt.conf.d/docker-clean"
    printf 'Acquire::GzipIndexes "true";\n' > "$r/etc/apt/apt.conf.d/docker-gzip-indexes"
    printf 'Acquire::Languages "none";\n' > "$r/etc/apt/apt.conf.d/docker-no-languages"
    printf 'Apt::AutoRemove::SuggestsImportant "false";\n' > "$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
    rm -f "$r/etc/apt/sources.list"
    cat > "$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    find "$r/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    rm -rf "$r"/usr/share/{groff,info,linda,man}/* "$r"/usr/share/lintian/overrides/*
    rm -rf "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
    find "$r/var/log" -type f -delete
    : > "$r/etc/resolv.conf"
    echo localhost > "$r/etc/hostname"
}

if "${podman[@]}" image exists "$base"; then
    say "base image $base: reused"
else
    rootfs=$state/bookworm-minbase
    if [ ! -f "$rootfs.done" ]; then
        unmount_under "$rootfs"
        rm -rf "$rootfs"
        t0=$EPOCHREALTIME
        say "debootstrap --variant=minbase bookworm $rootfs $mirror"
        if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$state/debootstrap.log" 2>&1; then
            tail -20 "$state/debootstrap.log" >&2
            fail "debootstrap failed (log: $state/debootstrap.log)"
        fi
        slimify "$rootfs"
        touch "$rootfs.done"
        say "debootstrap time: $(since "$t0") s"
    else
        say "debootstrap root $rootfs: reused"
    fi
    tar --numeric-owner -C "$rootfs" -c . | "${podman[@]}" import --change 'CMD ["bash"]' - "$base" > /dev/null
    say "base image $base: imported ($(du -sh "$rootfs" | cut -f1) root)"
fi

# ---- 2. build ---------------------------------------------------------------
say "podman build --isolation=chroot --format docker -f docker/Dockerfile -t $image ."
t0=$EPOCHREALTIME
if ! "${podman[@]}" build --isolation=chroot --format docker --pull=never \
        -f docker/Dockerfile -t "$image" . 2>&1 | tee "$state/build.log" |
        { grep --line-buffered -E '^(STEP [0-9]+/[0-9]+:|--> Using cache|COMMIT)' || true; }; then
    tail -40 "$state/build.log" >&2
    fail "podman build failed (log: $state/build.log)"
fi
build_time=$(since "$t0")
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
say "build time: $build_time s"
say "image size: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }'))"
"${podman[@]}" images --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$image" | sed 's/^/docker-check: /'

# ---- 3. the image's configuration -------------------------------------------
# One value a line; podman ends the output with an empty line of its own.
inspect() { "${podman[@]}" image inspect --format "$1" "$image" | sed '/^$/d'; }
mapfile -t img_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}')
mapfile -t img_entrypoint < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}')
mapfile -t img_cmd < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}')
mapfile -t img_volumes < <(inspect '{{range $k, $v := .Config.Volumes}}{{println $k}}{{end}}')
mapfile -t img_healthcheck < <(inspect '{{if .HealthCheck}}{{range .HealthCheck.Test}}{{println .}}{{end}}{{end}}')
img_user=$(inspect '{{.Config.User}}')
img_stopsignal=$(inspect '{{.Config.StopSignal}}')
img_ports=$(inspect '{{range $k, $v := .Config.ExposedPorts}}{{$k}} {{end}}')
say "entrypoint: ${img_entrypoint[*]} ${img_cmd[*]}; user: $img_user; volumes: ${img_volumes[*]}; ports: $img_ports; stop: $img_stopsignal"
say "healthcheck: ${img_healthcheck[*]}"
[ ${#img_entrypoint[@]} -gt 0 ] || fail "the image has no ENTRYPOINT"
[ ${#img_healthcheck[@]} -gt 1 ] || fail "the image has no HEALTHCHECK"
[ ${#img_volumes[@]} -eq 1 ] || fail "expected one VOLUME, got: ${img_volumes[*]}"
volume=${img_volumes[0]}

mnt=$("${podman[@]}" image mount "$image")
mounted=1

# USER as uid:gid, through the image's own passwd and group files.
user=${img_user%%:*}
group=${img_user#*:}
[ "$group" != "$img_user" ] || group=""
[ -n "$user" ] || fail "the image has no USER: it would run as root"
[[ $user =~ ^[0-9]+$ ]] || user=$(awk -F: -v u="$user" '$1 == u { print $3 }' "$mnt/etc/passwd")
[ -n "$group" ] || group=$(awk -F: -v u="$user" '$3 == u { print $4 }' "$mnt/etc/passwd")
[[ $group =~ ^[0-9]+$ ]] || group=$(awk -F: -v g="$group" '$1 == g { print $3 }' "$mnt/etc/group")
[[ $user =~ ^[0-9]+$ && $group =~ ^[0-9]+$ ]] || fail "cannot resolve USER $img_user in the image"
[ "$user" != 0 ] || fail "USER is root"
home=$(awk -F: -v u="$user" '$3 == u { print $6 }' "$mnt/etc/passwd")
say "runs as uid $user gid $group (home ${home:-/})"

# A runtime image: the module, its libraries, and no build tools.
module=$(printf '%s\n' "${img_env[@]}" | sed -n 's/^ANOMALY_MODULE=//p')
[ -f "$mnt$module" ] || fail "no module at $module"
chroot "$mnt" ldd "$module" | { ! grep 'not found'; } || fail "the module's libraries are missing"
if extra=$(chroot "$mnt" dpkg-query -W -f '${Package}\n' | grep -E -- '-dev$|^(g\+\+|gcc|cpp|make|cmake|chromium)(-[0-9]+)?$'); then
    fail "build packages in the runtime image: $(tr '\n' ' ' <<< "$extra")"
fi
[ ! -e "$mnt/usr/share/nginx/src" ] || fail "nginx-dev's sources are in the runtime image"
say "runtime packages: $(chroot "$mnt" dpkg-query -W -f '${Package}=${Version} ' nginx libleveldb1d libsimdjson14 gettext-base)"

# ---- 4. runs ----------------------------------------------------------------
# The container: ro root, tmpfs /tmp, the store on the volume, lo up, then the
# entrypoint as the image's user with exactly the image's environment.
inner='set -euo pipefail
root=$1 img=$2 store=$3 volume=$4 user=$5 group=$6; shift 6
envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
mount --bind "$img" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$store" "$root$volume"
ip link set lo up
exec env -i "${envs[@]}" chroot --userspec="$user:$group" --groups="$group" "$root" "$@"'

# start NAME STORE [VAR=value...]: the container in the background.
start() {
    local name=$1 store=$2
    shift 2
    run=$state/$name
    rm -rf "$run"
    mkdir -p "$run/root"
    : > "$run/stdout.log"
    : > "$run/stderr.log"
    chown "$user:$group" "$run/stdout.log" "$run/stderr.log"
    cenv=(HOSTNAME="$name" HOME="${home:-/}" "${img_env[@]}" "$@")
    unshare --mount --net --pid --fork --propagation private -- \
        bash -c "$inner" inner "$run/root" "$mnt" "$store" "$volume" "$user" "$group" \
        "${cenv[@]}" -- "${img_entrypoint[@]}" "${img_cmd[@]}" > "$run/stdout.log" 2> "$run/stderr.log" &
    upid=$!
    cpid=""
    for _ in $(seq 50); do
        read -r cpid _ < "/proc/$upid/task/$upid/children" 2> /dev/null || true
        [ -n "$cpid" ] && break
        kill -0 "$upid" 2> /dev/null || break   # it ended already
        sleep 0.1
    done
    [ -n "$cpid" ] || kill -0 "$upid" 2> /dev/null || { say "$name: ended at once"; return 0; }
    [ -n "$cpid" ] || fail "$name: the container did not start"
    local listen
    listen=$(printf '%s\n' "${cenv[@]}" | sed -n 's/^ANOMALY_LISTEN=//p' | tail -1)
    port=${listen##*:}
    say "$name: started, pid 1 is host pid $cpid, listening on $listen inside"
}

logs() {
    echo "--- $run/stderr.log" >&2
    tail -30 "$run/stderr.log" >&2
    echo "--- $run/stdout.log" >&2
    tail -10 "$run/stdout.log" >&2
}

# exited: wait for the container to end; its exit status in $exit_status.
exited() {
    local seconds=$1
    for _ in $(seq $((seconds * 10))); do
        kill -0 "$upid" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$upid" 2> /dev/null; then return 1; fi
    exit_status=0
    wait "$upid" || exit_status=$?
    upid=""
    cpid=""
}

in_net() { nsenter --target "$cpid" --net -- "$@"; }

# api METHOD PATH [BODY_FILE]: sets $code and $body.
api() {
    local args=(-sS --max-time 10 -o "$run/body" -w '%{http_code}' -X "$1")
    [ -z "${3:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "@$3")
    code=$(in_net curl "${args[@]}" "http://127.0.0.1:$port$2") || { logs; fail "$1 $2: no answer"; }
    body=$(cat "$run/body")
    say "  $1 $2${3:+ -d @$3} -> $code $body"
}
expect() {
    [ "$code" = "$1" ] || { logs; fail "expected status $1, got $code"; }
    shift
    local s
    for s in "$@"; do [[ $body == *"$s"* ]] || { logs; fail "expected $s in the answer"; }; done
}

wait_ready() {
    local b
    for _ in $(seq 300); do
        if ! kill -0 "$upid" 2> /dev/null; then
            exited 1 || true
            logs
            fail "the container exited with status $exit_status before it was ready"
        fi
        b=$(in_net curl -s --max-time 2 "http://127.0.0.1:$port/healthcheck" 2> /dev/null) || b=""
        [[ $b == *'"state":"ready"'* ]] && return 0
        sleep 0.1
    done
    logs
    fail "/healthcheck did not say ready within 30 s"
}

# The HEALTHCHECK command as `docker exec` would run it: in the container's
# namespaces and root, as its user, with its environment.
healthcheck() {
    local cmd=("${img_healthcheck[@]:1}")
    [ "${img_healthcheck[0]}" != CMD-SHELL ] || cmd=(/bin/sh -c "${img_healthcheck[1]}")
    timeout 10 nsenter --target "$cpid" --net --mount --pid --root --wd -S "$user" -G "$group" -- \
        env -i "${cenv[@]}" "${cmd[@]}"
}

uids() { awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$1/status"; }
check_users() {
    local expected_workers=$1 workers w
    [ "$(uids "$cpid")" = "$user $user $user $user" ] || fail "the master runs as uids $(uids "$cpid"), not $user"
    read -r -a workers < "/proc/$cpid/task/$cpid/children" || true   # no newline at its end
    [ "${#workers[@]}" = "$expected_workers" ] || fail "${#workers[@]} workers, expected $expected_workers"
    for w in "${workers[@]}"; do
        [ "$(uids "$w")" = "$user $user $user $user" ] || fail "worker $w runs as uids $(uids "$w")"
    done
    say "  master and ${#workers[@]} workers run as uid $user: $(tr '\0' ' ' < "/proc/$cpid/cmdline")"
}

stop() {
    local sig=${img_stopsignal:-SIGTERM}
    kill -s "${sig#SIG}" "$cpid"
    exited 20 || { logs; fail "still running 20 s after $sig"; }
    [ "$exit_status" = 0 ] || { logs; fail "exited with status $exit_status after $sig"; }
    say "  stopped by $sig to pid $1, exit status 0"
}

# The volume starts as the image's directory does, like a new named volume.
new_volume() {
    rm -rf "$1"
    install -d -o "$(stat -c %u "$mnt$volume")" -g "$(stat -c %g "$mnt$volume")" -m "$(stat -c %a "$mnt$volume")" "$1"
}

store=$state/store
new_volume "$store"
ex=conf/examples

# Run 1: the image's defaults, an empty store.
start run1 "$store"
wait_ready
api POST /fit/sensor_1 "$ex/fit.json"
expect 200 '"series_id":"sensor_1"' '"version":"v1"' '"points_used":12'
api POST /predict/sensor_1 "$ex/predict-anomaly.json"
expect 200 '"anomaly":true' '"model_version":"v1"'
api POST /predict/sensor_1 "$ex/predict-normal.json"
expect 200 '"anomaly":false' '"model_version":"v1"'
api POST /predict/sensor_9 "$ex/predict-normal.json"
expect 404 '"code":"series_not_found"'
api GET /healthcheck
expect 200 '"series_trained":1' '"versions_stored":1' '"state":"ready"' '"bytes_total":67108864'
hc=$(healthcheck) || { logs; fail "the image's HEALTHCHECK failed: $hc"; }
say "  HEALTHCHECK ${img_healthcheck[*]:1} -> exit 0: ${hc:0:60}..."
check_users 2   # the image's ANOMALY_WORKERS, whatever the host's cores
grep -q '"POST /fit/sensor_1 HTTP/1.1" 200' "$run/stdout.log" || { logs; fail "no access log on stdout"; }
grep -q 'start worker process' "$run/stderr.log" || { logs; fail "no error log on stderr"; }
stop "$cpid"
if grep -E '\[(alert|emerg|crit)\]' "$run/stderr.log"; then fail "alerts in the error log"; fi
say "  logs: $(wc -l < "$run/stdout.log") access log lines on stdout, $(wc -l < "$run/stderr.log") error log lines on stderr"
if [ ! -f "$store/CURRENT" ] || [ "$(stat -c %u "$store/CURRENT")" != "$user" ]; then
    fail "no LevelDB store owned by $user on the volume"
fi
say "  store on the volume: $(find "$store" -mindepth 1 -maxdepth 1 -printf '%f ')"

# Run 2: the same volume, started as docker/compose.yml starts it, with an
# .env that asks for 2 workers and a 32m zone: the stored version is served.
# No compose runs here, so the file is read as compose reads it: ${VAR:-default}
# from the env file, and its service checked against the image.
compose_env() {
    python3 - "$1" "$volume" "$img_ports" <<'PY'
import re, sys, yaml
env_file, volume, image_ports = sys.argv[1], sys.argv[2], sys.argv[3].split()
env = {}
for line in open(env_file):
    line = line.strip()
    if line and not line.startswith("#"):
        k, _, v = line.partition("=")
        env[k.strip()] = v.strip()
def interpolate(s):
    def one(m):
        name, default = m.group(1), m.group(3)
        return env.get(name) or (default if default is not None else "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, s)
def fail(msg):
    sys.exit("compose.yml: " + msg)
doc = yaml.safe_load(open("docker/compose.yml"))
svc = doc["services"]["anomaly"]
if svc["build"] != {"context": "..", "dockerfile": "docker/Dockerfile"}:
    fail("build is not the repository root with docker/Dockerfile: %r" % svc["build"])
ports = [interpolate(str(p)) for p in svc["ports"]]
host, _, container = ports[0].rpartition(":") if len(ports) == 1 else ("", "", "")
if container.split("/")[0] + "/tcp" not in image_ports:
    fail("ports %r do not publish the image's port %s" % (ports, image_ports))
if host != interpolate("${ANOMALY_LISTEN:-127.0.0.1:8080}"):
    fail("ports %r do not publish on ANOMALY_LISTEN" % ports)
vols = [interpolate(v) for v in svc["volumes"]]
if len(vols) != 1 or vols[0].split(":")[1] != volume:
    fail("volumes %r do not mount the image's volume %s" % (vols, volume))
if vols[0].split(":")[0] not in (doc.get("volumes") or {}) and not vols[0].startswith(("/", ".")):
    fail("volume %r is not declared" % vols[0])
for k, v in svc["environment"].items():
    print("%s=%s" % (k, interpolate(v)))
PY
}
printf 'ANOMALY_LISTEN=127.0.0.1:8080\nANOMALY_WORKERS=2\nANOMALY_ZONE_SIZE=32m\n' > "$state/compose.env"
mapfile -t run2_env < <(compose_env "$state/compose.env" || true)
[ ${#run2_env[@]} -gt 0 ] || fail "docker/compose.yml does not match the image"
mapfile -t default_env < <(compose_env .env.example || true)
say "compose.yml environment with .env.example: ${default_env[*]}; with $state/compose.env: ${run2_env[*]}"
start run2 "$store" "${run2_env[@]}"
wait_ready
api GET /healthcheck
expect 200 '"series_trained":1' '"versions_stored":1' '"bytes_total":33554432'
api POST /predict/sensor_1 "$ex/predict-normal.json"
expect 200 '"anomaly":false' '"model_version":"v1"'
api POST /fit/sensor_1 "$ex/fit-data-shape.json"
expect 200 '"version":"v2"' '"points_used":10'
api POST /predict/sensor_1 "$ex/predict-normal.json"
expect 200 '"anomaly":true' '"model_version":"v2"'
check_users 2
hc=$(healthcheck) || { logs; fail "the image's HEALTHCHECK failed: $hc"; }
say "  HEALTHCHECK -> exit 0"
stop "$cpid"

# Run 3: a store the user cannot write (a bind mount left to root).
bad=$state/store-root
rm -rf "$bad"
install -d -o root -g root -m 0700 "$bad"
start run3 "$bad"
exited 10 || { logs; fail "the entrypoint kept running with a store it cannot write"; }
[ "$exit_status" != 0 ] || fail "the entrypoint exited 0 with a store it cannot write"
grep -q 'not a directory writable' "$run/stderr.log" || { logs; fail "no message about the store"; }
say "  unwritable store: exit status $exit_status, \"$(grep -o 'the store.*' "$run/stderr.log")\""

say "PASS in $(since "$started") s (build $build_time s, image $size bytes)"
