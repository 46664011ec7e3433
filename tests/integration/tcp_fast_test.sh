#!/usr/bin/env bash
# Integration: the TCP fast path (`causeway netns --tcp-engine fast`) with real
# clients and servers in a real namespace:
#   1. 48 MiB host → guest (curl downloads from a host server through 10.0.2.2),
#      SHA-256 equal;
#   2. 48 MiB guest → host (the guest uploads to a host receiver), SHA-256 equal;
#   3. 1000 concurrent connections from the guest, each an echo round trip;
#   4. the engine's counters (`causeway ctl PATH stats`) show the flows went through the fast path.
# Servers listen on 127.0.0.1 only; everything is bounded in time; cleanup by PID.
# Usage: tcp_fast_test.sh CAUSEWAY_BIN. Exit 77 (skipped) without root, python3,
# curl, or a kernel with TCP SO_PEEK_OFF (Linux 6.10+).
set -euo pipefail
cw=$1
skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "needs root (network namespaces)"
[[ -x $cw ]] || skip "no causeway binary at $cw"
command -v python3 >/dev/null || skip "python3 missing"
command -v curl >/dev/null || skip "curl missing (apt-get install curl)"
python3 -c 'import socket; socket.socket().setsockopt(socket.SOL_SOCKET, 42, 0)' 2>/dev/null ||
  skip "this kernel has no TCP SO_PEEK_OFF (Linux 6.10+): the fast path is unavailable"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat >"$work/servers.py" <<'EOF'
# Three services on 127.0.0.1: HTTP file server (A), upload sink writing SHA-256 (B), echo (C).
import hashlib, http.server, socketserver, sys, threading
root, a, b, c, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *x, **k): super().__init__(*x, directory=root, **k)
    def log_message(self, *x): pass
class Sink(socketserver.BaseRequestHandler):
    def handle(self):
        h = hashlib.sha256(); n = 0
        while True:
            d = self.request.recv(1 << 16)
            if not d: break
            h.update(d); n += len(d)
        with open(out, "a") as f: f.write("%s %d\n" % (h.hexdigest(), n))
        self.request.sendall(b"ok")
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        d = self.request.recv(64)
        self.request.sendall(d)
class TS(socketserver.ThreadingTCPServer):
    daemon_threads = True; allow_reuse_address = True; request_queue_size = 1024
srvs = [TS(("127.0.0.1", a), Quiet), TS(("127.0.0.1", b), Sink), TS(("127.0.0.1", c), Echo)]
for s in srvs: threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait(300)
EOF

cat >"$work/guest.py" <<'EOF'
# In the guest: upload FILE to 10.0.2.2:B, then N concurrent echo round trips to 10.0.2.2:C.
import socket, sys, selectors
path, b, c, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection(("10.0.2.2", b), timeout=60)
with open(path, "rb") as f:
    while True:
        d = f.read(1 << 16)
        if not d: break
        s.sendall(d)
s.shutdown(socket.SHUT_WR)
assert s.recv(2) == b"ok", "no acknowledgement from the sink"
s.close()
sel = selectors.DefaultSelector()
socks = []
for i in range(n):
    x = socket.socket(); x.setblocking(False)
    x.connect_ex(("10.0.2.2", c))
    sel.register(x, selectors.EVENT_WRITE, i)
    socks.append(x)
done = 0; sent = set()
import time; end = time.monotonic() + 60
while done < n and time.monotonic() < end:
    for key, ev in sel.select(timeout=1):
        x, i = key.fileobj, key.data
        if ev & selectors.EVENT_WRITE and i not in sent:
            x.send(b"m%05d" % i); sent.add(i); sel.modify(x, selectors.EVENT_READ, i)
        elif ev & selectors.EVENT_READ:
            d = x.recv(64)
            assert d == b"m%05d" % i, (i, d)
            sel.unregister(x); x.close(); done += 1
print("echoed %d of %d" % (done, n))
sys.exit(0 if done == n else 1)
EOF

mkdir -p "$work/www"
head -c $((48 << 20)) /dev/urandom >"$work/www/big"
want=$(sha256sum <"$work/www/big" | cut -d' ' -f1)
base=$((30000 + (RANDOM % 500) * 4))
A=$base B=$((base + 1)) C=$((base + 2))
python3 "$work/servers.py" "$work/www" "$A" "$B" "$C" "$work/sink" >"$work/servers.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q ready "$work/servers.log" && break; sleep 0.1; done
grep -q ready "$work/servers.log" || fail "the host servers did not start: $(cat "$work/servers.log")"

echo "== fast path: 48 MiB each way, 1000 concurrent connections"
timeout 180 "$cw" netns --tcp-engine fast --control "$work/ctl.sock" -- sh -c "
  curl -s -m 60 -o '$work/got' http://10.0.2.2:$A/big || exit 11
  python3 '$work/guest.py' '$work/www/big' $B $C 1000 || exit 12
  '$cw' ctl '$work/ctl.sock' stats >'$work/stats.json' || exit 13" >"$work/guest.log" 2>&1 || fail "the guest side failed ($?): $(tail -5 "$work/guest.log")"
got=$(sha256sum <"$work/got" | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "host → guest: SHA-256 $got, want $want"
read -r up_sum up_len <"$work/sink" || fail "the upload never reached the sink"
[[ $up_sum == "$want" && $up_len == $((48 << 20)) ]] || fail "guest → host: SHA-256 $up_sum ($up_len bytes), want $want"
grep -q "echoed 1000 of 1000" "$work/guest.log" || fail "concurrent echoes: $(tail -3 "$work/guest.log")"
# The engine's counters: every connection above went through the fast path.
python3 - "$work/stats.json" <<'PY' || fail "the fast path's counters do not show the flows: $(cat "$work/stats.json")"
import json, sys
def find(o):
    if isinstance(o, dict):
        if "tcp_fast" in o: return o["tcp_fast"]
        for v in o.values():
            r = find(v)
            if r is not None: return r
    if isinstance(o, list):
        for v in o:
            r = find(v)
            if r is not None: return r
t = find(json.load(open(sys.argv[1])))
assert t and t["opened"] >= 1002, t
assert t["bytes_in"] >= 48 << 20 and t["bytes_out"] >= 48 << 20, t
print("fast path: %d flows opened, %d bytes in, %d out, %d retransmits" % (t["opened"], t["bytes_in"], t["bytes_out"], t["retransmits"]))
PY
echo "PASS"
