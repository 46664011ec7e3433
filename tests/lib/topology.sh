# shellcheck shell=bash
# tests/lib/topology.sh — the mirrored-mode tests' "host with a LAN and a VPN" in namespaces
# (tests/integration/mirror_topology_test.sh, tests/e2e/vm_mirror_test.sh). Needs root and
# tests/lib/common.sh sourced first (the namespaces are deleted at exit through track_netns).
#
#   lan ns L (192.168.77.1/24, fd77::1/64)      corp ns C (10.66.0.1/30)
#   lanp ══ veth ══ lan0                        vpnp ══ veth ══ vpn0
#                   "host" ns H
#
#   lan_vpn_topology H L C
#     H: lan0 — MAC 52:54:00:77:00:02, MTU 1500, up, 192.168.77.2/24 and fd77::2/64,
#              default routes via 192.168.77.1 and fd77::1 (metric 100)
#        vpn0 — MTU 1380, down and without an address: the test brings it up (a VPN
#              connecting later) and adds its address and routes itself
#     C: vpnp — MTU 1380, up, 10.66.0.1/30
#     all three: lo up, IPv6 duplicate address detection off (addresses usable at once)

lan_vpn_topology() {  # H L C
  local h=$1 l=$2 c=$3 ns
  track_netns "$h" "$l" "$c"
  for ns in "$h" "$l" "$c"; do ip netns add "$ns"; done
  for ns in "$h" "$l" "$c"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
  done
  # LAN
  ip -n "$h" link add lan0 type veth peer name lanp netns "$l"
  ip -n "$h" link set lan0 address 52:54:00:77:00:02 mtu 1500 up
  ip -n "$l" link set lanp up
  ip -n "$h" addr add 192.168.77.2/24 dev lan0
  ip -n "$h" addr add fd77::2/64 dev lan0 nodad
  ip -n "$l" addr add 192.168.77.1/24 dev lanp
  ip -n "$l" addr add fd77::1/64 dev lanp nodad
  ip -n "$h" route add default via 192.168.77.1 dev lan0 metric 100
  ip -n "$h" -6 route add default via fd77::1 dev lan0 metric 100
  # VPN: made now, brought up later
  ip -n "$h" link add vpn0 type veth peer name vpnp netns "$c"
  ip -n "$h" link set vpn0 mtu 1380
  ip -n "$c" link set vpnp mtu 1380 up
  ip -n "$c" addr add 10.66.0.1/30 dev vpnp
}
