#!/usr/bin/env bash
# Builds the seed corpora under fuzz/corpus/<target>/ from the real captures in ../testdata.
# Deterministic and idempotent; corpus/ is git-ignored (libFuzzer grows it in place).
# Layouts follow the doc comment of each target in src/lib.rs.
set -euo pipefail
cd "$(dirname "$0")"
T=../testdata
C=corpus
mkdir -p "$C"/{rtmp_chunk_decode,rtmp_chunk_roundtrip,amf0_decode,amf0_roundtrip,rtmp_message_parse,flv_tags,flv_stream,rtmp_session,media_codec_config,ts_mux,ts_demux}

# Curated seeds kept in git (seeds/<target>/, see seeds/README.md): real SRT datagrams and
# RTSP request streams from ffmpeg / GStreamer, stream ids, SDP inputs from testdata configs.
for dir in seeds/*/; do
  t=$(basename "$dir")
  mkdir -p "$C/$t"
  cp "$dir"* "$C/$t/"
done

# rtmp_chunk_decode: [piece size - 1][limits selector][chunk stream]
for pub in ffmpeg-publish ffmpeg-publish-extts; do
  { printf '\x7f\xff'; cat "$T/$pub.bin"; } > "$C/rtmp_chunk_decode/$pub-loose"
  { printf '\x00\x15'; cat "$T/$pub.bin"; } > "$C/rtmp_chunk_decode/$pub-tight"
done

# amf0_*: real command and metadata bodies.
for t in amf0_decode amf0_roundtrip; do
  cp "$T/ffmpeg-connect.amf0" "$T/ffmpeg-onmetadata.amf0" "$C/$t/"
done

# rtmp_message_parse: [type id][payload]
{ printf '\x14'; cat "$T/ffmpeg-connect.amf0"; } > "$C/rtmp_message_parse/connect"
{ printf '\x12'; cat "$T/ffmpeg-onmetadata.amf0"; } > "$C/rtmp_message_parse/metadata"
printf '\x01\x00\x00\x10\x00' > "$C/rtmp_message_parse/set-chunk-size"
printf '\x04\x00\x06\x00\x00\x01\x00' > "$C/rtmp_message_parse/ping"
printf '\x04\x00\x03\x00\x00\x00\x01\x00\x00\x0b\xb8' > "$C/rtmp_message_parse/buffer-length"
printf '\x06\x00\x26\x25\xa0\x02' > "$C/rtmp_message_parse/peer-bandwidth"

# rtmp_session: [8-byte seed][chunk stream after C2]
for pub in ffmpeg-publish ffmpeg-publish-extts; do
  { printf '\x00\x00\x00\x00\x00\x00\x00\x00'; cat "$T/$pub.bin"; } > "$C/rtmp_session/$pub-0"
  { printf '\x01\x02\x03\x04\x05\x06\x07\x08'; cat "$T/$pub.bin"; } > "$C/rtmp_session/$pub-1"
done

# media_codec_config: raw configs and bitstreams; [nal length size][AVCC] for the frame.
cp "$T"/*.avcc "$T"/*.asc "$T/h264-160x120-3frames.h264" "$C/media_codec_config/"
head -c 9 "$T/sine-48k.aac" > "$C/media_codec_config/adts-header"
{ printf '\x04'; cat "$T/h264-320x240-baseline-idr.avcc-frame"; } > "$C/media_codec_config/idr-frame"

# flv_tags: [0 = video, 1 = audio][tag body] for the first tags of the FLV capture, plus the
# standalone sequence headers.
python3 - "$T/h264-aac-320x240.flv" "$C/flv_tags" <<'PY'
import sys
flv, out = open(sys.argv[1], 'rb').read(), sys.argv[2]
pos, n = 9 + 4, {8: 0, 9: 0}
while pos + 11 <= len(flv):
    kind = flv[pos]; size = int.from_bytes(flv[pos + 1:pos + 4], 'big')
    body = flv[pos + 11:pos + 11 + size]
    if kind in n and n[kind] < 4 and len(body) <= 4096:
        sel = b'\x01' if kind == 8 else b'\x00'
        open(f"{out}/{'audio' if kind == 8 else 'video'}-{n[kind]}", 'wb').write(sel + body)
        n[kind] += 1
    pos += 11 + size + 4
PY
for f in "$T"/*.avcc; do
  { printf '\x00\x17\x00\x00\x00\x00'; cat "$f"; } > "$C/flv_tags/seqhdr-$(basename "$f" .avcc)"
done
{ printf '\x01\xaf\x00'; cat "$T/aac-48k-stereo.asc"; } > "$C/flv_tags/aac-seqhdr"
{ printf '\x00\x8c\x68\x76\x63\x31'; printf 'hevc'; } > "$C/flv_tags/enhanced-hvc1"

# rtmp_chunk_roundtrip and ts_mux take structured (`arbitrary`) input: libFuzzer starts empty.
echo "seed corpora written to $(pwd)/$C"

# ts_demux: [piece-size seed][transport stream]
{ printf '\x05'; cat "$T/ffmpeg-320x240.ts"; } > "$C/ts_demux/ffmpeg-320x240"
{ printf '\x00'; head -c 18800 "$T/ffmpeg-320x240.ts"; } > "$C/ts_demux/ffmpeg-head"

# flv_stream: [piece size][an ffmpeg FLV file], whole and cut short.
{ printf '\x00'; cat "$T/h264-aac-320x240.flv"; } > "$C/flv_stream/ffmpeg-whole"
{ printf '\x0a'; head -c 3000 "$T/h264-aac-320x240.flv"; } > "$C/flv_stream/ffmpeg-cut"

# hls_playlist: playlists as ffmpeg and hls.js's test streams write them.
mkdir -p "$C/hls_playlist"
printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2.000000,\nindex41.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.500000,\nindex42.ts\n' > "$C/hls_playlist/live-ts"
printf '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:1.000000,\nindex0.m4s\n#EXT-X-ENDLIST\n' > "$C/hls_playlist/vod-fmp4"
printf '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"\nlow/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2500000\nhigh/index.m3u8\n' > "$C/hls_playlist/master"

# fmp4_segment: [u32 BE length][init] then [u32 BE length][segment]... from ffmpeg's fMP4 HLS.
mkdir -p "$C/fmp4_segment"
python3 - "$T/hls-fmp4" "$C/fmp4_segment" <<'PY'
import sys
src, out = sys.argv[1], sys.argv[2]
parts = [open(f"{src}/{n}", 'rb').read() for n in ("init.mp4", "seg0.m4s", "seg1.m4s")]
def framed(ps):
    return b''.join(len(p).to_bytes(4, 'big') + p for p in ps)
open(f"{out}/init-seg0-seg1", 'wb').write(framed(parts))
open(f"{out}/init-seg1", 'wb').write(framed([parts[0], parts[2]]))
PY
