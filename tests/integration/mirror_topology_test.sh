#!/usr/bin/env bash
# Integration: mirrored mode end to end, the issue's topology, real kernel and tools.
#
#   lan ns (192.168.77.1, fd77::1)          corp ns (10.66.0.1; server + DNS on 10.67.0.10)
#     │ HTTP :8080, dnsmasq (lan zone)          │ HTTP :8080, dnsmasq (intranet.corp)
#   lanp ══ veth ══ lan0                      vpnp ══ veth ══ vpn0 (MTU 1380, comes up later)
#                   "host" ns: causeway netns --mode mirrored -- sleep
#                                 └── guest ns (made by causeway): lan0, later vpn0
#
# Checks, with ip -j / curl / dig / ping run inside the guest (nsenter):
#   1. the guest's lan0 has the host's MTU, addresses (IPv4+IPv6) and default routes;
#   2. HTTP to the LAN server over IPv4 and IPv6 (SHA-256 of 4 MiB), ping both families,
#      UDP (dig straight at the LAN's DNS server), DNS through the proxy;
#   3. the VPN link comes up on the host → within 1 s the guest has vpn0 with MTU 1380 and the
#      corp route; HTTP to the corp server goes through it (the server sees the host's VPN
#      address as the client); the intranet name resolves once the host's resolv.conf names
#      the corp DNS server;
#   4. inbound: a server started in the guest answers on the host's LAN address, from lan ns;
#   5. the VPN link goes down → gone from the guest within 1 s;
#   6. the data path's counters (`causeway ctl PATH mirror`) show the traffic.
# Namespaces are named after this PID and deleted at exit; processes are killed by PID;
# every wait is bounded. Usage: mirror_topology_test.sh CAUSEWAY_BIN. Exit 77 (skipped)
# without root or a tool, or a kernel without TCP SO_PEEK_OFF (the data path's TCP).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/topology.sh
source "$CW_TEST_LIB/topology.sh"
cw=$1
need_root "network namespaces, veth"
[[ -x $cw ]] || skip "no causeway binary at $cw"
for t in ip python3 curl dig dnsmasq ping nsenter sha256sum; do need_cmd "$t"; done
need_tcp_peek_off "mirrored TCP needs the fast path"

id=$$
H=cwmt-host-$id L=cwmt-lan-$id C=cwmt-corp-$id
make_work cw-mirror-topology
on_fail() {
  [[ -n ${sock:-} && -S ${sock:-/nonexistent} ]] && "$cw" ctl "$sock" mirror 2>/dev/null | head -c 4000
  echo; echo "--- causeway log"; tail -n 40 "$work/cw.log" 2>/dev/null || true
}

lan_vpn_topology "$H" "$L" "$C"
# Ping sockets for every group in the host namespace (Debian's systemd sets this on real hosts).
ip netns exec "$H" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
# The corp network's server and DNS address, behind the VPN.
ip -n "$C" addr add 10.67.0.10/32 dev lo

# Servers: HTTP in lan and corp (logging client addresses), DNS in both.
head -c 4194304 /dev/urandom >"$work/blob"
want=$(sha256sum <"$work/blob" | cut -d' ' -f1)
ip netns exec "$L" python3 "$CW_TEST_LIB/servers.py" --bind :: --http 8080 "$work" --client-log "$work/lan.clients" &
track_pid $!
ip netns exec "$C" python3 "$CW_TEST_LIB/servers.py" --bind :: --http 8080 "$work" --client-log "$work/corp.clients" &
track_pid $!
ip netns exec "$L" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address=192.168.77.1 --address=/lanhost.lan/192.168.77.1 --pid-file="$work/dl.pid" \
  --log-facility="$work/dl.log" & track_pid $!
ip netns exec "$C" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address=10.67.0.10 --address=/intranet.corp/10.67.0.10 --pid-file="$work/dc.pid" \
  --log-facility="$work/dc.log" & track_pid $!

# The servers must be listening before anything depends on them (python starts slowly on a
# loaded machine; a refused connect from the guest is then a test bug, not a causeway one).
for ns in "$L" "$C"; do
  for _ in $(seq 200); do
    ip netns exec "$ns" ss -Htln 'sport = :8080' | grep -q . && break
    sleep 0.05
  done
  ip netns exec "$ns" ss -Htln 'sport = :8080' | grep -q . || fail "the HTTP server in $ns never listened"
done
for _ in $(seq 200); do
  ip netns exec "$L" ss -Hunl 'sport = :53' | grep -q . && ip netns exec "$C" ss -Hunl 'sport = :53' | grep -q . && break
  sleep 0.05
done

printf 'nameserver 192.168.77.1\n' >"$work/resolv.conf"
sock=$work/ctl.sock
ip netns exec "$H" "$cw" netns --mode mirrored --host-resolv-conf "$work/resolv.conf" --control "$sock" \
  -- sleep 600 >"$work/cw.log" 2>&1 & cwpid=$!; track_pid "$cwpid"

# The guest: causeway's child (sleep), found by its parent's PID.
gpid=""
for _ in $(seq 100); do
  gpid=$(ps -o pid= --ppid "$cwpid" 2>/dev/null | tr -d ' ' | head -n1 || true)
  [[ -n $gpid ]] && ip -n "$H" link show lan0 >/dev/null && nsenter -t "$gpid" -n ip link show lan0 >/dev/null 2>&1 && break
  sleep 0.1
done
[[ -n $gpid ]] || fail "causeway did not start (no child)"
G() { nsenter -t "$gpid" -n -m -- "$@"; }
wait_until 5000 sh -c "nsenter -t $gpid -n ip -6 route show default | grep -q fd77::1" || fail "guest never got lan0's IPv6 default route"

# 1. The guest's lan0 equals the host's.
python3 - "$H" "$gpid" <<'EOF' || fail "guest lan0 differs from the host's"
import json, subprocess, sys
H, gpid = sys.argv[1], sys.argv[2]
def ipj(where, *args):
    pre = ["ip", "-n", H] if where == "host" else ["nsenter", "-t", gpid, "-n", "ip"]
    return json.loads(subprocess.check_output(pre + ["-j"] + list(args)))
def view(where):
    link = ipj(where, "link", "show", "lan0")[0]
    addrs = sorted(f"{a['local']}/{a['prefixlen']}" for a in ipj(where, "addr", "show", "lan0")[0]["addr_info"]
                   if a.get("scope") == "global")
    routes = sorted(f"{r['dst']} via {r.get('gateway', '-')} metric {r.get('metric', 0)}"
                    for fam in ("-4", "-6") for r in ipj(where, fam, "route", "show", "dev", "lan0")
                    if r.get("type", "unicast") == "unicast" and not r["dst"].startswith("fe80"))
    return {"mtu": link["mtu"], "addrs": addrs, "routes": routes}
h, g = view("host"), view("guest")
print("host ", h); print("guest", g)
sys.exit(0 if h == g else 1)
EOF

# 2. Outbound over the LAN.
got=$(G curl -sS --max-time 20 http://192.168.77.1:8080/blob | sha256sum | cut -d' ' -f1) || true
[[ $got == "$want" ]] || fail "HTTP over IPv4 to the LAN server: sha256 $got, want $want"
got=$(G curl -sS --max-time 20 "http://[fd77::1]:8080/blob" | sha256sum | cut -d' ' -f1) || true
[[ $got == "$want" ]] || fail "HTTP over IPv6 to the LAN server: sha256 $got, want $want"
grep -qxE "(::ffff:)?192\.168\.77\.2" "$work/lan.clients" || fail "the LAN server did not see the host's address as the client: $(cat "$work/lan.clients")"
G ping -c 2 -W 2 192.168.77.1 >/dev/null || fail "ping 192.168.77.1 from the guest"
G ping -6 -c 2 -W 2 fd77::1 >/dev/null || fail "ping fd77::1 from the guest"
[[ $(G dig +short +time=2 +tries=2 @192.168.77.1 lanhost.lan A) == 192.168.77.1 ]] || fail "dig straight at the LAN DNS server (UDP through the mirrored link)"
[[ $(G dig +short +time=2 +tries=2 lanhost.lan A) == 192.168.77.1 ]] || fail "dig through the guest's resolver (the proxy)"
echo "ok: LAN reachable over IPv4/IPv6 (HTTP, ping, UDP DNS) with the host's addresses"

# 3. The VPN comes up on the host.
t0=$(now_ms)
ip -n "$H" link set vpn0 up
ip -n "$H" addr add 10.66.0.2/30 dev vpn0
ip -n "$H" route add 10.67.0.0/24 via 10.66.0.1 dev vpn0
wait_until 3000 sh -c "nsenter -t $gpid -n ip route show 10.67.0.0/24 | grep -q vpn0" || fail "the VPN route never reached the guest"
dt=$(( $(now_ms) - t0 ))
echo "vpn up -> guest route: ${dt} ms"
(( dt <= 1000 )) || fail "the VPN took ${dt} ms to reach the guest (promise: 1 s)"
[[ $(G cat /sys/class/net/vpn0/mtu) == 1380 ]] || fail "guest vpn0 MTU $(G cat /sys/class/net/vpn0/mtu), want 1380"
got=$(G curl -sS --max-time 20 http://10.67.0.10:8080/blob | sha256sum | cut -d' ' -f1) || true
[[ $got == "$want" ]] || fail "HTTP to the corp server through the VPN link: sha256 $got"
grep -qxE "(::ffff:)?10\.66\.0\.2" "$work/corp.clients" || fail "the corp server did not see the host's VPN address: $(cat "$work/corp.clients")"
[[ -z $(G dig +short +time=1 +tries=1 intranet.corp A) ]] || fail "intranet.corp resolved before the host knew the corp DNS"
printf 'nameserver 10.67.0.10\nnameserver 192.168.77.1\n' >"$work/resolv.conf.new"
mv "$work/resolv.conf.new" "$work/resolv.conf"
wait_until 5000 sh -c "[ \"\$(nsenter -t $gpid -n -m dig +short +time=1 +tries=1 intranet.corp A)\" = 10.67.0.10 ]" ||
  fail "intranet.corp did not resolve after the host's resolv.conf named the corp DNS server"
echo "ok: VPN link mirrored in ${dt} ms, corp server reached through it, intranet name resolves"

# 4. Inbound: a guest server on the host's LAN address (the safety poll finds it within ~1 s).
mkdir -p "$work/guestwww" && echo "from the guest" >"$work/guestwww/index.html"
G python3 -m http.server 8090 --bind 0.0.0.0 --directory "$work/guestwww" >/dev/null 2>&1 & track_pid $!
wait_until 5000 sh -c "ip netns exec $L curl -sf --max-time 1 http://192.168.77.2:8090/ | grep -q 'from the guest'" ||
  fail "a guest server is not reachable on the host's LAN address from the LAN"
echo "ok: inbound from the LAN to the host's address reaches the guest's server"

# 5. The VPN goes down.
t0=$(now_ms)
ip -n "$H" link set vpn0 down
wait_until 3000 sh -c "! nsenter -t $gpid -n ip link show vpn0" || fail "vpn0 stayed in the guest after going down on the host"
dt=$(( $(now_ms) - t0 ))
echo "vpn down -> gone from guest: ${dt} ms"
(( dt <= 1000 )) || fail "vpn0 took ${dt} ms to leave the guest (promise: 1 s)"

# 6. Counters.
"$cw" ctl "$sock" mirror >"$work/mirror.json" || fail "ctl mirror"
python3 - "$work/mirror.json" <<'EOF' || fail "data path counters"
import json, sys
j = json.load(open(sys.argv[1]))
dp = j["mirror"]["data_path"]["lan0"]
print("lan0:", json.dumps(dp))
assert dp["tcp"]["flows_opened"] >= 2, "tcp flows"  # the corp one ran on vpn0, gone now
assert dp["arp_replies"] >= 1, "arp"
assert dp["nd_adverts"] >= 1, "nd"
assert dp["ping"]["in"] >= 4, "ping replies"
assert dp["udp"]["datagrams_in"] >= 1, "udp"
EOF
echo "PASS"
