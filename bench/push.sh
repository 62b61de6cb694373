#!/usr/bin/env bash
# CPU cost of push: one 2.5 Mbit/s 720p stream pushed to 0, 1 or 10 destinations over rtmp://
# and rtmps://, on 127.0.0.1.
#
#   bench/push.sh                       # cases: none rtmp:1 rtmp:10 rtmps:1 rtmps:10
#   CASES="rtmp:10 rtmps:10" DURATION=30 bench/push.sh
#
# The origin (release ferrocast, HLS and DASH off) gets the publisher (ffmpeg -re -c copy) and
# a stream whose push list has N destinations, all on one sink: a second ferrocast listening
# RTMP and RTMPS (self-signed certificate, trusted by the origin through tls.extra_ca_file).
# After every push is active and WARMUP seconds have passed, the origin's CPU (utime+stime from
# /proc/PID/stat) is measured over DURATION seconds. A fresh origin per case; one sink.
# Needs ffmpeg, openssl, curl, jq.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CASES="${CASES:-none rtmp:1 rtmp:10 rtmps:1 rtmps:10}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
WORK="$(mktemp -d /tmp/ferrocast-push-bench.XXXXXX)"
HZ="$(getconf CLK_TCK)"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() { # port
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "no /healthz on port $1" >&2
    return 1
}
# utime + stime of a process, in clock ticks.
cpu_ticks() { # pid
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
stop() { # pid: ends one of ours and forgets it
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

echo "== building (release)"
(cd "$ROOT" && cargo build --release -p ferrocast)
FERROCAST="$ROOT/target/release/ferrocast"

echo "== fixture: 20 s 1280x720 30 fps H.264 2.5 Mbit/s + AAC"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 20 -c:v libx264 -preset veryfast -tune zerolatency \
    -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 -keyint_min 60 -pix_fmt yuv420p \
    -c:a aac -b:a 128k -f flv "$WORK/fixture.flv"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=ferrocast-push-bench -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$WORK/sink.key" -out "$WORK/sink.crt" 2>/dev/null

start_ferrocast() { # name http_port rtmp_port [extra env...]
    local name="$1" http="$2" rtmp="$3"
    shift 3
    mkdir -p "$WORK/$name"
    env FERROCAST_RTMP__LISTEN="127.0.0.1:$rtmp" FERROCAST_HTTP__LISTEN="127.0.0.1:$http" \
        FERROCAST_DATA_DIR="$WORK/$name/data" FERROCAST_HLS__ENABLED=false \
        FERROCAST_DASH__ENABLED=false FERROCAST_LOG=warn "$@" \
        "$FERROCAST" >>"$WORK/$name/log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    wait_http "$http"
}

SINK_HTTP="$(free_port)"
SINK_RTMP="$(free_port)"
SINK_RTMPS="$(free_port)"
start_ferrocast sink "$SINK_HTTP" "$SINK_RTMP" \
    FERROCAST_RTMPS__LISTEN="127.0.0.1:$SINK_RTMPS" \
    FERROCAST_RTMPS__CERT_FILE="$WORK/sink.crt" FERROCAST_RTMPS__KEY_FILE="$WORK/sink.key"
SINK_PID=$LAST_PID

RESULTS="$WORK/results.tsv"
printf 'case\tdests\torigin_cpu%%\tsink_cpu%%\tpush_kbps_each\tdropped\tloadavg_before\tloadavg_after\n' >"$RESULTS"
n_case=0
for c in $CASES; do
    n_case=$((n_case + 1))
    scheme="${c%%:*}"
    count="${c##*:}"
    [[ "$c" == none ]] && count=0
    case "$scheme" in
        rtmp) port="$SINK_RTMP" ;;
        rtmps) port="$SINK_RTMPS" ;;
        *) port="" ;;
    esac
    push="[]"
    if [[ "$count" -gt 0 ]]; then
        push="$(seq 0 $((count - 1)) | jq -R --arg base "$scheme://127.0.0.1:$port/live/c${n_case}_" \
            '{url: ($base + .), timeout_s: 5, retry: {initial_s: 0.5, max_s: 2}}' | jq -s .)"
    fi

    http="$(free_port)"
    rtmp="$(free_port)"
    start_ferrocast "origin$n_case" "$http" "$rtmp" FERROCAST_TLS__EXTRA_CA_FILE="$WORK/sink.crt"
    origin="$LAST_PID"
    curl -fsS -X PUT -H 'Content-Type: application/json' \
        --data "{\"push\": $push}" "http://127.0.0.1:$http/api/v1/streams/bench" >/dev/null
    ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$WORK/fixture.flv" \
        -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/bench" >>"$WORK/origin$n_case/publisher.log" 2>&1 &
    publisher=$!
    PIDS+=("$publisher")

    api="http://127.0.0.1:$http/api/v1/streams/bench"
    for _ in $(seq 150); do
        active="$(curl -fsS "$api" | jq '[.runtime.pushes[] | select(.status == "active")] | length')"
        live="$(curl -fsS "$api" | jq -r .runtime.status)"
        [[ "$live" == live && "$active" -eq "$count" ]] && break
        sleep 0.1
    done
    if [[ "$live" != live || "$active" -ne "$count" ]]; then
        echo "case $c: $active of $count pushes active (stream $live); see $WORK" >&2
        KEEP_WORK=1
        exit 1
    fi
    sleep "$WARMUP"

    load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
    o0="$(cpu_ticks "$origin")"
    s0="$(cpu_ticks "$SINK_PID")"
    b0="$(curl -fsS "$api" | jq '[.runtime.pushes[].bytes_sent] | add // 0')"
    sleep "$DURATION"
    o1="$(cpu_ticks "$origin")"
    s1="$(cpu_ticks "$SINK_PID")"
    state="$(curl -fsS "$api")"
    b1="$(jq '[.runtime.pushes[].bytes_sent] | add // 0' <<<"$state")"
    dropped="$(jq '[.runtime.pushes[].frames_dropped] | add // 0' <<<"$state")"
    still="$(jq '[.runtime.pushes[] | select(.status == "active")] | length' <<<"$state")"
    load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
    [[ "$still" -eq "$count" ]] || echo "case $c: only $still of $count pushes active at the end" >&2

    pct() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v d="$DURATION" 'BEGIN { printf "%.1f", (b - a) / hz / d * 100 }'; }
    kbps="$(awk -v a="$b0" -v b="$b1" -v n="$count" -v d="$DURATION" \
        'BEGIN { if (n == 0) print "-"; else printf "%.0f", (b - a) * 8 / 1000 / d / n }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scheme" "$count" "$(pct "$o0" "$o1")" \
        "$(pct "$s0" "$s1")" "$kbps" "$dropped" "$load_before" "$load_after" >>"$RESULTS"
    echo "== $c: origin $(pct "$o0" "$o1") % CPU, sink $(pct "$s0" "$s1") %, $kbps kbit/s per push, load $load_after"

    stop "$publisher"
    stop "$origin"
done

echo
echo "== origin CPU in % of one core over ${DURATION} s ($(nproc) cores; sink and publisher share them)"
column -t -s $'\t' "$RESULTS"
