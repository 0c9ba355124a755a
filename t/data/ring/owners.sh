#!/usr/bin/env bash
# Asks a real nginx which of three loopback servers `hash $arg_k consistent`
# sends each key to, for the fixed owners in t/unit/ring_test.cpp:
#   t/data/ring/owners.sh key1 key2 ...   ->  one "key server" line a key
# Three servers answer their own address; a front proxies to them.
set -euo pipefail
nginx=${NGINX_BIN:-/usr/sbin/nginx}
base=${RING_PORT:-38080}
dir=$(mktemp -d /tmp/anomaly-ring-XXXXXX)
trap '[ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")"; sleep 0.2; rm -rf "$dir"' EXIT
mkdir -p "$dir/logs"
cat > "$dir/nginx.conf" <<CONF
daemon on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    upstream ring {
        hash \$arg_k consistent;
        server 127.0.0.1:$((base + 1));
        server 127.0.0.1:$((base + 2));
        server 127.0.0.1:$((base + 3));
    }
    server { listen 127.0.0.1:$base; location / { proxy_pass http://ring; } }
    server { listen 127.0.0.1:$((base + 1)); location / { return 200 "127.0.0.1:$((base + 1))"; } }
    server { listen 127.0.0.1:$((base + 2)); location / { return 200 "127.0.0.1:$((base + 2))"; } }
    server { listen 127.0.0.1:$((base + 3)); location / { return 200 "127.0.0.1:$((base + 3))"; } }
}
CONF
"$nginx" -p "$dir" -c "$dir/nginx.conf"
sleep 0.3
for key in "$@"; do
    echo "$key $(curl -s "http://127.0.0.1:$base/?k=$key")"
done
