# shellcheck shell=bash
# mirrored_routes_equal_host
# A user expects (mirrored mode): the guest's default routes (IPv4 and IPv6) have the host's
# gateways, so traffic leaves the way the host's does.
# Why: see mirrored_addresses_equal_host.  n/a for NAT-only targets.
CHECK_SUMMARY="mirrored: the guest's default routes have the host's gateways"

check_main() {
    cf_require mirrored
    cf_start_or_fail
    local host guest f
    f='{for (i = 1; i < NF; i++) if ($i == "via") print $(i + 1)}'
    host=$( { cf_host ip -4 route show default; cf_host ip -6 route show default; } | awk "$f" | sort | tr '\n' ' ')
    guest=$( { guest_exec 5 ip -4 route show default; guest_exec 5 ip -6 route show default; } | awk "$f" | sort | tr '\n' ' ')
    [[ -n $host ]] || cf_fail "the host namespace has no default route (setup problem)"
    [[ $guest == "$host" ]] || cf_fail "host gateways: ${host% }; guest gateways: ${guest% }"
    cf_pass "gateways ${host% }"
}
