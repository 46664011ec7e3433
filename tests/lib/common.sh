# shellcheck shell=bash
# tests/lib/common.sh — what every shell test shares (tests/integration/*.sh, tests/e2e/*.sh,
# tests/fuzz/run_in_netns.sh): the verdicts ctest understands, prerequisite checks that skip
# with the reason and the fix, bounded waits, and one cleanup that runs at exit.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
#
# Verdicts (ctest: SKIP_RETURN_CODE 77; anything else non-zero fails):
#   skip REASON             prints "SKIP: REASON", exits 77 — never a pass
#   fail MESSAGE            prints "FAIL: MESSAGE", then runs the script's on_fail function if it
#                           defines one (logs, counters, guest output), exits 1
# Prerequisites (each skips with its reason):
#   need_root WHAT          "needs root (WHAT)"
#   need_cmd TOOL [REASON]  TOOL on PATH, else REASON (default "TOOL missing")
#   need_tcp_peek_off WHY   TCP SO_PEEK_OFF (Linux 6.10+), else "this kernel has no TCP
#                           SO_PEEK_OFF (Linux 6.10+): WHY"
# Time:
#   now_ms                  wall clock in milliseconds
#   wait_until MS CMD...    true once CMD succeeds within MS (polled every 20 ms), else false
#   stop_pid PID [SECS]     TERM, wait up to SECS (default 3), then KILL; only for our own PIDs
# Cleanup, at exit (also on SIGINT/SIGTERM, e.g. a ctest timeout), in this order:
#   on_cleanup              the script's own function, if it defines one (close a fifo, ...)
#   track_pid PID...        processes we started: stop_pid, then reaped — by PID, never by name
#   untrack_pid PID         one the script has reaped itself (its PID may be reused)
#   track_netns NS...       network namespaces we made: deleted
#   make_work PREFIX        sets $work to a fresh temporary directory, $TMPDIR/PREFIX.XXXXXX: removed, unless
#                           KEEP_WORK=1 (then its path is printed)
#   $CW_TEST_LIB            this directory (topology.sh, servers.py)
# Only functions, these variables and the traps are defined here: sourcing has no other effect.

# shellcheck disable=SC2034  # for the scripts that source this file
CW_TEST_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CW_PIDS=()
CW_NETNS=()
work=""
KEEP_WORK=${KEEP_WORK:-0}

skip() {
  echo "SKIP: $*"
  exit 77
}

fail() {
  echo "FAIL: $*"
  if declare -F on_fail >/dev/null; then on_fail || true; fi
  exit 1
}

need_root() { [[ $(id -u) == 0 ]] || skip "needs root ($1)"; }

need_cmd() { command -v "$1" >/dev/null || skip "${2:-$1 missing}"; }

need_tcp_peek_off() {
  python3 -c 'import socket; socket.socket().setsockopt(socket.SOL_SOCKET, 42, 0)' 2>/dev/null ||
    skip "this kernel has no TCP SO_PEEK_OFF (Linux 6.10+): $1"
}

now_ms() { date +%s%3N; }

wait_until() {  # MS COMMAND...
  local deadline=$(( $(now_ms) + $1 )); shift
  while (( $(now_ms) < deadline )); do "$@" >/dev/null 2>&1 && return 0; sleep 0.02; done
  return 1
}

stop_pid() {  # PID [SECS]
  local pid=$1 secs=${2:-3} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

track_pid() { CW_PIDS+=("$@"); }

untrack_pid() {
  local keep=() pid
  for pid in "${CW_PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  CW_PIDS=("${keep[@]}")
}

track_netns() { CW_NETNS+=("$@"); }

make_work() {  # PREFIX
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
}

# shellcheck disable=SC2317  # invoked through the trap
cw_cleanup() {
  local pid ns
  if declare -F on_cleanup >/dev/null; then on_cleanup || true; fi
  for pid in "${CW_PIDS[@]}"; do stop_pid "$pid" 3; done
  for pid in "${CW_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${CW_NETNS[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  if [[ -n $work ]]; then
    if [[ $KEEP_WORK == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
  fi
}
trap cw_cleanup EXIT
trap 'exit 130' INT TERM
