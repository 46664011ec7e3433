# shellcheck shell=bash
# outbound_tcp_to_remote
# A user expects: the guest connects to machines beyond the host (here 203.0.113.10, which the
# host reaches through its uplink — it lives in the sink namespace), as the host would.
# Why: the main job of user-mode NAT: outbound connections made from host sockets.
CHECK_SUMMARY="guest connects (TCP) to an address the host reaches through its uplink"

check_main() {
    local port=21003 out ready=$CF_TMP/remote-tcp.ready
    cf_host_up || cf_fail "could not build the host namespace"
    cf_sink_spawn "$CF_PY" "$CF_LIB/cfnet.py" serve-tcp --bind "$CF_REMOTE4" --port "$port" \
        --reply remote-tcp-ok --ready "$ready"
    cf_guest_ready "$ready" || cf_fail "could not start the remote service"
    cf_start_or_fail
    out=$(cf_guest_probe tcp "$CF_REMOTE4" "$port" remote-tcp-ok 3) ||
        cf_fail "guest -> $CF_REMOTE4:$port: ${out:-no answer}"
    cf_pass "$CF_REMOTE4:$port in $out ms"
}
