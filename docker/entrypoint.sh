#!/bin/bash
# The image's entrypoint (/usr/local/bin/anomaly-entrypoint).
#
#   anomaly-entrypoint [nginx [nginx options]]   the default: render, check, serve
#   anomaly-entrypoint COMMAND [ARGS]            anything else runs as given
#
# It renders $ANOMALY_TEMPLATE (/etc/nginx/templates/nginx.conf.template) into
# $ANOMALY_RUN_DIR/nginx.conf, substituting only ${ANOMALY_*} variables so that
# nginx's own $variables stay as written, checks it with nginx -t, and runs
# nginx in the foreground as PID 1 (daemon off). The error log goes to stderr
# and the access log to stdout. Extra nginx options are passed on, so
# `anomaly-entrypoint nginx -t` only checks the rendered configuration.
set -euo pipefail

if [ $# -gt 0 ] && [ "$1" != nginx ]; then
    exec "$@"
fi
[ $# -gt 0 ] && shift

: "${ANOMALY_LISTEN:=0.0.0.0:8080}"
: "${ANOMALY_DATA_DIR:=/var/lib/anomaly}"
: "${ANOMALY_WORKERS:=2}"   # auto would count the host's cores, not the container's quota
: "${ANOMALY_ZONE_SIZE:=64m}"
: "${ANOMALY_RUN_DIR:=/tmp/anomaly}"
: "${ANOMALY_MODULE:=/usr/lib/nginx/modules/ngx_http_anomaly_module.so}"
: "${ANOMALY_TEMPLATE:=/etc/nginx/templates/nginx.conf.template}"
export ANOMALY_LISTEN ANOMALY_DATA_DIR ANOMALY_WORKERS ANOMALY_ZONE_SIZE ANOMALY_RUN_DIR ANOMALY_MODULE

die() { echo "anomaly-entrypoint: $*" >&2; exit 1; }

mkdir -p "$ANOMALY_RUN_DIR" || die "cannot create $ANOMALY_RUN_DIR (pid file, temp files, rendered nginx.conf)"
conf="$ANOMALY_RUN_DIR/nginx.conf"

vars=$(compgen -e | grep '^ANOMALY_' | sed 's/.*/${&}/' | tr '\n' ' ')
envsubst "$vars" < "$ANOMALY_TEMPLATE" > "$conf"
if left=$(grep -o '\${ANOMALY_[A-Za-z0-9_]*}' "$conf" | sort -u | tr '\n' ' ') && [ -n "$left" ]; then
    die "$ANOMALY_TEMPLATE uses ${left}but they are not set"
fi

# The store is opened by the workers, which run as this same user: say so now
# rather than serve with "state":"unavailable".
store_parent=$ANOMALY_DATA_DIR
[ -e "$store_parent" ] || store_parent=$(dirname "$ANOMALY_DATA_DIR")
if [ ! -d "$store_parent" ] || [ ! -w "$store_parent" ] || [ ! -x "$store_parent" ]; then
    die "the store $ANOMALY_DATA_DIR is not a directory writable by uid $(id -u) gid $(id -g); for a bind mount, chown -R $(id -u):$(id -g) the host directory"
fi

nginx=/usr/sbin/nginx
for arg in "$@"; do
    case $arg in
        -t|-T|-v|-V|-h|-\?) exec "$nginx" -p "$ANOMALY_RUN_DIR/" -c "$conf" "$@" ;;
    esac
done

"$nginx" -t -q -p "$ANOMALY_RUN_DIR/" -c "$conf"
echo "anomaly-entrypoint: nginx on $ANOMALY_LISTEN as uid $(id -u), store $ANOMALY_DATA_DIR, zone $ANOMALY_ZONE_SIZE, workers $ANOMALY_WORKERS" >&2
exec "$nginx" -p "$ANOMALY_RUN_DIR/" -c "$conf" -g 'daemon off;' "$@"
