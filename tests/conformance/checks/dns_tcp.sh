# shellcheck shell=bash
# dns_tcp
# A user expects: DNS over TCP to the guest's resolver works too.
# Why: resolvers retry over TCP when an answer is truncated (large records, DNSSEC, many
# addresses); glibc with `options use-vc` and tools like `dig +tcp` use it directly.
CHECK_SUMMARY="A query over TCP from the guest returns the host resolver's answer"

check_main() {
    cf_require dns_tcp
    cf_start_or_fail
    local out
    out=$(cf_dig +tcp A "$CF_NAME")
    [[ $out == "$CF_ADDR1_A" ]] || cf_fail "dig +tcp A $CF_NAME gave '${out//$'\n'/ }', expected $CF_ADDR1_A"
    cf_pass "$CF_NAME -> $out over TCP"
}
