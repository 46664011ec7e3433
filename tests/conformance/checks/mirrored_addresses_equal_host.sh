# shellcheck shell=bash
# mirrored_addresses_equal_host
# A user expects (mirrored mode): the guest has exactly the host's global addresses, IPv4 and
# IPv6 — a server in the guest is reachable on the host's address, and tools that print "my
# address" agree inside and out.
# Why: the promise of WSL's mirrored networking that causeway's mirrored mode follows.
# n/a for NAT-only targets.
CHECK_SUMMARY="mirrored: the guest's global addresses equal the host's"

check_main() {
    cf_require mirrored
    cf_start_or_fail
    local host guest
    host=$(cf_host ip -o addr show scope global | awk '{print $4}' | sort | tr '\n' ' ')
    guest=$(guest_exec 5 ip -o addr show scope global | awk '{print $4}' | sort | tr '\n' ' ')
    [[ -n $host ]] || cf_fail "the host namespace has no global address (setup problem)"
    [[ $guest == "$host" ]] || cf_fail "host: ${host% }; guest: ${guest% }"
    cf_pass "${host% }"
}
