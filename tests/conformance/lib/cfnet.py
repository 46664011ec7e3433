#!/usr/bin/python3
"""cfnet: the small socket tool of the conformance suite.

Servers and clients with exact, bounded behaviour, so a check measures the
engine and not the quirks of a general-purpose tool (socat, nc).  Every
client has a deadline; every server exits on SIGTERM.  Only the standard
library; runs in any namespace.

  serve-tcp  --bind ADDR --port P --reply TEXT [--ready FILE] [--v6only]
             Each connection gets TEXT + "\\n", then the server closes it.  The
             client never has to half-close first.
  serve-udp  --bind ADDR --port P (--reply TEXT | --echo) [--ready FILE] [--v6only]
             Each datagram is answered with TEXT, or echoed back (--echo).
  probe-tcp  --host ADDR --port P --expect TEXT [--deadline S] [--since FILE]
             Connects every 20 ms until a connection delivers exactly TEXT + "\\n"
             and is then closed by the server.  Prints the elapsed milliseconds
             (from FILE's timestamp, as written by --ready, when --since is given;
             else from the start); exit 0.  On deadline: exit 1, prints the last
             error.
  probe-udp  --host ADDR --port P --expect TEXT [--deadline S] [--since FILE]
             Sends a datagram every 100 ms until TEXT comes back.  Same output.
  udp-size   --host ADDR --port P --size N [--deadline S]
             Sends one N-byte datagram with "don't fragment" set to an echo
             server, up to 5 times, until the same N bytes come back.
  ready-time FILE
             Waits (bounded by --deadline, default 5 s) for a --ready file.

The --ready file holds time.monotonic() taken right after listen()/bind()
returned; CLOCK_MONOTONIC is shared by all network namespaces, so a host-side
probe can measure from the moment the guest's server became ready.
"""
import argparse
import errno
import os
import signal
import socket
import sys
import time


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def write_ready(path):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%.6f\n" % time.monotonic())
    os.rename(tmp, path)


def read_ready(path, deadline):
    end = time.monotonic() + deadline
    while True:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return float(text)
        except OSError:
            pass
        if time.monotonic() >= end:
            return None
        time.sleep(0.01)


def bound_socket(kind, addr, port, v6only):
    fam = family_of(addr)
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
    s.bind((addr, port))
    return s


def cmd_serve_tcp(a):
    s = bound_socket(socket.SOCK_STREAM, a.bind, a.port, a.v6only)
    s.listen(64)
    write_ready(a.ready)
    reply = (a.reply + "\n").encode()
    while True:
        c, _ = s.accept()
        try:
            c.settimeout(2)
            c.sendall(reply)
            c.shutdown(socket.SHUT_WR)
            # wait for the peer's FIN (bounded) so the close is orderly
            try:
                while c.recv(4096):
                    pass
            except OSError:
                pass
        except OSError:
            pass
        finally:
            c.close()


def cmd_serve_udp(a):
    s = bound_socket(socket.SOCK_DGRAM, a.bind, a.port, a.v6only)
    write_ready(a.ready)
    reply = a.reply.encode() if a.reply is not None else None
    while True:
        data, peer = s.recvfrom(65535)
        try:
            s.sendto(data if reply is None else reply, peer)
        except OSError:
            pass


def elapsed_ms(start, since_file, deadline):
    now = time.monotonic()
    if since_file:
        t0 = read_ready(since_file, 0)
        if t0 is not None:
            return (now - t0) * 1000.0
    return (now - start) * 1000.0


def tcp_once(host, port, timeout):
    fam = family_of(host)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
            if len(data) > 65536:
                break
        return data, None
    except OSError as e:
        return None, e.strerror or str(e)
    finally:
        s.close()


def cmd_probe_tcp(a):
    start = time.monotonic()
    end = start + a.deadline
    want = (a.expect + "\n").encode()
    last = "no attempt"
    while True:
        left = max(0.05, min(1.0, end - time.monotonic()))
        data, err = tcp_once(a.host, a.port, left)
        if err is None:
            if data == want:
                print("%.0f" % elapsed_ms(start, a.since, a.deadline))
                return 0
            last = "connected, but got %r instead of %r" % (data[:80], want)
        else:
            last = err
        if time.monotonic() >= end:
            print(last)
            return 1
        time.sleep(0.02)


def cmd_probe_udp(a):
    start = time.monotonic()
    end = start + a.deadline
    want = a.expect.encode()
    fam = family_of(a.host)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    last = "no reply"
    while True:
        try:
            s.sendto(b"conformance-ping", (a.host, a.port))
            s.settimeout(0.1)
            t_wait = time.monotonic() + 0.1
            while time.monotonic() < t_wait:
                data, _ = s.recvfrom(65535)
                if data == want:
                    print("%.0f" % elapsed_ms(start, a.since, a.deadline))
                    return 0
                last = "got %r instead of %r" % (data[:80], want)
        except socket.timeout:
            pass
        except OSError as e:
            last = e.strerror or str(e)
            time.sleep(0.05)
        if time.monotonic() >= end:
            print(last)
            return 1


def cmd_udp_size(a):
    fam = family_of(a.host)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    else:
        s.setsockopt(socket.IPPROTO_IPV6, 23, 2)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO
    payload = bytes((i * 7) & 0xFF for i in range(a.size))
    end = time.monotonic() + a.deadline
    last = "no reply"
    for _ in range(5):
        try:
            s.sendto(payload, (a.host, a.port))
        except OSError as e:
            print("send of %d bytes failed: %s" % (a.size, e.strerror or e))
            return 1
        s.settimeout(max(0.05, min(0.5, end - time.monotonic())))
        try:
            data, _ = s.recvfrom(65535)
            if data == payload:
                print("ok")
                return 0
            last = "reply of %d bytes differs" % len(data)
        except socket.timeout:
            last = "no reply to a %d-byte datagram" % a.size
        except OSError as e:
            last = e.strerror or str(e)
        if time.monotonic() >= end:
            break
    print(last)
    return 1


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    for name in ("serve-tcp", "serve-udp"):
        q = sub.add_parser(name)
        q.add_argument("--bind", required=True)
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--reply")
        q.add_argument("--ready")
        q.add_argument("--v6only", action="store_true")
        if name == "serve-udp":
            q.add_argument("--echo", action="store_true")
    for name in ("probe-tcp", "probe-udp"):
        q = sub.add_parser(name)
        q.add_argument("--host", required=True)
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--expect", required=True)
        q.add_argument("--deadline", type=float, default=3.0)
        q.add_argument("--since")
    q = sub.add_parser("udp-size")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--size", type=int, required=True)
    q.add_argument("--deadline", type=float, default=3.0)
    q = sub.add_parser("ready-time")
    q.add_argument("file")
    q.add_argument("--deadline", type=float, default=5.0)

    a = p.parse_args()
    try:
        if a.cmd == "serve-tcp":
            return cmd_serve_tcp(a)
        if a.cmd == "serve-udp":
            if a.reply is None and not a.echo:
                p.error("serve-udp needs --reply or --echo")
            return cmd_serve_udp(a)
        if a.cmd == "probe-tcp":
            return cmd_probe_tcp(a)
        if a.cmd == "probe-udp":
            return cmd_probe_udp(a)
        if a.cmd == "udp-size":
            return cmd_udp_size(a)
        if a.cmd == "ready-time":
            t = read_ready(a.file, a.deadline)
            if t is None:
                print("no ready file %s after %.1f s" % (a.file, a.deadline))
                return 1
            print("%.6f" % t)
            return 0
    except OSError as e:
        print("cfnet %s: %s" % (a.cmd, e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
