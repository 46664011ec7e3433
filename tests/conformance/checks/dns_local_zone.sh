# shellcheck shell=bash
# dns_local_zone
# A user expects: the guest can name the host — host.causeway.internal resolves to the address
# that reaches the host (10.0.2.2 / fd00::2 in NAT mode), without asking any upstream.
# Why: configuration inside the guest (a database URL, a proxy setting) should not hard-code
# the engine's addressing.  causeway's own promise; n/a for engines without a local zone.
CHECK_SUMMARY="host.causeway.internal resolves (A and AAAA) to the address that reaches the host"

check_main() {
    cf_require dns_local_zone
    cf_start_or_fail
    local a aaaa
    a=$(cf_dig A host.causeway.internal)
    [[ $a == "$(cf_gw_host_loopback)" ]] ||
        cf_fail "A host.causeway.internal gave '${a//$'\n'/ }', expected $(cf_gw_host_loopback) (the host's loopback)"
    aaaa=$(cf_dig AAAA host.causeway.internal)
    [[ -n ${TARGET_GW6:-} && $aaaa == "$TARGET_GW6" ]] ||
        cf_fail "AAAA host.causeway.internal gave '${aaaa//$'\n'/ }', expected ${TARGET_GW6:-an address}"
    cf_pass "host.causeway.internal -> $a, $aaaa"
}
