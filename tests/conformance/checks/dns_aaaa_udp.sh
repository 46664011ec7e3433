# shellcheck shell=bash
# dns_aaaa_udp
# A user expects: AAAA queries work like A queries (dual-stack software asks for both; a proxy
# that drops or mangles AAAA makes clients stall or fall back slowly).
# Why: see dns_a_udp; the transport to the guest is IPv4 here, only the record type differs.
CHECK_SUMMARY="AAAA query over UDP from the guest returns the host resolver's answer"

check_main() {
    cf_require dns
    cf_start_or_fail
    local out
    out=$(cf_dig AAAA "$CF_NAME")
    [[ $out == "$CF_ADDR1_AAAA" ]] || cf_fail "dig AAAA $CF_NAME gave '${out//$'\n'/ }', expected $CF_ADDR1_AAAA"
    cf_pass "$CF_NAME -> $out"
}
