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
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
need_root "network namespaces"
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd python3
need_cmd curl "curl missing (apt-get install curl)"
need_tcp_peek_off "the fast path is unavailable"

make_work cw-tcp-fast

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
# Three services on 127.0.0.1: HTTP file server (A), upload sink writing SHA-256 (B), echo (C).
python3 "$CW_TEST_LIB/servers.py" --http "$A" "$work/www" --sink "$B" "$work/sink" \
  --echo "$C" --lifetime 300 >"$work/servers.log" 2>&1 &
track_pid $!
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
