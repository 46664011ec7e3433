#!/usr/bin/env bash
# e2e: QEMU killed in the middle of a transfer (issue 16). The guest downloads an endless
# stream from a host server through the gateway; once bytes flow, QEMU gets SIGKILL. Then:
#   1. causeway exits within 10 s, non-zero, with a message that names QEMU's death (killed
#      by signal 9), even when the agent's stream is seen closing first;
#   2. the host server sees its connection closed (the engine's host socket is gone);
#   3. nothing causeway started is left running (no child of it survives);
#   4. the console went through causeway's size-capped log (vmm/machine/console_log.hpp):
#      --console-log holds a line the guest wrote to /dev/ttyS0.
# One boot (~4 s under TCG). Usage: vm_fault_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped)
# when QEMU or the guest image is missing. Loopback only; cleans up by PID.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
guest=$2
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
need_cmd python3
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"

make_work cw-e2e-fault
export CAUSEWAY_GUEST_DIR=$guest

cat >"$work/stream.py" <<'PY'
# Serves an endless HTTP body on 127.0.0.1:PORT; says "connected" and "closed" on stdout.
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(4)
print("port", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.recv(4096)
print("connected", flush=True)
c.settimeout(30)
chunk = b"x" * 65536
try:
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    while True:
        c.sendall(chunk)
except OSError as e:
    print("closed", type(e).__name__, flush=True)
PY
python3 "$work/stream.py" >"$work/stream.log" 2>&1 &
srv=$!
track_pid "$srv"
wait_until 20000 grep -q "^port " "$work/stream.log" || fail "the stream server did not start"
port=$(awk '/^port / {print $2}' "$work/stream.log")

"$cw" run -q --console-log "$work/console.log" -- sh -c "echo cw-console-marker >/dev/ttyS0; wget -q -O /dev/null http://10.0.2.2:$port/ ; sleep 600" \
  >"$work/run.out" 2>"$work/run.err" &
cwpid=$!
track_pid "$cwpid"
on_fail() {
  echo "--- causeway's stderr"; tail -n 20 "$work/run.err"
  echo "--- stream server"; cat "$work/stream.log"
}
wait_until 120000 grep -q '^connected' "$work/stream.log" || fail "the guest's download did not start within 120 s"
sleep 1  # bytes flowing

qemu=""
# shellcheck disable=SC2013  # the children files hold space-separated PIDs
for kid in $(cat /proc/"$cwpid"/task/*/children 2>/dev/null); do
  [[ $(cat "/proc/$kid/comm" 2>/dev/null) == qemu-system* ]] && qemu=$kid
done
[[ -n $qemu ]] || fail "no QEMU child of causeway ($cwpid)"
t0=$(now_ms)
kill -KILL "$qemu"

gone() { ! kill -0 "$cwpid" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$cwpid/stat" 2>/dev/null) == Z ]]; }
wait_until 10000 gone || fail "causeway still runs 10 s after QEMU was killed"
rc=0; wait "$cwpid" || rc=$?
untrack_pid "$cwpid"
echo "QEMU killed: causeway exited with status $rc after $(( $(now_ms) - t0 )) ms"
(( rc != 0 )) || fail "causeway exited 0 although its VM was killed"
# The agent's vsock stream may close before QEMU's exit is seen; causeway waits a moment for
# the exit, and a QEMU killed by a signal is the cause it names.
grep -Eqi 'qemu exited .*killed by signal 9' "$work/run.err" ||
  fail "causeway's message does not name QEMU's death: $(tail -n 3 "$work/run.err")"
echo "message: $(head -n 1 "$work/run.err")"

wait_until 10000 grep -q '^closed' "$work/stream.log" || fail "the host server's connection was not closed"
kill -0 "$qemu" 2>/dev/null && fail "QEMU ($qemu) still exists"
left=$(ps -eo pid=,ppid=,args= | awk -v p="$cwpid" '$2 == p')
[[ -z $left ]] || fail "children of causeway left running: $left"

grep -q 'cw-console-marker' "$work/console.log" || fail "the guest's line to /dev/ttyS0 is not in the console log: $(head -c 300 "$work/console.log")"
echo "console log: $(stat -c %s "$work/console.log") bytes through causeway"
echo "PASS"
