# shellcheck shell=bash
# Target adapter: causeway, mirrored mode, a VM running a Debian distribution
# (`causeway run -d debian-test --mode mirrored`).
#
# The same as causeway-vm plus mirrored mode on the VM's first start (the instance keeps its
# mode for its life). In mirrored mode the guest's links, addresses, routes and MTU are the
# host's: the default gateway and the interface that carries it are read from the guest; the
# host's loopback stays at 10.0.2.2 on eth0, the internal link that also carries DNS.

# shellcheck source=causeway-vm.sh
. "$CF_DIR/targets/causeway-vm.sh"

CW_MODE_ARGS=(--mode mirrored)
CW_TARGET_LABEL="causeway (VM, mirrored mode, Debian)"

target_promises() {
    case $1 in
        dhcp) echo "mirrored links carry the host's addresses; there is no DHCP on them"; return 1 ;;
        mirrored|ipv6|icmp|host_loopback|dns|dns_tcp|dns_follow|dns_local_zone) return 0 ;;
        auto_forward|auto_forward_udp|port_conflict_report|publish|publish_udp) return 0 ;;
        *) echo "causeway: unknown feature $1"; return 1 ;;
    esac
}

target_note() {
    case $1 in
        mirrored_mtu_equal_host) printf "a VM's mirrored links are macvlans on its virtio-net, whose MTU (16384 by default, --mtu) bounds theirs: a larger host MTU is mirrored clamped (README, Limits)" ;;
    esac
}

eval "_cw_vm_nat_$(declare -f target_start)"

cf_gw_host_loopback() { printf '10.0.2.2'; }

target_start() {
    _cw_vm_nat_target_start "$@" || return 1
    local gw i
    gw=$(ip -n "$CF_HOST" -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "via") {print $(i + 1); exit}}')
    TARGET_GW4=${gw:-$TARGET_GW4}
    TARGET_MTU=$(ip -n "$CF_HOST" -o link show uplink0 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "mtu") {print $(i + 1); exit}}')
    # the mirrored link the guest's default route uses (eth0 is causeway's internal link)
    for i in $(seq 50); do
        TARGET_IFNAME=$(guest_exec 3 ip -4 route show default 2>/dev/null |
            awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
        [[ -n $TARGET_IFNAME ]] && break
        sleep 0.1
    done
}
