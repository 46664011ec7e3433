# shellcheck shell=bash
# outbound_udp_to_remote
# A user expects: UDP to machines beyond the host works, replies included (NTP, DNS to a
# specific server, QUIC).
# Why: see outbound_tcp_to_remote.
CHECK_SUMMARY="guest exchanges UDP with an address the host reaches through its uplink"

check_main() {
    local port=21004 out ready=$CF_TMP/remote-udp.ready
    cf_host_up || cf_fail "could not build the host namespace"
    cf_sink_spawn "$CF_PY" "$CF_LIB/cfnet.py" serve-udp --bind "$CF_REMOTE4" --port "$port" \
        --reply remote-udp-ok --ready "$ready"
    cf_guest_ready "$ready" || cf_fail "could not start the remote service"
    cf_start_or_fail
    out=$(cf_guest_probe udp "$CF_REMOTE4" "$port" remote-udp-ok 3) ||
        cf_fail "guest -> $CF_REMOTE4:$port/udp: ${out:-no answer}"
    cf_pass "$CF_REMOTE4:$port/udp in $out ms"
}
