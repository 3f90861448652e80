#!/usr/bin/python3
"""
A two-port link emulator for tests: bridges Ethernet frames between two interfaces of its
network namespace (AF_PACKET), impairing each direction as `tc netem` would: random loss,
a bottleneck rate with a FIFO queue of bounded length (tail drop), and a fixed delay.
Used where the kernel has no sch_netem (test/peers/netns.ts).

  link-emulator.py <iface to server> <iface to client>

stdin, one JSON object a line: {"dir": "down"|"up", "rateKbit": 1000, "lossPct": 5, "delayMs": 150, "limit": 1000, "dropUdp": false}
("down" = server → client; absent fields mean none: no limit, no loss, no delay; "dropUdp": a
firewall that lets no IPv4 UDP through that way, as in offices that allow only web traffic).
Each line is answered on stdout with {"ok": true, "droppedUdp": n} (UDP frames dropped that
way so far) once applied; {"ready": true} when started.
"""
import array
import heapq
import json
import os
import random
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def csum(b):
    """RFC 1071 Internet checksum, in the byte order it is written."""
    if len(b) % 2:
        b += b"\0"
    s = sum(array.array("H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return struct.pack("=H", ~s & 0xFFFF)


def with_checksums(f):
    """
    A veth hands its frames over with the transport checksum left for the hardware to fill
    (checksum offload); written out again as they are, the receiver drops them. IPv4 TCP
    checksums are computed here, IPv4 UDP ones set to 0 ("none", RFC 768).
    """
    if len(f) < 34 or f[12:14] != b"\x08\x00":
        return f
    ihl = (f[14] & 0x0F) * 4
    proto = f[23]
    l4 = 14 + ihl
    end = min(len(f), 14 + int.from_bytes(f[16:18], "big"))
    if proto == 17 and end >= l4 + 8:
        return f[: l4 + 6] + b"\0\0" + f[l4 + 8 :]
    if proto == 6 and end >= l4 + 20:
        seg = bytearray(f[l4:end])
        seg[16:18] = b"\0\0"
        pseudo = f[26:34] + b"\0\x06" + (end - l4).to_bytes(2, "big")
        seg[16:18] = csum(pseudo + bytes(seg))
        return f[:l4] + bytes(seg) + f[end:]
    return f


class Pipe:
    def __init__(self):
        self.rate = 0.0  # bytes per second, 0 = unlimited
        self.loss = 0.0
        self.delay = 0.0
        self.limit = 1000
        self.busy_until = 0.0  # when the bottleneck finishes the last queued frame
        self.queue = []  # (deliver_at, seq, frame)
        self.seq = 0
        self.dropped = 0
        self.drop_udp = False
        self.dropped_udp = 0

    def set(self, o):
        self.rate = float(o.get("rateKbit") or 0) * 1000 / 8
        self.loss = float(o.get("lossPct") or 0) / 100
        self.delay = float(o.get("delayMs") or 0) / 1000
        self.limit = int(o.get("limit") or 1000)
        self.drop_udp = bool(o.get("dropUdp"))

    def push(self, frame, now):
        if self.drop_udp and len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] == 17:
            self.dropped_udp += 1
            return
        if self.loss > 0 and random.random() < self.loss:
            self.dropped += 1
            return
        if len(self.queue) >= self.limit:
            self.dropped += 1
            return
        start = max(now, self.busy_until)
        done = start + (len(frame) / self.rate if self.rate > 0 else 0)
        self.busy_until = done
        self.seq += 1
        heapq.heappush(self.queue, (done + self.delay, self.seq, frame))

    def next_at(self):
        return self.queue[0][0] if self.queue else None


def open_iface(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    return s


def main():
    to_server, to_client = sys.argv[1], sys.argv[2]
    a = open_iface(to_server)
    b = open_iface(to_client)
    pipes = {"down": Pipe(), "up": Pipe()}
    out = {"down": b, "up": a}
    src = {a.fileno(): ("down", a), b.fileno(): ("up", b)}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    buf = b""
    print(json.dumps({"ready": True}), flush=True)
    while True:
        now = time.monotonic()
        waits = [p.next_at() for p in pipes.values() if p.next_at() is not None]
        timeout = max(0.0, min(waits) - now) if waits else 1.0
        r, _, _ = select.select([a, b, stdin], [], [], timeout)
        now = time.monotonic()
        for s in r:
            if s == stdin:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        o = json.loads(line)
                        pipes[o["dir"]].set(o)
                        print(json.dumps({"ok": True, "droppedUdp": pipes[o["dir"]].dropped_udp}), flush=True)
                continue
            direction, sock = src[s.fileno()]
            for _ in range(256):
                try:
                    frame, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                except OSError:
                    break  # the interface is going down (the test is ending)
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own writes, seen again
                pipes[direction].push(with_checksums(frame), now)
        for direction, p in pipes.items():
            while p.queue and p.queue[0][0] <= now:
                _, _, frame = heapq.heappop(p.queue)
                try:
                    out[direction].send(frame)
                except OSError as e:
                    print(json.dumps({"sendError": str(e), "bytes": len(frame)}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
