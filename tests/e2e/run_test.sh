#!/usr/bin/env bash
# e2e: `causeway run` boots the default guest (QEMU, TCG here) with our
# vhost-user virtio-net and virtio-vsock devices and the guest agent, and
#   1. `-- true` exits 0 and `-- sh -c 'exit 7'` exits 7 (status propagates);
#   2. the command's output comes back over vsock, the guest has 10.0.2.15,
#      and a 64 MiB file served on the host's 127.0.0.1 arrives intact
#      through the gateway 10.0.2.2 (md5);
#   3. DNS through the engine's proxy answers the local zone;
#   4. a reader of causeway's stdout that stops reading holds up the guest's
#      command, not the network: while 32 MB of output wait in a full pipe,
#      the guest's web server still answers on localhost (automatic
#      forwarding), and every byte arrives once the reader reads (issue 13).
# Usage: run_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped) when QEMU or
# the guest image is missing. Loopback only; cleans up by PID.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
guest=$2
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
need_cmd busybox "busybox missing (apt-get install busybox-static)"

make_work cw-e2e-run
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
track_pid "$httpd_pid"
out=$(timeout 180 "$cw" run -q -- sh -c "echo marker-from-guest; ip addr show eth0; \
  wget -q -O- http://10.0.2.2:$port/big.bin | md5sum; nslookup host.causeway.internal 10.0.2.3") ||
  fail "the transfer command failed: $out"
grep -q '^marker-from-guest$' <<<"$out" || fail "command output did not come back: $out"
grep -q 'inet 10.0.2.15/24' <<<"$out" || fail "guest has no 10.0.2.15/24: $out"
grep -q "^$want " <<<"$out" || fail "64 MiB transfer corrupted or incomplete (want $want): $out"
grep -q 'Address.*10.0.2.2' <<<"$out" || fail "local zone not answered: $out"
kill "$httpd_pid" 2>/dev/null || true
wait "$httpd_pid" 2>/dev/null || true
untrack_pid "$httpd_pid"

echo "== a stalled stdout reader does not stall the network"
fifo=$work/out.fifo
mkfifo "$fifo"
exec 3<>"$fifo"  # a reader that holds the pipe open and reads nothing (yet)
wp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
total=$((32 << 20))
timeout 240 "$cw" run -q -- sh -c "echo stalled-ok > /tmp/index.html; httpd -f -p $wp -h /tmp & h=\$!; \
  sleep 1; echo flood-start >&2; yes 0123456789abcdef0123456789abcde | head -c $total; kill \$h" \
  >"$fifo" 2>"$work/run.err" 3<&- &
run_pid=$!
track_pid "$run_pid"
# The forward first (the server is up before the flood)...
ok=0
deadline=$((SECONDS + 90))  # boot under TCG
while ((SECONDS < deadline)); do
  if [[ $(curl -fsS --max-time 2 "http://localhost:$wp/" 2>/dev/null) == stalled-ok ]]; then ok=1; break; fi
  kill -0 "$run_pid" 2>/dev/null || break
  sleep 0.2
done
[[ $ok == 1 ]] || fail "the guest's server did not answer on localhost:$wp: $(tail -5 "$work/run.err")"
# ...then the flood fills the pipe (64 KiB: milliseconds), and the forward must still serve.
for _ in $(seq 100); do grep -q flood-start "$work/run.err" && break; sleep 0.1; done
grep -q flood-start "$work/run.err" || fail "the guest's flood did not start: $(tail -5 "$work/run.err")"
sleep 2
for i in 1 2 3; do
  [[ $(curl -fsS --max-time 5 "http://localhost:$wp/" 2>/dev/null) == stalled-ok ]] ||
    fail "request $i to localhost:$wp failed while causeway's stdout was not read (the engine stalled)"
done
kill -0 "$run_pid" 2>/dev/null || fail "causeway run ended before the output was read: $(tail -5 "$work/run.err")"
got=$(timeout 120 head -c "$total" <&3 | wc -c) || true
exec 3<&-
st=0
wait "$run_pid" || st=$?
untrack_pid "$run_pid"
[[ $got == "$total" ]] || fail "$got of $total output bytes arrived once the reader read"
[[ $st == 0 ]] || fail "causeway run exited $st after its output was read: $(tail -5 "$work/run.err")"
echo "PASS"
