# shellcheck shell=bash
# Target adapter: causeway, NAT mode, a VM running a Debian distribution (`causeway run -d`).
#
# How the guest is made: the distribution `debian-test` (scripts/test-distro.sh: Debian bookworm
# minbase with python3, curl, dig, iproute2, ping) is booted by the first
# `causeway run -d debian-test`, run in the host's namespaces, which starts the distribution's
# VM (the instance daemon inherits the host's network and mount namespaces, so the VM's
# engine follows the host world's /etc/resolv.conf and reaches its loopback). Every command a
# check runs in the guest is a further `causeway run -d debian-test -- COMMAND`: it joins the
# running VM, as a user's second terminal does. A boot per check (≈ 5 s under TCG) buys each
# check a fresh VM and engine, as the netns targets get.
#
# Paths: a check names files by their host paths (cfnet.py in lib/, scripts and ready files in
# CF_TMP). The VM has its own disk, so guest_exec/guest_spawn copy the lib/ files and any
# argument that is an existing host file under CF_TMP into the guest at the same path first,
# and cf_guest_ready asks the guest for the ready file.
#
# Each check gets its own CAUSEWAY_HOME (its own runtime directory: instance sockets, locks)
# whose distros/ entry links to the one imported image (checks run one at a time).
#
#   CONFORMANCE_VM_HOME=DIR   the CAUSEWAY_HOME holding debian-test (default build/test-home)

: "${CAUSEWAY:=$CF_REPO/build/causeway}"
[[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
CW_VM_DISTRO=debian-test
CW_VM_SRC_HOME=${CONFORMANCE_VM_HOME:-$(dirname "$CAUSEWAY")/test-home}
CW_MODE_ARGS=()
read -r -a CW_EXTRA_ARGS <<< "${CONFORMANCE_CAUSEWAY_ARGS:-}"
CW_TARGET_LABEL="causeway (VM, NAT mode, Debian)"

target_check_env() {
    if [[ ! -x $CAUSEWAY ]]; then
        echo "causeway binary not found at $CAUSEWAY (cmake --build --preset release)"
        return 1
    fi
    if [[ ! -f $CW_VM_SRC_HOME/data/distros/$CW_VM_DISTRO/rootfs.ext4 ]]; then
        echo "no $CW_VM_DISTRO distribution in $CW_VM_SRC_HOME (make it: scripts/test-distro.sh)"
        return 1
    fi
    command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"; return 1; }
}

target_version() {
    printf '%s: %s (%s)' "$CW_TARGET_LABEL" "$CAUSEWAY" \
        "$(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || echo 'version unknown')"
}

target_mode_unavailable() { return 1; }

target_promises() {
    case $1 in
        dhcp) echo "the guest agent configures the VM's network (no DHCP client in the distribution)"; return 1 ;;
        ipv6|icmp|host_loopback|dns|dns_tcp|dns_follow|dns_local_zone) return 0 ;;
        auto_forward|auto_forward_udp|port_conflict_report|publish|publish_udp) return 0 ;;
        mirrored) echo "a mirrored-mode check; this target is NAT mode (causeway-vm-mirrored runs it)"; return 1 ;;
        *) echo "causeway: unknown feature $1"; return 1 ;;
    esac
}

target_note() { return 0; }

CW_HOME=""
TARGET_IFNAME=eth0
TARGET_GW4=10.0.2.2
TARGET_GW6=fd00::2
TARGET_MTU=16384
TARGET_CTL=""

# _cw_vm CMD...: causeway with this check's home, in the host's namespaces, in the foreground
_cw_vm() { "${CF_HOST_EXEC[@]}" env CAUSEWAY_HOME="$CW_HOME" "$CAUSEWAY" "$@"; }

# _cw_vm_push PATH...: copies host files into the guest at the same paths
_cw_vm_push() {
    (( $# )) || return 0
    tar -C / -cf - "${@#/}" 2>/dev/null | _cw_vm run -d "$CW_VM_DISTRO" -u root -- tar -C / -xf -
}

# _cw_vm_files ARG...: the arguments that are host files the guest needs (under CF_TMP)
_cw_vm_files() {
    local a
    for a in "$@"; do [[ $a == "$CF_TMP"/* && -f $a ]] && printf '%s\n' "$a"; done
    return 0
}

target_start() {
    local args=() p proto rest
    cf_host_up || return 1
    CW_HOME=$CF_TMP/cwhome
    mkdir -p "$CW_HOME/data/distros"
    ln -sfn "$CW_VM_SRC_HOME/data/distros/$CW_VM_DISTRO" "$CW_HOME/data/distros/$CW_VM_DISTRO"
    while (( $# > 0 )); do
        case $1 in
            --publish)
                p=$2; shift 2
                proto=${p%%:*}; rest=${p#*:}
                args+=(-p "$rest/$proto") ;;
            --control)  # a distribution's VM always has one, in its runtime directory
                TARGET_CTL=$CW_HOME/run/instances/$CW_VM_DISTRO/control.sock
                shift ;;
            *) echo "causeway-vm adapter: unknown start option $1" >&2; return 1 ;;
        esac
    done
    # The first run boots the VM (the instance daemon keeps it; its log is the engine log);
    # it also puts the suite's guest-side tools where the checks name them.
    if ! _cw_vm run -d "$CW_VM_DISTRO" "${CW_MODE_ARGS[@]}" "${CW_EXTRA_ARGS[@]}" "${args[@]}" -u root -- \
            sh -c 'mkdir -p "$1" "$2" && tar -C / -xf -' sh "$CF_LIB" "$CF_TMP" \
            < <(tar -C / -cf - "${CF_LIB#/}") > "$CF_TMP/engine.log" 2>&1; then
        echo "causeway run -d $CW_VM_DISTRO failed: $(tail -n 1 "$CF_TMP/engine.log")" >&2
        return 1
    fi
    local state=$CW_HOME/run/instances/$CW_VM_DISTRO/state.json pid
    pid=$(jq -r .pid "$state" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && cf_track "$pid"
    if [[ -n $TARGET_CTL ]] && ! bench_wait_for 5 test -S "$TARGET_CTL"; then
        echo "no control socket at $TARGET_CTL within 5 s" >&2
        return 1
    fi
}

# guest_exec SECONDS CMD...: runs CMD in the guest, killed after SECONDS; its stdout, stderr
# and exit status (124 on timeout, as timeout(1))
guest_exec() {
    local secs=$1; shift
    local files
    mapfile -t files < <(_cw_vm_files "$@")
    _cw_vm_push "${files[@]}" || return 125
    timeout -k 2 $((secs + 10)) "${CF_HOST_EXEC[@]}" env CAUSEWAY_HOME="$CW_HOME" "$CAUSEWAY" \
        run -d "$CW_VM_DISTRO" -u root -- timeout -k 1 "$secs" "$@" < /dev/null
}

# guest_spawn CMD...: starts CMD in the guest in the background (a joining causeway run on the
# host: killing it stops CMD); CF_SPAWNED = its PID, CF_SPAWN_LOG = CMD's stdout and stderr
guest_spawn() {
    local files
    mapfile -t files < <(_cw_vm_files "$@")
    _cw_vm_push "${files[@]}" || return 1
    CF_SPAWN_LOG=$CF_TMP/guest-spawn.${EPOCHREALTIME/./}.log
    "${CF_HOST_EXEC[@]}" env CAUSEWAY_HOME="$CW_HOME" "$CAUSEWAY" run -d "$CW_VM_DISTRO" -u root -- "$@" \
        < /dev/null > "$CF_SPAWN_LOG" 2>&1 &
    CF_SPAWNED=$!
    cf_track "$CF_SPAWNED"
}

guest_kill() { cf_kill "$1"; }

# No network namespace to enter: the guest is a VM (diagnostics that nsenter it get nothing).
guest_netns() { printf '/nonexistent/vm-guest-has-no-netns'; }

# A ready file: a host server's is on the host (cf_host_server waits with this too), a guest
# server's on the guest's disk.
_cw_vm_ready() { test -s "$1" || guest_exec 3 test -s "$1"; }
cf_guest_ready() { bench_wait_for "${2:-5}" _cw_vm_ready "$1"; }

target_stop() {
    [[ -n $CW_HOME ]] || return 0
    timeout -k 2 30 "${CF_HOST_EXEC[@]}" env CAUSEWAY_HOME="$CW_HOME" "$CAUSEWAY" terminate "$CW_VM_DISTRO" \
        >> "$CF_TMP/engine.log" 2>&1 || true
    CW_HOME=""
}

target_cleanup() { target_stop; }
