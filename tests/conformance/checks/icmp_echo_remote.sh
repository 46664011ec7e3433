# shellcheck shell=bash
# icmp_echo_remote
# A user expects: `ping` to a machine beyond the host answers (here 203.0.113.10 in the sink
# namespace), as on the host.
# Why: ping is the universal reachability test; see icmp_echo_gateway for the host's ICMP
# socket setting.
CHECK_SUMMARY="ping to an address beyond the host is answered"

check_main() {
    cf_require icmp
    cf_host_up || cf_fail "could not build the host namespace"
    cf_start_or_fail
    local out
    out=$(guest_exec 6 ping -n -c 3 -i 0.2 -W 1 "$CF_REMOTE4" 2>&1)
    if ! grep -Eq '[1-9][0-9]* (packets )?received' <<< "$out"; then
        cf_fail "no echo reply from $CF_REMOTE4 ($(printf '%s' "$out" | grep -E 'received|unreachable|not permitted' | head -n 1))"
    fi
    cf_pass "$CF_REMOTE4: $(grep -o '[0-9]* received' <<< "$out")"
}
