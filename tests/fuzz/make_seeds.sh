#!/usr/bin/env bash
# make_seeds.sh FUZZ_SEEDS [DIR]: regenerates the committed seed corpora (DIR, default
# tests/fuzz/corpus) with the fuzz_seeds program, inside a network namespace of its own set up
# like a small host (a veth with a MAC, IPv4 and IPv6 addresses and default routes, a tun link
# with a /32 and a route; documentation addresses only), so the recorded netlink dumps are the
# same on every machine. Files it does not write (regress-*: inputs of bugs found) stay. Needs
# root (unshare).
set -euo pipefail
seeds=$(realpath "$1")
dir=$(realpath -m "${2:-$(dirname "$0")/corpus}")
# shellcheck disable=SC2016  # expanded by the inner shell
exec unshare --net sh -c '
  set -e
  ip link set lo up
  ip link add eth0 type veth peer name veth9
  ip link set eth0 address 52:54:00:ab:cd:ef
  ip link set eth0 up
  ip link set veth9 up
  ip addr add 192.0.2.10/24 dev eth0
  ip -6 addr add 2001:db8::10/64 dev eth0 nodad
  ip route add default via 192.0.2.1
  ip -6 route add default via 2001:db8::1
  ip tuntap add wg0 mode tun
  ip link set wg0 up
  ip addr add 198.51.100.2/32 dev wg0
  ip route add 203.0.113.0/24 dev wg0 metric 50
  exec "$0" "$1"' "$seeds" "$dir"
