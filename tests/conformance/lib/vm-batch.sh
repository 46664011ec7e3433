#!/usr/bin/env bash
# vm-batch.sh — the conformance suite's VM subset (lib/vm-subset.sh) against `causeway run`, in
# ONE boot.  scripts/conformance.sh --attach vm starts one of these under `timeout`.
#
#   vm-batch.sh VERDICT_DIR PID_FILE TMP_DIR NS_PREFIX GUEST_DIR
#
# The world is the netns checks' (lib/common.sh): a "host" network + mount namespace whose only
# link leads to a sink that forwards nothing, dnsmasq on its loopback as the host's resolver.
# Here `causeway run` (and so QEMU) runs in that host's namespaces; a busybox httpd serves on
# the host's 127.0.0.1:21001.  The guest runs lib/vm-guest.sh, which evaluates most checks
# itself and prints `CFVM CHECK pass|fail NOTE`; the two auto-forward checks are the host's:
# once the guest says its servers listen (127.0.0.1:22003 and 0.0.0.0:22001, busybox httpd),
# curl on the host's 127.0.0.1 must reach each within 1 s (probed for 3 s; no -p flag given).
# Then the host serves /cf-done, the guest exits and the VM powers off.
#
# Leaves one file per check of the subset in VERDICT_DIR: "pass|fail|n/a TAB reason".
set -uo pipefail

CF_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CF_DIR=$(cd "$CF_LIB/.." && pwd)
CF_REPO=$(cd "$CF_DIR/../.." && pwd)

(( $# == 5 )) || { echo "usage: $0 VERDICT_DIR PID_FILE TMP_DIR NS_PREFIX GUEST_DIR" >&2; exit 2; }
VERDICTS=$1
CF_PIDFILE=$2
CF_TMP=$3
CF_HOST=$4-host
CF_SINK=$4-sink
CF_GUEST=$4-guest
GUEST_DIR=$5
CF_RESULT=$CF_TMP/unused-result
CF_TARGET=causeway-nat

# shellcheck source=../../../scripts/lib/bench-common.sh
. "$CF_REPO/scripts/lib/bench-common.sh"
# shellcheck source=common.sh
. "$CF_LIB/common.sh"
# shellcheck source=../targets/causeway-nat.sh
. "$CF_DIR/targets/causeway-nat.sh"
# shellcheck source=vm-subset.sh
. "$CF_LIB/vm-subset.sh"

bench_init
trap cf_cleanup EXIT
: > "$CF_PIDFILE"
mkdir -p "$VERDICTS"

verdict() { # CHECK RESULT REASON — the first verdict of a check stands
    [[ -e $VERDICTS/$1 ]] && return 0
    local reason=${3//$'\n'/ }
    printf '%s\t%s\n' "$2" "${reason//$'\t'/ }" > "$VERDICTS/$1"
}
fail_all() { # REASON: every check of the subset without a verdict fails with REASON
    local c
    for c in "${CF_VM_SUBSET[@]}"; do verdict "$c" fail "$1"; done
    exit 0
}

# ------------------------------------------------------------------------- host side
cf_host_up || fail_all "could not build the host namespace"
www=$CF_TMP/host-www
mkdir -p "$www"
HOST_BODY=host-tcp-ok
printf '%s\n' "$HOST_BODY" > "$www/index.html"
cf_host_spawn busybox httpd -f -p "127.0.0.1:$CF_VM_HOST_PORT" -h "$www"
bench_wait_for 5 cf_host_listening tcp "$CF_VM_HOST_PORT" 127.0.0.1 ||
    fail_all "could not start the host's httpd on 127.0.0.1:$CF_VM_HOST_PORT"

OUT=$CF_TMP/guest.out
ENGINE_LOG=$CF_TMP/engine.log
: > "$OUT"
# shellcheck disable=SC2016  # the script is the guest's
"${CF_HOST_EXEC[@]}" "$CAUSEWAY" run -q --guest-dir "$GUEST_DIR" "${CW_EXTRA_ARGS[@]}" \
    --console-log "$CF_TMP/console.log" \
    -- sh -c "$(cat "$CF_LIB/vm-guest.sh")" cfvm "$CF_VM_HOST_PORT" "$HOST_BODY" "$CF_NAME" \
    "$CF_ADDR1_A" "$CF_ADDR1_AAAA" "$CF_VM_MTU" "$CF_REMOTE4" "$CF_VM_FWD_LO" "$CF_VM_FWD_ANY" \
    > "$OUT" 2> "$ENGINE_LOG" &
CW_PID=$!
cf_track "$CW_PID"

guest_said() { grep -q "^$1" "$OUT" 2>/dev/null; }
engine_why() {
    printf 'causeway run: %s' "$(grep -v '^$' "$ENGINE_LOG" 2>/dev/null | tail -n 1 | cut -c1-200)"
}

# Boot (≈ 3-4 s under TCG) until the guest's servers listen; bounded.
deadline=$((SECONDS + 45))
while ! guest_said CFVM-LISTENING; do
    if ! kill -0 "$CW_PID" 2>/dev/null; then
        wait "$CW_PID"; rc=$?
        fail_all "the VM ended (status $rc) before the guest script got going — $(engine_why)"
    fi
    (( SECONDS < deadline )) || fail_all "no word from the guest within 45 s of starting causeway run — $(engine_why)"
    sleep 0.05
done
t_listen=$(cf_now_ms)
# QEMU (causeway run's child) too, so that the runner can stop it if this batch is killed
for k in $(bench_child_pids "$CW_PID"); do cf_track "$k"; done

# The auto-forward probes: curl on the host's 127.0.0.1, every 100 ms for 3 s, each try ≤ 1 s.
declare -A PORT_OF=([auto_forward_tcp_v4]=$CF_VM_FWD_ANY [auto_forward_loopback_only]=$CF_VM_FWD_LO)
declare -A BODY_OF=([auto_forward_tcp_v4]=guest-any [auto_forward_loopback_only]=guest-lo)
declare -A WHAT_OF=([auto_forward_tcp_v4]="0.0.0.0" [auto_forward_loopback_only]="127.0.0.1")
declare -A FINISHED=() LASTERR=()
while (( ${#FINISHED[@]} < 2 )); do
    now=$(cf_now_ms)
    for c in auto_forward_tcp_v4 auto_forward_loopback_only; do
        [[ -n ${FINISHED[$c]:-} ]] && continue
        p=${PORT_OF[$c]}
        if body=$(cf_host curl -sS --max-time 1 "http://127.0.0.1:$p/" 2>&1); then
            ms=$(( $(cf_now_ms) - t_listen ))
            FINISHED[$c]=1
            if [[ $body != "${BODY_OF[$c]}" ]]; then
                verdict "$c" fail "host 127.0.0.1:$p answered '${body:0:60}', not the guest's server"
            elif (( ms > 1000 )); then
                verdict "$c" fail "host 127.0.0.1:$p reached the guest's ${WHAT_OF[$c]}:$p only $ms ms after it listened (> 1000)"
            else
                verdict "$c" pass "curl http://127.0.0.1:$p/ reached the guest's ${WHAT_OF[$c]}:$p $ms ms after listen()"
            fi
        else
            LASTERR[$c]=$(printf '%s' "$body" | tail -n 1)
        fi
    done
    if (( now - t_listen >= 3000 )); then
        for c in auto_forward_tcp_v4 auto_forward_loopback_only; do
            [[ -n ${FINISHED[$c]:-} ]] && continue
            FINISHED[$c]=1
            verdict "$c" fail "host 127.0.0.1:${PORT_OF[$c]} did not reach the guest's ${WHAT_OF[$c]}:${PORT_OF[$c]} (busybox httpd) within 3 s, no -p given: ${LASTERR[$c]:-no answer}"
        done
    fi
    sleep 0.1
done
: > "$www/cf-done"      # the guest's signal to finish

# The rest of the guest's checks, then power-off; bounded.
if ! bench_wait_pid_exit "$CW_PID" 40; then
    engine_note="the VM was still running 40 s after the probes (stopped)"
    bench_kill_pid_tree "$CW_PID"
else
    wait "$CW_PID"; rc=$?
    engine_note=""
    (( rc == 0 )) || engine_note="causeway run exited with status $rc"
    bench_kill_pid "$CW_PID"
fi

while read -r tag c res reason; do
    [[ $tag == CFVM ]] || continue
    cf_vm_in_subset "$c" || continue
    verdict "$c" "$res" "$reason"
done < <(tr -d '\r' < "$OUT")
for c in "${CF_VM_SUBSET[@]}"; do
    verdict "$c" fail "the guest never reported this check${engine_note:+ ($engine_note)} — $(engine_why)"
done
exit 0
