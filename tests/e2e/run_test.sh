#!/usr/bin/env bash
# e2e: `causeway run` boots the default guest (QEMU, TCG here) with our
# vhost-user virtio-net and virtio-vsock devices and the guest agent, and
#   1. `-- true` exits 0 and `-- sh -c 'exit 7'` exits 7 (status propagates);
#   2. the command's output comes back over vsock, the guest has 10.0.2.15,
#      and a 64 MiB file served on the host's 127.0.0.1 arrives intact
#      through the gateway 10.0.2.2 (md5);
#   3. DNS through the engine's proxy answers the local zone.
# Usage: run_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped) when QEMU or
# the guest image is missing. Loopback only; cleans up by PID.
set -euo pipefail
cw=$1
guest=$2
skip() { echo "SKIP: $*"; exit 77; }
[[ -x $cw ]] || skip "no causeway binary at $cw"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
command -v busybox >/dev/null || skip "busybox missing (apt-get install busybox-static)"

work=$(mktemp -d)
httpd_pid=
cleanup() {
  [[ -n $httpd_pid ]] && kill "$httpd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
export CAUSEWAY_GUEST_DIR=$guest

echo "== exit status"
timeout 120 "$cw" run -q -- true || fail "'run -- true' exited $?"
set +e
timeout 120 "$cw" run -q -- sh -c 'exit 7'
st=$?
set -e
[[ $st == 7 ]] || fail "'run -- sh -c \"exit 7\"' exited $st, expected 7"

echo "== output, address, a 64 MiB transfer, DNS"
mkdir -p "$work/www"
head -c $((64 << 20)) /dev/urandom > "$work/www/big.bin"
want=$(md5sum < "$work/www/big.bin" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
busybox httpd -f -p "127.0.0.1:$port" -h "$work/www" &
httpd_pid=$!
out=$(timeout 180 "$cw" run -q -- sh -c "echo marker-from-guest; ip addr show eth0; \
  wget -q -O- http://10.0.2.2:$port/big.bin | md5sum; nslookup host.causeway.internal 10.0.2.3") ||
  fail "the transfer command failed: $out"
grep -q '^marker-from-guest$' <<<"$out" || fail "command output did not come back: $out"
grep -q 'inet 10.0.2.15/24' <<<"$out" || fail "guest has no 10.0.2.15/24: $out"
grep -q "^$want " <<<"$out" || fail "64 MiB transfer corrupted or incomplete (want $want): $out"
grep -q 'Address.*10.0.2.2' <<<"$out" || fail "local zone not answered: $out"
echo "PASS"
