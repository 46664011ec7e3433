# shellcheck shell=bash
# icmp_echo_gateway
# A user expects: `ping GATEWAY` answers — the first thing anyone types to see whether the
# network is up.
# Why: an engine that silently drops ICMP makes a working network look broken.  (The host
# namespace allows ICMP sockets to every group, as systemd sets up desktops, so engines that
# relay pings through host ICMP sockets can.)
CHECK_SUMMARY="ping to the guest's gateway is answered"

check_main() {
    cf_require icmp
    cf_start_or_fail
    local out
    out=$(guest_exec 6 ping -n -c 3 -i 0.2 -W 1 "$TARGET_GW4" 2>&1)
    if ! grep -Eq '[1-9][0-9]* (packets )?received' <<< "$out"; then
        cf_fail "no echo reply from $TARGET_GW4 ($(printf '%s' "$out" | grep -E 'received|unreachable|not permitted' | head -n 1))"
    fi
    cf_pass "$TARGET_GW4: $(grep -o '[0-9]* received' <<< "$out")"
}
