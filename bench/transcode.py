#!/usr/bin/env python3
"""Cost and delay of a rendition ladder: CPU per rung and the latency the ladder adds.

One 720p30 source (2.5 Mbit/s, 2 s GOP) is published in real time; the stream's ladder is
switched between `source` plus 1, 2 and 3 rungs (480p, 360p, 240p, x264 veryfast as the
gateway runs it). For each ladder, after a warm-up, the ffmpeg child's and the gateway's CPU
(utime + stime from /proc, % of one core) are sampled over the window, and pollers reload the
source's and every rung's HLS playlist every 10 ms: a rung's segment is listed later than the
source's segment of the same number (same media, same boundaries) by what the ladder adds
(decode, scale, encode, and the FLV round trip).

    bench/transcode.py [--ferrocast target/release/ferrocast] [--seconds 30] [--warmup 8]

Needs ffmpeg with libx264. Prints one table per run (markdown).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from latency import free_port, wait_listen  # noqa: E402 (the bench scripts' shared helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def http(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else
                                 json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()
    except Exception:
        return None


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def ladder_pids(server_pid):
    out = subprocess.run(["pgrep", "-f", f"ferrocast-transcode-{server_pid}/"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Listing(threading.Thread):
    """Notes when each segment number first appears in a playlist (10 ms polling)."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.seen, self.stop = url, {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            text = http("GET", self.url) or ""
            now = time.time()
            for line in text.splitlines():
                if line.endswith(".ts"):
                    self.seen.setdefault(int(line[:-3]), now)
            time.sleep(0.01)


def measure(base, code, server_pid, rungs, seconds, warmup):
    profiles = [{"name": "source"}] + [{"name": r} for r in rungs]
    http("PATCH", f"{base}/api/v1/streams/{code}",
         {"transcode": {"enabled": True, "profiles": profiles}})
    end = time.time() + 30
    while time.time() < end:
        rt = json.loads(http("GET", f"{base}/api/v1/streams/{code}") or "{}")
        t = rt.get("runtime", {}).get("transcode") or {}
        if t.get("state") == "running" and all(r.get("live") for r in t.get("renditions", [])):
            break
        time.sleep(0.5)
    time.sleep(warmup)
    pids = ladder_pids(server_pid)
    if len(pids) != 1:
        sys.exit(f"expected one ladder child, found {pids}")
    child = pids[0]
    listings = [Listing(f"{base}/live/{code}/media.m3u8")] + [
        Listing(f"{base}/live/{code}_{r}/index.m3u8") for r in rungs]
    for l in listings:
        l.start()
    t0, c0, s0 = time.time(), cpu_ticks(child), cpu_ticks(server_pid)
    time.sleep(seconds)
    t1, c1, s1 = time.time(), cpu_ticks(child), cpu_ticks(server_pid)
    for l in listings:
        l.stop.set()
    wall = t1 - t0
    child_pct = 100.0 * (c1 - c0) / TICK / wall
    server_pct = 100.0 * (s1 - s0) / TICK / wall
    delays = []
    src = listings[0].seen
    for l in listings[1:]:
        for seq, at in l.seen.items():
            # Only segments both pollers saw appear (not ones listed before polling began).
            if seq in src and src[seq] > t0 + 0.5 and at > t0 + 0.5:
                delays.append(at - src[seq])
    rt = json.loads(http("GET", f"{base}/api/v1/streams/{code}") or "{}")
    t = rt.get("runtime", {}).get("transcode") or {}
    return {
        "rungs": len(rungs), "child_pct": child_pct, "server_pct": server_pct,
        "speed": t.get("speed"), "fps": t.get("fps"), "delays": sorted(delays),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferrocast", default=os.path.join(ROOT, "target/release/ferrocast"))
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=8)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferrocast-transcode-bench-")
    src = os.path.join(work, "src.flv")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
                    "-sc_threshold", "0", "-b:v", "2500k", "-maxrate", "2500k", "-bufsize",
                    "5000k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", "-y", src],
                   check=True)
    rtmp, port = free_port(), free_port()
    env = dict(os.environ, FERROCAST_RTMP__LISTEN=f"127.0.0.1:{rtmp}",
               FERROCAST_HTTP__LISTEN=f"127.0.0.1:{port}",
               FERROCAST_DATA_DIR=os.path.join(work, "data"),
               FERROCAST_SRT__ENABLED="false", FERROCAST_RTSP__ENABLED="false",
               FERROCAST_DASH__ENABLED="false", FERROCAST_LOG="warn")
    server = subprocess.Popen([args.ferrocast], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "ferrocast.log"), "w"))
    publisher = None
    try:
        wait_listen(port)
        base = f"http://127.0.0.1:{port}"
        http("PUT", f"{base}/api/v1/streams/bench", {"name": "bench"})
        publisher = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", src, "-c", "copy",
             "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/bench"])
        time.sleep(3)
        # The gateway alone: the baseline the ladder's server CPU is compared with.
        s0, t0 = cpu_ticks(server.pid), time.time()
        time.sleep(10)
        idle = 100.0 * (cpu_ticks(server.pid) - s0) / TICK / (time.time() - t0)
        rows = []
        for rungs in (["480p"], ["480p", "360p"], ["480p", "360p", "240p"]):
            rows.append(measure(base, "bench", server.pid, rungs, args.seconds, args.warmup))
        print(f"gateway CPU without a ladder: {idle:.1f} % of a core\n")
        print("| rungs | ffmpeg child CPU | per rung | gateway CPU | speed | segment listed after the source's: p50 / p95 / max (n) |")
        print("|---:|---:|---:|---:|---:|---|")
        for r in rows:
            d = r["delays"]
            q = (lambda p: d[min(len(d) - 1, int(p * len(d)))]) if d else (lambda p: float("nan"))
            print(f"| {r['rungs']} | {r['child_pct']:.1f} % | {r['child_pct'] / r['rungs']:.1f} % "
                  f"| {r['server_pct']:.1f} % | {r['speed'] or 0:.2f} | "
                  f"{q(0.5) * 1000:.0f} / {q(0.95) * 1000:.0f} / {max(d, default=float('nan')) * 1000:.0f} ms ({len(d)}) |")
    finally:
        for p in (publisher, server):
            if p:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
