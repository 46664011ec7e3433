#!/usr/bin/env bash
#
# vm_serve_test.sh — end-to-end test: boot the test guest (scripts/build-guest.sh) under QEMU
# with its only NIC attached to `causeway serve`, and check that the guest gets its DHCP
# lease from causeway (10.0.2.15) and can fetch a file from an HTTP server on the host's
# 127.0.0.1 through causeway's gateway address 10.0.2.2 (aliased to host loopback).
#
# Usage: tests/e2e/vm_serve_test.sh [options] CAUSEWAY_BIN GUEST_DIR
#   CAUSEWAY_BIN       the causeway binary (ignored with --netdev user; pass "-")
#   GUEST_DIR          directory with vmlinuz and initramfs.cpio.gz (default build: build/guest)
# Options:
#   --netdev stream    (default) QEMU -netdev stream on a unix socket served by
#                      `CAUSEWAY_BIN serve --qemu-socket SOCK`
#   --netdev user      QEMU's own libslirp (-netdev user) instead: validates the guest image
#                      and gives a baseline; causeway is not used
#   --machine q35|microvm   QEMU machine (default q35 with virtio-net-pci; microvm uses
#                      virtio-net-device on virtio-mmio described by ACPI, pit=on,rtc=on)
#   --serve-arg ARG    extra argument for `causeway serve` (repeatable)
#   --keep             keep the temporary directory (console log, causeway log)
#   -h, --help
#
# Exit status: 0 pass, 1 fail, 77 skip (qemu, busybox, guest image or causeway missing) —
# registered in ctest with SKIP_RETURN_CODE 77. Everything is bounded in time (≈ 100 s
# worst case); only processes this script started are signalled, by PID.
# Network traffic: only loopback (host HTTP server on 127.0.0.1) and the VM's own virtual
# network inside QEMU/causeway.
#
# Output: progress lines, "TIME boot-to-lease <s>" (host wall clock from QEMU start until the
# CW-LEASE marker shows in the console log), then PASS or FAIL with the console log tail and
# causeway's stderr.

set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

NETDEV=stream
MACHINE=q35
SERVE_ARGS=()
QEMU_TIMEOUT=${CW_E2E_QEMU_TIMEOUT:-90}     # the guest powers itself off after the fetch (≈ 3–5 s under TCG)
SOCKET_WAIT=10      # for causeway to create its socket

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
say() { printf 'vm_serve_test: %s\n' "$*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --netdev) NETDEV=${2:?--netdev needs stream|user}; shift 2 ;;
        --machine) MACHINE=${2:?--machine needs q35|microvm}; shift 2 ;;
        --serve-arg) SERVE_ARGS+=("${2:?--serve-arg needs a value}"); shift 2 ;;
        --keep) KEEP_WORK=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -) break ;;
        -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
done
[[ $# -eq 2 ]] || { usage >&2; exit 2; }
CAUSEWAY=$1
GUEST_DIR=$2
case "$NETDEV" in stream|user) ;; *) echo "--netdev must be stream or user" >&2; exit 2 ;; esac
case "$MACHINE" in
    q35) MACHINE_ARG=q35; NIC_DEVICE=virtio-net-pci ;;
    # microvm under TCG: without PIT and RTC the kernel cannot calibrate the TSC and hangs
    # early in boot; even with them PIT calibration fails now and then (≈ 1 boot in 4), so
    # the TSC frequency is given on the command line (see EXTRA_APPEND below).
    microvm) MACHINE_ARG=microvm,pit=on,rtc=on; NIC_DEVICE=virtio-net-device ;;
    *) echo "--machine must be q35 or microvm" >&2; exit 2 ;;
esac

# ------------------------------------------------------------------ prerequisites
QEMU=$(command -v qemu-system-x86_64 || true)
[[ -n $QEMU ]] || skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] || skip "busybox not found (apt-get install busybox-static): needed for the host HTTP server"
[[ -f $GUEST_DIR/vmlinuz && -f $GUEST_DIR/initramfs.cpio.gz ]] ||
    skip "no guest image in $GUEST_DIR (run scripts/build-guest.sh)"
if [[ $NETDEV == stream ]]; then
    [[ -x $CAUSEWAY && ! -d $CAUSEWAY ]] || skip "causeway binary $CAUSEWAY not found or not executable (build it first)"
fi
# Nothing here needs root: QEMU under TCG, a unix socket, a loopback HTTP server.

# Real KVM only if the CPU has vmx/svm and /dev/kvm is not PVM (kvm_pvm cannot run a stock
# kernel at a usable speed); otherwise TCG.
ACCEL=(-accel tcg)
if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm && -r /dev/kvm && -w /dev/kvm ]]; then
    ACCEL=(-accel kvm -cpu host)
fi

EXTRA_APPEND=
if [[ $MACHINE == microvm ]]; then
    # Under TCG the guest's rdtsc reads the host TSC: hand its frequency to the guest.
    mhz=$(awk -F: '/^cpu MHz/ { gsub(/ /, "", $2); print int($2); exit }' /proc/cpuinfo)
    [[ ${mhz:-0} -gt 0 ]] || mhz=2600
    EXTRA_APPEND=" tsc_early_khz=$((mhz * 1000))"
fi

# ------------------------------------------------------------------ temp dir, cleanup
make_work cw-e2e
TMP=$work

CONSOLE=$TMP/console.log
CW_LOG=$TMP/causeway.log
SOCK=$TMP/net.sock
: >"$CONSOLE"

on_fail() {
    echo "--- guest console (last 60 lines of $CONSOLE) ---"
    tail -n 60 "$CONSOLE" | tr -d '\r' || true
    if [[ $NETDEV == stream ]]; then
        echo "--- causeway output (last 60 lines) ---"
        tail -n 60 "$CW_LOG" 2>/dev/null || true
    fi
    [[ -f $TMP/qemu.err ]] && { echo "--- qemu stderr ---"; cat "$TMP/qemu.err"; }
    echo "---"
}

# ------------------------------------------------------------------ host HTTP server
mkdir -p "$TMP/www"
TOKEN="cw-e2e-$$-$RANDOM$RANDOM"
# First line: the token the guest echoes back; then 256 KiB of pseudo-random base64 so the
# fetch takes many TCP segments; the guest reports size and md5 (CW-FETCH-SUM).
{
    printf '%s\n' "$TOKEN"
    head -c 196608 /dev/urandom | base64 -w 76
} >"$TMP/www/probe.txt"
WANT_SUM="$(wc -c <"$TMP/www/probe.txt") $(md5sum <"$TMP/www/probe.txt" | cut -d' ' -f1)"
PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    try=$((20000 + RANDOM % 40000))
    "$BUSYBOX" httpd -f -p "127.0.0.1:$try" -h "$TMP/www" 2>"$TMP/httpd.err" &
    hpid=$!
    # Busybox httpd binds before serving; probe it (bounded). No wget -T: Debian's busybox
    # 1.35 wget segfaults with it.
    ok=0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        if ! kill -0 "$hpid" 2>/dev/null; then break; fi
        if [[ $(timeout 3 "$BUSYBOX" wget -q -O - "http://127.0.0.1:$try/probe.txt" 2>/dev/null | head -n 1) == "$TOKEN" ]]; then
            ok=1
            break
        fi
        sleep 0.1
    done
    if [[ $ok == 1 ]]; then
        track_pid "$hpid"
        PORT=$try
        break
    fi
    stop_pid "$hpid" 1
    wait "$hpid" 2>/dev/null || true
done
[[ -n $PORT ]] || fail "could not start busybox httpd on 127.0.0.1 ($(cat "$TMP/httpd.err"))"
say "host HTTP server on 127.0.0.1:$PORT (pid $hpid)"

# ------------------------------------------------------------------ causeway
if [[ $NETDEV == stream ]]; then
    say "starting: $CAUSEWAY serve --qemu-socket $SOCK ${SERVE_ARGS[*]}"
    timeout -k 5 $((QEMU_TIMEOUT + SOCKET_WAIT + 10)) \
        "$CAUSEWAY" serve --qemu-socket "$SOCK" "${SERVE_ARGS[@]}" >"$CW_LOG" 2>&1 &
    CW_PID=$!
    track_pid "$CW_PID"
    for ((i = 0; i < SOCKET_WAIT * 10; i++)); do
        [[ -S $SOCK ]] && break
        kill -0 "$CW_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$CW_PID" 2>/dev/null; then
        rc=0; wait "$CW_PID" || rc=$?
        fail "causeway serve exited early (status $rc)"
    fi
    [[ -S $SOCK ]] || fail "causeway serve did not create $SOCK within ${SOCKET_WAIT}s"
    NETDEV_ARG="stream,id=n0,addr.type=unix,addr.path=$SOCK"
else
    NETDEV_ARG="user,id=n0"
fi

# ------------------------------------------------------------------ QEMU
URL="http://10.0.2.2:$PORT/probe.txt"
APPEND="console=ttyS0 panic=-1 loglevel=4 cw.mode=dhcp-test cw.url=$URL$EXTRA_APPEND"
QEMU_CMD=("$QEMU" "${ACCEL[@]}" -machine "$MACHINE_ARG" -m 256 -smp 1
    -nodefaults -no-user-config -display none -no-reboot -monitor none
    -serial "file:$CONSOLE"
    -kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initramfs.cpio.gz" -append "$APPEND"
    -netdev "$NETDEV_ARG" -device "$NIC_DEVICE,netdev=n0")
say "booting ($MACHINE, ${ACCEL[*]}, -netdev $NETDEV): ${QEMU_CMD[*]}"
t0=$(date +%s%N)
timeout -k 5 "$QEMU_TIMEOUT" "${QEMU_CMD[@]}" </dev/null >"$TMP/qemu.out" 2>"$TMP/qemu.err" &
QEMU_PID=$!
track_pid "$QEMU_PID"

t_lease=
qemu_rc=
while :; do
    if [[ -z $t_lease ]] && grep -q '^CW-LEASE' "$CONSOLE"; then
        t_lease=$(date +%s%N)
    fi
    if grep -q '^CW-DONE' "$CONSOLE"; then
        break
    fi
    if ! kill -0 "$QEMU_PID" 2>/dev/null; then
        qemu_rc=0; wait "$QEMU_PID" || qemu_rc=$?
        break
    fi
    sleep 0.05
done
[[ -n $t_lease ]] || { grep -q '^CW-LEASE' "$CONSOLE" && t_lease=$(date +%s%N); } || true
# Let the guest power off by itself (it does right after CW-DONE), bounded.
if [[ -z $qemu_rc ]]; then
    for ((i = 0; i < 100; i++)); do
        kill -0 "$QEMU_PID" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$QEMU_PID" 3
    qemu_rc=0; wait "$QEMU_PID" || qemu_rc=$?
fi
t_end=$(date +%s%N)
say "QEMU exited with status $qemu_rc after $(( (t_end - t0) / 1000000 )) ms"
[[ $qemu_rc == 124 || $qemu_rc == 137 ]] && fail "QEMU timed out after ${QEMU_TIMEOUT}s"

# ------------------------------------------------------------------ stop causeway
if [[ $NETDEV == stream ]]; then
    cw_rc=0
    if kill -0 "$CW_PID" 2>/dev/null; then
        stop_pid "$CW_PID" 5
        wait "$CW_PID" || cw_rc=$?
        say "causeway serve stopped with SIGTERM, exit status $cw_rc"
    else
        wait "$CW_PID" || cw_rc=$?
        say "causeway serve had already exited with status $cw_rc before SIGTERM"
    fi
fi

# ------------------------------------------------------------------ verdict
CLEAN=$TMP/console.txt
tr -d '\r' <"$CONSOLE" >"$CLEAN"
grep '^CW-' "$CLEAN" | sed 's/^/  guest: /' || true

grep -q '^CW-MODULE-FAIL' "$CLEAN" && say "warning: some guest modules failed to load"
lease=$(grep -m1 '^CW-LEASE ' "$CLEAN" || true)
[[ -n $lease ]] || fail "no CW-LEASE marker: the guest got no DHCP lease"
[[ $lease == "CW-LEASE 10.0.2.15/"* ]] || fail "unexpected lease: $lease (want 10.0.2.15)"
if [[ -n $t_lease ]]; then
    ms=$(( (t_lease - t0) / 1000000 ))
    printf 'vm_serve_test: TIME boot-to-lease %d.%03ds (netdev %s, machine %s)\n' \
        $((ms / 1000)) $((ms % 1000)) "$NETDEV" "$MACHINE"
fi
grep -qx "CW-FETCH-OK $TOKEN" "$CLEAN" ||
    fail "guest did not fetch $URL: $(grep -m1 '^CW-FETCH' "$CLEAN" || echo 'no CW-FETCH marker')"
grep -qx "CW-FETCH-SUM $WANT_SUM" "$CLEAN" ||
    fail "fetched body differs: guest $(grep -m1 '^CW-FETCH-SUM' "$CLEAN" || echo 'no CW-FETCH-SUM'), want $WANT_SUM"
grep -q '^CW-DONE dhcp-test result ok' "$CLEAN" || fail "guest did not report CW-DONE ... ok"
if [[ $NETDEV == stream && $cw_rc -gt 128 && $cw_rc != 143 ]]; then
    fail "causeway serve died with signal $((cw_rc - 128)) (status $cw_rc)"
fi

echo "PASS: guest leased ${lease#CW-LEASE } and fetched http://10.0.2.2:$PORT/ (host 127.0.0.1) via -netdev $NETDEV"
exit 0
