#!/usr/bin/env bash
# Load test: ferrocast vs nginx-rtmp, one publisher and N players each, on 127.0.0.1.
#
#   bench/run.sh                    # N in 1 100 500, 30 s window, 5 s warmup
#   PLAYERS="1 100" DURATION=15 WARMUP=3 bench/run.sh
#   SERVERS=ferrocast bench/run.sh  # skip nginx-rtmp
#
# Needs ffmpeg, nginx with libnginx-mod-rtmp, jq. Results: $OUT (default a temp dir) holds one
# JSON report per run and the comparison table.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PLAYERS="${PLAYERS:-1 100 500}"
DURATION="${DURATION:-30}"
WARMUP="${WARMUP:-5}"
RAMP_MS="${RAMP_MS:-2}"
SERVERS="${SERVERS:-ferrocast nginx}"
WORK="$(mktemp -d /tmp/ferrocast-bench.XXXXXX)"
OUT="${OUT:-$WORK/results}"
mkdir -p "$OUT"

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Bounded wait, then force.
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
cleanup() {
    stop_server
    if [[ -z "${KEEP_WORK:-}" ]]; then
        # Keep the results, drop the fixture and server state.
        rm -rf "$WORK/fixture.flv" "$WORK/ferrocast" "$WORK/nginx"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nothing listens on (the kernel picks it; a tiny race is acceptable here).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_listen() { # port
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server did not listen on port $1" >&2
    return 1
}

echo "== building (release)"
(cd "$ROOT" && cargo build --release -p ferrocast -p ferrocast-bench)
FERROCAST="$ROOT/target/release/ferrocast"
BENCH="$ROOT/target/release/ferrocast-bench"

echo "== fixture: 20 s 1280x720 30 fps H.264 2.5 Mbit/s + AAC"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 20 -c:v libx264 -preset veryfast -tune zerolatency \
    -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 -keyint_min 60 -pix_fmt yuv420p \
    -c:a aac -b:a 128k -f flv "$WORK/fixture.flv"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

start_ferrocast() { # port
    local http; http="$(free_port)"
    mkdir -p "$WORK/ferrocast"
    # HLS off: nginx-rtmp is measured as a pure RTMP relay too.
    FERROCAST_RTMP__LISTEN="127.0.0.1:$1" FERROCAST_HTTP__LISTEN="127.0.0.1:$http" \
    FERROCAST_DATA_DIR="$WORK/ferrocast/data" FERROCAST_HLS__ENABLED=false FERROCAST_LOG=warn \
        "$FERROCAST" >>"$WORK/ferrocast/log" 2>&1 &
    SERVER_PID=$!
}
start_nginx() { # port
    mkdir -p "$WORK/nginx/logs"
    sed -e "s#@PREFIX@#$WORK/nginx#g" -e "s#@PORT@#$1#g" "$ROOT/bench/nginx-rtmp.conf" \
        >"$WORK/nginx/nginx.conf"
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >>"$WORK/nginx/log" 2>&1 &
    SERVER_PID=$!
}

for server in $SERVERS; do
    for n in $PLAYERS; do
        port="$(free_port)"
        # A fresh server per run, so RSS before/after players is not skewed by earlier runs.
        "start_$server" "$port"
        wait_listen "$port"
        echo "== $server, $n players (pid $SERVER_PID, port $port)"
        limit=$(( DURATION + WARMUP + n * RAMP_MS / 1000 + 60 ))
        if timeout "$limit" "$BENCH" --url "rtmp://127.0.0.1:$port/live/bench" \
            --input "$WORK/fixture.flv" --players "$n" --duration "$DURATION" \
            --warmup "$WARMUP" --ramp-ms "$RAMP_MS" --server-pid "$SERVER_PID" --json \
            >"$OUT/$server-$n.json"; then
            jq -r '"   connected \(.connected)/\(.players)  latency p50 \(.latency.p50_ms) ms  p99 \(.latency.p99_ms) ms  loss \(.loss.percent) %  server CPU \(.server.cpu_percent) %"' \
                "$OUT/$server-$n.json"
        else
            echo "   run failed (exit $?)" >&2
            rm -f "$OUT/$server-$n.json"
        fi
        stop_server
    done
done

echo
echo "== comparison (window ${DURATION} s after ${WARMUP} s warmup; CPU in % of one core)"
{
    printf 'server\tN\tconn\tfail\tff_p50\tff_p99\tlat_p50\tlat_p90\tlat_p99\tlat_max\tloss%%\tsrvCPU%%\tRSS_MiB\tKiB/plr\ttoolCPU%%\n'
    for f in "$OUT"/*.json; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .json)"
        jq -r --arg s "${name%-*}" '
            def r(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
            [$s, .players, .connected, .failed,
             r(.first_frame.p50_ms), r(.first_frame.p99_ms),
             r(.latency.p50_ms), r(.latency.p90_ms), r(.latency.p99_ms), r(.latency.max_ms),
             (.loss.percent * 1000 | round / 1000 | tostring),
             r(.server.cpu_percent), r(if .server.rss_kib then .server.rss_kib / 1024 else null end),
             r(.server.rss_per_player_kib), r(.tool.cpu_percent)] | @tsv' "$f"
    done | sort -k1,1 -k2,2n
} | column -t -s $'\t' | tee "$OUT/table.txt"
echo "results: $OUT"
