#!/usr/bin/env python3
"""The servers the shell tests run on the host side (tests/integration/*.sh, tests/e2e/*.sh).

One process, any mix of services on one address, each on its own thread:

  --http PORT DIR        HTTP file server for DIR (quiet; with --client-log, appends each
                         request's client address to that file, one per line)
  --whoami PORT          HTTP: every GET is answered with "client ADDRESS\\n" (the address the
                         server sees: IPv4 over a dual-stack socket shows as ::ffff:a.b.c.d)
  --sink PORT FILE       TCP upload sink: reads to EOF, appends "SHA256 LENGTH" to FILE, answers "ok"
  --echo PORT            TCP echo of one read of up to 64 bytes
  --udp-echo PORT        UDP echo of every datagram

--bind ADDR (default 127.0.0.1); "::" is dual stack (IPV6_V6ONLY off). Prints "ready" once
every socket listens; runs until killed, or for --lifetime seconds.
"""
import argparse
import hashlib
import http.server
import socket
import socketserver
import sys
import threading


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--http", nargs=2, action="append", default=[], metavar=("PORT", "DIR"))
    p.add_argument("--client-log", help="with --http: append each client's address here")
    p.add_argument("--whoami", type=int, action="append", default=[], metavar="PORT")
    p.add_argument("--sink", nargs=2, action="append", default=[], metavar=("PORT", "FILE"))
    p.add_argument("--echo", type=int, action="append", default=[], metavar="PORT")
    p.add_argument("--udp-echo", type=int, action="append", default=[], metavar="PORT")
    p.add_argument("--lifetime", type=float, default=None, help="seconds (default: until killed)")
    a = p.parse_args()

    family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET

    class TcpServer(socketserver.ThreadingTCPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 1024  # 1000 concurrent connections in tcp_fast_test.sh

        def server_bind(self):
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    def http_files(root):
        class Files(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *x, **k):
                super().__init__(*x, directory=root, **k)

            def log_message(self, *x):
                if a.client_log:
                    with open(a.client_log, "a") as f:
                        f.write(self.client_address[0] + "\n")
        return Files

    class WhoAmI(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            b = ("client " + self.client_address[0] + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def log_message(self, *x):
            pass

    def sink(out):
        class Sink(socketserver.BaseRequestHandler):
            def handle(self):
                h = hashlib.sha256()
                n = 0
                while True:
                    d = self.request.recv(1 << 16)
                    if not d:
                        break
                    h.update(d)
                    n += len(d)
                with open(out, "a") as f:
                    f.write("%s %d\n" % (h.hexdigest(), n))
                self.request.sendall(b"ok")
        return Sink

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            d = self.request.recv(64)
            self.request.sendall(d)

    def udp_echo(port):
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.bind((a.bind, port))

        def loop():
            while True:
                d, peer = u.recvfrom(65535)
                u.sendto(d, peer)
        return loop

    loops = []
    for port, root in a.http:
        loops.append(TcpServer((a.bind, int(port)), http_files(root)).serve_forever)
    for port in a.whoami:
        loops.append(TcpServer((a.bind, port), WhoAmI).serve_forever)
    for port, out in a.sink:
        loops.append(TcpServer((a.bind, int(port)), sink(out)).serve_forever)
    for port in a.echo:
        loops.append(TcpServer((a.bind, port), Echo).serve_forever)
    for port in a.udp_echo:
        loops.append(udp_echo(port))
    if not loops:
        p.error("no service given")
    for loop in loops:
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait(a.lifetime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
