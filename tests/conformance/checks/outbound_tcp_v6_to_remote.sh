# shellcheck shell=bash
# outbound_tcp_v6_to_remote
# A user expects: on a host with IPv6, the guest connects to IPv6 machines beyond the host too
# (here 2001:db8:ff::10 in the sink namespace, reached through the host's IPv6 default route).
# Why: more and more services are IPv6-first; a guest that has an IPv6 address but cannot use
# it makes clients wait for Happy Eyeballs fallbacks.
CHECK_SUMMARY="guest connects (TCP) over IPv6 to an address beyond the host"

check_main() {
    cf_require ipv6
    local port=21005 out addr ready=$CF_TMP/remote-tcp6.ready
    cf_host_up || cf_fail "could not build the host namespace"
    cf_sink_spawn "$CF_PY" "$CF_LIB/cfnet.py" serve-tcp --bind "$CF_REMOTE6" --port "$port" \
        --reply remote-tcp6-ok --ready "$ready"
    cf_guest_ready "$ready" || cf_fail "could not start the remote service"
    cf_start_or_fail
    addr=$(cf_guest_global6 8) || cf_fail "no usable IPv6 in the guest after 8 s: $addr"
    out=$(cf_guest_probe tcp "$CF_REMOTE6" "$port" remote-tcp6-ok 3) ||
        cf_fail "guest ($addr) -> [$CF_REMOTE6]:$port: ${out:-no answer}"
    cf_pass "from $addr to [$CF_REMOTE6]:$port in $out ms"
}
