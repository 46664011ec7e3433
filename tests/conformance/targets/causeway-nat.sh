# shellcheck shell=bash
# Target adapter: causeway, NAT mode, network-namespace attachment.
#
# How the guest is made: `causeway netns [OPTIONS] -- lib/guest-agent.sh DIR`, run in the host
# namespace — the form the README leads with.  Every command a check runs in the guest goes
# through the agent, so it is a descendant of COMMAND: in causeway's network and mount
# namespaces (its private /etc/resolv.conf) and under its bind/listen trap.
#
# It runs in the host's network and mount namespaces, so it follows the host's /etc/resolv.conf
# as on any machine (its default; no --host-resolv-conf).  Gateway to the host's loopback:
# 10.0.2.2.  MTU: the default (65520).
#
# Adapter interface (the same in every targets/*.sh; see lib/common.sh for how checks use it):
#   target_check_env        can this target run here at all? (prints why not; runner exits 2)
#   target_version          one line for the report header
#   target_mode_unavailable prints a reason and returns 0 when the mode itself is unavailable
#   target_promises FEATURE returns 0, or prints why the target does not promise FEATURE
#   target_note CHECK       a documented limitation to append to a failure of CHECK (optional)
#   target_start [--publish PROTO:HOSTPORT:GUESTPORT]... [--control]
#   guest_exec SECONDS CMD... / guest_spawn CMD... / guest_kill HANDLE / guest_netns
#   target_stop / target_cleanup

: "${CAUSEWAY:=$CF_REPO/build/causeway}"
[[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
CW_MODE_ARGS=()        # causeway-mirrored adds its mode here
# Extra `causeway netns` options for every start, word-split (for testing the suite itself:
# e.g. CONFORMANCE_CAUSEWAY_ARGS=--no-auto-forward must turn the auto_forward checks into FAILs)
read -r -a CW_EXTRA_ARGS <<< "${CONFORMANCE_CAUSEWAY_ARGS:-}"
CW_TARGET_LABEL="causeway (NAT mode)"

target_check_env() {
    if [[ ! -x $CAUSEWAY ]]; then
        echo "causeway binary not found at $CAUSEWAY (build it: cmake --preset release && cmake --build --preset release; or set CAUSEWAY=/path/to/causeway)"
        return 1
    fi
}

target_version() {
    printf '%s: %s (%s)' "$CW_TARGET_LABEL" "$CAUSEWAY" \
        "$(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || echo 'version unknown')"
}

target_mode_unavailable() { return 1; }

target_promises() {
    case $1 in
        dhcp|ipv6|icmp|host_loopback|dns|dns_tcp|dns_follow|dns_local_zone) return 0 ;;
        auto_forward|auto_forward_udp|port_conflict_report|publish|publish_udp) return 0 ;;
        mirrored) echo "a mirrored-mode check; this target is NAT mode (the causeway-mirrored target runs it)"; return 1 ;;
        *) echo "causeway: unknown feature $1"; return 1 ;;
    esac
}

target_note() { return 0; }

CW_DIR=""
CW_PID=""
CW_AGENT=""
TARGET_IFNAME=tap0
TARGET_GW4=10.0.2.2
TARGET_GW6=fd00::2
TARGET_MTU=65520
TARGET_CTL=""

target_start() {
    local args=() p proto rest
    cf_host_up || return 1
    CW_DIR=$CF_TMP/agent
    mkdir -p "$CW_DIR"
    rm -f "$CW_DIR/ctl" "$CW_DIR/agent.pid"
    mkfifo "$CW_DIR/ctl"
    while (( $# > 0 )); do
        case $1 in
            --publish)
                p=$2; shift 2
                proto=${p%%:*}; rest=${p#*:}
                args+=(-p "$rest/$proto") ;;
            --control)
                TARGET_CTL=$CF_TMP/control.sock
                args+=(--control "$TARGET_CTL"); shift ;;
            *) echo "causeway adapter: unknown start option $1" >&2; return 1 ;;
        esac
    done
    "${CF_HOST_EXEC[@]}" "$CAUSEWAY" netns "${CW_MODE_ARGS[@]}" "${CW_EXTRA_ARGS[@]}" "${args[@]}" \
        -- /bin/bash "$CF_LIB/guest-agent.sh" "$CW_DIR" > "$CF_TMP/engine.log" 2>&1 &
    CW_PID=$!
    cf_track "$CW_PID"
    if ! bench_wait_for 10 test -s "$CW_DIR/agent.pid"; then
        if kill -0 "$CW_PID" 2>/dev/null; then
            echo "the guest's command did not start within 10 s" >&2
        else
            wait "$CW_PID"
            echo "causeway exited with status $? before running the guest's command" >&2
        fi
        return 1
    fi
    CW_AGENT=$(< "$CW_DIR/agent.pid")
    if [[ -n $TARGET_CTL ]] && ! bench_wait_for 5 test -S "$TARGET_CTL"; then
        echo "no control socket at $TARGET_CTL within 5 s" >&2
        return 1
    fi
}

# _cw_submit LOG CMD...: hands CMD to the agent (output to LOG when not empty); sets CW_ID
_cw_submit() {
    local log=$1; shift
    # unique without shared state: guest_exec often runs in a command substitution (subshell)
    CW_ID=c${BASHPID}-${EPOCHREALTIME/./}
    {
        printf 'exec'
        printf ' %q' "$@"
        [[ -n $log ]] && printf ' >> %q 2>&1' "$log"
        printf '\n'
    } > "$CW_DIR/$CW_ID.cmd"
    if ! kill -0 "$CW_AGENT" 2>/dev/null; then
        echo "guest agent is gone (did causeway exit?)" >&2
        return 1
    fi
    printf '%s\n' "$CW_ID" > "$CW_DIR/ctl"
}

# guest_exec SECONDS CMD...: runs CMD in the guest, killed after SECONDS; its stdout, stderr
# and exit status (124 on timeout, as timeout(1))
guest_exec() {
    local secs=$1; shift
    _cw_submit "" timeout -k 1 "$secs" "$@" || return 125
    local id=$CW_ID
    if ! bench_wait_for $((secs + 3)) test -s "$CW_DIR/$id.rc"; then
        echo "guest_exec: no result from the guest agent after $((secs + 3)) s" >&2
        return 125
    fi
    cat "$CW_DIR/$id.out"
    cat "$CW_DIR/$id.err" >&2
    return "$(< "$CW_DIR/$id.rc")"
}

# guest_spawn CMD...: starts CMD in the guest in the background; CF_SPAWNED = its PID,
# CF_SPAWN_LOG = its stdout and stderr
guest_spawn() {
    CF_SPAWN_LOG=$CF_TMP/guest-spawn.${EPOCHREALTIME/./}.log
    _cw_submit "$CF_SPAWN_LOG" "$@" || return 1
    local id=$CW_ID
    if ! bench_wait_for 5 test -s "$CW_DIR/$id.pid"; then
        echo "guest_spawn: the agent did not start the command within 5 s" >&2
        return 1
    fi
    CF_SPAWNED=$(< "$CW_DIR/$id.pid")
    cf_track "$CF_SPAWNED"
}

guest_kill() { cf_kill "$1"; }

guest_netns() { printf '/proc/%s/ns/net' "$CW_AGENT"; }

target_stop() {
    [[ -n $CW_PID ]] || return 0
    cf_kill "$CW_PID"
    CW_PID=""
}

target_cleanup() { target_stop; }
