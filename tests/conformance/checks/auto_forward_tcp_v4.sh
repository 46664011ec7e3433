# shellcheck shell=bash
# auto_forward_tcp_v4
# A user expects: start a server in the guest on 0.0.0.0:P and open http://127.0.0.1:P on the
# host — it answers, with no port configuration, within a second of the server listening.
# Why: the WSL2 experience ("localhost forwarding") that causeway promises for namespaces;
# pasta's -t auto aims at the same.
CHECK_SUMMARY="guest server on 0.0.0.0:P answers on host 127.0.0.1:P within 1 s, unconfigured"

check_main() {
    cf_require auto_forward
    local port=22001 out
    cf_start_or_fail
    cf_guest_server tcp 0.0.0.0 "$port" guest-v4
    out=$(cf_host_probe tcp 127.0.0.1 "$port" guest-v4 3 --since "$CF_READY") ||
        cf_fail "host 127.0.0.1:$port did not reach the guest within 3 s: $out"
    (( out <= 1000 )) || cf_fail "reachable only $out ms after the guest server listened (> 1000)"
    cf_pass "$out ms after listen()"
}
