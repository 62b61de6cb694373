#!/usr/bin/env bash
# Scale: one stream, N players, N from 1 to 2,000, against ferrocast and nginx-rtmp; the
# players run in PROCS worker processes of ferrocast-bench (--procs) so the load generator is
# not one process competing with the server for the same cores.
#
#   bench/scale.sh                                 # N in 1 100 500 1000 2000, 20 s window
#   PLAYERS="1 100" DURATION=10 bench/scale.sh     # a quick check of the mechanics
#   RUNS=2 SERVERS=ferrocast BUILD=0 bench/scale.sh
#
# Prints the table of every run, then per server and run: the server's CPU-per-player slope
# (least-squares fit of CPU % of one core against N, and between consecutive N) and the RSS
# slope between 100 and 500 players (issue 14: at most 16 KiB per extra player).
# Knobs: PLAYERS, DURATION, WARMUP, RAMP_MS, PROCS (default 2), RUNS, SERVERS, OUT; BUILD,
# FERROCAST, FIXTURE (bench/lib.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PLAYERS="${PLAYERS:-1 100 500 1000 2000}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
RAMP_MS="${RAMP_MS:-2}"
PROCS="${PROCS:-2}"
RUNS="${RUNS:-1}"
SERVERS="${SERVERS:-ferrocast nginx}"
WORK="$(mktemp -d /tmp/ferrocast-scale.XXXXXX)"
OUT="${OUT:-$WORK/results}"
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_build
bench_fixture
bench_nofile
max=0; for n in $PLAYERS; do (( n > max )) && max=$n; done
if (( $(ulimit -n) < max + 100 )); then
    echo "warning: open-file limit $(ulimit -n) is below $max players + margin" >&2
fi

for run in $(seq "$RUNS"); do
    for server in $SERVERS; do
        for n in $PLAYERS; do
            bench_load
            procs=$(( n < PROCS ? (n > 0 ? n : 1) : PROCS ))
            bench_one "$server" "$OUT/$server-$n-r$run.json" "$n" \
                --players "$n" --procs "$procs" || true
        done
    done
done

{
    for run in $(seq "$RUNS"); do
        echo
        echo "== run $run of $RUNS: 1 stream, N players in up to $PROCS worker processes;" \
            "window ${DURATION} s after ${WARMUP} s warmup; CPU in % of one core"
        bench_table "$OUT"/*-r"$run".json | column -t -s $'\t'
    done

    echo
    echo "== slopes (server CPU in % of one core, RSS in KiB)"
    for f in "$OUT"/*-r*.json; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .json)"
        jq -r --arg s "${name%%-*}" --arg r "${name##*-r}" \
            '[$s, $r, .players, .connected, (.server.cpu_percent // "nan"),
              (.server.rss_kib // "nan")] | @tsv' "$f"
    done | sort -k1,1 -k2,2n -k3,3n | awk -F'\t' '
        function flush(   b, den, i, pairs, rss) {
            if (key == "") return
            den = k * sxx - sx * sx
            b = den > 0 ? (k * sxy - sx * sy) / den : 0
            printf "%s run %s: CPU per player %.4f %% of a core (%.1f %% per 1000 players),", srv, run, b, b * 1000
            printf " least squares over N = %s\n", ns
            pairs = ""
            for (i = 2; i <= k; i++)
                pairs = pairs sprintf("  %d-%d: %.4f", xs[i-1], xs[i], (ys[i] - ys[i-1]) / (xs[i] - xs[i-1]))
            if (pairs != "") printf "    between consecutive N (%% per player):%s\n", pairs
            if ((100 in rs) && (500 in rs))
                printf "    RSS per extra player, 100 -> 500: %.1f KiB (target <= 16)\n", (rs[500] - rs[100]) / 400
            if (warn != "") printf "    note: not every player connected at N =%s\n", warn
        }
        {
            if ($1 SUBSEP $2 != key) {
                flush(); key = $1 SUBSEP $2; srv = $1; run = $2
                k = sx = sy = sxx = sxy = 0; ns = ""; warn = ""; delete xs; delete ys; delete rs
            }
            if ($5 == "nan") next
            k++; xs[k] = $3; ys[k] = $5; sx += $3; sy += $5; sxx += $3 * $3; sxy += $3 * $5
            ns = ns (ns == "" ? "" : " ") $3
            if ($6 != "nan") rs[$3] = $6
            if ($4 != $3) warn = warn " " $3
        }
        END { flush() }'
} | tee "$OUT/table.txt"
echo "results: $OUT"
