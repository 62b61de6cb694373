# Fake RTSP server: logs what each client sends (whole byte stream per connection) and answers
# just enough for a player to SETUP both tracks and PLAY, then sends nothing and waits.
import socket, sys, threading, re, time, os
port, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\n"
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       "a=fmtp:96 packetization-mode=1;profile-level-id=42C00D;sprop-parameter-sets=Z0LADdkBQfsBEAAAAwAQAAADAyDxQqSA,aMuMsg==\r\n"
       "a=control:trackID=0\r\n"
       "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"
       "a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n"
       "a=control:trackID=1\r\n")
def serve(c, n):
    log = open(f'{out}/conn{n}.bin', 'wb'); buf = b''; c.settimeout(6)
    try:
        while True:
            d = c.recv(65536)
            if not d: break
            log.write(d); log.flush(); buf += d
            while b'\r\n\r\n' in buf:
                if buf[:1] == b'$':
                    l = int.from_bytes(buf[2:4], 'big'); buf = buf[4 + l:]; continue
                head, buf = buf.split(b'\r\n\r\n', 1)
                h = head.decode(errors='replace')
                cl = re.search(r'(?im)^content-length:\s*(\d+)', h)
                if cl: buf = buf[int(cl.group(1)):]
                m = h.split(' ', 1)[0]
                cseq = re.search(r'(?im)^cseq:\s*(\S+)', h).group(1)
                extra, body = '', ''
                if m == 'OPTIONS': extra = 'Public: OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER\r\n'
                elif m == 'DESCRIBE':
                    body = SDP; url = h.split(' ')[1]
                    extra = f'Content-Type: application/sdp\r\nContent-Base: {url}/\r\n'
                elif m == 'SETUP':
                    t = re.search(r'(?im)^transport:\s*(.*)$', h).group(1).strip()
                    first = t.split(',')[0]
                    if 'TCP' in first: tr = first
                    else: tr = first + ';server_port=6970-6971'
                    extra = f'Transport: {tr};ssrc=1234ABCD\r\nSession: 0123456789ABCDEF;timeout=60\r\n'
                elif m in ('PLAY', 'PAUSE', 'GET_PARAMETER', 'SET_PARAMETER'):
                    extra = 'Session: 0123456789ABCDEF;timeout=60\r\n'
                    if m == 'PLAY': extra += 'Range: npt=now-\r\nRTP-Info: url=rtsp://127.0.0.1/live/test/trackID=0;seq=1;rtptime=0\r\n'
                resp = f'RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nServer: fake\r\n{extra}'
                if body: resp += f'Content-Length: {len(body)}\r\n'
                c.sendall((resp + '\r\n' + body).encode())
                if m == 'TEARDOWN': return
    except Exception as e:
        print('conn', n, e)
    finally:
        log.close(); c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', port)); s.listen(); s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 20)
n = 0
try:
    while True:
        c, _ = s.accept(); threading.Thread(target=serve, args=(c, n), daemon=True).start(); n += 1
except socket.timeout:
    pass
time.sleep(1)
