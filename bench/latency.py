#!/usr/bin/env python3
"""Server-side live latency of HLS and DASH, ferrocast against nginx-rtmp in the same run.

One ffmpeg publishes one 720p fixture in real time to both servers at once (the tee muxer:
the same frames at the same instants). Pollers reload every playlist every 10 ms and note
when each segment or part first appears. Its availability delay is that instant minus the
instant its last frame was published (the publish start plus its media end time): what the
server adds before any player can fetch it. A player adds its own hold-back on top (RFC
8216bis: three target durations for classic HLS, PART-HOLD-BACK for LL-HLS).

    bench/latency.py [--ferrocast target/release/ferrocast] [--seconds 60] [--warmup 10]

Needs ffmpeg and nginx with libnginx-mod-rtmp (bench/nginx-hls.conf: 2 s fragments).
"""
import argparse
import datetime
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listen(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


class Poller(threading.Thread):
    """Reloads `url` every 10 ms; `parse(text)` gives [(key, media_end_s)] of what it lists."""

    def __init__(self, name, url, parse):
        super().__init__(daemon=True)
        self.name, self.url, self.parse = name, url, parse
        self.seen = {}  # key -> (first seen wall time, media end in seconds)
        self.stop = False

    def run(self):
        while not self.stop:
            text = get(self.url)
            now = time.time()
            if text:
                for key, end in self.parse(text):
                    self.seen.setdefault(key, (now, end))
            time.sleep(0.01)


class FlvClock(threading.Thread):
    """Reads an FLV stream and notes when each video tag arrived: (wall time, timestamp)."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.arrivals = pipe, []

    def run(self):
        read = self.pipe.read
        if len(read(13)) < 13:  # header and the first previous-tag-size
            return
        while True:
            head = read(11)
            if len(head) < 11:
                return
            now = time.time()
            size = int.from_bytes(head[1:4], "big")
            ts = int.from_bytes(head[4:7], "big") | head[7] << 24
            if head[0] == 9:
                self.arrivals.append((now, ts))
            if len(read(size + 4)) < size + 4:
                return


def hls_segments(text):
    """Media playlist -> [(sequence number, media end)], the media time counted from the
    first segment ever listed (both servers start at the first keyframe, media time 0)."""
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", text)]
    return [(seq + i, d) for i, d in enumerate(durations)]


class Cumulative:
    """Turns per-segment durations into media end times as segments appear in order."""

    def __init__(self, parse):
        self.parse, self.ends = parse, {}

    def __call__(self, text):
        out = []
        for seq, d in self.parse(text):
            if seq not in self.ends:
                prev = self.ends.get(seq - 1, 0.0 if not self.ends else None)
                if prev is None:
                    continue  # a gap: its media time is unknown
                self.ends[seq] = prev + d
            out.append((seq, self.ends[seq]))
        return out


def ll_parts(text):
    """LL-HLS media playlist of ferrocast -> [(part URI, media end)]: the URI names its
    segment's start (90 kHz) and the parts before it in the segment add up."""
    out, seg, acc = [], None, 0.0
    for m in re.finditer(r'#EXT-X-PART:DURATION=([\d.]+),URI="[va]-\d+-(\d+)-p(\d+)\.m4s"', text):
        d, start, _ = float(m.group(1)), int(m.group(2)), int(m.group(3))
        if start != seg:
            seg, acc = start, 0.0
        acc += d
        out.append((f"{start}-{m.group(3)}", start / 90000 + acc))
    return out


def dash_segments(text):
    """MPD (first SegmentTimeline, video) -> [(t, media end)], times in seconds."""
    scale = int(re.search(r'timescale="(\d+)"', text).group(1))
    timeline = text[text.find("<SegmentTimeline>"):text.find("</SegmentTimeline>")]
    out, t = [], 0
    for m in re.finditer(r"<S ([^>]*)/>", timeline):
        a = dict(re.findall(r'(\w+)="(\d+)"', m.group(1)))
        t = int(a.get("t", t))
        for _ in range(int(a.get("r", 0)) + 1):
            d = int(a["d"])
            out.append((t, (t + d) / scale))
            t += d
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ferrocast", default=os.path.join(ROOT, "target/release/ferrocast"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferrocast-latency-")
    procs = []
    try:
        fixture = os.path.join(work, "fixture.flv")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
             "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-g", "60",
             "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "128k", "-f", "flv", fixture], check=True)

        f_rtmp, f_http = free_port(), free_port()
        env = dict(os.environ, FERROCAST_RTMP__LISTEN=f"127.0.0.1:{f_rtmp}",
                   FERROCAST_HTTP__LISTEN=f"127.0.0.1:{f_http}",
                   FERROCAST_DATA_DIR=os.path.join(work, "data"),
                   FERROCAST_SRT__ENABLED="false", FERROCAST_RTSP__ENABLED="false",
                   FERROCAST_LOG="warn")
        procs.append(subprocess.Popen([args.ferrocast], env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(work, "ferrocast.log"), "w")))
        n_rtmp, n_http = free_port(), free_port()
        prefix = os.path.join(work, "nginx")
        for d in ("tmp", "hls", "dash"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        conf = open(os.path.join(ROOT, "bench/nginx-hls.conf")).read()
        conf = (conf.replace("@PREFIX@", prefix).replace("@RTMP_PORT@", str(n_rtmp))
                .replace("@HTTP_PORT@", str(n_http)))
        open(os.path.join(prefix, "nginx.conf"), "w").write(conf)
        procs.append(subprocess.Popen(["nginx", "-p", prefix, "-c", "nginx.conf"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in (f_rtmp, f_http, n_rtmp, n_http):
            wait_listen(p)

        f = f"http://127.0.0.1:{f_http}/live/bench"
        n = f"http://127.0.0.1:{n_http}"
        pollers = [
            Poller("ferrocast HLS (TS) segments", f"{f}/index.m3u8", Cumulative(hls_segments)),
            Poller("ferrocast LL-HLS parts", f"{f}/cmaf-v.m3u8", ll_parts),
            Poller("ferrocast DASH segments", f"{f}/index.mpd", dash_segments),
            Poller("nginx-rtmp HLS segments", f"{n}/hls/bench.m3u8", Cumulative(hls_segments)),
            Poller("nginx-rtmp DASH segments", f"{n}/dash/bench.mpd", dash_segments),
        ]
        for p in pollers:
            p.start()
        spawned = time.time()
        publisher = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", fixture, "-map", "0", "-c", "copy", "-f", "tee",
             f"[f=flv:onfail=abort]rtmp://127.0.0.1:{f_rtmp}/live/bench|"
             f"[f=flv:onfail=abort]rtmp://127.0.0.1:{n_rtmp}/live/bench|[f=flv]pipe:1"],
            stdout=subprocess.PIPE)
        procs.append(publisher)
        clock = FlvClock(publisher.stdout)
        clock.start()
        time.sleep(args.warmup + args.seconds)
        for p in pollers:
            p.stop = True
        # When each frame was published: the tee's third output is FLV on ffmpeg's stdout,
        # written in the same loop as the two RTMP outputs; media time 0 was published at the
        # median of (arrival - timestamp).
        offsets = sorted(at - ts / 1000 for at, ts in clock.arrivals)
        if not offsets:
            sys.exit("the publisher's FLV copy carried no frames")
        t0 = offsets[len(offsets) // 2]
        print(f"publish clock: media time 0 at {1000 * (t0 - spawned):.0f} ms after the spawn, "
              f"frames within {1000 * (offsets[int(len(offsets) * 0.95)] - t0):.0f} ms (p95)")
        print(f"| what | items | p50 | p95 | max |  (availability delay, ms; "
              f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up)")
        print("|---|---:|---:|---:|---:|")
        for p in pollers:
            delays = sorted((seen - t0 - end) * 1000 for seen, end in p.seen.values()
                            if spawned + args.warmup < seen)
            if not delays:
                print(f"| {p.name} | 0 | | | |")
                continue
            q = lambda x: delays[min(len(delays) - 1, int(x * len(delays)))]
            print(f"| {p.name} | {len(delays)} | {q(0.5):.0f} | {q(0.95):.0f} | "
                  f"{delays[-1]:.0f} |")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
