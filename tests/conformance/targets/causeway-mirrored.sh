# shellcheck shell=bash
# Target adapter: causeway, mirrored mode, network-namespace attachment.
#
# The same as causeway-nat (same agent, same options) plus `--mode mirrored`.  Until causeway
# accepts that option, target_mode_unavailable says so and the runner reports every check n/a
# ("mode not available") without starting anything.  When the mode lands, the mirrored checks
# run for real: in mirrored mode the guest's addresses, routes and MTU are the host's, so the
# gateway is read from the guest instead of assumed to be 10.0.2.2.
#
# Promises follow the README's mirrored-mode section: the host's links, global addresses,
# routes and MTU; the guest's traffic through host sockets; the host's loopback at 10.0.2.2 on
# an internal link (tap0, address of link scope, no default route) that also carries DNS.

# shellcheck source=causeway-nat.sh
. "$CF_DIR/targets/causeway-nat.sh"

CW_MODE_ARGS=(--mode mirrored)
CW_TARGET_LABEL="causeway (mirrored mode)"

# prints why the mode is unavailable (and returns 0), or returns 1 when causeway accepts it.
# The probe runs `causeway netns --mode mirrored -- true` in a throwaway network namespace
# (unshare: nothing of this machine's network is touched); a usage error (status 2) is "no".
target_mode_unavailable() {
    local out rc=0
    out=$(timeout -k 2 10 unshare --net -- "$CAUSEWAY" netns --mode mirrored -- true 2>&1) || rc=$?
    if (( rc == 2 )); then
        printf 'mode not available: `causeway netns --mode mirrored` is rejected (%s)' \
            "$(printf '%s\n' "$out" | grep -v '^causeway: info' | head -n 1)"
        return 0
    fi
    return 1
}

target_promises() {
    case $1 in
        dhcp) echo "mirrored links carry the host's addresses; there is no DHCP on them"; return 1 ;;
        mirrored|ipv6|icmp|host_loopback|dns|dns_tcp|dns_follow|dns_local_zone) return 0 ;;
        auto_forward|auto_forward_udp|port_conflict_report|publish|publish_udp) return 0 ;;
        *) echo "causeway: unknown feature $1"; return 1 ;;
    esac
}

eval "_cw_nat_$(declare -f target_start)"

# The host's loopback is 10.0.2.2 on causeway's internal link in mirrored mode too (the
# mirrored default gateway is the real one, which is not the host).
cf_gw_host_loopback() { printf '10.0.2.2'; }

target_start() {
    _cw_nat_target_start "$@" || return 1
    # mirrored: the guest's own default gateway, whatever the host's is
    local gw
    gw=$(ip -n "$CF_HOST" -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "via") {print $(i + 1); exit}}')
    TARGET_GW4=${gw:-$TARGET_GW4}
    TARGET_MTU=$(ip -n "$CF_HOST" -o link show uplink0 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") {print $(i + 1); exit}}')
    # the mirrored link the guest's default route uses (tap0 is causeway's internal link)
    local i
    for i in $(seq 50); do
        TARGET_IFNAME=$(nsenter --net="$(guest_netns)" ip -4 route show default 2>/dev/null |
            awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
        [[ -n $TARGET_IFNAME ]] && break
        sleep 0.1
    done
}
