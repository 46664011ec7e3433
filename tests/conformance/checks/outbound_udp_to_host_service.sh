# shellcheck shell=bash
# outbound_udp_to_host_service
# A user expects: a UDP service on the host's loopback (a local DNS cache, a metrics agent)
# answers the guest through the gateway address, replies included.
# Why: see outbound_tcp_to_host_service; UDP takes a different path through every engine.
CHECK_SUMMARY="guest reaches a host service on 127.0.0.1 via the gateway (UDP, with reply)"

check_main() {
    cf_require host_loopback
    local port=21002 out
    cf_host_server udp 127.0.0.1 "$port" host-udp-ok || cf_fail "could not start the host service"
    cf_start_or_fail
    out=$(cf_guest_probe udp "$(cf_gw_host_loopback)" "$port" host-udp-ok 3) ||
        cf_fail "guest -> $(cf_gw_host_loopback):$port/udp: ${out:-no answer}"
    cf_pass "via $(cf_gw_host_loopback):$port/udp in $out ms"
}
