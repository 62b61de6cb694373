#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) one after the other, each to a number of
# executions (-runs, default 10 million) or for a time (-t seconds), on one core at low
# priority, and prints a table of real execution counts, crashes and corpus sizes.
#
#   ./campaign.sh                      # every target to 10M executions (the hardening bar)
#   ./campaign.sh -r 1000000 srt_packet rtsp_request
#   ./campaign.sh -t 300               # 5 minutes each
#
# Builds once (release, debug assertions, no sanitizer: the fuzzed crates forbid unsafe code,
# so ASan would only cut the execution rate; SANITIZER=address to change that) with the `api`
# feature, seeds the corpora (seed.sh), then runs the binaries directly, one at a time, with
# -jobs=1 -workers=1 under `nice -n ${NICE:-15}`. Findings go to artifacts/<target>/, logs to
# logs/<target>.log (with -jobs=1 libFuzzer runs one worker whose live output is fuzz-0.log);
# a crash does not stop the campaign (the table shows it).
set -euo pipefail
cd "$(dirname "$0")"
RUNS=10000000
TIME=
while getopts "r:t:" o; do
  case $o in
    r) RUNS=$OPTARG ;;
    t) TIME=$OPTARG ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
SAN=${SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
nice -n "${NICE:-15}" cargo fuzz build -s "$SAN" --features api >&2
./seed.sh >&2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --features api 2>/dev/null || cargo fuzz list)
fi
BIN=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
limit=(-runs="$RUNS")
[ -n "$TIME" ] && limit=(-max_total_time="$TIME")
rows=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  set +e
  nice -n "${NICE:-15}" "$BIN/$t" "corpus/$t" -jobs=1 -workers=1 "${limit[@]}" \
    -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
  rows+=("$(printf '| %-20s | %12s | %7s | %7s | %7s | %3s |' "$t" "${execs:-?}" "$secs" \
    "$crashes" "$(find "corpus/$t" -type f | wc -l)" "$rc")")
  echo "${rows[-1]}" >&2
done
echo
printf '| %-20s | %12s | %7s | %7s | %7s | %3s |\n' target executions seconds crashes corpus rc
printf '|%s|%s|%s|%s|%s|%s|\n' :--------------------- -------------: --------: --------: --------: ----:
printf '%s\n' "${rows[@]}"
