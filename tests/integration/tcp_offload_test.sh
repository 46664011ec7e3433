#!/usr/bin/env bash
# Integration: checksum/TSO offloads on the namespace's tap (issue 8) with real
# tools in a real namespace, offloads on (the default with the fast path) and
# off (--no-offload), at MTU 65520 and 1500:
#   1. 32 MiB host → guest (curl from a host server through 10.0.2.2) and
#      32 MiB guest → host (upload to a host sink), SHA-256 equal both ways;
#   2. UDP through libslirp (an echo at the host's 127.0.0.1 via 10.0.2.2):
#      the namespace's partial UDP checksums are completed before libslirp,
#      which drops a datagram whose checksum is wrong;
#   3. TCP through libslirp (DNS over TCP to 10.0.2.3, dig +tcp): partial TCP
#      checksums completed before libslirp;
#   4. the counters (`causeway ctl PATH stats`): with offloads, the tap has
#      them, super-segments went whole to the fast path (at MTU 1500 the
#      namespace's TSO frames are larger than the MTU) and none was dropped as
#      bad_offload; without, the tap has none and nothing was an offload frame.
# Servers listen on 127.0.0.1 only; bounded in time; cleanup by PID.
# Usage: tcp_offload_test.sh CAUSEWAY_BIN. Exit 77 (skipped) without root,
# python3, curl, dig or TCP SO_PEEK_OFF (Linux 6.10+).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
need_root "network namespaces"
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd python3
need_cmd curl "curl missing (apt-get install curl)"
need_cmd dig "dig missing (apt-get install dnsutils)"
need_tcp_peek_off "the fast path is unavailable"

make_work cw-tcp-offload

cat >"$work/guest.py" <<'EOF'
# In the guest: upload FILE to 10.0.2.2:B; then 20 UDP echoes of 1200 bytes through 10.0.2.2:C.
import socket, sys
path, b, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("10.0.2.2", b), timeout=60)
with open(path, "rb") as f:
    while True:
        d = f.read(1 << 16)
        if not d: break
        s.sendall(d)
s.shutdown(socket.SHUT_WR)
assert s.recv(2) == b"ok", "no acknowledgement from the sink"
s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1)
got = 0
for i in range(20):
    m = bytes([i]) * 1200
    u.sendto(m, ("10.0.2.2", c))
    try:
        if u.recv(2000) == m: got += 1
    except socket.timeout: pass
print("udp echoed %d of 20" % got)
sys.exit(0 if got >= 18 else 1)
EOF

mkdir -p "$work/www"
head -c $((32 << 20)) /dev/urandom >"$work/www/big"
want=$(sha256sum <"$work/www/big" | cut -d' ' -f1)
base=$((31000 + (RANDOM % 500) * 4))
A=$base B=$((base + 1)) C=$((base + 2))
# On 127.0.0.1: HTTP file server (A), upload sink writing SHA-256 (B), UDP echo (C).
python3 "$CW_TEST_LIB/servers.py" --http "$A" "$work/www" --sink "$B" "$work/sink" \
  --udp-echo "$C" --lifetime 600 >"$work/servers.log" 2>&1 &
track_pid $!
for _ in $(seq 50); do grep -q ready "$work/servers.log" && break; sleep 0.1; done
grep -q ready "$work/servers.log" || fail "the host servers did not start: $(cat "$work/servers.log")"

run_case() { # MTU OFFLOAD(on|off)
  local mtu=$1 off=$2 extra=()
  [[ $off == off ]] && extra=(--no-offload)
  echo "== MTU $mtu, offloads $off"
  rm -f "$work/got" "$work/sink" "$work/stats.json"
  timeout 180 "$cw" netns --tcp-engine fast --mtu "$mtu" "${extra[@]}" --control "$work/ctl.sock" -- sh -c "
    curl -s -m 60 -o '$work/got' http://10.0.2.2:$A/big || exit 11
    python3 '$work/guest.py' '$work/www/big' $B $C || exit 12
    dig +tcp +time=3 +tries=2 @10.0.2.3 host.causeway.internal A >'$work/dig.out' || exit 13
    '$cw' ctl '$work/ctl.sock' stats >'$work/stats.json' || exit 14" >"$work/guest.log" 2>&1 ||
    fail "MTU $mtu offloads $off: the guest side failed ($?): $(tail -5 "$work/guest.log")"
  local got up_sum up_len
  got=$(sha256sum <"$work/got" | cut -d' ' -f1)
  [[ $got == "$want" ]] || fail "MTU $mtu offloads $off: host → guest SHA-256 $got, want $want"
  read -r up_sum up_len <"$work/sink" || fail "MTU $mtu offloads $off: the upload never reached the sink"
  [[ $up_sum == "$want" && $up_len == $((32 << 20)) ]] ||
    fail "MTU $mtu offloads $off: guest → host SHA-256 $up_sum ($up_len bytes), want $want"
  grep -q "status: NOERROR" "$work/dig.out" || fail "MTU $mtu offloads $off: DNS over TCP via libslirp: $(cat "$work/dig.out")"
  python3 - "$work/stats.json" "$off" "$mtu" <<'PY' || fail "MTU $mtu offloads $off: counters: $(cat "$work/stats.json")"
import json, sys
g = json.load(open(sys.argv[1]))["guests"][0]
off, mtu = sys.argv[2] == "on", int(sys.argv[3])
e, p = g["engine"], g["port"]
o = e["offload"]
assert e["dropped"]["bad_offload"] == 0, e["dropped"]
assert p["offload"] == off, p
if off:
    assert p["offload_frames_read"] > 0 and o["to_fast_path"] > 0, (p, o)
    assert o["in_software"] > 0, o  # UDP and DNS over TCP went to libslirp finished in software
    if mtu == 1500:
        assert e["tcp_fast"]["bytes_out"] >= 32 << 20 and o["super_segments_out"] > 0, o
else:
    assert p["offload_frames_read"] == 0 and o["to_fast_path"] == 0 and o["super_segments_out"] == 0, (p, o)
print("ok: port %s, offload %s, retransmits %d" % ({k: p[k] for k in ("offload_frames_read", "offload_frames_written")}, o, e["tcp_fast"]["retransmits"]))
PY
}

run_case 65520 on
run_case 1500 on
run_case 1500 off
run_case 65520 off
echo "PASS"
