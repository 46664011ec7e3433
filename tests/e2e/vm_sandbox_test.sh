#!/usr/bin/env bash
# e2e: the engine confines itself after set-up (base/sandbox) in serve, run and mirrored VM
# modes, as root and as an unprivileged user (nobody, through setpriv); `run -d` (the instance
# daemon) is checked in vm_distro_test.sh. For each: /proc/ENGINE/status shows NoNewPrivs 1,
# Seccomp 2 (filter), CapEff 0, and `ctl status` reports the sandbox on; the mode still works
# (serve: its control socket and QEMU socket are gone after SIGTERM; run: the guest's
# command reaches the host through the gateway and DNS answers; the private directory is
# removed at exit). --no-sandbox: nothing applied, and ctl status says why.
# Boots: three (run as root, run as nobody, mirrored as root), ~5 s each under TCG.
# Usage: vm_sandbox_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped) when QEMU, the guest
# image or setpriv is missing; the unprivileged and mirrored parts need root to start (they
# skip loudly otherwise). Loopback only; cleans up by PID.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$(realpath "$1")
guest=$(realpath "$2")
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
need_cmd jq "jq missing (apt-get install jq)"
need_cmd busybox "busybox missing (apt-get install busybox-static)"

make_work cw-e2e-sandbox
chmod 0755 "$work"
export CAUSEWAY_GUEST_DIR=$guest
root=0
[[ $(id -u) == 0 ]] && root=1
sanitized=0
"$cw" --version | grep -q 'sanitizer build' && sanitized=1
nobody_ok=0
if ((root)) && command -v setpriv >/dev/null && setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
  # nobody must reach the binary and the guest image.
  if setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$cw" -a -r "$guest/vmlinuz"; then nobody_ok=1; fi
fi
# setpriv execs: the pid $! names is the engine's.
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --)

# check_confined PID CONTROL WHAT: /proc/PID/status and `ctl status` say the sandbox is on.
check_confined() {
  local pid=$1 ctl=$2 what=$3 st
  st=$(cat "/proc/$pid/status") || fail "$what: no /proc/$pid/status"
  grep -qP '^NoNewPrivs:\t1$' <<<"$st" || fail "$what: NoNewPrivs is not 1: $(grep NoNewPrivs <<<"$st")"
  grep -qP '^Seccomp:\t2$' <<<"$st" || fail "$what: Seccomp is not 2: $(grep '^Seccomp:' <<<"$st")"
  grep -qP '^CapEff:\t0000000000000000$' <<<"$st" || fail "$what: CapEff is not 0: $(grep CapEff <<<"$st")"
  grep -qP '^CapPrm:\t0000000000000000$' <<<"$st" || fail "$what: CapPrm is not 0: $(grep CapPrm <<<"$st")"
  local j
  j=$("$cw" ctl "$ctl" status) || fail "$what: ctl status failed"
  if ((sanitized)); then
    # A sanitizer build keeps the host's filesystem and logs instead of killing (base/sandbox).
    [[ $(jq -r .sandbox.seccomp <<<"$j") == true ]] || fail "$what: no seccomp filter: $(jq -c .sandbox <<<"$j")"
  else
    [[ $(jq -r .sandbox.on <<<"$j") == true ]] || fail "$what: ctl status says the sandbox is not on: $(jq -c .sandbox <<<"$j")"
  fi
  echo "   $what: NoNewPrivs 1, Seccomp 2, CapEff 0; $(jq -c '{mode: .sandbox.mode, syscalls: .sandbox.syscalls}' <<<"$j")"
}

# ---------------------------------------------------------------- serve
# serve_case WHO [ARGS...]: start serve, check, stop, check the sockets are gone.
serve_case() {
  local who=$1 dir=$work/serve-$1-$#
  shift
  mkdir -m 0777 "$dir"
  local -a run=("$cw")
  [[ $who == nobody ]] && run=("${as_nobody[@]}" "$cw")
  "${run[@]}" serve --qemu-socket "$dir/q.sock" --control "$dir/ctl.sock" "$@" >"$dir/log" 2>&1 &
  local pid=$!
  track_pid "$pid"
  wait_until 10000 test -S "$dir/ctl.sock" || fail "serve ($who) did not start: $(cat "$dir/log")"
  # The engine's pid (setpriv execs, so it is the same process).
  if [[ " $* " == *" --no-sandbox "* ]]; then
    grep -qP '^Seccomp:\t0$' "/proc/$pid/status" || fail "serve --no-sandbox ($who) has a seccomp filter"
    [[ $("$cw" ctl "$dir/ctl.sock" status | jq -r .sandbox.reason) == *--no-sandbox* ]] ||
      fail "ctl status does not say --no-sandbox turned the sandbox off"
    echo "   serve --no-sandbox ($who): no filter; ctl status names --no-sandbox"
  else
    check_confined "$pid" "$dir/ctl.sock" "serve ($who)"
  fi
  kill -TERM "$pid"
  wait_until 5000 bash -c "! kill -0 $pid" || fail "serve ($who) did not stop on SIGTERM"
  untrack_pid "$pid"
  wait "$pid" 2>/dev/null || true
  [[ ! -e $dir/q.sock && ! -e $dir/ctl.sock ]] || fail "serve ($who) left its sockets behind: $(ls "$dir")"
  ! grep -q 'forbidden syscall' "$dir/log" || fail "serve ($who): $(grep 'forbidden syscall' "$dir/log")"
}

echo "== serve"
serve_case self
serve_case self --no-sandbox
if ((nobody_ok)); then serve_case nobody; else echo "SKIP (part): serve as nobody needs root and setpriv"; fi

# ---------------------------------------------------------------- run
mkdir -p "$work/www"
echo sandboxed-fetch-ok >"$work/www/probe.txt"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
busybox httpd -f -p "127.0.0.1:$port" -h "$work/www" &
httpd_pid=$!
track_pid "$httpd_pid"

# run_case WHO MODE: boot, check from the host while the command sleeps, check its output.
run_case() {
  local who=$1 mode=$2 dir=$work/run-$1-$2
  mkdir -m 0777 "$dir"
  local -a run=(env XDG_RUNTIME_DIR="$dir" "$cw")
  [[ $who == nobody ]] && run=("${as_nobody[@]}" env XDG_RUNTIME_DIR="$dir" CAUSEWAY_GUEST_DIR="$guest" "$cw")
  local cmd="wget -q -O- http://10.0.2.2:$port/probe.txt; nslookup host.causeway.internal 10.0.2.3 | grep -c 10.0.2.2; \
sleep 4; echo run-done"
  "${run[@]}" run -q --mode "$mode" --control "$dir/ctl.sock" -- sh -c "$cmd" >"$dir/out" 2>"$dir/err" &
  local pid=$!
  track_pid "$pid"
  wait_until 90000 grep -q sandboxed-fetch-ok "$dir/out" || fail "run ($who, $mode): no fetch: $(cat "$dir/out" "$dir/err")"
  check_confined "$pid" "$dir/ctl.sock" "run ($who, $mode)"
  wait_until 60000 bash -c "! kill -0 $pid" || fail "run ($who, $mode) did not finish"
  untrack_pid "$pid"
  local st=0
  wait "$pid" || st=$?
  [[ $st == 0 ]] || fail "run ($who, $mode) exited $st: $(cat "$dir/err")"
  grep -q run-done "$dir/out" || fail "run ($who, $mode): the command did not finish: $(cat "$dir/out")"
  ! grep -q 'forbidden syscall' "$dir/err" || fail "run ($who, $mode): $(cat "$dir/err")"
  [[ -z $(find "$dir" -maxdepth 1 -name 'causeway-vm.*') ]] || fail "run ($who, $mode) left its directory"
  [[ ! -e $dir/ctl.sock ]] || fail "run ($who, $mode) left its control socket"
}

echo "== run"
run_case self nat
if ((nobody_ok)); then run_case nobody nat; else echo "SKIP (part): run as nobody needs root and setpriv"; fi
if ((root)); then run_case self mirrored; else echo "SKIP (part): mirrored VM mode is tested as root here"; fi
echo "PASS: the engine is confined in serve, run and mirrored VM modes"
