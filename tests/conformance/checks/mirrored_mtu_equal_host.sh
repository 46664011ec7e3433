# shellcheck shell=bash
# mirrored_mtu_equal_host
# A user expects (mirrored mode): the guest's interface that carries the host's address has the
# host interface's MTU.
# Why: a mirrored link with a different MTU fragments or black-holes large packets on paths
# the host handles fine.  n/a for NAT-only targets.
CHECK_SUMMARY="mirrored: the guest link with the host's address has the host link's MTU"

check_main() {
    cf_require mirrored
    cf_start_or_fail
    local addr hmtu gif gmtu
    addr=$(cf_host ip -4 -o addr show dev uplink0 scope global | awk '{split($4, x, "/"); print x[1]; exit}')
    hmtu=$(cf_host ip -o link show dev uplink0 | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") {print $(i + 1); exit}}')
    gif=$(guest_exec 5 ip -4 -o addr show | awk -v a="$addr" '{split($4, x, "/"); if (x[1] == a) {print $2; exit}}')
    [[ -n $gif ]] || cf_fail "no guest interface has the host's address $addr"
    gmtu=$(guest_exec 5 ip -o link show dev "$gif" | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") {print $(i + 1); exit}}')
    [[ $gmtu == "$hmtu" ]] || cf_fail "host uplink0 MTU $hmtu, guest $gif MTU ${gmtu:-unknown}"
    cf_pass "MTU $hmtu on $gif"
}
