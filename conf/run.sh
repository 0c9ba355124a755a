#!/usr/bin/env bash
# make run: builds the module, renders conf/nginx.conf with the ANOMALY_*
# settings and runs nginx in the foreground. Ctrl-C stops it.
# make reload (conf/run.sh reload): renders and checks the configuration
# again and signals the running master to reload it.
# make stop (conf/run.sh stop): stops the running server gracefully.
#
# ANOMALY_MODULE=/path/to/module.so serves that module and skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
action=${1:-serve}
case $action in serve|reload|stop) ;; *) echo "usage: $0 [serve|reload|stop]" >&2; exit 2 ;; esac

# The environment wins over .env, which wins over .env.example.
declare -A from_env
for name in ANOMALY_LISTEN ANOMALY_DATA_DIR ANOMALY_WORKERS ANOMALY_ZONE_SIZE ANOMALY_MODULE; do
    if [ -n "${!name+x}" ]; then from_env[$name]=${!name}; fi
done
[ -f .env ] || cp .env.example .env
set -a
# shellcheck disable=SC1091
. ./.env.example
# shellcheck disable=SC1091
. ./.env
set +a
for name in "${!from_env[@]}"; do export "$name=${from_env[$name]}"; done
: "${ANOMALY_LISTEN:=127.0.0.1:8080}" "${ANOMALY_DATA_DIR:=./var}" "${ANOMALY_WORKERS:=auto}" "${ANOMALY_ZONE_SIZE:=64m}"

default_data=no
case "$ANOMALY_DATA_DIR" in ./var|var|./var/|var/) default_data=yes ;; esac
case "$ANOMALY_DATA_DIR" in /*) ;; *) ANOMALY_DATA_DIR="$top/${ANOMALY_DATA_DIR#./}" ;; esac
ANOMALY_DATA_DIR=${ANOMALY_DATA_DIR%/}
ANOMALY_RUN_DIR="$top/build/run"
build=yes
if [ -n "${ANOMALY_MODULE:-}" ]; then build=no; else ANOMALY_MODULE="$top/build/ngx_http_anomaly_module.so"; fi

# As root, nginx runs its workers as nobody (conf/nginx.conf sets no `user`):
# they must reach the store and the run directory. A clone they cannot reach
# (under /root, mode 0700) gets both under /var/lib/ngx-anomaly/<hash of the
# clone's path>; a store set explicitly out of their reach is refused.
# Checked before building, so that a refusal costs nothing.
existing() { local d=$1; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; printf '%s\n' "$d"; }
reaches() { runuser -u nobody -- test -x "$(existing "$1")" 2> /dev/null; }
moved=""
if [ "$(id -u)" = 0 ] && command -v runuser > /dev/null; then
    state=/var/lib/ngx-anomaly/$(printf '%s' "$top" | sha256sum | cut -c1-12)
    if ! reaches "$ANOMALY_RUN_DIR"; then
        ANOMALY_RUN_DIR=$state/run
        moved="the run directory"
    fi
    if ! reaches "$ANOMALY_DATA_DIR"; then
        if [ "$default_data" = yes ]; then
            ANOMALY_DATA_DIR=$state/var
            moved="${moved:+$moved and }the store"
        else
            echo "make run: nginx's workers run as nobody and cannot reach $ANOMALY_DATA_DIR: a directory above it is" \
                 "not searchable by others. Give them access (chmod o+x on the directories above it)," \
                 "or set ANOMALY_DATA_DIR to a directory they can reach, or leave it unset to use $state/var." >&2
            exit 1
        fi
    fi
    if [ -n "$moved" ]; then
        # Like nginx's own temp paths: reachable by the workers, written by
        # the master (the module hands the store to the workers itself).
        install -d -m 0755 /var/lib/ngx-anomaly "$state" "$ANOMALY_RUN_DIR"
        [ "$action" != serve ] || echo "make run: nginx's workers (nobody) cannot reach $top, so $moved" \
            "moved under $state: run directory $ANOMALY_RUN_DIR, store $ANOMALY_DATA_DIR"
    fi
fi
export ANOMALY_LISTEN ANOMALY_DATA_DIR ANOMALY_WORKERS ANOMALY_ZONE_SIZE ANOMALY_RUN_DIR ANOMALY_MODULE

nginx=${NGINX_BIN:-/usr/sbin/nginx}
pid_file=$ANOMALY_RUN_DIR/nginx.pid
# A master that exited but was not yet reaped by whoever started it counts as gone.
alive() { local st; st=$(ps -o stat= -p "$1" 2> /dev/null) && [ "${st:0:1}" != Z ]; }
running_pid() {
    local pid
    pid=$(cat "$pid_file" 2> /dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" && printf '%s\n' "$pid"
}

render() {
    mkdir -p "$ANOMALY_RUN_DIR"
    # shellcheck disable=SC2016  # the names envsubst replaces, not expansions
    local vars='${ANOMALY_MODULE} ${ANOMALY_WORKERS} ${ANOMALY_RUN_DIR} ${ANOMALY_ZONE_SIZE} ${ANOMALY_DATA_DIR} ${ANOMALY_LISTEN}'
    envsubst "$vars" < conf/nginx.conf > "$ANOMALY_RUN_DIR/nginx.conf.new"
    "$nginx" -t -q -p "$ANOMALY_RUN_DIR/" -c "$ANOMALY_RUN_DIR/nginx.conf.new"
    mv -f "$ANOMALY_RUN_DIR/nginx.conf.new" "$ANOMALY_RUN_DIR/nginx.conf"
}

case $action in
reload)
    pid=$(running_pid) || { echo "make reload: no server of this clone runs (no live pid in $pid_file)" >&2; exit 1; }
    render
    kill -HUP "$pid"
    echo "make reload: nginx (master $pid) reloads $ANOMALY_RUN_DIR/nginx.conf; a rebuilt module needs a restart"
    ;;
stop)
    pid=$(running_pid) || { echo "make stop: no server of this clone runs"; exit 0; }
    kill -QUIT "$pid"
    for _ in $(seq 300); do alive "$pid" || { echo "make stop: nginx (master $pid) stopped"; exit 0; }; sleep 0.1; done
    echo "make stop: nginx (master $pid) still runs after 30 s" >&2
    exit 1
    ;;
serve)
    if pid=$(running_pid); then
        echo "make run: a server of this clone already runs (master $pid); make stop, or make reload" >&2
        exit 1
    fi
    [ "$build" = no ] || make -C "$top" --no-print-directory build
    render
    # The settings that came from the environment go with the reload command,
    # which renders the configuration again.
    again=""
    for name in "${!from_env[@]}"; do again+="$name=$(printf '%q' "${from_env[$name]}") "; done
    # exec keeps this process's pid: it is the master's.
    echo "serving on http://$ANOMALY_LISTEN (store: $ANOMALY_DATA_DIR, master pid $$);" \
         "reload: ${again}make -C $(printf '%q' "$top") reload; Ctrl-C stops"
    exec "$nginx" -p "$ANOMALY_RUN_DIR/" -c "$ANOMALY_RUN_DIR/nginx.conf" -g 'daemon off;'
    ;;
esac
