#!/usr/bin/env bash
# Integration: faults under a namespace attachment (`causeway netns --attach`), each bounded:
#   1. the upstream DNS server (a dnsmasq on the "host" namespace's 127.0.0.1) disappears: the
#      guest's queries fail (SERVFAIL or no answer) and the engine stays up; it returns: the
#      queries are answered again;
#   2. the host's resolver file is deleted: the engine stays up and keeps the servers it had
#      (HostDnsWatch's rule: it warns and keeps the previous servers); recreated naming another
#      server (a second dnsmasq on 127.0.0.2 with other answers): the answers follow it;
#   3. the tap is deleted inside the namespace: causeway exits within 5 s saying so, its host
#      forward is closed and nothing of it is left running.
# Usage: fault_netns_test.sh CAUSEWAY_BIN. Exit 77 (skipped) without root, python3 or dnsmasq.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
need_root "network namespaces"
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd python3
need_cmd dnsmasq "dnsmasq missing (apt-get install dnsmasq-base)"

make_work cw-fault-netns
host=cwfault-$$-h guest=cwfault-$$-g
ip netns add "$host"; track_netns "$host"
ip netns add "$guest"; track_netns "$guest"
ip -n "$host" link set lo up
ip -n "$guest" link set lo up
printf 'nameserver 127.0.0.1\n' >"$work/resolv.conf"

# query NAME: prints the rcode of an A query to 10.0.2.3 from the guest and the last answer's
# address, or "timeout"
cat >"$work/query.py" <<'PY'
import os, socket, struct, sys
qid = int.from_bytes(os.urandom(2), "big")
q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
for label in sys.argv[1].split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, ("10.0.2.3", 53))
try:
    while True:
        r = s.recv(4096)
        if r[:2] == q[:2]:
            print(r[3] & 0x0F, ".".join(str(b) for b in r[-4:]) if r[7] else "-")
            break
except socket.timeout:
    print("timeout")
PY
query() { ip netns exec "$guest" timeout 5 python3 "$work/query.py" "$1" 2>/dev/null || echo error; }
answered() { [[ $(query "$1") == "0 ${2:-192.0.2.7}" ]]; }
not_answered() { ! answered "$1"; }
listening() { [[ -n $(ip netns exec "$host" ss -Hl"$1"n "src ${3:-0.0.0.0/0}:$2" 2>/dev/null) ]]; }  # t|u PORT [ADDR]

dnsmasq_pid=""
start_dnsmasq() {  # [LISTEN ANSWER]
  ip -n "$host" addr add 127.0.0.2/8 dev lo 2>/dev/null || true
  ip netns exec "$host" dnsmasq --no-daemon --no-resolv --no-hosts --pid-file --bind-interfaces \
    --listen-address="${1:-127.0.0.1}" --port=53 --address=/fault.test/"${2:-192.0.2.7}" --log-facility=- \
    >>"$work/dnsmasq.log" 2>&1 &
  dnsmasq_pid=$!
  track_pid "$dnsmasq_pid"
  wait_until 5000 listening u 53 "${1:-127.0.0.1}" || fail "dnsmasq did not start"
}
start_dnsmasq

ip netns exec "$host" "$cw" netns --attach "/run/netns/$guest" --host-resolv-conf "$work/resolv.conf" \
  --control "$work/ctl.sock" -p 127.0.0.1:18081:8081 >"$work/engine.log" 2>&1 &
engine=$!
track_pid "$engine"
on_fail() { echo "--- causeway's log"; tail -n 30 "$work/engine.log"; }
alive() { kill -0 "$engine" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$engine/stat" 2>/dev/null) != Z ]]; }
gone() { ! alive; }
wait_until 10000 ip -n "$guest" link show tap0 || fail "causeway did not attach within 10 s"
wait_until 10000 answered a.fault.test || fail "the first query was not answered: $(query a.fault.test)"

# 1. the upstream disappears and returns
stop_pid "$dnsmasq_pid"; wait "$dnsmasq_pid" 2>/dev/null || true; untrack_pid "$dnsmasq_pid"
r=$(query b.fault.test)
[[ $r != 0 ]] || fail "a query was answered with no upstream server"
alive || fail "causeway exited when its upstream DNS server went away"
echo "upstream gone: rcode $r (2 = SERVFAIL)"
start_dnsmasq
wait_until 15000 answered c.fault.test || fail "queries were not answered again within 15 s of the upstream returning"
echo "upstream back: answered"

# 2. the host's resolver file is deleted, then recreated naming another server
start_dnsmasq 127.0.0.2 192.0.2.8
rm -f "$work/resolv.conf"
wait_until 3000 grep -q "cannot read $work/resolv.conf" "$work/engine.log" || fail "causeway did not notice the deleted resolver file"
alive || fail "causeway exited when the resolver file was deleted"
answered d.fault.test || fail "without a resolver file the previous servers were not kept: $(query d.fault.test)"
echo "resolver file gone: previous servers kept, engine up"
printf 'nameserver 127.0.0.2\n' >"$work/resolv.conf.new"
mv "$work/resolv.conf.new" "$work/resolv.conf"
wait_until 15000 answered e.fault.test 192.0.2.8 ||
  fail "the answers did not come from the new server within 15 s of the resolver file returning: $(query e.fault.test)"
echo "resolver file back: answered by the server it names"

# 3. the tap goes away
listening t 18081 || fail "the forward 127.0.0.1:18081 is not listening"
t0=$(now_ms)
ip -n "$guest" link del tap0
wait_until 5000 gone ||
  fail "causeway still runs 5 s after its tap was deleted"
rc=0; wait "$engine" || rc=$?
untrack_pid "$engine"
echo "tap deleted: causeway exited with status $rc after $(( $(now_ms) - t0 )) ms"
grep -q "tap device went away" "$work/engine.log" || fail "causeway did not say its tap went away"
! listening t 18081 || fail "the forward's host socket is still open"
left=$(ip netns pids "$guest" 2>/dev/null | tr '\n' ' ')
[[ -z $left ]] || fail "processes left in the guest namespace: $left (causeway's helper?)"
[[ ! -S $work/ctl.sock ]] || fail "the control socket was left behind"
echo "PASS"
