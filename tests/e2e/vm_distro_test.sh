#!/usr/bin/env bash
# e2e: a distribution's persistent VM (causeway run -d; cli/instance_*.hpp), under QEMU (TCG):
#   1. a missing distribution is one clear error, before anything starts;
#   2. three concurrent `run -d NAME` race to ONE VM (one daemon, one boot id);
#   3. a later `run -d` joins it: sees the first one's file in /tmp, the same boot id;
#      `list --running` shows it; -u runs as a user of the distribution;
#   4. `terminate` powers it off cleanly (lock released, runtime files gone);
#   5. a new boot keeps what the first wrote to the disk (new boot id);
#   6. idle shutdown ([wsl2] vmIdleTimeout=2000 from $CAUSEWAY_CONFIG): a server the user
#      left running keeps the VM up (and is reachable on the host's localhost), the VM
#      powers off by itself once it is gone;
#   7. live DNS: the host's search domains change → the guest's /etc/resolv.conf follows
#      (a DnsConfig on the running VM's main session);
#   8. a corrupt image: the daemon's error (the guest's fsck) reaches the client.
# After step 2 the daemon's /proc status and `ctl status` must show it confined (base/sandbox).
# The distribution: $CAUSEWAY_TEST_DISTRO_IMAGE (a raw ext4 image, e.g. the CI's cached
# Debian; copied, never modified) or, when unset, a small ext4 made here from busybox-static
# and an /etc/passwd (mkfs.ext4 -d, no root needed). Everything lives under CAUSEWAY_HOME=$work.
# Usage: vm_distro_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped) when QEMU, the guest
# image or mkfs.ext4 is missing. Daemons are stopped by `causeway shutdown`, then by PID.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
guest=$2
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
need_cmd mkfs.ext4 "mkfs.ext4 missing (apt-get install e2fsprogs)"
need_cmd busybox "busybox missing (apt-get install busybox-static)"

make_work cw-e2e-distro
export CAUSEWAY_GUEST_DIR=$guest CAUSEWAY_HOME=$work/home CAUSEWAY_CONFIG=$work/config
: >"$CAUSEWAY_CONFIG"
run_dir=$CAUSEWAY_HOME/run/instances

# Every daemon this test started: a clean shutdown, then by the PID its state names.
on_cleanup() {
  timeout 60 "$cw" shutdown >/dev/null 2>&1 || true
  local s pid
  for s in "$run_dir"/*/state.json; do
    [[ -f $s ]] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$s" 2>/dev/null || true)
    if [[ -n $pid ]]; then stop_pid "$pid" 5; fi
  done
}
on_fail() {
  local l
  for l in "$run_dir"/*/daemon.log "$run_dir"/*/console.log; do
    [[ -f $l ]] && { echo "--- $l"; tail -n 30 "$l"; }
  done
}

# make_distro NAME IMAGE: the store's layout (vmm/distro/store.hpp), a private copy of IMAGE.
make_distro() {
  local dir=$CAUSEWAY_HOME/data/distros/$1
  mkdir -p "$dir"
  cp --sparse=always "$2" "$dir/rootfs.ext4"
  printf '{"format":1,"name":"%s","source":"e2e","created":"2026-01-01T00:00:00Z"}\n' "$1" >"$dir/distro.json"
}

image=${CAUSEWAY_TEST_DISTRO_IMAGE:-}
if [[ -z $image ]]; then
  echo "== CAUSEWAY_TEST_DISTRO_IMAGE is unset: a busybox ext4 made here stands in for a distribution"
  tree=$work/tree
  mkdir -p "$tree"/{bin,etc,tmp,root,proc,sys,dev,run,home/alice,var/tmp}
  cp "$(command -v busybox)" "$tree/bin/busybox"
  for a in $("$tree/bin/busybox" --list); do [[ -e $tree/bin/$a ]] || ln -s busybox "$tree/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$tree/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tree/etc/group"
  chmod 1777 "$tree/tmp"
  image=$work/tiny.ext4
  mkfs.ext4 -q -F -d "$tree" "$image" 128M
fi
make_distro e2e "$image"

instances_running() { "$cw" list --running | grep -c ' Running' || true; }
boot_id() { timeout 120 "$cw" run -d e2e -- cat /proc/sys/kernel/random/boot_id; }

echo "== a missing distribution"
set +e
err=$("$cw" run -d nope -- true 2>&1 >/dev/null)
st=$?
set -e
[[ $st == 1 ]] || fail "run -d nope exited $st, expected 1"
grep -q 'no distribution named nope' <<<"$err" || fail "unclear error for a missing distribution: $err"
[[ $(wc -l <<<"$err") == 1 ]] || fail "more than one line for a missing distribution: $err"
[[ ! -e $run_dir/nope/state.json ]] || fail "a daemon was started for a missing distribution"

echo "== three concurrent starts make one VM"
for i in 1 2 3; do
  (timeout 150 "$cw" run -d e2e -- sh -c "echo start-$i > /tmp/start-$i; cat /proc/sys/kernel/random/boot_id" \
    >"$work/start-$i.out" 2>"$work/start-$i.err"; echo $? >"$work/start-$i.status") &
done
wait
for i in 1 2 3; do
  [[ $(cat "$work/start-$i.status") == 0 ]] || fail "start $i exited $(cat "$work/start-$i.status"): $(cat "$work/start-$i.err")"
done
id1=$(cat "$work/start-1.out")
[[ -n $id1 && $(cat "$work/start-2.out") == "$id1" && $(cat "$work/start-3.out") == "$id1" ]] ||
  fail "concurrent starts saw different boot ids: $(cat "$work"/start-*.out)"
[[ $(instances_running) == 1 ]] || fail "list --running does not show exactly one VM: $("$cw" list --running)"
daemon_pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$run_dir/e2e/state.json")
kill -0 "$daemon_pid" || fail "the daemon in state.json ($daemon_pid) is not running"
# The daemon confined itself after set-up (base/sandbox): no privileges, a seccomp filter.
st=$(cat "/proc/$daemon_pid/status")
grep -qP '^NoNewPrivs:\t1$' <<<"$st" && grep -qP '^Seccomp:\t2$' <<<"$st" && grep -qP '^CapEff:\t0{16}$' <<<"$st" ||
  fail "the instance daemon is not confined: $(grep -E 'NoNewPrivs|^Seccomp:|CapEff' <<<"$st")"
# (A sanitizer build keeps the host's filesystem: its seccomp layer is what it reports.)
layer=on
"$cw" --version | grep -q 'sanitizer build' && layer=seccomp
[[ $("$cw" ctl "$run_dir/e2e/control.sock" status | python3 -c "import json,sys; print(json.load(sys.stdin)['sandbox']['$layer'])") == True ]] ||
  fail "ctl status of the instance does not say the sandbox is on"

echo "== a later run joins the same VM"
out=$(timeout 60 "$cw" run -d e2e -- sh -c 'cat /tmp/start-1 /tmp/start-2 /tmp/start-3; cat /proc/sys/kernel/random/boot_id')
[[ $out == "start-1"$'\n'"start-2"$'\n'"start-3"$'\n'"$id1" ]] || fail "the join did not see the same VM: $out"
[[ $(timeout 60 "$cw" run -d e2e -u nobody -- id -u) == 65534 ]] || fail "-u nobody did not run as uid 65534"
set +e
timeout 60 "$cw" run -d e2e -- sh -c 'exit 9'
st=$?
set -e
[[ $st == 9 ]] || fail "the joined command's status came back as $st, expected 9"
timeout 60 "$cw" run -d e2e -- sh -c 'echo persisted > /root/persist; sync'

echo "== terminate"
timeout 60 "$cw" terminate e2e || fail "terminate failed"
[[ $(instances_running) == 0 ]] || fail "still running after terminate: $("$cw" list)"
for f in exec.sock control.sock state.json vm; do
  [[ ! -e $run_dir/e2e/$f ]] || fail "$f left behind after terminate"
done
wait_until 5000 bash -c "! kill -0 $daemon_pid" || fail "the daemon $daemon_pid is still alive after terminate"

echo "== a new boot keeps the disk; idle shutdown"
printf '[wsl2]\nvmIdleTimeout=2000\n' >"$CAUSEWAY_CONFIG"
resolv=$work/resolv.conf
{ grep '^nameserver' /etc/resolv.conf || echo 'nameserver 127.0.0.1'; echo 'search first.example'; } >"$resolv"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The guest's server: python3's when the distribution has it, else busybox httpd; its pid in /run/srv.pid.
script='cat /root/persist; cat /proc/sys/kernel/random/boot_id
mkdir -p /www; echo from-the-vm > /www/index.html; cd /www
if command -v python3 >/dev/null; then set -- python3 -m http.server PORT; else set -- httpd -f -p PORT -h /www; fi
setsid "$@" </dev/null >/dev/null 2>&1 &
echo $! > /run/srv.pid
i=0; while [ $i -lt 300 ] && ! grep -q ":HEXPORT .* 0A " /proc/net/tcp /proc/net/tcp6; do sleep 0.1; i=$((i+1)); done'
script=${script//HEXPORT/$(printf %04X "$port")}
# (the command waits until the server listens: with a 2 s idle timeout, a slow server start under TCG
# could otherwise lose the race against the idle shutdown)
out=$(timeout 150 "$cw" run -d e2e --host-resolv-conf "$resolv" -- sh -c "${script//PORT/$port}")
[[ $(head -n 1 <<<"$out") == persisted ]] || fail "the disk lost /root/persist across VMs: $out"
id2=$(sed -n 2p <<<"$out")
[[ -n $id2 && $id2 != "$id1" ]] || fail "not a new boot: $id1 then $id2"
# The server keeps the VM up past the idle timeout, and is on the host's localhost.
wait_until 20000 curl -fsS --max-time 2 "http://127.0.0.1:$port/" || fail "the guest's server is not on localhost:$port"
sleep 3
[[ $(instances_running) == 1 ]] || fail "the VM went idle with a forwarded server running"
[[ $(curl -fsS --max-time 5 "http://127.0.0.1:$port/") == from-the-vm ]] || fail "wrong page from localhost:$port"
echo "== live DNS: the host's search domains reach the running VM"
timeout 60 "$cw" run -d e2e -- grep -q first.example /etc/resolv.conf || fail "no first.example in the guest's resolv.conf"
sed -i 's/first.example/second.example/' "$resolv"
wait_until 15000 timeout 20 "$cw" run -d e2e -- grep -q second.example /etc/resolv.conf ||
  fail "the guest's resolv.conf did not follow the host's search domains: $("$cw" run -d e2e -- cat /etc/resolv.conf)"
timeout 60 "$cw" run -d e2e -- sh -c 'kill $(cat /run/srv.pid)'
t0=$(now_ms)
wait_until 20000 bash -c "[[ \$('$cw' list --running | grep -c e2e) == 0 ]]" ||
  fail "no idle shutdown within 20 s of the server's end"
echo "idle shutdown $(($(now_ms) - t0)) ms after the last session (vmIdleTimeout 2000)"
grep -q 'powering the VM off (idle)' "$run_dir/e2e/daemon.log" || fail "the daemon log does not say idle"

echo "== a corrupt image"
make_distro broken "$image"
# Zero the primary superblock (at byte 1024): e2fsck cannot repair that with -p.
dd if=/dev/zero of="$CAUSEWAY_HOME/data/distros/broken/rootfs.ext4" bs=1024 seek=1 count=1 conv=notrunc status=none
set +e
err=$(timeout 150 "$cw" run -d broken -- true 2>&1)
st=$?
set -e
[[ $st == 1 ]] || fail "run -d broken exited $st, expected 1: $err"
grep -qi 'e2fsck\|fsck\|superblock\|mount' <<<"$err" || fail "the corrupt image's error does not say what is wrong: $err"
[[ $("$cw" list --running | grep -c broken) == 0 ]] || fail "a VM of the broken image is still running"
echo "PASS"
