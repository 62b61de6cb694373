#!/usr/bin/env python3
"""Tiny RTMP server used to capture what a real publisher (ffmpeg) sends.

usage: rtmp-capture.py c0c1    PORT OUT   # save the client's C0+C1 (1537 bytes)
       rtmp-capture.py publish PORT OUT   # answer handshake, connect, createStream and
                                          # publish, then save every byte after C2
Only for making testdata; never used by the build.
"""
import os, socket, struct, sys

MAX = 150_000


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(n):
    return b"\x00" + struct.pack(">d", n)


def amf_obj(d):
    out = b"\x03"
    for k, v in d.items():
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb
        out += amf_str(v) if isinstance(v, str) else amf_num(v)
    return out + b"\x00\x00\x09"


def chunk(csid, type_id, sid, payload, size=128):
    # fmt 0 then fmt 3 continuations, timestamp 0, csid < 64
    out = bytes([csid]) + b"\x00\x00\x00" + struct.pack(">I", len(payload))[1:]
    out += bytes([type_id]) + struct.pack("<I", sid)
    for i in range(0, len(payload), size):
        if i:
            out += bytes([0xC0 | csid])
        out += payload[i:i + size]
    return out


def recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        d = c.recv(n - len(buf))
        if not d:
            raise EOFError
        buf += d
    return buf


class Decoder:
    def __init__(self):
        self.buf = b""
        self.size = 128
        self.st = {}

    def messages(self):
        while True:
            m = self.one()
            if m is None:
                return
            if m[1] is None:
                continue
            if m[1] == 1:
                self.size = struct.unpack(">I", m[3][:4])[0] & 0x7FFFFFFF
            yield m

    def one(self):
        b, p = self.buf, 0
        if len(b) < 1:
            return None
        fmt, cs = b[0] >> 6, b[0] & 63
        p = 1
        if cs == 0:
            if len(b) < 2:
                return None
            cs, p = 64 + b[1], 2
        elif cs == 1:
            if len(b) < 3:
                return None
            cs, p = 64 + b[1] + 256 * b[2], 3
        s = self.st.setdefault(cs, dict(ts=0, delta=0, len=0, type=0, sid=0, ext=False, part=b""))
        hl = [11, 7, 3, 0][fmt]
        if len(b) < p + hl:
            return None
        h = b[p:p + hl]
        p += hl
        ns = dict(s)
        if fmt <= 2:
            t = int.from_bytes(h[0:3], "big")
            ns["ext"] = t == 0xFFFFFF
        if fmt <= 1:
            ns["len"] = int.from_bytes(h[3:6], "big")
            ns["type"] = h[6]
        if fmt == 0:
            ns["sid"] = struct.unpack("<I", h[7:11])[0]
        if ns["ext"]:
            if len(b) < p + 4:
                return None
            t2 = struct.unpack(">I", b[p:p + 4])[0]
            p += 4
            if fmt <= 2:
                t = t2
        new = len(s["part"]) == 0
        if fmt == 0:
            ns["ts"], ns["delta"] = t, 0
        elif fmt in (1, 2):
            ns["ts"], ns["delta"] = s["ts"] + t, t
        elif new:
            ns["ts"] = s["ts"] + s["delta"]
        n = min(self.size, ns["len"] - len(s["part"]))
        if len(b) < p + n:
            return None
        ns["part"] = s["part"] + b[p:p + n]
        p += n
        self.buf = b[p:]
        if len(ns["part"]) == ns["len"]:
            payload = ns["part"]
            ns["part"] = b""
            self.st[cs] = ns
            return (cs, ns["type"], ns["sid"], payload)
        self.st[cs] = ns
        return (cs, None, None, None)  # chunk consumed, message still partial


def command(payload):
    name_len = struct.unpack(">H", payload[1:3])[0]
    name = payload[3:3 + name_len].decode()
    txid = struct.unpack(">d", payload[4 + name_len:12 + name_len])[0]
    return name, txid


def main():
    mode, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    c, _ = ls.accept()
    c0c1 = recv_exact(c, 1537)
    if mode == "c0c1":
        open(out, "wb").write(c0c1)
        return
    s1 = b"\x00" * 8 + os.urandom(1528)
    c.sendall(b"\x03" + s1 + c0c1[1:])
    recv_exact(c, 1536)
    rec, dec = b"", Decoder()
    while len(rec) < MAX:
        d = c.recv(65536)
        if not d:
            break
        rec += d
        dec.buf += d
        for cs, ty, sid, payload in dec.messages():
            if ty != 20:
                continue
            name, txid = command(payload)
            if name == "connect":
                body = amf_str("_result") + amf_num(txid)
                body += amf_obj({"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0})
                body += amf_obj({"level": "status", "code": "NetConnection.Connect.Success",
                                 "description": "ok", "objectEncoding": 0.0})
                c.sendall(chunk(3, 20, 0, body))
            elif name == "createStream":
                body = amf_str("_result") + amf_num(txid) + b"\x05" + amf_num(1.0)
                c.sendall(chunk(3, 20, 0, body))
            elif name == "publish":
                body = amf_str("onStatus") + amf_num(0.0) + b"\x05"
                body += amf_obj({"level": "status", "code": "NetStream.Publish.Start",
                                 "description": "go"})
                c.sendall(chunk(5, 20, 1, body))
    open(out, "wb").write(rec[:MAX])


main()
