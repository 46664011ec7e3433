#!/usr/bin/env python3
"""soak_load.py - the traffic of scripts/soak.sh: servers and churning clients.

Every mode is bounded: clients stop at COUNT operations or after SECONDS, whichever comes
first; servers run until killed. Clients write one JSON line of counters to OUT when they stop
(and rewrite it every second, so a client killed at its deadline still leaves figures).

  tcp-server ADDR PORT              accept; write one byte; close (the guest's and the host's end)
  udp-echo ADDR PORT                answer each datagram with its own bytes
  tcp-client ADDR PORT COUNT CONC SECONDS OUT
                                    short connections: connect, read the byte, close
  udp-client ADDR PORT COUNT CONC SECONDS OUT
                                    UDP flows: a new socket (so a new source port, a new flow in
                                    the engine) per exchange of one datagram and its echo
  dns-client SERVER COUNT CONC SECONDS OUT
                                    queries for distinct names under soak.test; every 10th is
                                    malformed (truncated header, pointer loop, label past the end,
                                    QDCOUNT 0, a response instead of a query, random bytes) and
                                    not waited for
  listeners PORT_LO PORT_HI SECONDS OUT
                                    guest listeners appearing and going: up to 8 at a time on
                                    random ports of the range, alternately on 0.0.0.0 and
                                    127.0.0.1, each closed after 0.2-1.5 s

Thread safety: single-threaded (asyncio).
"""

import asyncio
import json
import os
import random
import socket
import struct
import sys
import time


def write_out(path, counters):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(counters) + "\n")
    os.replace(tmp, path)


async def reporter(path, counters):
    while True:
        write_out(path, counters)
        await asyncio.sleep(1)


async def run_clients(one, count, conc, seconds, out):
    """Runs `one(counters)` COUNT times with CONC in parallel, for at most SECONDS."""
    counters = {"ok": 0, "failed": 0, "started": 0}
    deadline = time.monotonic() + seconds
    rep = asyncio.ensure_future(reporter(out, counters))

    async def worker():
        while counters["started"] < count and time.monotonic() < deadline:
            counters["started"] += 1
            try:
                await one(counters)
            except (OSError, asyncio.TimeoutError, EOFError):
                counters["failed"] += 1

    await asyncio.gather(*(worker() for _ in range(conc)))
    rep.cancel()
    write_out(out, counters)


async def tcp_one(addr, port, counters):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), 5)
    try:
        data = await asyncio.wait_for(reader.read(1), 5)
        if data:
            counters["ok"] += 1
        else:
            counters["failed"] += 1
    finally:
        writer.close()


async def udp_one(addr, port, counters):
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        s.connect((addr, port))
        msg = os.urandom(8)
        await loop.sock_sendall(s, msg)
        reply = await asyncio.wait_for(loop.sock_recv(s, 64), 2)
        if reply == msg:
            counters["ok"] += 1
        else:
            counters["failed"] += 1
    finally:
        s.close()


def dns_query(qid, name, qtype=1):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", qtype, 1)


def dns_malformed(qid, n):
    kind = n % 6
    if kind == 0:  # header cut short
        return struct.pack("!HH", qid, 0x0100)
    if kind == 1:  # a name that points at itself (RFC 1035 4.1.4 pointers)
        return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    if kind == 2:  # a label running past the end of the message
        return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x3fabc"
    if kind == 3:  # no question at all
        return struct.pack("!HHHHHH", qid, 0x0100, 0, 0, 0, 0)
    if kind == 4:  # a response (QR set) sent as a query
        return dns_query(qid, "reply.soak.test")[:2] + b"\x81\x80" + dns_query(qid, "reply.soak.test")[4:]
    return os.urandom(random.randint(1, 600))  # noise


async def run_dns(server, count, conc, seconds, out):
    loop = asyncio.get_running_loop()
    counters = {"ok": 0, "failed": 0, "started": 0, "malformed": 0}
    deadline = time.monotonic() + seconds
    rep = asyncio.ensure_future(reporter(out, counters))

    async def worker(w):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((server, 53))
        try:
            while counters["started"] < count and time.monotonic() < deadline:
                n = counters["started"]
                counters["started"] += 1
                qid = random.randint(0, 0xFFFF)
                if n % 10 == 9:
                    counters["malformed"] += 1
                    try:
                        await loop.sock_sendall(s, dns_malformed(qid, n // 10))
                    except OSError:
                        pass
                    continue
                try:
                    await loop.sock_sendall(s, dns_query(qid, f"q{n}-{w}.soak.test"))
                    end = time.monotonic() + 2
                    while True:  # skip late answers to earlier queries and to malformed ones
                        left = end - time.monotonic()
                        if left <= 0:
                            raise asyncio.TimeoutError()
                        reply = await asyncio.wait_for(loop.sock_recv(s, 4096), left)
                        if len(reply) >= 4 and struct.unpack("!H", reply[:2])[0] == qid:
                            break
                    rcode = reply[3] & 0x0F
                    counters["ok" if rcode == 0 else "failed"] += 1
                except (OSError, asyncio.TimeoutError):
                    counters["failed"] += 1
        finally:
            s.close()

    await asyncio.gather(*(worker(w) for w in range(conc)))
    rep.cancel()
    write_out(out, counters)


async def run_listeners(lo, hi, seconds, out):
    counters = {"opened": 0, "closed": 0, "bind_failed": 0}
    deadline = time.monotonic() + seconds
    rep = asyncio.ensure_future(reporter(out, counters))
    live = []  # (close_at, socket)
    n = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        for item in [x for x in live if x[0] <= now]:
            item[1].close()
            live.remove(item)
            counters["closed"] += 1
        if len(live) < 8:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0" if n % 2 == 0 else "127.0.0.1", random.randint(lo, hi)))
                s.listen(16)
                live.append((now + random.uniform(0.2, 1.5), s))
                counters["opened"] += 1
            except OSError:
                s.close()
                counters["bind_failed"] += 1
            n += 1
        await asyncio.sleep(0.05)
    for _, s in live:
        s.close()
        counters["closed"] += 1
    rep.cancel()
    write_out(out, counters)


async def tcp_server(addr, port):
    async def on_conn(reader, writer):
        try:
            writer.write(b"k")
            await writer.drain()
        except OSError:
            pass
        writer.close()

    server = await asyncio.start_server(on_conn, addr, port, backlog=1024, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def udp_echo(addr, port):
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=(addr, port))
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    mode, a = argv[1], argv[2:]
    if mode == "tcp-server":
        asyncio.run(tcp_server(a[0], int(a[1])))
    elif mode == "udp-echo":
        asyncio.run(udp_echo(a[0], int(a[1])))
    elif mode in ("tcp-client", "udp-client"):
        addr, port, count, conc, seconds, out = a[0], int(a[1]), int(a[2]), int(a[3]), float(a[4]), a[5]
        one = tcp_one if mode == "tcp-client" else udp_one
        asyncio.run(run_clients(lambda c: one(addr, port, c), count, conc, seconds, out))
    elif mode == "dns-client":
        asyncio.run(run_dns(a[0], int(a[1]), int(a[2]), float(a[3]), a[4]))
    elif mode == "listeners":
        asyncio.run(run_listeners(int(a[0]), int(a[1]), float(a[2]), a[3]))
    else:
        sys.exit(f"unknown mode {mode}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
