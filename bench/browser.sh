#!/usr/bin/env bash
# Browser ingest benchmark: CPU per browser publisher on each path and glass-to-glass latency
# to RTMP and HLS players (bench/browser.mjs does the measuring).
#
#   bench/browser.sh                 # both paths, 20 s window each
#   WINDOW=30 PATHS=native bench/browser.sh
#
# Needs ffmpeg, Debian's chromium and tests/browser/node_modules (npm ci --prefix tests/browser).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WINDOW="${WINDOW:-20}"
PATHS="${PATHS:-native apivideo}"
WORK="$(mktemp -d /tmp/ferrocast-browser-bench.XXXXXX)"
PID=""
cleanup() {
    [[ -n "$PID" ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
row() {
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
g = r.get
print("| %s | %s | %s | %s / %s | %s / %s |" % (g("path"), g("gateway_cpu_pct"), g("ffmpeg_cpu_pct"),
      g("rtmp_p50_ms"), g("rtmp_p95_ms"), g("hls_p50_ms"), g("hls_p95_ms")))
' "$1"
}

echo "== building (release)" >&2
(cd "$ROOT" && cargo build --release -p ferrocast >&2)
[ -d "$ROOT/tests/browser/node_modules/playwright-core" ] ||
    npm ci --prefix "$ROOT/tests/browser" --no-audit --no-fund >&2

rows=()
for path in $PATHS; do
    http=$(free_port)
    rtmp=$(free_port)
    FERROCAST_DATA_DIR="$WORK/data-$path" FERROCAST_HTTP__LISTEN="127.0.0.1:$http" \
        FERROCAST_RTMP__LISTEN="127.0.0.1:$rtmp" FERROCAST_SRT__ENABLED=false \
        FERROCAST_RTSP__ENABLED=false FERROCAST_LOG=warn \
        "$ROOT/target/release/ferrocast" >"$WORK/gateway-$path.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break; sleep 0.1; done
    echo "== $path: ${WINDOW} s window" >&2
    line=$(node "$ROOT/bench/browser.mjs" "$path" "http://127.0.0.1:$http" "127.0.0.1:$rtmp" "$PID" "$WINDOW")
    echo "$line"
    rows+=("$line")
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done

echo
echo "| path | gateway CPU % | ffmpeg children CPU % | RTMP play p50 / p95 ms | HLS play p50 / p95 ms |"
echo "|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do row "$r"; done
