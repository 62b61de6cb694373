#!/usr/bin/env bash
# CPU per reader for RTSP (TCP interleaved) and SRT play: one 2.5 Mbit/s 720p30 + AAC stream
# published over RTMP, N readers of one protocol, server CPU sampled from /proc over a window.
#
#   bench/readers.sh                      # N in 1 50, 20 s window, 5 s warmup
#   READERS="1 10 50" DURATION=30 bench/readers.sh
#
# Readers: bench/rtsp_readers.py (all RTSP players in one Python process) and one
# srt-live-transmit per SRT player writing to /dev/null; both are cheap next to the server.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
READERS="${READERS:-1 50}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
WORK="$(mktemp -d /tmp/ferrocast-readers.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

(cd "$ROOT" && cargo build --release -q -p ferrocast)
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 30 -c:v libx264 -preset veryfast -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 \
    -c:a aac -b:a 128k -f flv "$WORK/in.flv"

RTMP=$(port SOCK_STREAM); HTTP=$(port SOCK_STREAM); RTSP=$(port SOCK_STREAM); SRT=$(port SOCK_DGRAM)
FERROCAST_DATA_DIR="$WORK/data" FERROCAST_LOG=warn \
FERROCAST_RTMP__LISTEN=127.0.0.1:$RTMP FERROCAST_HTTP__LISTEN=127.0.0.1:$HTTP \
FERROCAST_RTSP__LISTEN=127.0.0.1:$RTSP FERROCAST_SRT__LISTEN=127.0.0.1:$SRT \
    "$ROOT/target/release/ferrocast" 2>"$WORK/server.log" &
SERVER=$!; PIDS+=("$SERVER")
sleep 1
ffmpeg -v error -re -stream_loop -1 -i "$WORK/in.flv" -c copy -f flv "rtmp://127.0.0.1:$RTMP/live/bench" &
PIDS+=("$!")
sleep 3
HZ=$(getconf CLK_TCK)

runtime() { # prints "readers-of-protocol bytes_out" from the API
    curl -s "http://127.0.0.1:$HTTP/api/v1/streams/bench" | python3 -c \
        'import json,sys; r=json.load(sys.stdin)["runtime"]; print(r["readers"].get(sys.argv[1], 0), r["bytes_out"])' "$1"
}

measure() { # label readers
    sleep "$WARMUP"
    local t0 t1 r0 r1
    r0=$(runtime "$1"); t0=$(ticks "$SERVER"); sleep "$DURATION"; t1=$(ticks "$SERVER"); r1=$(runtime "$1")
    python3 - "$1" "$2" "$t0" "$t1" "$HZ" "$DURATION" "$BASE" "$r0" "$r1" <<'PY'
import sys
label, n, t0, t1, hz, dur, base = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:8])
(connected, b0), (_, b1) = (map(int, sys.argv[8].split())), (map(int, sys.argv[9].split()))
cpu = (t1 - t0) / hz / dur * 100
mbit = (b1 - b0) * 8 / dur / 1e6
print(f"{label:4} readers={n:>3} (API: {connected} connected, {mbit:6.1f} Mbit/s out) server CPU "
      f"{cpu:5.1f} % of one core, {(cpu - base) / n:5.3f} % per reader above the no-reader base")
PY
}

base0=$(ticks "$SERVER"); sleep "$DURATION"; base1=$(ticks "$SERVER")
BASE=$(python3 -c "print(($base1-$base0)/$HZ/$DURATION*100)")
printf 'no readers: server CPU %.1f %% of one core (publisher, HLS, DASH)\n' "$BASE"
for n in $READERS; do
    python3 "$ROOT/bench/rtsp_readers.py" "rtsp://127.0.0.1:$RTSP/live/bench" "$n" $((WARMUP + DURATION + 2)) >"$WORK/rtsp.out" &
    reader=$!
    measure rtsp "$n"
    wait "$reader"
    echo "    rtsp bytes received: $(cat "$WORK/rtsp.out")"
done
for n in $READERS; do
    slt=()
    for _ in $(seq "$n"); do
        srt-live-transmit -q "srt://127.0.0.1:$SRT?streamid=live/bench" file://con >/dev/null 2>&1 &
        slt+=("$!")
    done
    measure srt "$n"
    kill "${slt[@]}" 2>/dev/null || true
    wait "${slt[@]}" 2>/dev/null || true
done
