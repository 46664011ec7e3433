#!/usr/bin/env bash
# scripts/demo.sh — causeway's main job on its embedded defaults, end to end:
#   1. a network namespace fetches a page from the host's loopback through the
#      gateway 10.0.2.2 (causeway netns);
#   2. a server in a namespace is reached from the host's localhost through a
#      --publish forward;
#   3. a Linux guest boots under QEMU with causeway as its network backend
#      (causeway serve), and its web server is reached on the host's localhost.
# Needs what scripts/setup.sh installs and builds; runs as root (or as a user
# with unprivileged user namespaces and a world-usable /dev/net/tun).
# Touches only loopback and the namespaces it creates; cleans up by PID.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cw=${CAUSEWAY:-$here/build/causeway}
guest=${CAUSEWAY_GUEST_DIR:-$here/build/guest}
[[ -x $cw ]] || { echo "demo: $cw not built; run scripts/setup.sh first" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # URL TIMEOUT_S
  local deadline=$((SECONDS + $2))
  until curl -fsS --max-time 2 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

echo "== 1. namespace -> host loopback through 10.0.2.2"
mkdir -p "$work/www" && echo "hello from the host" > "$work/www/index.html"
hp=$(free_port)
busybox httpd -f -p "127.0.0.1:$hp" -h "$work/www" & pids+=($!)
wait_http "http://127.0.0.1:$hp/" 5 >/dev/null
echo "\$ causeway netns -- curl -s http://10.0.2.2:$hp/"
"$cw" netns -- curl -s --max-time 5 "http://10.0.2.2:$hp/"

echo
echo "== 2. host localhost -> server in the namespace (--publish)"
pp=$(free_port)
mkdir -p "$work/ns" && echo "hello from the namespace" > "$work/ns/index.html"
"$cw" netns -p "$pp:8000" -- busybox httpd -f -p 8000 -h "$work/ns" & pids+=($!)
echo "\$ curl -s http://localhost:$pp/"
wait_http "http://localhost:$pp/" 10

echo
echo "== 3. a Linux guest under QEMU, networked by causeway serve, its web server on localhost"
if [[ ! -f $guest/vmlinuz || ! -f $guest/initramfs.cpio.gz ]]; then
  echo "   skipped: no guest image in $guest (scripts/build-guest.sh builds it)"
  exit 0
fi
accel=tcg
if grep -qE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm && -w /dev/kvm ]]; then accel=kvm; fi
[[ $accel == tcg ]] && echo "   (no usable hardware virtualization here: QEMU runs under TCG, a boot takes a few seconds)"
vp=$(free_port)
"$cw" --log-level warn serve --qemu-socket "$work/qemu.sock" -p "$vp:8080" & pids+=($!)
for _ in $(seq 50); do [[ -S $work/qemu.sock ]] && break; sleep 0.1; done
qemu-system-x86_64 -accel "$accel" -machine q35 -m 256 -nodefaults -no-user-config -display none \
  -serial "file:$work/console.log" -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet cw.mode=dhcp-httpd cw.port=8080 cw.hold=30" \
  -netdev "stream,id=n0,addr.type=unix,addr.path=$work/qemu.sock" -device virtio-net-pci,netdev=n0 & pids+=($!)
echo "\$ curl -s http://localhost:$vp/     (guest booting...)"
if wait_http "http://localhost:$vp/" 60; then
  grep -a '^CW-LEASE' "$work/console.log" | tr -d '\r' | sed 's/^/   guest: /'
  echo "demo: all three worked"
else
  echo "demo: the guest's web server did not answer; console log:" >&2
  tr -d '\r' < "$work/console.log" | tail -20 >&2
  exit 1
fi
