#!/usr/bin/env bash
# e2e: automatic localhost forwarding in `causeway run` — a guest server is
# reachable on the host's localhost with no flag, through the guest agent
# (listener reports over vsock, relays over vsock to the guest's loopback).
# One boot, driven step by step through the command's stdin:
#   1. busybox httpd on [::]:A (dual stack) answers on the host's 127.0.0.1:A
#      and [::1]:A; a 16 MiB file arrives intact (md5 computed in the guest);
#   2. httpd bound to the guest's 127.0.0.1:B only is reachable on the host's
#      127.0.0.1:B (the relay connects to the guest's own loopback);
#   3. a UDP echo server (causeway-netprobe) on guest port U answers on the
#      host's 127.0.0.1:U;
#   4. host port C is taken before the guest listens there: `ctl ports` shows
#      it as a conflict with the reason; once the host frees C the forward
#      opens by itself and reaches the guest;
#   5. --ignore-port D: a guest listener on D is not forwarded;
#   6. the guest kills the server on A: the host port closes within the
#      detection period (1 s poll) and `ctl ports` no longer lists it.
# Usage: vm_autoforward_test.sh CAUSEWAY_BIN GUEST_DIR NETPROBE_STATIC_BIN.
# Exit 77 (skipped) when QEMU, the guest image, curl or the static netprobe
# is missing. Loopback only; cleans up by PID.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
guest=$2
netprobe=$3
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
need_cmd curl "curl missing (apt-get install curl)"
need_cmd busybox "busybox missing (apt-get install busybox-static)"
need_cmd cpio "cpio missing (apt-get install cpio)"
[[ -x $netprobe ]] || skip "no guest netprobe at $netprobe (cmake --build build --target causeway_netprobe_guest)"
ldd_out=$(ldd "$netprobe" 2>&1 || true)
[[ $ldd_out == *"not a dynamic executable"* || $ldd_out == *"statically linked"* ]] || skip "$netprobe is not static"

make_work cw-e2e-autoforward
cw_pid=
on_cleanup() {
  exec 3>&- 2>/dev/null || true
}
on_fail() {
  echo "--- guest output:"; cat "$work/out" 2>/dev/null || true
  echo "--- ctl ports:"; "$cw" ctl "$work/ctl.sock" ports 2>&1 || true
}

# The default image plus the static netprobe (gzip'd cpio archives concatenate).
mkdir -p "$work/overlay/usr/bin"
cp "$netprobe" "$work/overlay/usr/bin/causeway-netprobe"
(cd "$work/overlay" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0) | gzip -1 >"$work/overlay.cpio.gz"
cat "$guest/initramfs.cpio.gz" "$work/overlay.cpio.gz" >"$work/initrd.cpio.gz"

# Ports below the guest's ephemeral range (UDP there is not forwarded) and, by
# chance, free on this host; each run picks new ones.
base=$((20000 + (RANDOM % 200) * 50))
A=$base B=$((base + 1)) C=$((base + 2)) D=$((base + 3)) U=$((base + 4))

# Step 4's host port is taken before the guest starts.
mkdir -p "$work/hostwww"
echo host-owned >"$work/hostwww/index.html"
busybox httpd -f -p "127.0.0.1:$C" -h "$work/hostwww" &
host_httpd=$!
track_pid "$host_httpd"

read -r -d '' script <<EOF || true
mkdir -p /www && echo guest-hello >/www/index.html
dd if=/dev/urandom of=/www/big bs=1M count=16 2>/dev/null && md5sum /www/big
httpd -f -p $A -h /www & a=\$!
httpd -f -p 127.0.0.1:$B -h /www &
httpd -f -p $C -h /www &
httpd -f -p $D -h /www &
causeway-netprobe serve --udp $U --lifetime 300 >/tmp/np &
sleep 0.2
echo phase-listening
read step; kill \$a; echo phase-killed
read step; echo phase-done
EOF

mkfifo "$work/in"
export CAUSEWAY_GUEST_DIR=$guest
timeout 240 "$cw" run -q --control "$work/ctl.sock" --ignore-port "$D" --initrd "$work/initrd.cpio.gz" \
  -- sh -c "$script" <"$work/in" >"$work/out" 2>&1 &
cw_pid=$!
track_pid "$cw_pid"
exec 3>"$work/in"  # our end of the command's stdin

wait_for() {  # PATTERN SECONDS
  local end=$((SECONDS + $2))
  until grep -q "$1" "$work/out"; do
    ((SECONDS < end)) || fail "no '$1' from the guest within $2 s"
    kill -0 "$cw_pid" 2>/dev/null || fail "causeway run exited early"
    sleep 0.1
  done
}
# Polls until the URL gives BODY (or, with BODY "-", until it stops answering).
poll_url() {  # URL BODY SECONDS
  local end=$((SECONDS + $3)) got
  while ((SECONDS < end)); do
    got=$(curl -s -m 2 "$1" 2>/dev/null || true)
    if [[ $2 == - ]]; then [[ -z $got ]] && return 0; else [[ $got == "$2" ]] && return 0; fi
    sleep 0.05
  done
  return 1
}

wait_for phase-listening 120
echo "== 1. dual-stack listener on $A: host 127.0.0.1 and [::1], 16 MiB intact"
poll_url "http://127.0.0.1:$A/" guest-hello 5 || fail "127.0.0.1:$A does not reach the guest's httpd"
poll_url "http://[::1]:$A/" guest-hello 5 || fail "[::1]:$A does not reach the guest's httpd"
want=$(grep -m1 ' /www/big' "$work/out" | cut -d' ' -f1)
got=$(curl -s -m 60 "http://127.0.0.1:$A/big" | md5sum | cut -d' ' -f1)
[[ -n $want && $got == "$want" ]] || fail "16 MiB through the relay: md5 $got, the guest has $want"

echo "== 2. loopback-only listener on $B"
poll_url "http://127.0.0.1:$B/" guest-hello 5 || fail "127.0.0.1:$B (guest 127.0.0.1 only) not reachable"

echo "== 3. UDP echo on $U"
reply=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  reply=$("$netprobe" send udp 127.0.0.1 "$U" ping-udp --timeout-ms 1000 2>/dev/null || true)
  [[ -n $reply ]] && break
  sleep 0.2
done
[[ $reply == *ping-udp* ]] || fail "no UDP echo through 127.0.0.1:$U (got '$reply')"

echo "== 4. conflict on $C, then the host frees it"
ports=$("$cw" ctl "$work/ctl.sock" ports)
python3 - "$C" "$ports" <<'PY' || fail "port $C is not reported as a conflict: $ports"
import json, sys
port, doc = sys.argv[1], json.loads(sys.argv[2])
rows = [p for p in doc["ports"] if p["host"] == "127.0.0.1:" + port]
assert rows and rows[0]["state"] == "conflict" and rows[0].get("reason"), rows
PY
[[ $(curl -s -m 2 "http://127.0.0.1:$C/") == host-owned ]] || fail "the host's own server on $C was disturbed"
kill "$host_httpd"; wait "$host_httpd" 2>/dev/null || true; untrack_pid "$host_httpd"
poll_url "http://127.0.0.1:$C/" guest-hello 5 || fail "the forward on $C did not open after the host freed it"

echo "== 5. ignored port $D"
ports=$("$cw" ctl "$work/ctl.sock" ports)
grep -q "127.0.0.1:$D\"" <<<"$ports" && fail "ignored port $D is forwarded: $ports"
curl -s -m 2 "http://127.0.0.1:$D/" >/dev/null && fail "ignored port $D answers on the host"

echo "== 6. the guest stops listening on $A"
echo next >&3
wait_for phase-killed 30
# close(2) is not trapped: the agent's 1 s sock_diag poll notices; allow 3 s.
end=$((SECONDS + 3))
while "$cw" ctl "$work/ctl.sock" ports | grep -q "127.0.0.1:$A\""; do
  ((SECONDS < end)) || fail "port $A still forwarded 3 s after the guest's server exited"
  sleep 0.1
done
curl -s -m 2 "http://127.0.0.1:$A/" >/dev/null && fail "127.0.0.1:$A still answers after the forward closed"

echo next >&3
exec 3>&-
set +e
wait "$cw_pid"
st=$?
set -e
untrack_pid "$cw_pid"
cw_pid=
[[ $st == 0 ]] || fail "causeway run exited $st"
echo "PASS"
