# Tiny UDP proxy logging every datagram: listen on LPORT, forward to 127.0.0.1:UPORT.
import socket, sys, select, time, os
lport, uport, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dur = float(sys.argv[4]) if len(sys.argv) > 4 else 8
os.makedirs(out, exist_ok=True)
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind(('127.0.0.1', lport))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); back.bind(('127.0.0.1', 0))
client = None; n = 0; end = time.time() + dur
while time.time() < end:
    r, _, _ = select.select([front, back], [], [], 0.2)
    for s in r:
        data, addr = s.recvfrom(65536)
        if s is front:
            client = addr; back.sendto(data, ('127.0.0.1', uport)); d = 'c2l'
        else:
            if client: front.sendto(data, client)
            d = 'l2c'
        open(f'{out}/{n:05d}-{d}.bin', 'wb').write(data); n += 1
print(n, 'datagrams')
