# shellcheck shell=bash
# auto_forward_v6_loopback_only
# A user expects: a guest server bound to [::1] only answers on the host's [::1]:P, within a
# second, unconfigured.
# Why: the IPv6 twin of auto_forward_loopback_only — dev servers that default to "localhost"
# bind ::1 first on many systems (Node.js ≥ 17 among them).
CHECK_SUMMARY="guest server bound to [::1]:P only answers on host [::1]:P within 1 s"

check_main() {
    cf_require auto_forward
    local port=22008 out
    cf_start_or_fail
    cf_guest_server tcp ::1 "$port" guest-lo6
    out=$(cf_host_probe tcp ::1 "$port" guest-lo6 3 --since "$CF_READY") ||
        cf_fail "host [::1]:$port did not reach the guest's [::1]:$port within 3 s: $out"
    (( out <= 1000 )) || cf_fail "reachable only $out ms after the guest server listened (> 1000)"
    cf_pass "$out ms after listen()"
}
