#!/usr/bin/env bash
# HLS/DASH delivery: ferrocast vs nginx-rtmp (its own HLS/DASH on disk, served by nginx as
# static files). One ffmpeg publisher per server, N polling players of that stream, server CPU
# per request from /proc.
#
#   bench/http.sh                          # N in 0 100 1000, HLS and DASH, 20 s window
#   CLIENTS="1000" FORMATS=hls bench/http.sh
#   SERVERS=ferrocast FERROCAST=/tmp/ferrocast-before NO_BUILD=1 bench/http.sh
#   SERVERS="before=/tmp/ferrocast-a after=/tmp/ferrocast-b nginx" bench/http.sh  # binaries
#   PERF=1 bench/http.sh                   # perf profile of each server at the largest N
#   PERF=1 PERF_ARGS="--call-graph dwarf" ...  # user-space call chains (no frame pointers)
#
# N = 0 measures what the server spends on ingest and packaging alone, so the table can show
# the extra CPU per request as well as the total. Needs ffmpeg, nginx with libnginx-mod-rtmp,
# jq, curl (and perf for PERF=1). Results: $OUT (default a temp dir) holds one JSON report per
# run and the comparison table.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CLIENTS="${CLIENTS:-0 100 1000}"
FORMATS="${FORMATS:-hls dash}"
SERVERS="${SERVERS:-ferrocast nginx}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
RAMP_MS="${RAMP_MS:-10}"
RELOAD="${RELOAD:-spec}"
WORK="$(mktemp -d /tmp/ferrocast-http.XXXXXX)"
OUT="${OUT:-$WORK/results}"
mkdir -p "$OUT"

# stop_pid, free_port and wait_listen; this script's start_* below take HTTP ports too and
# replace lib.sh's.
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PUB_PID=""
stop_all() {
    stop_pid "$PUB_PID"; PUB_PID=""
    stop_server
}
cleanup() {
    stop_all
    if [[ -z "${KEEP_WORK:-}" ]]; then
        # Keep the results, drop the fixture and server state.
        rm -rf "$WORK/fixture.flv" "$WORK/ferrocast" "$WORK/nginx"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until the playlist at $1 lists at least $2 segments (a player joins 3 from the end).
wait_playlist() { # url min_segments
    for _ in $(seq 300); do
        local n
        n="$(curl -sf "$1" 2>/dev/null | grep -c -E '^[^#].*\.ts' || true)"
        if [[ "${n:-0}" -ge "$2" ]]; then return 0; fi
        sleep 0.1
    done
    echo "no playlist with $2 segments at $1" >&2
    return 1
}

FERROCAST="${FERROCAST:-$ROOT/target/release/ferrocast}"
TOOL="${TOOL:-$ROOT/target/release/ferrocast-http}"
if [[ -z "${NO_BUILD:-}" ]]; then
    echo "== building (release)"
    (cd "$ROOT" && cargo build --release -p ferrocast -p ferrocast-bench)
fi

echo "== fixture: 20 s 1280x720 30 fps H.264 2.5 Mbit/s + AAC, -g 60"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 20 -c:v libx264 -preset veryfast -tune zerolatency \
    -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 -keyint_min 60 -pix_fmt yuv420p \
    -c:a aac -b:a 128k -f flv "$WORK/fixture.flv"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

start_ferrocast() { # rtmp_port http_port [binary]
    mkdir -p "$WORK/ferrocast"
    rm -rf "$WORK/ferrocast/data"
    # Players all come from 127.0.0.1: lift the per-address HTTP cap (256 by default).
    FERROCAST_RTMP__LISTEN="127.0.0.1:$1" FERROCAST_HTTP__LISTEN="127.0.0.1:$2" \
    FERROCAST_HTTP__MAX_CONNECTIONS_PER_IP=null \
    FERROCAST_DATA_DIR="$WORK/ferrocast/data" FERROCAST_HLS__ENABLED=true \
    FERROCAST_DASH__ENABLED=true FERROCAST_SRT__ENABLED=false FERROCAST_RTSP__ENABLED=false \
    FERROCAST_LOG=warn \
        "${3:-$FERROCAST}" >>"$WORK/ferrocast/log" 2>&1 &
    SERVER_PID=$!
    HLS_URL="http://127.0.0.1:$2/live/bench/index.m3u8"
    DASH_URL="http://127.0.0.1:$2/live/bench/index.mpd"
}
start_nginx() { # rtmp_port http_port
    mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp" "$WORK/nginx/hls" "$WORK/nginx/dash"
    sed -e "s#@PREFIX@#$WORK/nginx#g" -e "s#@RTMP_PORT@#$1#g" -e "s#@HTTP_PORT@#$2#g" \
        "$ROOT/bench/nginx-hls.conf" >"$WORK/nginx/nginx.conf"
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >>"$WORK/nginx/log" 2>&1 &
    SERVER_PID=$!
    HLS_URL="http://127.0.0.1:$2/hls/bench.m3u8"
    DASH_URL="http://127.0.0.1:$2/dash/bench.mpd"
}

max_n=0
for n in $CLIENTS; do (( n > max_n )) && max_n=$n; done

for spec in $SERVERS; do
    # LABEL=BINARY runs that ferrocast binary under LABEL (no '-' in labels).
    server="${spec%%=*}"; bin=""
    [[ "$spec" == *=* ]] && bin="${spec#*=}"
    rtmp="$(free_port)"; http="$(free_port)"
    if [[ -n "$bin" ]]; then start_ferrocast "$rtmp" "$http" "$bin"; else "start_$server" "$rtmp" "$http"; fi
    wait_listen "$rtmp"; wait_listen "$http"
    ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/fixture.flv" -c copy \
        -f flv "rtmp://127.0.0.1:$rtmp/live/bench" >>"$WORK/publisher.log" 2>&1 &
    PUB_PID=$!
    wait_playlist "$HLS_URL" 4
    echo "== $server (pid $SERVER_PID): $HLS_URL"
    for format in $FORMATS; do
        url="$HLS_URL"; [[ "$format" == dash ]] && url="$DASH_URL"
        for n in $CLIENTS; do
            if [[ -n "$(top -bn1 | awk 'NR > 7 && $9 > 50 && $12 ~ /cargo|rustc|cc1|ld/')" ]]; then
                echo "   note: a compile is running on this machine during this run" >&2
            fi
            name="$server-$format-$n"
            limit=$(( DURATION + WARMUP + n * RAMP_MS / 1000 + 60 ))
            perf_pid=""
            if [[ -n "${PERF:-}" && "$n" == "$max_n" ]]; then
                # Starts inside the measured window, after the ramp and the warmup.
                ( sleep "$(( WARMUP + n * RAMP_MS / 1000 + 2 ))"
                  perf record ${PERF_ARGS:--g} -o "$OUT/$name.perf.data" -p "$SERVER_PID" -- sleep 8 \
                      >/dev/null 2>&1 ) &
                perf_pid=$!
            fi
            if timeout "$limit" "$TOOL" --url "$url" --clients "$n" --duration "$DURATION" \
                --warmup "$WARMUP" --ramp-ms "$RAMP_MS" --reload "$RELOAD" \
                --server-pid "$SERVER_PID" --json >"$OUT/$name.json"; then
                jq -r '"   \(.mode) \(.clients) clients: \(.total.per_s | round) req/s, \(.total.errors) errors, server CPU \(.server.cpu_percent * 10 | round / 10) %, \(.server.cpu_ms_per_1000_requests // 0 | round) us/req"' \
                    "$OUT/$name.json"
            else
                echo "   $format $n clients: run failed (exit $?)" >&2
                rm -f "$OUT/$name.json"
            fi
            if [[ -n "$perf_pid" ]]; then
                wait "$perf_pid" || true
                perf report -i "$OUT/$name.perf.data" --no-children --sort sym --stdio \
                    2>/dev/null | grep -v '^$' | head -80 >"$OUT/$name.perf.txt" || true
                echo "   profile: $OUT/$name.perf.txt"
            fi
        done
    done
    stop_all
done

echo
echo "== comparison (window ${DURATION} s after ${WARMUP} s warmup; CPU in % of one core)"
echo "   us/req = server CPU per response; +us/req = the same above the server's 0-client CPU"
{
    printf 'server\tfmt\tN\tactive\treq/s\tpl/s\tseg/s\tinit/s\terr\tMB/s\tsrvCPU%%\tus/req\t+us/req\ts/GB\tp99pl_ms\tp99seg_ms\ttoolCPU%%\tothers%%\n'
    for f in "$OUT"/*.json; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .json)"
        server="${name%%-*}"; rest="${name#*-}"; format="${rest%%-*}"
        base="$OUT/$server-$format-0.json"
        base_cpu="null"
        [[ -e "$base" ]] && base_cpu="$(jq '.server.cpu_percent' "$base")"
        jq -r --arg s "$server" --argjson base "$base_cpu" '
            def r(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
            def r0(x): if x == null then "-" else (x | round | tostring) end;
            [$s, .mode, .clients, .active, r(.total.per_s), r(.requests.playlist.per_s),
             r(.requests.segment.per_s), r(.requests.init.per_s), .total.errors,
             r(.total.mbit_s / 8), r(.server.cpu_percent), r0(.server.cpu_ms_per_1000_requests),
             r0(if $base == null or .total.per_s == 0 then null
                else (.server.cpu_percent - $base) / 100 * 1e6 / .total.per_s end),
             r(.server.cpu_s_per_gb), r(.requests.playlist.p99_ms), r(.requests.segment.p99_ms),
             r(.tool.cpu_percent), r(.machine.others_cpu_percent)] | @tsv' "$f"
    done | sort -k2,2 -k3,3n -k1,1
} | column -t -s $'\t' | tee "$OUT/table.txt"
echo "results: $OUT"
