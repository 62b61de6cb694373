#!/usr/bin/env python3
"""Pulled-input benchmark (bench/inputs.sh builds the release binary and runs this).

1. CPU per pulled input: N streams pull the same source (GStreamer's RTSP camera, SRT
   callers to N srt-live-transmit listeners, HLS from one ffmpeg writer behind a plain HTTP
   server); the gateway's CPU over a window, divided by N.
2. Failover: the primary is killed; reported are the time from its death to the switch (the
   runtime history's record; the backup's cached keyframe goes out in the same step) and the
   longest silence a reader on /live/<code>/mpegts saw, with packet_timeout 1 s and the
   default 30 s, for a UDP primary (detected by silence) and an RTSP primary (the
   connection closes).

Usage: inputs.py BINARY [N] [WINDOW_S]
"""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10
WINDOW = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
WORK = tempfile.mkdtemp(prefix="ferrocast-inputs-bench.")
CLK = os.sysconf("SC_CLK_TCK")
procs = []


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def spawn(name, args, **kw):
    log = open(os.path.join(WORK, name + ".log"), "w")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def api(http, method, path, body=None):
    req = urllib.request.Request(
        f"http://{http}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def gateway(tag):
    http = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, FERROCAST_DATA_DIR=os.path.join(WORK, "data-" + tag),
               FERROCAST_HTTP__LISTEN=http,
               FERROCAST_RTMP__LISTEN=f"127.0.0.1:{free_port()}",
               FERROCAST_SRT__ENABLED="false", FERROCAST_RTSP__ENABLED="false",
               FERROCAST_DASH__ENABLED="false", FERROCAST_LOG=os.environ.get("BENCH_LOG", "warn"))
    p = spawn("gateway-" + tag, [BIN], env=env)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{http}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return p, http


def wait_up(http, codes, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ok = 0
        for c in codes:
            i = api(http, "GET", f"/api/v1/streams/{c}")["runtime"].get("inputs") or {}
            ok += i.get("active") is not None
        if ok == len(codes):
            return
        time.sleep(0.5)
    raise SystemExit(f"only {ok}/{len(codes)} inputs came up")


def fixture():
    path = os.path.join(WORK, "src.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=1280x720:rate=30", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", "20", "-c:v", "libx264",
                    "-preset", "veryfast", "-b:v", "2500k", "-g", "60", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", path], check=True)
    return path


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def measure_cpu(kind, src):
    """Gateway CPU % of one core per input, N inputs of `kind` pulling."""
    gw, http = gateway(kind)
    extra = []
    urls = []
    if kind == "rtsp":
        port = free_port()
        extra.append(spawn("camera", ["/usr/bin/python3", os.path.join(ROOT, "tests/rtsp/camera.py"),
                                      str(port)]))
        time.sleep(2)
        urls = [f"rtsp://127.0.0.1:{port}/cam"] * N
    elif kind == "srt":
        for i in range(N):
            udp = free_port(socket.SOCK_DGRAM)
            srt = free_port(socket.SOCK_DGRAM)
            extra.append(spawn(f"slt{i}", ["srt-live-transmit", "-q", f"udp://127.0.0.1:{udp}",
                                           f"srt://127.0.0.1:{srt}?mode=listener"]))
            extra.append(spawn(f"send{i}", ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1",
                                            "-i", src, "-c", "copy", "-f", "mpegts",
                                            f"udp://127.0.0.1:{udp}?pkt_size=1316"]))
            urls.append(f"srt://127.0.0.1:{srt}")
    elif kind == "hls":
        d = os.path.join(WORK, "hls")
        os.makedirs(d, exist_ok=True)
        extra.append(spawn("hls-writer", ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1",
                                          "-i", src, "-c", "copy", "-f", "hls", "-hls_time", "2",
                                          "-hls_list_size", "6", "-hls_flags", "delete_segments",
                                          os.path.join(d, "index.m3u8")]))
        port = free_port()
        extra.append(spawn("http", ["python3", "-m", "http.server", "--bind", "127.0.0.1",
                                    str(port), "--directory", d]))
        time.sleep(4)
        urls = [f"http://127.0.0.1:{port}/index.m3u8"] * N
    codes = [f"{kind}{i}" for i in range(N)]
    for code, url in zip(codes, urls):
        api(http, "POST", "/api/v1/streams", {"code": code, "inputs": [{"url": url}],
                                               "protocols": {"hls": False}})
    wait_up(http, codes)
    time.sleep(3)
    c0, t0 = cpu_seconds(gw.pid), time.time()
    time.sleep(WINDOW)
    c1, t1 = cpu_seconds(gw.pid), time.time()
    kbps = [api(http, "GET", f"/api/v1/streams/{c}")["runtime"]["inputs"]["inputs"][0]["bitrate_kbps"]
            for c in codes]
    stop(gw)
    for p in extra:
        stop(p)
    total = 100 * (c1 - c0) / (t1 - t0)
    return {"kind": kind, "inputs": N, "gateway_cpu_pct": round(total, 1),
            "per_input_pct": round(total / N, 2),
            "input_kbps": round(sum(kbps) / len(kbps)) if kbps else None}


def reader(http, code, arrivals, stop_event):
    """Reads /live/<code>/mpegts and records the arrival time of every chunk."""
    with urllib.request.urlopen(f"http://{http}/live/{code}/mpegts", timeout=60) as r:
        while not stop_event.is_set():
            data = r.read1(65536)
            if not data:
                return
            arrivals.append(time.monotonic())


def measure_failover(primary_kind, timeout_s, src):
    gw, http = gateway(f"fo-{primary_kind}-{timeout_s}")
    if primary_kind == "udp":
        port = free_port(socket.SOCK_DGRAM)
        def start():
            return spawn("primary", ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i",
                                     src, "-c", "copy", "-f", "mpegts",
                                     f"udp://127.0.0.1:{port}?pkt_size=1316"])
        url = f"udp://127.0.0.1:{port}"
    else:
        port = free_port()
        def start():
            return spawn("primary", ["/usr/bin/python3", os.path.join(ROOT, "tests/rtsp/camera.py"),
                                     str(port)])
        url = f"rtsp://127.0.0.1:{port}/cam"
    primary = start()
    api(http, "POST", "/api/v1/streams", {
        "code": "fo", "protocols": {"hls": False},
        "inputs": [{"url": url, "priority": 0}, {"url": f"file://{src}", "priority": 1}],
        "failover": {"packet_timeout_s": timeout_s, "failback_after_s": 2}})
    deadline = time.time() + 30
    while api(http, "GET", "/api/v1/streams/fo")["runtime"].get("inputs", {}).get("active") != 0:
        if time.time() > deadline:
            raise SystemExit("primary never became active")
        time.sleep(0.2)
    arrivals = []
    done = threading.Event()
    t = threading.Thread(target=reader, args=(http, "fo", arrivals, done), daemon=True)
    t.start()
    time.sleep(3)
    killed = time.monotonic()
    killed_wall = time.time()
    primary.kill()
    while time.monotonic() - killed < timeout_s + 5:
        time.sleep(0.1)
    done.set()
    history = api(http, "GET", "/api/v1/streams/fo")["runtime"]["inputs"]["history"]
    stop(gw)
    switch = next((h for h in history if h["reason"].startswith("input 0 down")), None)
    switched_ms = None
    if switch:
        at = datetime.datetime.fromisoformat(switch["at"].replace("Z", "+00:00")).timestamp()
        switched_ms = round((at - killed_wall) * 1000)
    # The longest the reader went without bytes, from the kill on (its first byte after that
    # silence is the backup's cached keyframe, written in the same step as the switch).
    after = [a for a in arrivals if a >= killed]
    gaps = [b - a for a, b in zip([killed] + after, after)]
    return {"primary": primary_kind, "packet_timeout_s": timeout_s,
            "kill_to_switch_ms": switched_ms,
            "reader_longest_gap_ms": round(max(gaps) * 1000) if gaps else None}


def main():
    src = fixture()
    rows = []
    try:
        for kind in os.environ.get("KINDS", "rtsp srt hls").split():
            r = measure_cpu(kind, src)
            print(json.dumps(r), flush=True)
            rows.append(r)
        fo = []
        for primary in ("udp", "rtsp"):
            for timeout in (1, 30):
                r = measure_failover(primary, timeout, src)
                print(json.dumps(r), flush=True)
                fo.append(r)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(WORK, ignore_errors=True)
    print()
    print("| input | inputs | kbit/s each | gateway CPU % (one core) | per input % |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['inputs']} | {r['input_kbps']} | {r['gateway_cpu_pct']} | {r['per_input_pct']} |")
    print()
    print("| primary | packet_timeout | primary killed -> switch | longest silence at the reader |")
    print("|---|---:|---:|---:|")
    for r in fo:
        print(f"| {r['primary']} | {r['packet_timeout_s']} s | {r['kill_to_switch_ms']} ms "
              f"| {r['reader_longest_gap_ms']} ms |")


if __name__ == "__main__":
    main()
