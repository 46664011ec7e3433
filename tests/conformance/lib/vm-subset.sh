# shellcheck shell=bash
# The conformance suite's VM subset: which checks run against `causeway run` (--attach vm), and
# why the others are n/a.  Sourced by scripts/conformance.sh and lib/vm-batch.sh.
#
# A boot costs ~3-4 s under TCG, so the subset runs in ONE boot (lib/vm-batch.sh on the host,
# lib/vm-guest.sh in the guest) with only what the default busybox guest has: ip, ping,
# nslookup, wget, httpd, udhcpc.  The netns checks' guest tools (python3's cfnet.py, dig) are
# not in the image, so the VM versions are re-statements of the same expectations with busybox
# tools; each verdict's note says what was measured.

# In the order they are evaluated (the guest's; the host's auto-forward probes run alongside).
CF_VM_SUBSET=(
    address_and_default_route
    icmp_echo_gateway
    icmp_echo_remote
    dns_a_udp
    dns_aaaa_udp
    dns_local_zone
    outbound_tcp_to_host_service
    mtu_as_advertised
    ipv6_address
    dhcp_lease_and_default_route
    auto_forward_tcp_v4
    auto_forward_loopback_only
)

# Ports: the same as the netns checks use.
CF_VM_HOST_PORT=21001      # outbound_tcp_to_host_service: busybox httpd on the host's 127.0.0.1
CF_VM_FWD_ANY=22001        # auto_forward_tcp_v4: guest httpd on 0.0.0.0
CF_VM_FWD_LO=22003         # auto_forward_loopback_only: guest httpd on 127.0.0.1
CF_VM_MTU=16384            # causeway run's VM default (README, Limits)

cf_vm_in_subset() {
    local c
    for c in "${CF_VM_SUBSET[@]}"; do [[ $c == "$1" ]] && return 0; done
    return 1
}

# cf_vm_na_reason CHECK: why CHECK is n/a in the VM attachment
cf_vm_na_reason() {
    case $1 in
        mirrored_*)
            echo "a mirrored-mode check; the VM target runs NAT mode (e2e.vm_mirror tests mirrored mode in a VM)" ;;
        dns_tcp|dns_all_resolv_conf_servers)
            echo "not in the VM subset: needs DNS queries over TCP (dig); the busybox guest's nslookup speaks UDP only" ;;
        dns_follows_host_change|dns_follows_host_change_rename)
            echo "not in the VM subset: needs dig in the guest and a host resolv.conf change timed during the boot" ;;
        auto_forward_tcp_v6|auto_forward_v6_loopback_only|auto_forward_udp|auto_forward_removed_after_exit|auto_forward_conflict_then_free|port_conflict_reported)
            echo "not in the VM subset: needs the exact, bounded servers of cfnet.py (python3) in the guest; the busybox guest has none (auto_forward_tcp_v4 and auto_forward_loopback_only cover VM forwarding)" ;;
        manual_publish_v4_v6|manual_publish_udp)
            echo "not in the VM subset: needs cfnet.py (python3) in the guest; causeway run -p into a VM is exercised by scripts/bench-vm.sh (host->guest rows)" ;;
        outbound_*|icmp_*)
            echo "not in the VM subset: needs cfnet.py (python3) in the guest for exact TCP/UDP probes" ;;
        *)
            echo "not in the VM subset (lib/vm-subset.sh)" ;;
    esac
}
