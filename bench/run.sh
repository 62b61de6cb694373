#!/usr/bin/env bash
# Load test: ferrocast vs nginx-rtmp, one publisher and N players each, on 127.0.0.1.
#
#   bench/run.sh                    # N in 1 100 500, 30 s window, 5 s warmup
#   PLAYERS="1 100" DURATION=15 WARMUP=3 bench/run.sh
#   SERVERS=ferrocast bench/run.sh  # skip nginx-rtmp
#   PROCS=2 bench/run.sh            # players in 2 worker processes (--procs)
#
# Needs ffmpeg, nginx with libnginx-mod-rtmp, jq. Results: $OUT (default a temp dir) holds one
# JSON report per run and the comparison table. Server start/stop and the table: bench/lib.sh
# (BUILD=0, FERROCAST=PATH, FIXTURE=PATH there too). Many players: bench/scale.sh; many
# streams: bench/streams.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PLAYERS="${PLAYERS:-1 100 500}"
DURATION="${DURATION:-30}"
WARMUP="${WARMUP:-5}"
RAMP_MS="${RAMP_MS:-2}"
PROCS="${PROCS:-1}"
SERVERS="${SERVERS:-ferrocast nginx}"
WORK="$(mktemp -d /tmp/ferrocast-bench.XXXXXX)"
OUT="${OUT:-$WORK/results}"
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_build
bench_fixture
bench_nofile
bench_load

for server in $SERVERS; do
    for n in $PLAYERS; do
        procs=$(( n < PROCS ? (n > 0 ? n : 1) : PROCS ))
        bench_one "$server" "$OUT/$server-$n.json" "$n" --players "$n" --procs "$procs" || true
    done
done

echo
echo "== comparison (window ${DURATION} s after ${WARMUP} s warmup; CPU in % of one core)"
bench_table "$OUT"/*.json | column -t -s $'\t' | tee "$OUT/table.txt"
echo "results: $OUT"
