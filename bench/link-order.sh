#!/usr/bin/env bash
# Regenerates crates/ferrocast/link-order.txt: the functions a running server executes, hottest
# first, which the release link places together (see crates/ferrocast/build.rs).
#
#   bench/link-order.sh                  # builds the release binary, then profiles it
#   BUILD=0 FERROCAST=path bench/link-order.sh
#   CHECK=1 bench/link-order.sh          # how much of the list a release build still has
#
# Why: the kernel maps 64 KiB around every code page a process touches (fault-around), and a
# linker lays functions out by crate and module, so a server that touches a few thousand
# functions spread over an 18 MB text ends up with most of its text resident. Grouping them
# shrinks that to about their own size.
#
# The workload runs under valgrind's callgrind, which counts every function executed, not a
# sample: the server starts, an ffmpeg publisher sends the fixture over RTMP, two RTMP players
# and HLS, DASH and API clients read it, and the server stops gracefully. Run it again when the
# toolchain changes or a hot path moves. Symbol names carry hashes, and those of generic code
# instantiated with closures and futures move as the code changes: a name the build lacks is
# left where the linker puts it. With 57 % of the names found an idle server kept 1,570 text
# pages, against 817 with a list made from the same code (86 %: libc's names are never
# found); CHECK=1 says which it is. Needs valgrind, ffmpeg, curl
# and python3 (CHECK=1: nm).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/ferrocast-order.XXXXXX)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    bench_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "${BUILD:-1}" != 0 ]]; then
    (cd "$ROOT" && cargo build --release -p ferrocast)
fi
if [[ "${CHECK:-0}" == 1 ]]; then
    nm --defined-only "$FERROCAST" | awk '{print $NF}' | sort -u >"$WORK/have"
    sort -u "$ROOT/crates/ferrocast/link-order.txt" >"$WORK/want"
    want=$(wc -l <"$WORK/want"); found=$(comm -12 "$WORK/have" "$WORK/want" | wc -l)
    if (( want == 0 )); then echo "crates/ferrocast/link-order.txt is empty"; exit 1; fi
    echo "$found of $want names in $FERROCAST ($(( 100 * found / want )) %); libc's are never there"
    exit 0
fi
bench_fixture

rtmp="$(free_port)"; http="$(free_port)"
mkdir -p "$WORK/server"
FERROCAST_RTMP__LISTEN="127.0.0.1:$rtmp" FERROCAST_HTTP__LISTEN="127.0.0.1:$http" \
FERROCAST_RTSP__LISTEN="127.0.0.1:$(free_port)" FERROCAST_SRT__LISTEN="127.0.0.1:$(free_port)" \
FERROCAST_DATA_DIR="$WORK/server/data" FERROCAST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no \
        --compress-strings=no --compress-pos=no --demangle=no "$FERROCAST" \
        >"$WORK/server/log" 2>&1 &
SERVER_PID=$!
wait_listen "$rtmp"; wait_listen "$http"

ffmpeg -hide_banner -loglevel error -re -i "$FIXTURE" -t 15 -c copy \
    -f flv "rtmp://127.0.0.1:$rtmp/live/order" >"$WORK/publisher.log" 2>&1 &
PIDS+=($!)
sleep 4
for _ in 1 2; do
    timeout 10 ffmpeg -hide_banner -loglevel error -i "rtmp://127.0.0.1:$rtmp/live/order" \
        -t 6 -c copy -f null - >>"$WORK/players.log" 2>&1 &
    PIDS+=($!)
done
sleep 4
for path in live/order/index.m3u8 live/order/index.mpd api/v1/streams metrics /; do
    curl -s -o /dev/null "http://127.0.0.1:$http/$path" || true
done
sleep 6
# Graceful, so callgrind writes its counts; valgrind is slow to get there.
kill -TERM "$SERVER_PID"
for _ in $(seq 600); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

# Self cost per function: cost lines follow `fn=`; the line after `calls=` is the call's
# inclusive cost, which belongs to the callee, not to the function.
python3 - "$WORK/callgrind.out" "$ROOT/crates/ferrocast/link-order.txt" <<'EOF'
import re, sys
cost, fn, skip = {}, None, False
for line in open(sys.argv[1], errors="replace"):
    if skip:
        skip = False
        continue
    if line.startswith("fn="):
        fn = line[3:].strip()
        cost.setdefault(fn, 0)
    elif line.startswith("cfn="):
        cost.setdefault(line[4:].strip(), 0)
    elif line.startswith("calls="):
        skip = True
    elif fn and line[:1] and (line[:1].isdigit() or line[:1] in "+-*"):
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            cost[fn] += int(parts[1])
# callgrind names a function's recursion levels and cycles `name'2`; the linker knows only
# `name`. Addresses and `(below main)` are code without a symbol.
merged = {}
for n, c in cost.items():
    base = re.sub(r"'\d+$", "", n)
    if not base.startswith(("0x", "(")):
        merged[base] = merged.get(base, 0) + c
names = sorted(merged, key=lambda n: -merged[n])
with open(sys.argv[2], "w") as out:
    for n in names:
        out.write(n + "\n")
print(f"{len(names)} functions -> {sys.argv[2]}")
EOF
