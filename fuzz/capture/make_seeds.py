"""Turns the captures of capture.sh (./out) into the seeds under ../seeds/ (layouts: the doc
comment of each target in ../src/). Run after capture.sh; the SDP, stream id and API seeds are
written by hand (see ../seeds/README.md)."""
import glob, os, re, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
CAP = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, 'out')
SEEDS = os.path.join(HERE, '..', 'seeds')


def kind(d):
    if d[0] & 0x80 == 0:
        return 'data'
    t = int.from_bytes(d[0:2], 'big') & 0x7fff
    return {0: 'hs', 1: 'keepalive', 2: 'ack', 3: 'nak', 5: 'shutdown', 6: 'ackack'}.get(t, 't%x' % t)


def load(cap):
    return [(f.split('-')[-1][:3], open(f, 'rb').read()) for f in sorted(glob.glob(f'{CAP}/{cap}/*.bin'))]


def w(target, name, data):
    os.makedirs(f'{SEEDS}/{target}', exist_ok=True)
    open(f'{SEEDS}/{target}/{name}', 'wb').write(data)


def rec(op, body=b''):
    return bytes([op]) + struct.pack('<H', len(body)) + body


HS = ['induction', 'induction-response', 'conclusion', 'conclusion-response']
for cap, short in {'pub-plain': 'ffmpeg-publish', 'pub-aes': 'ffmpeg-publish-aes', 'play': 'ffmpeg-play'}.items():
    seq = load(cap)
    # srt_packet / srt_handshake: the handshakes, and the first packet of every other kind
    # each way (data cut to one TS packet: a shorter payload is still a valid packet).
    for name, d in zip(HS, [d for _, d in seq if kind(d) == 'hs']):
        w('srt_packet', f'{short}-{name}', b'\0' + d)
        w('srt_handshake', f'{short}-{name}', b'\0' + d[16:])
    seen = set()
    for dr, d in seq:
        k = kind(d)
        if k == 'hs' or (dr, k) in seen:
            continue
        seen.add((dr, k))
        w('srt_packet', f'{short}-{dr}-{k}', b'\0' + (d[:16 + 188] if k == 'data' else d))
    # srt_listener: what the caller sent, in order: induction, conclusion (cookie fixed up),
    # answer the access request, then up to 10 data packets and the rest, 10 ms apart; for
    # play, the gateway also sends 6 TS packets.
    recs, nhs, ndata = b'', 0, 0
    for dr, d in seq:
        if dr != 'c2l':
            continue
        k = kind(d)
        if k == 'hs':
            recs += rec(0 if nhs == 0 else 1, d)
            nhs += 1
            if nhs == 2:
                recs += rec(4)
                if cap == 'play':
                    for i in range(6):
                        recs += rec(3, bytes([0x47]) + bytes([i]) * 187)
                    recs += bytes([2]) + struct.pack('<H', 20)
            continue
        if k == 'data':
            ndata += 1
            if ndata > 10:
                continue
            d = d[:16 + 188]
        recs += rec(0, d) + bytes([2]) + struct.pack('<H', 10)
    w('srt_listener', short, bytes([1 if cap == 'pub-aes' else 0]) + recs)

hdr = lambda t: struct.pack('>HHIII', 0x8000 | t, 0, 0, 1000, 0x1234)
w('srt_packet', 'nak-range', b'\0' + hdr(3) + struct.pack('>III', 0x80000010, 0x20, 0x30))
w('srt_packet', 'keepalive', b'\0' + hdr(1) + b'\0' * 4)
w('srt_packet', 'ipv6-induction', b'\x01' + [d for _, d in load('pub-plain') if kind(d) == 'hs'][0])

# rtsp_request: each player's whole request stream; rtsp_transport: the Transport headers.
players = ['ffmpeg-tcp', 'ffmpeg-udp', 'gstreamer-tcp', 'gstreamer-udp']
transports = set()
for i, name in enumerate(players):
    d = open(f'{CAP}/rtsp/conn{i}.bin', 'rb').read()
    w('rtsp_request', name, bytes([i * 37]) + d)
    transports.update(m.group(1) for m in re.finditer(rb'(?im)^transport:\s*(.*?)\r$', d))
# ffmpeg's TCP session with an interleaved RTCP receiver report and a request with a body.
rr = b'$\x01\x00\x20' + bytes.fromhex('81c90007123456781234abcd' + '00' * 20)
d = open(f'{CAP}/rtsp/conn0.bin', 'rb').read()
w('rtsp_request', 'ffmpeg-tcp-rtcp-rr', b'\x05' + d + rr +
  b'GET_PARAMETER rtsp://127.0.0.1:18554/live/test/ RTSP/1.0\r\nCSeq: 9\r\n'
  b'Session: 0123456789ABCDEF\r\nContent-Type: text/parameters\r\nContent-Length: 9\r\n\r\nposition\n')
for i, t in enumerate(sorted(transports)):
    w('rtsp_transport', f'transport-{i}', bytes([i & 1]) + t)
