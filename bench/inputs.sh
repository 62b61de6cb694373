#!/usr/bin/env bash
# Pulled-input benchmark: gateway CPU per pulled input (RTSP, SRT, HLS) and the time from a
# primary input dying to the backup's first bytes at a reader (bench/inputs.py measures).
#
#   bench/inputs.sh              # 10 inputs per kind, 20 s window
#   N=20 WINDOW=30 KINDS="rtsp hls" bench/inputs.sh
#
# Needs ffmpeg, srt-live-transmit and the RTSP camera's packages (scripts/test installs them).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
echo "== building (release)" >&2
(cd "$ROOT" && cargo build --release -p ferrocast >&2)
exec python3 "$ROOT/bench/inputs.py" "$ROOT/target/release/ferrocast" "${N:-10}" "${WINDOW:-20}"
