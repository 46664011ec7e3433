# shellcheck shell=bash
# auto_forward_udp
# A user expects: a UDP server started in the guest (port 22004, outside the ephemeral range)
# answers on the host's 127.0.0.1:P within a second, replies included, unconfigured.
# Why: game servers, DNS servers, syslog and QUIC dev servers are UDP; WSL forwards TCP only,
# causeway promises both.
CHECK_SUMMARY="guest UDP server on 0.0.0.0:P answers on host 127.0.0.1:P within 1 s, unconfigured"

check_main() {
    cf_require auto_forward_udp
    local port=22004 out
    cf_start_or_fail
    cf_guest_server udp 0.0.0.0 "$port" guest-udp
    out=$(cf_host_probe udp 127.0.0.1 "$port" guest-udp 3 --since "$CF_READY") ||
        cf_fail "host 127.0.0.1:$port/udp got no answer from the guest within 3 s: $out"
    (( out <= 1000 )) || cf_fail "answered only $out ms after the guest server bound (> 1000)"
    cf_pass "$out ms after bind()"
}
