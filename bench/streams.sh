#!/usr/bin/env bash
# Many streams: S publishers (bench0 .. bench{S-1}, starts spread over one GOP) with P players
# each, against ferrocast and nginx-rtmp; CPU and RSS per stream side by side.
#
#   bench/streams.sh                               # 200 streams x 5 players, 20 s window
#   STREAMS=20 PER_STREAM=5 DURATION=10 bench/streams.sh
#
# Knobs: STREAMS, PER_STREAM, DURATION, WARMUP, RAMP_MS, PROCS (worker processes for the
# players, default 2), RUNS, SERVERS, OUT; BUILD, FERROCAST, FIXTURE (bench/lib.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STREAMS="${STREAMS:-200}"
PER_STREAM="${PER_STREAM:-5}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
RAMP_MS="${RAMP_MS:-2}"
PROCS="${PROCS:-2}"
RUNS="${RUNS:-1}"
SERVERS="${SERVERS:-ferrocast nginx}"
WORK="$(mktemp -d /tmp/ferrocast-streams.XXXXXX)"
OUT="${OUT:-$WORK/results}"
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_build
bench_fixture
bench_nofile
total=$(( STREAMS * PER_STREAM ))

for run in $(seq "$RUNS"); do
    for server in $SERVERS; do
        bench_load
        bench_one "$server" "$OUT/$server-${STREAMS}x$PER_STREAM-r$run.json" "$total" \
            --streams "$STREAMS" --players "$PER_STREAM" --procs "$PROCS" || true
    done
done

echo
echo "== $STREAMS streams x $PER_STREAM players (window ${DURATION} s after ${WARMUP} s warmup;" \
    "CPU in % of one core; RSS per stream = total / streams, and above the idle server)"
{
    printf 'server\trun\tconn\tfail\tff_p50\tlat_p50\tlat_p99\tloss%%\tsrvCPU%%\tCPU/stream%%\tRSS_MiB\tKiB/stream\tKiB/stream>idle\ttoolCPU%%\tother%%\tpub_late_ms\n'
    for f in "$OUT"/*.json; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .json)"
        jq -r --arg s "${name%%-*}" --arg r "${name##*-r}" '
            def r(x; d): if x == null then "-" else (x * d | round / d | tostring) end;
            [$s, $r, "\(.connected)/\(.players)", .failed,
             r(.first_frame.p50_ms; 10), r(.latency.p50_ms; 10), r(.latency.p99_ms; 10),
             r(.loss.percent; 1000),
             r(.server.cpu_percent; 10), r(.server.cpu_percent_per_stream; 1000),
             r(if .server.rss_kib then .server.rss_kib / 1024 else null end; 10),
             r(.server.rss_per_stream_kib; 10), r(.server.rss_per_stream_above_idle_kib; 10),
             r(.tool.cpu_percent; 10), r(.machine.other_cpu_percent; 10),
             r(.publisher.max_lateness_ms; 10)] | @tsv' "$f"
    done | sort -k2,2n -k1,1
} | column -t -s $'\t' | tee "$OUT/table.txt"
echo "results: $OUT"
