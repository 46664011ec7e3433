# shellcheck shell=bash
# dhcp_lease_and_default_route
# A user expects: a DHCP client in the guest (busybox udhcpc, as in a minimal VM image or a
# container that runs its own DHCP client) gets a lease with an address and a router, and
# applying it leaves a working default route.
# Why: VM guests configure themselves by DHCP; the namespace attachment serves the same DHCP so
# one guest image works both ways.  n/a where the target serves no DHCP.
CHECK_SUMMARY="busybox udhcpc gets a lease (address + router) and a default route"

check_main() {
    cf_require dhcp
    cf_start_or_fail
    local script=$CF_TMP/udhcpc.sh lease=$CF_TMP/lease.env out rc=0
    cat > "$script" <<SCRIPT
#!/bin/sh
# udhcpc calls this with \$1 = deconfig | bound | renew | nak | leasefail
case "\$1" in
    bound|renew)
        { echo "ip=\$ip"; echo "mask=\${mask:-}"; echo "subnet=\${subnet:-}"; echo "router=\$router"
          echo "dns=\${dns:-}"; echo "mtu=\${mtu:-}"; } > "$lease.tmp" && mv "$lease.tmp" "$lease"
        ip -4 addr flush dev "\$interface"
        ip -4 addr add "\$ip/\${mask:-24}" dev "\$interface"
        set -- \$router
        ip -4 route replace default via "\$1" dev "\$interface"
        ;;
esac
exit 0
SCRIPT
    chmod +x "$script"
    out=$(guest_exec 15 busybox udhcpc -i "$TARGET_IFNAME" -f -q -n -t 4 -T 1 -s "$script" 2>&1) || rc=$?
    if [[ ! -s $lease ]]; then
        cf_fail "no lease (udhcpc status $rc: $(printf '%s' "$out" | tail -n 1))"
    fi
    local ip="" router="" dns="" mtu="" route
    # shellcheck source=/dev/null
    . "$lease"
    [[ -n $ip ]] || cf_fail "lease without an address"
    [[ -n $router ]] || cf_fail "lease $ip without a router option"
    route=$(guest_exec 5 ip -4 route show default | head -n 1)
    [[ $route == *"via ${router%% *}"* ]] || cf_fail "lease $ip router $router, but no default route via it afterwards ($route)"
    cf_pass "lease $ip, router $router, dns ${dns:-none}, mtu ${mtu:-not sent}"
}
