# shellcheck shell=bash
# mirrored_link_added_later
# A user expects (mirrored mode): when a link appears on the host after the guest started — a
# VPN connecting — the guest gets its address and route within 2 s, without a restart.
# How: a veth "vpn0" (198.51.100.2/24, peer in the sink namespace) is added to the host
# namespace after the engine started (the host kernel has no dummy links).
# Why: VPNs come and go; WSL's mirrored mode follows them.  n/a for NAT-only targets.
CHECK_SUMMARY="mirrored: a link added on the host later (VPN-like) appears in the guest within 2 s"

check_main() {
    cf_require mirrored
    cf_start_or_fail
    local t0 now ms=""
    ip -n "$CF_HOST" link add vpn0 type veth peer name vpnpeer0 netns "$CF_SINK" ||
        cf_fail "could not add the VPN-like link (setup problem)"
    ip -n "$CF_SINK" link set vpnpeer0 up
    t0=$(date +%s%N)
    ip -n "$CF_HOST" addr add 198.51.100.2/24 dev vpn0
    ip -n "$CF_HOST" link set vpn0 up
    while true; do
        now=$(date +%s%N)
        if guest_exec 3 ip -4 -o addr show | grep -q ' 198\.51\.100\.2/24 ' &&
           guest_exec 3 ip -4 route show 198.51.100.0/24 | grep -q .; then
            ms=$(( (now - t0) / 1000000 )); break
        fi
        (( now - t0 > 5000000000 )) && break
        sleep 0.1
    done
    [[ -n $ms ]] || cf_fail "198.51.100.2/24 and its route not in the guest 5 s after the link appeared on the host"
    (( ms <= 2000 )) || cf_fail "mirrored only after $ms ms (> 2000)"
    cf_pass "mirrored after $ms ms"
}
