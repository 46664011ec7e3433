# shellcheck shell=bash
# auto_forward_loopback_only
# A user expects: a guest server bound to 127.0.0.1 only (the safe default of dev servers,
# databases, Jupyter) is reachable from the host's 127.0.0.1:P as well.
# Why: "localhost in the guest is localhost on the host" is the point of localhost forwarding;
# forwarding only wildcard listeners misses the most common dev-server setting.
CHECK_SUMMARY="guest server bound to 127.0.0.1:P only answers on host 127.0.0.1:P within 1 s"

check_main() {
    cf_require auto_forward
    local port=22003 out
    cf_start_or_fail
    cf_guest_server tcp 127.0.0.1 "$port" guest-lo
    out=$(cf_host_probe tcp 127.0.0.1 "$port" guest-lo 3 --since "$CF_READY") ||
        cf_fail "host 127.0.0.1:$port did not reach the guest's 127.0.0.1:$port within 3 s: $out"
    (( out <= 1000 )) || cf_fail "reachable only $out ms after the guest server listened (> 1000)"
    cf_pass "$out ms after listen()"
}
