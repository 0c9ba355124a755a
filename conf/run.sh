#!/usr/bin/env bash
# make run: renders conf/nginx.conf with the ANOMALY_* settings and runs nginx
# in the foreground. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

# The environment wins over .env, which wins over .env.example.
declare -A from_env
for name in ANOMALY_LISTEN ANOMALY_DATA_DIR ANOMALY_WORKERS ANOMALY_ZONE_SIZE; do
    if [ -n "${!name+x}" ]; then from_env[$name]=${!name}; fi
done
[ -f .env ] || cp .env.example .env
set -a
# shellcheck disable=SC1091
. ./.env.example
. ./.env
set +a
for name in "${!from_env[@]}"; do export "$name=${from_env[$name]}"; done

case "$ANOMALY_DATA_DIR" in /*) ;; *) ANOMALY_DATA_DIR="$top/${ANOMALY_DATA_DIR#./}" ;; esac
export ANOMALY_DATA_DIR
export ANOMALY_RUN_DIR="$top/build/run"
export ANOMALY_MODULE="$top/build/ngx_http_anomaly_module.so"
mkdir -p "$ANOMALY_RUN_DIR"

# As root, nginx runs its workers as nobody: they must reach the store and the
# run directory (a repository under /root, mode 0700, is out of their reach).
if [ "$(id -u)" = 0 ] && command -v runuser > /dev/null; then
    store_parent=$ANOMALY_DATA_DIR
    [ -e "$store_parent" ] || store_parent=$(dirname "$ANOMALY_DATA_DIR")
    for d in "$store_parent" "$ANOMALY_RUN_DIR"; do
        if ! runuser -u nobody -- test -x "$d"; then
            echo "make run: nginx's workers run as nobody and cannot reach $d: a directory above it is" \
                 "not searchable by others. Give them access (chmod o+x on the directories above it)," \
                 "or set ANOMALY_DATA_DIR to a directory they can reach and run from a clone outside it." >&2
            exit 1
        fi
    done
fi

vars='${ANOMALY_MODULE} ${ANOMALY_WORKERS} ${ANOMALY_RUN_DIR} ${ANOMALY_ZONE_SIZE} ${ANOMALY_DATA_DIR} ${ANOMALY_LISTEN}'
envsubst "$vars" < conf/nginx.conf > "$ANOMALY_RUN_DIR/nginx.conf"

nginx=${NGINX_BIN:-/usr/sbin/nginx}
"$nginx" -t -q -p "$ANOMALY_RUN_DIR/" -c "$ANOMALY_RUN_DIR/nginx.conf"
echo "serving on http://$ANOMALY_LISTEN (store: $ANOMALY_DATA_DIR); Ctrl-C stops"
exec "$nginx" -p "$ANOMALY_RUN_DIR/" -c "$ANOMALY_RUN_DIR/nginx.conf" -g 'daemon off;'
