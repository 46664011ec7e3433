# shellcheck shell=bash
# dns_a_udp
# A user expects: name resolution works in the guest out of the box — `dig NAME` (UDP, the
# guest's own /etc/resolv.conf) returns the A record the host's resolver returns.
# Why: nothing works without DNS; the engine forwards the guest's queries to the host's
# resolver (here a dnsmasq on the host's loopback, which the guest cannot reach directly).
CHECK_SUMMARY="A query over UDP from the guest returns the host resolver's answer"

check_main() {
    cf_require dns
    cf_start_or_fail
    local out
    out=$(cf_dig A "$CF_NAME")
    [[ $out == "$CF_ADDR1_A" ]] || cf_fail "dig A $CF_NAME gave '${out//$'\n'/ }', expected $CF_ADDR1_A"
    cf_pass "$CF_NAME -> $out"
}
