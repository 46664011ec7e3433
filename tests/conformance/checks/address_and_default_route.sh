# shellcheck shell=bash
# address_and_default_route
# A user expects: as soon as the engine is up, the guest has an IPv4 address on its interface
# and an IPv4 default route — programs can connect without running a DHCP client first.
# Why: `causeway netns -- COMMAND` (like pasta --config-net, slirp4netns --configure) promises
# a configured namespace; COMMAND often starts networking at once.
CHECK_SUMMARY="guest has an IPv4 address and a default route as soon as the engine is up"

check_main() {
    cf_start_or_fail
    local addr route
    addr=$(guest_exec 5 ip -4 -o addr show dev "$TARGET_IFNAME" scope global | awk '{print $4; exit}')
    [[ -n $addr ]] || cf_fail "no IPv4 address on $TARGET_IFNAME"
    route=$(guest_exec 5 ip -4 route show default | head -n 1)
    [[ $route == *" via "* ]] || cf_fail "no IPv4 default route (routes: $(guest_exec 5 ip -4 route | tr '\n' ';'))"
    route=${route%% proto*}; cf_pass "$addr on $TARGET_IFNAME, ${route% }"
}
