# shellcheck shell=bash
# manual_publish_udp
# A user expects: a UDP port published at start (causeway -p 22053:22054/udp, pasta -u,
# slirp4netns add_hostfwd udp) reaches the guest's UDP server, and its replies come back.
# Why: DNS, syslog, game and VoIP servers in a guest are reached this way.  (The guest port is
# one the host does not use: pasta's default -U auto would otherwise bind it in the guest.)
CHECK_SUMMARY="published UDP port on host 127.0.0.1 reaches the guest and replies return"

check_main() {
    cf_require publish_udp
    local hp=22053 gp=22054 out
    cf_start_or_fail --publish "udp:$hp:$gp"
    cf_guest_server udp 0.0.0.0 "$gp" guest-udp-published
    out=$(cf_host_probe udp 127.0.0.1 "$hp" guest-udp-published 3) ||
        cf_fail "127.0.0.1:$hp/udp: $out"
    cf_pass "127.0.0.1:$hp/udp -> guest :$gp/udp in $out ms"
}
