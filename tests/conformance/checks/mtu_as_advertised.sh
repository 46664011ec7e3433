# shellcheck shell=bash
# mtu_as_advertised
# A user expects: the guest's link MTU is the one the engine advertises (65520 for all targets
# here unless told otherwise), and a datagram of exactly that size (MTU - 28 bytes of UDP
# payload, "don't fragment" set) really crosses the engine both ways.
# Why: a large MTU is what makes user-mode networking fast; an MTU the engine cannot carry
# shows up as stalls of big transfers, the hardest network bug to diagnose.
CHECK_SUMMARY="link MTU is 65520 and an MTU-sized datagram (DF) makes it to the host and back"

check_main() {
    cf_require host_loopback
    local port=21006 mtu out
    cf_host_up || cf_fail "could not build the host namespace"
    cf_host_spawn "$CF_PY" "$CF_LIB/cfnet.py" serve-udp --bind 127.0.0.1 --port "$port" --echo \
        --ready "$CF_TMP/echo.ready"
    cf_guest_ready "$CF_TMP/echo.ready" || cf_fail "could not start the host's UDP echo service"
    cf_start_or_fail
    mtu=$(guest_exec 5 ip -o link show dev "$TARGET_IFNAME" | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") {print $(i + 1); exit}}')
    [[ $mtu == "$TARGET_MTU" ]] || cf_fail "link MTU of $TARGET_IFNAME is ${mtu:-unknown}, expected $TARGET_MTU"
    out=$(guest_exec 10 "$CF_PY" "$CF_LIB/cfnet.py" udp-size --host "$(cf_gw_host_loopback)" \
        --port "$port" --size $((mtu - 28)) --deadline 4 2>&1) ||
        cf_fail "MTU $mtu, but a $((mtu - 28))-byte datagram to $(cf_gw_host_loopback):$port: $out"
    cf_pass "MTU $mtu; $((mtu - 28))-byte datagram echoed"
}
