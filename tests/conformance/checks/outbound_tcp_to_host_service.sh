# shellcheck shell=bash
# outbound_tcp_to_host_service
# A user expects: a service listening on the host's loopback only (127.0.0.1:P — a dev
# database, a local proxy) is reachable from the guest through the gateway address.
# Why: the documented slirp behaviour every engine here offers (causeway and slirp4netns:
# 10.0.2.2; pasta: its gateway address, mapped to the host's loopback).
CHECK_SUMMARY="guest reaches a host service on 127.0.0.1 via the gateway (TCP)"

check_main() {
    cf_require host_loopback
    local port=21001 out
    cf_host_server tcp 127.0.0.1 "$port" host-tcp-ok || cf_fail "could not start the host service"
    cf_start_or_fail
    out=$(cf_guest_probe tcp "$(cf_gw_host_loopback)" "$port" host-tcp-ok 3) ||
        cf_fail "guest -> $(cf_gw_host_loopback):$port: ${out:-no answer}"
    cf_pass "via $(cf_gw_host_loopback):$port in $out ms"
}
