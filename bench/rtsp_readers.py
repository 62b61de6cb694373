#!/usr/bin/env python3
"""N RTSP players over TCP interleaved in one process: DESCRIBE, SETUP both tracks, PLAY, then
drain. Cheap enough that the server's CPU, not the players', is what a benchmark measures.

    rtsp_readers.py rtsp://127.0.0.1:8554/live/bench 50 30   # url, players, seconds
Prints the total bytes received."""
import selectors
import socket
import sys
import time
from urllib.parse import urlparse


def request(sock, method, url, cseq, extra=""):
    sock.sendall(f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"{method}: connection closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = dict(
        line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
    )
    length = int(headers.get("Content-Length", "0"))
    while len(rest) < length:
        rest += sock.recv(4096)
    if not head.startswith(b"RTSP/1.0 200"):
        raise RuntimeError(f"{method}: {head.splitlines()[0]!r}")
    return headers


def open_player(url):
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port or 554))
    request(sock, "DESCRIBE", url, 1, "Accept: application/sdp\r\n")
    h = request(sock, "SETUP", f"{url}/trackID=0", 2,
                "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
    session = h["Session"].split(";")[0]
    request(sock, "SETUP", f"{url}/trackID=1", 3,
            f"Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nSession: {session}\r\n")
    request(sock, "PLAY", url, 4, f"Session: {session}\r\n")
    sock.setblocking(False)
    return sock


def main():
    url, players, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sel = selectors.DefaultSelector()
    for _ in range(players):
        sel.register(open_player(url), selectors.EVENT_READ)
    total = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            try:
                data = key.fileobj.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                continue
            total += len(data)
    print(total)


if __name__ == "__main__":
    main()
