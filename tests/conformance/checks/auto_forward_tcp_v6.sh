# shellcheck shell=bash
# auto_forward_tcp_v6
# A user expects: a guest server on [::]:P (dual stack, the default of most servers) answers
# on the host's [::1]:P too, within a second — `localhost` resolves to ::1 first on many hosts.
# Why: a forward on 127.0.0.1 only makes `curl localhost:P` hang or fail on those hosts.
CHECK_SUMMARY="guest server on [::]:P answers on host [::1]:P within 1 s, unconfigured"

check_main() {
    cf_require auto_forward
    local port=22002 out
    cf_start_or_fail
    cf_guest_server tcp :: "$port" guest-v6
    out=$(cf_host_probe tcp ::1 "$port" guest-v6 3 --since "$CF_READY") ||
        cf_fail "host [::1]:$port did not reach the guest within 3 s: $out"
    (( out <= 1000 )) || cf_fail "reachable only $out ms after the guest server listened (> 1000)"
    cf_pass "$out ms after listen()"
}
