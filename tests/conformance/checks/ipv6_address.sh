# shellcheck shell=bash
# ipv6_address
# A user expects: on a host with IPv6, the guest gets a global IPv6 address (SLAAC or
# configured by the engine) and an IPv6 default route within a few seconds.
# Why: dual-stack software assumes it; see outbound_tcp_v6_to_remote for using it.
CHECK_SUMMARY="guest gets a global IPv6 address and an IPv6 default route (SLAAC or configured)"

check_main() {
    cf_require ipv6
    cf_start_or_fail
    local addr t0
    t0=$(date +%s%N)
    addr=$(cf_guest_global6 8) || cf_fail "after 8 s: $addr"
    cf_pass "$addr, $(( ($(date +%s%N) - t0) / 1000000 )) ms after the engine was up"
}
