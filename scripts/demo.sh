#!/usr/bin/env bash
# scripts/demo.sh — causeway's main job on its embedded defaults, end to end:
#   1. a Linux VM (causeway run) starts a web server, and the host reaches it
#      on localhost with no flag: automatic localhost forwarding; the forward
#      goes away when the VM stops;
#   2. a network namespace fetches a page from the host's loopback through the
#      gateway 10.0.2.2 (causeway netns);
#   3. a server in a namespace is reached from the host's localhost through a
#      --publish forward;
#   4. a plain QEMU guest with causeway as its -netdev stream backend
#      (causeway serve -p): its web server on the host's localhost.
# Needs what scripts/setup.sh installs and builds; runs as root (or as a user
# with unprivileged user namespaces and a world-usable /dev/net/tun).
# Touches only loopback and the namespaces it creates; cleans up by PID.
# CI runs exactly this script (ctest's e2e.demo), so the README's first
# command cannot break unnoticed.
#
#   CAUSEWAY=PATH            the binary (default build/causeway)
#   CAUSEWAY_GUEST_DIR=DIR   the guest image (default build/guest)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cw=${CAUSEWAY:-$here/build/causeway}
guest=${CAUSEWAY_GUEST_DIR:-$here/build/guest}
[[ -x $cw ]] || { echo "demo: $cw not built; run scripts/setup.sh first" >&2; exit 1; }
for tool in curl python3 busybox qemu-system-x86_64; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found; run scripts/setup.sh first" >&2; exit 1; }
done
if [[ ! -f $guest/vmlinuz || ! -f $guest/initramfs.cpio.gz ]]; then
  echo "demo: no guest image in $guest; scripts/setup.sh builds it (scripts/build-guest.sh)" >&2
  exit 1
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {  # MESSAGE [LOG...]
  echo "demo: $1" >&2
  shift
  for log in "$@"; do
    [[ -s $log ]] && { echo "--- $(basename "$log") (last 20 lines)" >&2; tr -d '\r' <"$log" | tail -20 >&2; }
  done
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # URL TIMEOUT_S [PID]: PID's death ends the wait early
  local deadline=$((SECONDS + $2))
  until curl -fsS --max-time 2 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    [[ -z ${3:-} ]] || kill -0 "$3" 2>/dev/null || return 1
    sleep 0.2
  done
}
stop() {  # PID: SIGTERM, then wait (bounded)
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
accel=tcg
if grep -qE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm && -w /dev/kvm ]]; then accel=kvm; fi
[[ $accel == tcg ]] && echo "(no usable hardware virtualization here: QEMU runs under TCG, a boot takes a few seconds)"

echo "== 1. a web server in a VM, on the host's localhost with no flag (automatic forwarding)"
wp=$(free_port)
echo "\$ causeway run -- sh -c 'echo hello from the VM > /tmp/index.html; httpd -f -p $wp -h /tmp' &"
"$cw" --log-level warn run --guest-dir "$guest" --control "$work/run.sock" -- \
  sh -c "echo hello from the VM > /tmp/index.html; exec httpd -f -p $wp -h /tmp" \
  >"$work/run.log" 2>&1 & run_pid=$!
pids+=("$run_pid")
echo "\$ curl http://localhost:$wp/     (guest booting...)"
wait_http "http://localhost:$wp/" 90 "$run_pid" || fail "the VM's web server did not answer on localhost:$wp" "$work/run.log"
echo "\$ causeway ctl $work/run.sock ports     (the forwards nobody asked for)"
if command -v jq >/dev/null; then
  "$cw" ctl "$work/run.sock" ports |
    jq -r '.ports[] | "   \(.proto) \(.host) -> guest \(.guest)  \(.origin), \(.state)"'
else
  "$cw" ctl "$work/run.sock" ports | sed 's/^/   /'
fi
stop "$run_pid"
if curl -fsS --max-time 2 "http://localhost:$wp/" >/dev/null 2>&1; then
  fail "localhost:$wp still answers after the VM stopped"
fi
echo "   (VM stopped: localhost:$wp is gone too)"

echo
echo "== 2. namespace -> host loopback through 10.0.2.2"
mkdir -p "$work/www" && echo "hello from the host" > "$work/www/index.html"
hp=$(free_port)
busybox httpd -f -p "127.0.0.1:$hp" -h "$work/www" & pids+=($!)
wait_http "http://127.0.0.1:$hp/" 5 >/dev/null || fail "busybox httpd did not start on 127.0.0.1:$hp"
echo "\$ causeway netns -- curl -s http://10.0.2.2:$hp/"
"$cw" --log-level warn netns -- curl -sS --max-time 5 "http://10.0.2.2:$hp/" || fail "the namespace did not reach the host"

echo
echo "== 3. host localhost -> server in a namespace (--publish)"
pp=$(free_port)
mkdir -p "$work/ns" && echo "hello from the namespace" > "$work/ns/index.html"
"$cw" --log-level warn netns -p "$pp:8000" -- busybox httpd -f -p 8000 -h "$work/ns" & pids+=($!)
echo "\$ curl -s http://localhost:$pp/"
wait_http "http://localhost:$pp/" 10 || fail "the namespace's server did not answer on localhost:$pp"

echo
echo "== 4. a plain QEMU guest on causeway serve (-netdev stream), its web server published with -p"
vp=$(free_port)
"$cw" --log-level warn serve --qemu-socket "$work/qemu.sock" -p "$vp:8080" >"$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do [[ -S $work/qemu.sock ]] && break; sleep 0.1; done
[[ -S $work/qemu.sock ]] || fail "causeway serve did not create its socket" "$work/serve.log"
qemu-system-x86_64 -accel "$accel" -machine q35 -m 256 -nodefaults -no-user-config -display none \
  -serial "file:$work/console.log" -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet cw.mode=dhcp-httpd cw.port=8080 cw.hold=60" \
  -netdev "stream,id=n0,addr.type=unix,addr.path=$work/qemu.sock" -device virtio-net-pci,netdev=n0 \
  >"$work/qemu.log" 2>&1 & qemu_pid=$!
pids+=("$qemu_pid")
echo "\$ causeway serve --qemu-socket SOCK -p $vp:8080 & qemu-system-x86_64 ... -netdev stream,...,addr.path=SOCK"
echo "\$ curl -s http://localhost:$vp/     (guest booting...)"
wait_http "http://localhost:$vp/" 90 "$qemu_pid" ||
  fail "the guest's web server did not answer on localhost:$vp" "$work/console.log" "$work/serve.log" "$work/qemu.log"
grep -a '^CW-LEASE' "$work/console.log" | tr -d '\r' | sed 's/^/   guest: /'
echo "demo: all four worked"
