#!/usr/bin/env python3
"""What a cluster costs, measured: one origin node and E edge nodes on this machine, one Redis.

  bench/cluster.py [--edges 3] [--streams 4] [--hls-clients 200] [--seconds 20]
                   [--ferrocast target/release/ferrocast] [--http-tool target/release/ferrocast-http]

S streams (20 s 1280x720 30 fps 2.5 Mbit/s H.264 + AAC, 2 s GOP, looped in real time by ffmpeg)
are published to the origin. Then, each phase measured over the same window from /proc:

1. alone: the origin packages its S streams, the edges are idle;
2. edge pulls: one RTMP reader (ffmpeg, -c copy) per stream on every edge, so every edge pulls
   every stream once: the origin's extra CPU per edge pull, an edge's CPU per pulled stream,
   and the Redis commands per second (INFO commandstats, reset at the window's start);
3. HLS through an edge: N polling HLS players (ferrocast-http) of stream 0 on edge 1, whose
   answers are the origin's files fetched once and kept (cluster::EdgeHttp); the edge's CPU
   per request and the origin's CPU meanwhile; then the same N players on the origin itself.

Needs redis-server on REDIS_URL (default redis://127.0.0.1:6379; the keys get a private
prefix), ffmpeg, and the release build: cargo build --release -p ferrocast -p ferrocast-bench.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(pids, seconds):
    """CPU % of one core of each pid over `seconds`."""
    t0 = time.monotonic()
    before = {p: cpu_seconds(p) for p in pids}
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {p: (cpu_seconds(p) - before[p]) / wall * 100 for p in pids}


def redis(url, *args):
    return subprocess.run(["redis-cli", "-u", url, *args], check=True, capture_output=True,
                          text=True).stdout


def commandstats(url):
    calls = {}
    for line in redis(url, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            calls[name] = int(fields["calls"])
    return calls


class Node:
    def __init__(self, args, work, node_id, prefix):
        self.id = node_id
        self.rtmp = free_port()
        self.http = free_port()
        data = os.path.join(work, node_id)
        os.makedirs(data, exist_ok=True)
        env = dict(os.environ,
                   FERROCAST_RTMP__LISTEN=f"127.0.0.1:{self.rtmp}",
                   FERROCAST_HTTP__LISTEN=f"127.0.0.1:{self.http}",
                   FERROCAST_HTTP__MAX_CONNECTIONS_PER_IP="null",
                   FERROCAST_DATA_DIR=data,
                   FERROCAST_SRT__ENABLED="false",
                   FERROCAST_RTSP__ENABLED="false",
                   FERROCAST_CLUSTER__REDIS_URL=args.redis,
                   FERROCAST_CLUSTER__NODE_ID=node_id,
                   FERROCAST_CLUSTER__PREFIX=json.dumps(prefix),
                   FERROCAST_LOG="warn")
        self.log = open(os.path.join(work, f"{node_id}.log"), "w")
        self.proc = subprocess.Popen([args.ferrocast], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.http), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node {node_id} did not listen")

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path):
        return f"http://127.0.0.1:{self.http}{path}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_playlist(url, segments):
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.read().decode().count("#EXTINF") >= segments:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no playlist with {segments} segments at {url}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edges", type=int, default=3)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--hls-clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--ferrocast", default=os.path.join(ROOT, "target/release/ferrocast"))
    p.add_argument("--http-tool", default=os.path.join(ROOT, "target/release/ferrocast-http"))
    p.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="ferrocast-cluster-bench.")
    out = args.out or os.path.join(work, "results")
    os.makedirs(out, exist_ok=True)
    prefix = f"bench-{os.getpid()}-{int(time.time())}:"
    children = []
    nodes = []
    try:
        fixture = os.path.join(work, "fixture.flv")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                        "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
                        "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k", "-g", "60",
                        "-keyint_min", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
                        "-f", "flv", fixture], check=True)
        origin = Node(args, work, "origin", prefix)
        edges = [Node(args, work, f"edge{i + 1}", prefix) for i in range(args.edges)]
        nodes = [origin, *edges]
        codes = [f"s{i}" for i in range(args.streams)]
        for code in codes:
            children.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                 "-i", fixture, "-c", "copy", "-f", "flv",
                 f"rtmp://127.0.0.1:{origin.rtmp}/live/{code}"]))
        for code in codes:
            wait_playlist(origin.url(f"/live/{code}/index.m3u8"), 2)
        time.sleep(args.warmup)
        pids = [n.pid for n in nodes]
        report = {"edges": args.edges, "streams": args.streams, "seconds": args.seconds}

        alone = measure(pids, args.seconds)
        report["alone"] = {n.id: alone[n.pid] for n in nodes}

        for edge in edges:
            for code in codes:
                children.append(subprocess.Popen(
                    ["ffmpeg", "-hide_banner", "-loglevel", "error",
                     "-i", f"rtmp://127.0.0.1:{edge.rtmp}/live/{code}",
                     "-c", "copy", "-f", "null", "-"]))
        time.sleep(args.warmup)
        redis(args.redis, "CONFIG", "RESETSTAT")
        t0 = time.monotonic()
        pulls = measure(pids, args.seconds)
        calls = commandstats(args.redis)
        wall = time.monotonic() - t0
        report["pulls"] = {n.id: pulls[n.pid] for n in nodes}
        report["redis_calls_per_s"] = {k: v / wall for k, v in sorted(calls.items())}
        report["rss_mib"] = {n.id: rss_mib(n.pid) for n in nodes}

        hls = {}
        if os.access(args.http_tool, os.X_OK) and args.hls_clients > 0:
            for where in (edges[0], origin):
                run = subprocess.Popen(
                    [args.http_tool, "--url", where.url("/live/s0/index.m3u8"),
                     "--clients", str(args.hls_clients), "--duration", str(int(args.seconds)),
                     "--warmup", str(int(args.warmup)), "--server-pid", str(where.pid), "--json"],
                    stdout=subprocess.PIPE, text=True)
                ramp = args.warmup + args.hls_clients * 0.01 + 1
                time.sleep(ramp)
                during = measure([origin.pid], args.seconds - 2)
                tool = json.loads(run.communicate(timeout=args.seconds * 4 + 60)[0])
                hls[where.id] = {
                    "requests_per_s": tool["total"]["per_s"],
                    "errors": tool["total"]["errors"],
                    "server_cpu_percent": tool["server"]["cpu_percent"],
                    "us_per_request": tool["server"].get("cpu_ms_per_1000_requests"),
                    "origin_cpu_percent": during[origin.pid],
                    "p99_playlist_ms": tool["requests"]["playlist"]["p99_ms"],
                    "p99_segment_ms": tool["requests"]["segment"]["p99_ms"],
                }
        else:
            print(f"no {args.http_tool}: HLS phase skipped", file=sys.stderr)
        report["hls"] = hls

        with open(os.path.join(out, "cluster.json"), "w") as f:
            json.dump(report, f, indent=2)
        e, s = args.edges, args.streams
        edge_ids = [n.id for n in edges]
        extra = report["pulls"]["origin"] - report["alone"]["origin"]
        edge_pull = sum(report["pulls"][i] - report["alone"][i] for i in edge_ids) / (e * s)
        print(f"\n{e} edges x {s} streams (2.5 Mbit/s 720p30), {args.seconds:.0f} s windows, "
              "CPU in % of one core")
        print("| what | measured |\n|---|---|")
        print(f"| origin, packaging {s} streams, no edge | {report['alone']['origin']:.1f} % |")
        print(f"| origin, with {e * s} edge pulls | {report['pulls']['origin']:.1f} % |")
        print(f"| origin, per edge pull | {extra / (e * s):.3f} % |")
        print(f"| edge, idle | {sum(report['alone'][i] for i in edge_ids) / e:.2f} % |")
        print(f"| edge, per pulled stream (its ingest and one RTMP reader) | {edge_pull:.2f} % |")
        print(f"| edge RSS with {s} pulled streams | {sum(report['rss_mib'][i] for i in edge_ids) / e:.1f} MiB |")
        total = sum(report["redis_calls_per_s"].values())
        print(f"| Redis commands/s, whole cluster | {total:.1f} |")
        print(f"| Redis commands/s per live stream | {total / s:.2f} |")
        print("| Redis commands/s by command | " + ", ".join(
            f"{k} {v:.2f}" for k, v in report["redis_calls_per_s"].items()) + " |")
        for where, h in hls.items():
            print(f"| {args.hls_clients} HLS players on {where}: req/s, errors, p99 playlist/segment ms "
                  f"| {h['requests_per_s']:.0f}, {h['errors']}, {h['p99_playlist_ms']:.1f}/{h['p99_segment_ms']:.1f} |")
            print(f"| ... {where}'s CPU, us per request | {h['server_cpu_percent']:.1f} %, "
                  f"{h['us_per_request'] or 0:.0f} us |")
            if where != "origin":
                print(f"| ... the origin's CPU meanwhile (with the edge pulls) | "
                      f"{h['origin_cpu_percent']:.1f} % (+{h['origin_cpu_percent'] - report['pulls']['origin']:.1f}) |")
        print(f"\nresults: {out}")
    finally:
        for c in children:
            c.terminate()
        for c in children:
            try:
                c.wait(5)
            except subprocess.TimeoutExpired:
                c.kill()
        for n in nodes:
            n.stop()
        if not os.environ.get("KEEP_WORK"):
            os.remove(os.path.join(work, "fixture.flv")) if os.path.exists(os.path.join(work, "fixture.flv")) else None
            for n in nodes:
                shutil.rmtree(os.path.join(work, n.id), ignore_errors=True)


if __name__ == "__main__":
    main()
