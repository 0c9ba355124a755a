#!/bin/bash
# The image's HEALTHCHECK (/usr/local/bin/anomaly-healthcheck): GET /healthcheck
# on the container's own listen port, with bash's /dev/tcp rather than curl
# (which would add libcurl and a dozen libraries to the image).
# Healthy (exit 0) when nginx answers 200 and the store is "ready"; "starting"
# or "loading" (HEALTHCHECK's start period covers a start) and "unavailable"
# exit 1. The body is printed, so `docker inspect` shows the last figures.
set -uo pipefail

listen=${ANOMALY_LISTEN:-0.0.0.0:8080}
port=${ANOMALY_HEALTHCHECK_PORT:-${listen##*:}}
case $listen in
    "$port" | 0.0.0.0:* | \*:*) host=127.0.0.1 ;;
    "[::]:"*) host=::1 ;;
    \[*\]:*) host=${listen%]:*}; host=${host#[} ;;
    *) host=${listen%:*} ;;
esac

{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || { echo "no connection to $host:$port"; exit 1; }
printf 'GET /healthcheck HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
response=$(cat <&3)
exec 3<&-

status=${response%%$'\r'*}
body=${response#*$'\r\n\r\n'}
echo "$status $body"
case $status in
    "HTTP/1."?" 200 "*) ;;
    *) exit 1 ;;
esac
case $body in
    *'"state":"ready"'*) exit 0 ;;
    *) exit 1 ;;
esac
