#!/usr/bin/env bash
# CPU per reader for RTSP (TCP interleaved) and SRT play: one 2.5 Mbit/s 720p30 + AAC stream
# published over RTMP, N readers of one protocol, server CPU sampled from /proc over a window.
#
#   bench/readers.sh                      # N in 1 50, 20 s window, 5 s warmup
#   READERS="1 10 50" DURATION=30 bench/readers.sh
#   PROTOCOLS=srt READERS=50 BIN=/tmp/ferrocast-before bench/readers.sh   # one protocol, a given binary
#
# Readers: bench/rtsp_readers.py (all RTSP players in one Python process) and one
# srt-live-transmit per SRT player writing to /dev/null; both are cheap next to the server.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
READERS="${READERS:-1 50}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
PROTOCOLS="${PROTOCOLS:-rtsp srt}"
BIN="${BIN:-}"
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

if [[ -z "$BIN" ]]; then
    (cd "$ROOT" && cargo build --release -q -p ferrocast)
    BIN="$ROOT/target/release/ferrocast"
fi
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 30 -c:v libx264 -preset veryfast -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 \
    -c:a aac -b:a 128k -f flv "$WORK/in.flv"

RTMP=$(port SOCK_STREAM); HTTP=$(port SOCK_STREAM); RTSP=$(port SOCK_STREAM); SRT=$(port SOCK_DGRAM)
FERROCAST_DATA_DIR="$WORK/data" FERROCAST_LOG=warn \
FERROCAST_RTMP__LISTEN=127.0.0.1:$RTMP FERROCAST_HTTP__LISTEN=127.0.0.1:$HTTP \
FERROCAST_RTSP__LISTEN=127.0.0.1:$RTSP FERROCAST_SRT__LISTEN=127.0.0.1:$SRT \
    "$BIN" 2>"$WORK/server.log" &
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
    [[ " $PROTOCOLS " == *" rtsp "* ]] || break
    python3 "$ROOT/bench/rtsp_readers.py" "rtsp://127.0.0.1:$RTSP/live/bench" "$n" $((WARMUP + DURATION + 2)) >"$WORK/rtsp.out" &
    reader=$!
    measure rtsp "$n"
    wait "$reader"
    echo "    rtsp bytes received: $(cat "$WORK/rtsp.out")"
done
for n in $READERS; do
    [[ " $PROTOCOLS " == *" srt "* ]] || break
    slt=()
    for i in $(seq "$n"); do
        # Statistics every 1000 packets: their loss and drop counters show whether delivery was clean.
        srt-live-transmit -q -s:1000 -pf:json -statsout:"$WORK/srt.$n.$i.stats" \
            "srt://127.0.0.1:$SRT?streamid=live/bench" file://con >/dev/null 2>/dev/null &
        slt+=("$!")
    done
    measure srt "$n"
    kill "${slt[@]}" 2>/dev/null || true
    wait "${slt[@]}" 2>/dev/null || true
    python3 - "$WORK" "$n" <<'PY'
import glob, json, sys
work, n = sys.argv[1], sys.argv[2]
lost = dropped = received = rexmit = belated = 0
for f in glob.glob(f"{work}/srt.{n}.*.stats"):
    # One JSON object per report; srt-live-transmit clears the counters after each.
    for line in open(f):
        line = line.strip().rstrip(",")
        if not line.startswith("{"):
            continue
        try:
            recv = json.loads(line).get("recv", {})
        except ValueError:
            continue
        lost += recv.get("packetsLost", 0)
        dropped += recv.get("packetsDropped", 0)
        received += recv.get("packets", 0)
        rexmit += recv.get("packetsRetransmitted", 0)
        belated += recv.get("packetsBelated", 0)
# Lost packets that were retransmitted in time are not dropped: `dropped` is what players missed.
print(f"    srt: {received} packets received, {lost} lost, {dropped} dropped (all readers); "
      f"{rexmit} retransmitted, {belated} belated (duplicates or too late)")
PY
done
