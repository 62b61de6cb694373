# Shared by bench/run.sh, bench/scale.sh, bench/streams.sh and bench/http.sh; sourced, not run.
#
# The sourcing script sets ROOT (the repository) and WORK (a scratch directory) first, and
# calls bench_cleanup from its EXIT trap. Knobs read here:
#   BUILD=0          use the binaries in target/release as they are (no cargo build)
#   FERROCAST=PATH   the server binary to measure (default target/release/ferrocast)
#   BENCH=PATH       the load tool binary (default target/release/ferrocast-bench)
#   FIXTURE=PATH     an FLV to publish instead of the generated 20 s 720p30 fixture

SERVER_PID=""
FERROCAST="${FERROCAST:-$ROOT/target/release/ferrocast}"
BENCH="${BENCH:-$ROOT/target/release/ferrocast-bench}"

stop_pid() { # pid
    if [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
        # Bounded wait, then force.
        for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}

stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

bench_cleanup() {
    stop_server
    if [[ -z "${KEEP_WORK:-}" ]]; then
        # Keep the results, drop the fixture and server state.
        rm -rf "$WORK/fixture.flv" "$WORK/ferrocast" "$WORK/nginx"
    fi
}

# A TCP port nothing listens on (the kernel picks it; a tiny race is acceptable here).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listen() { # port
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server did not listen on port $1" >&2
    return 1
}

bench_build() {
    if [[ "${BUILD:-1}" == 0 ]]; then
        echo "== not building (BUILD=0): $FERROCAST, $BENCH"
    else
        echo "== building (release)"
        (cd "$ROOT" && cargo build --release -p ferrocast -p ferrocast-bench)
    fi
    [[ -x "$FERROCAST" && -x "$BENCH" ]] || { echo "missing $FERROCAST or $BENCH" >&2; return 1; }
}

# Sets FIXTURE: the given file, or a 20 s 1280x720 30 fps 2.5 Mbit/s H.264 + AAC one, GOP 2 s.
bench_fixture() {
    if [[ -n "${FIXTURE:-}" ]]; then
        echo "== fixture: $FIXTURE"
        return 0
    fi
    echo "== fixture: 20 s 1280x720 30 fps H.264 2.5 Mbit/s + AAC"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i testsrc2=size=1280x720:rate=30 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -t 20 -c:v libx264 -preset veryfast -tune zerolatency \
        -b:v 2500k -maxrate 2500k -bufsize 5000k -g 60 -keyint_min 60 -pix_fmt yuv420p \
        -c:a aac -b:a 128k -f flv "$WORK/fixture.flv"
    FIXTURE="$WORK/fixture.flv"
}

# Every player and publisher is one fd in the server and one in a tool process; servers and
# tool inherit this shell's limit. Raises the soft limit as far as the hard one allows.
bench_nofile() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    echo "== open files: soft $(ulimit -n), hard $(ulimit -Hn)"
}

start_ferrocast() { # port
    local http; http="$(free_port)"
    mkdir -p "$WORK/ferrocast"
    # HLS and DASH off: nginx-rtmp is measured as a pure RTMP relay too. RTSP and SRT on free
    # ports, so a bench never collides with another server on their defaults.
    FERROCAST_RTMP__LISTEN="127.0.0.1:$1" FERROCAST_HTTP__LISTEN="127.0.0.1:$http" \
    FERROCAST_RTSP__LISTEN="127.0.0.1:$(free_port)" FERROCAST_SRT__LISTEN="127.0.0.1:$(free_port)" \
    FERROCAST_DATA_DIR="$WORK/ferrocast/data" FERROCAST_HLS__ENABLED=false \
    FERROCAST_DASH__ENABLED=false FERROCAST_LOG=warn \
        "$FERROCAST" >>"$WORK/ferrocast/log" 2>&1 &
    SERVER_PID=$!
}

start_nginx() { # port
    mkdir -p "$WORK/nginx/logs"
    sed -e "s#@PREFIX@#$WORK/nginx#g" -e "s#@PORT@#$1#g" "$ROOT/bench/nginx-rtmp.conf" \
        >"$WORK/nginx/nginx.conf"
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >>"$WORK/nginx/log" 2>&1 &
    SERVER_PID=$!
}

# One run on a fresh server (so RSS before/after players is not skewed by earlier runs):
#   bench_one SERVER OUT.json PLAYERS_TOTAL [ferrocast-bench arguments...]
# PLAYERS_TOTAL only sizes the time limit. Returns non-zero (and removes OUT.json) on failure.
bench_one() {
    local server="$1" out="$2" total="$3"; shift 3
    local port rc=0
    port="$(free_port)"
    "start_$server" "$port"
    wait_listen "$port" || { stop_server; return 1; }
    echo "== $server: $* (pid $SERVER_PID, port $port)"
    local limit=$(( ${DURATION:-30} + ${WARMUP:-5} + total * ${RAMP_MS:-2} / 1000 + 60 ))
    timeout "$limit" "$BENCH" --url "rtmp://127.0.0.1:$port/live/bench" --input "$FIXTURE" \
        --duration "${DURATION:-30}" --warmup "${WARMUP:-5}" --ramp-ms "${RAMP_MS:-2}" \
        --server-pid "$SERVER_PID" --json "$@" >"$out" || rc=$?
    if [[ $rc == 0 ]]; then
        jq -r '"   connected \(.connected)/\(.players)  latency p50 \(.latency.p50_ms) ms  p99 \(.latency.p99_ms) ms  loss \(.loss.percent) %  server CPU \(.server.cpu_percent) %  tool CPU \(.tool.cpu_percent) %"' "$out"
    else
        echo "   run failed (exit $rc)" >&2
        rm -f "$out"
    fi
    stop_server
    return $rc
}

# The comparison table of run.sh and scale.sh over the given reports (named SERVER-N*.json).
# other% = CPU the machine spent besides server and tool during the window (other processes
# and unattributed softirq): a run with much of it was not a quiet run.
bench_table() {
    printf 'server\tN\tconn\tfail\tff_p50\tff_p99\tlat_p50\tlat_p90\tlat_p99\tlat_max\tloss%%\tsrvCPU%%\tRSS_MiB\tKiB/plr\ttoolCPU%%\tother%%\n'
    for f in "$@"; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .json)"
        jq -r --arg s "${name%%-*}" '
            def r(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
            [$s, .players, .connected, .failed,
             r(.first_frame.p50_ms), r(.first_frame.p99_ms),
             r(.latency.p50_ms), r(.latency.p90_ms), r(.latency.p99_ms), r(.latency.max_ms),
             (.loss.percent * 1000 | round / 1000 | tostring),
             r(.server.cpu_percent), r(if .server.rss_kib then .server.rss_kib / 1024 else null end),
             r(.server.rss_per_player_kib), r(.tool.cpu_percent),
             r(.machine.other_cpu_percent)] | @tsv' "$f"
    done | sort -k1,1 -k2,2n
}

# How busy the machine is before a measurement (others may be compiling on the same cores).
bench_load() {
    echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    top -bn1 -w 120 | sed -n '7,12p' | sed 's/^/   /'
}
