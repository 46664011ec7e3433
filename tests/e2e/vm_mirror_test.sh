#!/usr/bin/env bash
# e2e: mirrored mode in the VM (`causeway run --mode mirrored`) — the control plane.
#
#   lan ns (192.168.77.1, fd77::1)          corp ns (10.66.0.1)
#   lanp ══ veth ══ lan0                    vpnp ══ veth ══ vpn0 (MTU 1380, 10.66.0.2/30; later)
#                   "host" ns: causeway run --mode mirrored -- sh (the guest, under QEMU)
#                     guest: eth0 (internal NAT link) + lan0, later vpn0 — macvlans on eth0
#
# One boot, driven step by step through the command's stdin; the guest reports
# what it sees with busybox ip and /sys:
#   1. the guest's lan0 has the host's MTU, IPv4+IPv6 addresses and default routes, a MAC
#      of causeway's 02:43:57:4d prefix, and is a macvlan; eth0 is internal (link-scope
#      address, no default route through it);
#   2. TCP from the guest to a LAN server over IPv4 and IPv6 leaves through the mirrored
#      link's data path (frames split by source MAC → MirrorLink → host socket bound to the
#      host's address): the server sees the host's addresses as the client;
#   3. vpn0 (MTU 1380, own subnet) brought up on the host appears in the guest within 1 s,
#      with its MTU and address; TCP to the corp server goes through it (the server sees the
#      host's VPN address); removed on the host, it leaves within 1 s;
#   4. 10 address changes on the host's lan0, one at a time, each reach the guest (2 s bound:
#      TCG and a busy 2-core machine make the guest's own polling slow);
#   5. `causeway ctl PATH mirror` shows the VM mechanism, a converged last sync, no errors,
#      and lan0's data path counted the TCP flows.
# Prints the measured latencies: host change → causeway logs the agent's report ("applied"),
# and → the guest's shell sees it ("seen"); both include spawning `ip` on the host.
# Usage: vm_mirror_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped) without root,
# QEMU, the guest image or a tool. Namespaces are named after this PID and deleted at
# exit; processes are killed by PID; every wait is bounded.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/topology.sh
source "$CW_TEST_LIB/topology.sh"
cw=$1
guest=$2
need_root "network namespaces, veth"
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
for t in ip python3; do need_cmd "$t"; done

id=$$
H=cwvm-host-$id L=cwvm-lan-$id C=cwvm-corp-$id
make_work cw-e2e-mirror
cw_pid=
on_cleanup() {
  exec 3>&- 2>/dev/null || true
}
sock=$work/ctl.sock
on_fail() {
  [[ -S $sock ]] && "$cw" ctl "$sock" mirror 2>/dev/null | head -c 4000
  echo; echo "--- guest output"; cat "$work/out" 2>/dev/null || true
}

lan_vpn_topology "$H" "$L" "$C"

# The LAN and corp servers answer with the client address they see (dual stack: IPv4 as
# ::ffff:a.b.c.d).
serve() {  # NS
  ip netns exec "$1" python3 "$CW_TEST_LIB/servers.py" --bind :: --whoami 8080 &
  track_pid $!
}
serve "$L"
serve "$C"
# Listening before the guest uses them (a loaded machine starts python slowly).
for target in "$L fd77::1" "$C 10.66.0.1"; do
  read -r ns addr <<<"$target"
  end=$((SECONDS + 20))
  until ip netns exec "$ns" python3 -c "import socket; socket.create_connection(('$addr', 8080), 1)" 2>/dev/null; do
    ((SECONDS < end)) || fail "the server in $ns did not start listening"
    sleep 0.1
  done
done
tcp_ok=1
python3 -c 'import socket; socket.socket().setsockopt(socket.SOL_SOCKET, 42, 0)' 2>/dev/null || tcp_ok=0

# The guest: report the state, then for each step read a name and a shell condition
# from stdin, spin until the condition holds, and say so.
read -r -d '' script <<'EOF' || true
echo "== lan0"; cat /sys/class/net/lan0/mtu /sys/class/net/lan0/address
ls -l /sys/class/net/lan0/lower_eth0 >/dev/null 2>&1 && echo "lan0-on-eth0"
ip addr show dev lan0; ip addr show dev eth0
echo "== routes"; ip route; ip -6 route
echo "== tcp"; wget -q -O - http://192.168.77.1:8080/ 2>&1; wget -q -O - "http://[fd77::1]:8080/" 2>&1
echo phase-ready
while read name cond; do
  [ "$name" = end ] && break
  until eval "$cond"; do sleep 0.01; done
  echo "seen-$name"
done
echo phase-done
EOF

mkfifo "$work/in"
export CAUSEWAY_GUEST_DIR=$guest
timeout 300 ip netns exec "$H" "$cw" --log-level info run -q --mode mirrored --control "$sock" -- sh -c "$script" \
  <"$work/in" >"$work/out" 2>&1 &
cw_pid=$!
track_pid "$cw_pid"
exec 3>"$work/in"

wait_for() {  # PATTERN SECONDS
  local end=$((SECONDS + $2))
  until grep -q -- "$1" "$work/out"; do
    ((SECONDS < end)) || fail "no '$1' from the guest within $2 s"
    kill -0 "$cw_pid" 2>/dev/null || fail "causeway run exited early"
    sleep 0.1
  done
}
# Sends a step, runs the host change and waits until the guest sees it (≤ LIMIT ms, as
# polled by the guest's shell under TCG, where every fork/exec of ip or sleep costs tens
# of ms). Sets STEP_APPLIED: ms from the host change until causeway logged "mirror: sync
# applied" (the agent's report of the converged guest is back on the host), and
# STEP_SEEN: ms until the guest's "seen" line reached the host.
step() {  # NAME CONDITION LIMIT_MS HOST_COMMAND...
  local name=$1 cond=$2 limit=$3; shift 3
  echo "$name $cond" >&3
  sleep 0.3  # the guest is polling the condition before the host changes
  local n0; n0=$(grep -c "mirror: sync applied" "$work/out" || true)
  local t0; t0=$(now_ms)
  "$@"
  local end=$((t0 + limit + 2000)) applied=
  STEP_SEEN=
  while [[ -z $STEP_SEEN || -z $applied ]]; do
    (($(now_ms) < end)) || fail "step $name: the guest did not see the change (applied: ${applied:-no})"
    if [[ -z $applied ]] && (($(grep -c "mirror: sync applied" "$work/out" || true) > n0)); then
      applied=$(($(now_ms) - t0))
    fi
    if [[ -z $STEP_SEEN ]] && grep -q -- "seen-$name\$" "$work/out"; then STEP_SEEN=$(($(now_ms) - t0)); fi
    sleep 0.001
  done
  ((STEP_SEEN <= limit)) || fail "step $name: the guest saw it after $STEP_SEEN ms (limit $limit)"
  STEP_APPLIED=$applied
}

# A guest-side check with no host change: waits until the guest says it holds.
guest_check() {  # NAME CONDITION SECONDS
  echo "$1 $2" >&3
  wait_for "seen-$1\$" "$3"
}

wait_for phase-ready 150
out=$(cat "$work/out")
echo "== 1. lan0 mirrored with the host's MTU, addresses and routes; eth0 internal"
grep -A1 -- "== lan0" <<<"$out" | grep -qx 1500 || fail "guest lan0 MTU is not 1500"
grep -qi -- "02:43:57:4d:" <<<"$out" || fail "guest lan0 MAC is not 02:43:57:4d:xx:xx"
grep -q lan0-on-eth0 <<<"$out" || fail "guest lan0 is not a link on eth0 (macvlan)"
grep -q "inet 192.168.77.2/24" <<<"$out" || fail "guest lan0 lacks 192.168.77.2/24"
grep -q "inet6 fd77::2/64" <<<"$out" || fail "guest lan0 lacks fd77::2/64"
grep -q "^default via 192.168.77.1 dev lan0" <<<"$out" || fail "no IPv4 default route via lan0"
grep -q "^default via fd77::1 dev lan0" <<<"$out" || fail "no IPv6 default route via lan0"
grep -q "default.* dev eth0" <<<"$out" && fail "a default route goes through eth0 (the internal link)"
grep -q "inet 10.0.2.15/24 .*scope link" <<<"$out" || fail "eth0's address is not link-scope (internal)"

echo "== 2. TCP to the LAN server through the mirrored link"
if ((tcp_ok)); then
  grep -q "^client ::ffff:192.168.77.2$" <<<"$out" || fail "IPv4: the LAN server did not see the host's 192.168.77.2"
  grep -q "^client fd77::2$" <<<"$out" || fail "IPv6: the LAN server did not see the host's fd77::2"
else
  echo "   SKIPPED: this kernel has no TCP SO_PEEK_OFF (Linux 6.10+): mirrored TCP needs the fast path"
fi

echo "== 3. a VPN link comes up on the host, then goes away"
step vpn-up '[ -e /sys/class/net/vpn0/mtu ] && read m </sys/class/net/vpn0/mtu && [ "$m" = 1380 ] && ip addr show dev vpn0 | grep -q 10.66.0.2/30' 1000 \
  sh -c "ip -n $H addr add 10.66.0.2/30 dev vpn0 && ip -n $H link set vpn0 up"
up_ms=$STEP_APPLIED up_seen=$STEP_SEEN
echo "   vpn0 in the guest: applied after $up_ms ms, seen by the guest's shell after $up_seen ms"
if ((tcp_ok)); then
  # A link that came later has its own data path: TCP to the corp server leaves through
  # vpn0's MirrorLink, bound to the host's VPN address.
  guest_check vpn-tcp 'wget -q -O - http://10.66.0.1:8080/ 2>/dev/null | grep -q "client ::ffff:10.66.0.2"' 10
  echo "   TCP through vpn0: the corp server saw the host's 10.66.0.2"
fi
step vpn-gone '[ ! -e /sys/class/net/vpn0 ]' 1000 ip -n "$H" link set vpn0 down
down_ms=$STEP_APPLIED down_seen=$STEP_SEEN
echo "   vpn0 gone from the guest: applied after $down_ms ms, seen after $down_seen ms"

echo "== 4. 10 address changes on the host's lan0"
changes=() seens=()
for i in 1 2 3 4 5 6 7 8 9 10; do
  step "addr$i" "ip addr show dev lan0 | grep -q 192.168.77.$((100 + i))/24" 2000 \
    ip -n "$H" addr add "192.168.77.$((100 + i))/24" dev lan0
  changes+=("$STEP_APPLIED") seens+=("$STEP_SEEN")
done
sorted=$(printf '%s\n' "${changes[@]}" | sort -n)
echo "   applied per change (ms): ${changes[*]}; median $(sed -n 5p <<<"$sorted")-$(sed -n 6p <<<"$sorted"), max $(tail -1 <<<"$sorted")"
echo "   seen by the guest's shell (ms): ${seens[*]}"

echo "== 5. ctl mirror"
"$cw" ctl "$sock" mirror >"$work/mirror.json" || fail "ctl mirror failed"
rtt=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d.get("mirror",d); print(round(d["last_sync"]["duration_ms"],1))' "$work/mirror.json")
echo "   last sync (plan → MirrorApply → agent converges → MirrorReport): $rtt ms"
python3 - "$work/mirror.json" "$tcp_ok" <<'PY' || fail "ctl mirror: $(head -c 3000 "$work/mirror.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
m = doc.get("mirror", doc)
assert m["guest_mechanism"] == "vm", m.get("guest_mechanism")
assert m["last_sync"]["converged"] and m["last_sync"]["errors_total"] == 0, m["last_sync"]
assert m["vm"]["reports"] >= 3 and m["vm"]["timeouts"] == 0, m["vm"]
names = [l["name"] for l in m["guest"]["links"]]
assert "lan0" in names and "vpn0" not in names, names
assert "eth0" in m["vm"]["guest_links"], m["vm"]
assert m["vm"]["demux"]["to_links"] > 0 and m["vm"]["demux"]["to_default"] > 0, m["vm"]["demux"]
if sys.argv[2] == "1":
    tcp = m["data_path"]["lan0"]["tcp"]
    assert tcp["flows_opened"] >= 2 and tcp["bytes_in"] > 0, tcp
PY

echo "end x" >&3
exec 3>&-
set +e
wait "$cw_pid"
st=$?
set -e
untrack_pid "$cw_pid"
cw_pid=
[[ $st == 0 ]] || fail "causeway run exited $st"
grep -q phase-done "$work/out" || fail "the guest script did not finish"
echo "RESULT (applied) new-link ${up_ms} ms, removal ${down_ms} ms, 10 address changes median $(sed -n 5p <<<"$sorted")-$(sed -n 6p <<<"$sorted") max $(tail -1 <<<"$sorted") ms, last sync round trip $rtt ms"
echo "PASS"
