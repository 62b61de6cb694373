#!/usr/bin/env bash
# Re-captures the real bytes behind seeds/srt_* and seeds/rtsp_request (see seeds/README.md):
# ffmpeg as SRT caller against srt-live-transmit through a logging UDP proxy (publish plain,
# publish AES-128 with an access-control stream id, play), and ffmpeg / GStreamer as RTSP
# players against a fake RTSP server that logs what they send. Output: ./out/<capture>/.
# Needs ffmpeg (with libsrt), srt-live-transmit, gst-launch-1.0 (rtspsrc), python3.
set -euo pipefail
cd "$(dirname "$0")"
O=out
mkdir -p "$O"
PASS=ferrocast-fuzz-passphrase # the passphrase srt_listener configures (src/srt.rs)
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc=size=160x120:rate=10 \
  -f lavfi -i sine=f=440:r=48000 -t 3 -c:v libx264 -g 10 -c:a aac -f mpegts -y "$O/src.ts"

srt_publish() { # name, listener options, caller options
  timeout 9 srt-live-transmit "srt://:10000?mode=listener$2" file://con >/dev/null 2>&1 &
  python3 udpproxy.py 10001 10000 "$O/$1" 6 & local px=$!
  sleep 1
  timeout 5 ffmpeg -hide_banner -loglevel error -re -i "$O/src.ts" -t 1.5 -c copy -f mpegts \
    "srt://127.0.0.1:10001?pkt_size=1316$3" || true
  wait $px; sleep 3
}
srt_publish pub-plain "" "&streamid=publish:live/test?key=abc"
srt_publish pub-aes "&passphrase=$PASS" \
  "&streamid=#!::r=live/test,m=publish&passphrase=$PASS&pbkeylen=16"

# play: srt-live-transmit sends (from a pipe: it cannot poll a file), ffmpeg reads.
python3 -c "
import sys, time
d = open('$O/src.ts', 'rb').read()
for _ in range(6):
    for i in range(0, len(d), 1316 * 4):
        sys.stdout.buffer.write(d[i:i + 1316 * 4]); sys.stdout.flush(); time.sleep(0.02)
" | timeout 9 srt-live-transmit file://con "srt://:10000?mode=listener" >/dev/null 2>&1 &
python3 udpproxy.py 10001 10000 "$O/play" 6 & px=$!
sleep 1
timeout 4 ffmpeg -hide_banner -loglevel error -i "srt://127.0.0.1:10001?streamid=live/test" \
  -t 1 -c copy -f null - || true
wait $px

python3 rtspfake.py 18554 "$O/rtsp" 25 & fake=$!
sleep 0.5
U=rtsp://127.0.0.1:18554/live/test
timeout 5 ffmpeg -hide_banner -loglevel error -rtsp_transport tcp -i "$U?key=abc" -t 1 -f null - || true
timeout 5 ffmpeg -hide_banner -loglevel error -rtsp_transport udp -i "$U" -t 1 -f null - || true
timeout 5 gst-launch-1.0 -q rtspsrc location=$U protocols=tcp ! fakesink || true
timeout 5 gst-launch-1.0 -q rtspsrc location=$U protocols=udp ! fakesink || true
kill $fake 2>/dev/null || true
echo "captures in $(pwd)/$O"
