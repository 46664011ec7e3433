# shellcheck shell=sh
# vm-guest.sh — the guest side of the conformance suite's VM subset (lib/vm-batch.sh), run in
# ONE boot of the default busybox guest as `causeway run -- sh -c "$(cat vm-guest.sh)" cfvm ARGS`
# (so it needs nothing the image lacks: busybox ip, ping, nslookup, wget, httpd, udhcpc).
#
#   ARGS: HOST_PORT HOST_BODY NAME ADDR_A ADDR_AAAA MTU REMOTE4 FWD_LO_PORT FWD_ANY_PORT
#
# Prints, at column 0 on stdout (the host reads them from causeway run's stdout):
#   CFVM <check> pass|fail <note or reason>   one per check evaluated in the guest
#   CFVM-LISTENING <port>...                  the guest's servers for the auto-forward checks
#                                             listen (the host probes them on its 127.0.0.1)
# then waits (at most 15 s) until the host's service serves /cf-done — the host's signal that
# its probes are over — and exits.  Every step is bounded.  The order matters: the address
# check runs first ("as soon as the engine is up"); udhcpc runs last (it re-applies the lease).
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
HOST_PORT=$1 HOST_BODY=$2 NAME=$3 ADDR_A=$4 ADDR_AAAA=$5 MTU=$6 REMOTE4=$7 FWD_LO=$8 FWD_ANY=$9
IF=eth0

res() { c=$1 v=$2; shift 2; printf "CFVM %s %s %s\n" "$c" "$v" "$(printf "%s" "$*" | tr "\n\t" "  ")"; }

# --- address_and_default_route
addr=$(ip -4 -o addr show dev "$IF" scope global | awk '{print $4; exit}')
route=$(ip -4 route show default | head -n 1)
GW=$(echo "$route" | awk '{for (i = 1; i < NF; i++) if ($i == "via") {print $(i + 1); exit}}')
if [ -z "$addr" ]; then
    res address_and_default_route fail "no IPv4 address on $IF"
elif [ -z "$GW" ]; then
    res address_and_default_route fail "no IPv4 default route (routes: $(ip -4 route | tr '\n' ';'))"
else
    res address_and_default_route pass "$addr on $IF, default via $GW"
fi
GW=${GW:-10.0.2.2}

# --- servers for the auto-forward checks (the host probes its own 127.0.0.1 while we go on)
listening() { # PORT: a TCP socket listens on PORT (IPv4 or IPv6 table; 0A = LISTEN)
    grep -q ":$(printf '%04X' "$1") [0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
mkdir -p /tmp/www-lo /tmp/www-any
echo guest-lo > /tmp/www-lo/index.html
echo guest-any > /tmp/www-any/index.html
httpd -f -p "127.0.0.1:$FWD_LO" -h /tmp/www-lo &
httpd -f -p "0.0.0.0:$FWD_ANY" -h /tmp/www-any &
i=0
while { ! listening "$FWD_LO" || ! listening "$FWD_ANY"; } && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "CFVM-LISTENING $FWD_LO $FWD_ANY"

# --- icmp_echo_gateway, icmp_echo_remote
for pair in "icmp_echo_gateway $GW" "icmp_echo_remote $REMOTE4"; do
    # shellcheck disable=SC2086  # two words: check name and address
    set -- $pair
    out=$(timeout 6 ping -c 3 -i 0.2 -W 2 "$2" 2>&1)
    got=$(echo "$out" | grep -o '[0-9]* packets received' | head -n 1)
    case $got in
        ''|0\ *) res "$1" fail "no echo reply from $2 ($(echo "$out" | tail -n 2 | tr '\n' ' '))" ;;
        *) res "$1" pass "$2: ${got% packets received} of 3 received" ;;
    esac
done

# --- DNS through the guest's resolver (busybox nslookup: UDP to the resolv.conf server)
lookup() { # TYPE NAME: the answer addresses, space-separated
    timeout 8 nslookup -type="$1" "$2" 2>&1 | awk '/^Name:/ {n = 1} n && /^Address/ {printf "%s ", $NF}'
}
ns=$(awk '$1 == "nameserver" {print $2; exit}' /etc/resolv.conf)
got=$(lookup a "$NAME")
case " $got" in
    *" $ADDR_A "*) res dns_a_udp pass "$NAME -> ${got% } (resolver $ns)" ;;
    *) res dns_a_udp fail "nslookup -type=a $NAME via $ns gave '${got% }', expected $ADDR_A" ;;
esac
got=$(lookup aaaa "$NAME")
case " $got" in
    *" $ADDR_AAAA "*) res dns_aaaa_udp pass "$NAME -> ${got% } (resolver $ns)" ;;
    *) res dns_aaaa_udp fail "nslookup -type=aaaa $NAME via $ns gave '${got% }', expected $ADDR_AAAA" ;;
esac
a=$(lookup a host.causeway.internal)
aaaa=$(lookup aaaa host.causeway.internal)
if [ "${a% }" = "$GW" ] && [ -n "$aaaa" ]; then
    res dns_local_zone pass "host.causeway.internal -> ${a% } / ${aaaa% }"
else
    res dns_local_zone fail "host.causeway.internal -> A '${a% }' (expected $GW), AAAA '${aaaa% }'"
fi

# --- outbound_tcp_to_host_service: the host's httpd on its 127.0.0.1, through the gateway
t0=$(awk '{printf "%d", $1 * 1000}' /proc/uptime)
out=$(timeout 8 wget -q -O - "http://$GW:$HOST_PORT/" 2>&1)
rc=$?
t1=$(awk '{printf "%d", $1 * 1000}' /proc/uptime)
if [ "$rc" -eq 0 ] && [ "$out" = "$HOST_BODY" ]; then
    res outbound_tcp_to_host_service pass "wget http://$GW:$HOST_PORT/ in $((t1 - t0)) ms"
else
    res outbound_tcp_to_host_service fail "wget http://$GW:$HOST_PORT/: status $rc, '$(echo "$out" | head -n 1)'"
fi

# --- mtu_as_advertised: the link MTU, and an MTU-sized ICMP echo (DF) to the gateway and back
mtu=$(cat "/sys/class/net/$IF/mtu")
if [ "$mtu" != "$MTU" ]; then
    res mtu_as_advertised fail "link MTU of $IF is $mtu, expected $MTU"
else
    out=$(timeout 6 ping -c 1 -W 3 -s $((mtu - 28)) "$GW" 2>&1)
    if echo "$out" | grep -q '1 packets received'; then
        res mtu_as_advertised pass "MTU $mtu; $mtu-byte ICMP echo to $GW answered"
    else
        res mtu_as_advertised fail "MTU $mtu, but no reply to a $mtu-byte ICMP echo to $GW ($(echo "$out" | tail -n 1))"
    fi
fi

# --- ipv6_address: SLAAC within 8 s
i=0
a6="" r6=""
while [ "$i" -lt 80 ]; do
    a6=$(ip -6 -o addr show dev "$IF" scope global | grep -v tentative | awk '{split($4, x, "/"); print x[1]; exit}')
    r6=$(ip -6 route show default | head -n 1)
    [ -n "$a6" ] && [ -n "$r6" ] && break
    sleep 0.1
    i=$((i + 1))
done
if [ -n "$a6" ] && [ -n "$r6" ]; then
    res ipv6_address pass "$a6 after $((i * 100)) ms of waiting"
elif [ -n "$a6" ]; then
    res ipv6_address fail "after 8 s: address $a6 but no IPv6 default route"
else
    res ipv6_address fail "after 8 s: no global IPv6 address"
fi

# --- dhcp_lease_and_default_route (last: it re-applies the address and route)
cat > /tmp/udhcpc.sh <<'SCRIPT'
#!/bin/sh
case "$1" in
    bound|renew)
        { echo "ip=$ip"; echo "mask=${mask:-24}"; echo "router=$router"; echo "dns=${dns:-}"; echo "mtu=${mtu:-}"; } > /tmp/lease.env
        ip -4 addr flush dev "$interface"
        ip -4 addr add "$ip/${mask:-24}" dev "$interface"
        set -- $router
        ip -4 route replace default via "$1" dev "$interface"
        ;;
esac
exit 0
SCRIPT
chmod +x /tmp/udhcpc.sh
out=$(timeout 15 udhcpc -i "$IF" -f -q -n -t 4 -T 1 -O mtu -s /tmp/udhcpc.sh 2>&1)
rc=$?
if [ -s /tmp/lease.env ]; then
    ip="" router="" dns="" mtu=""
    # shellcheck disable=SC1091  # written by the udhcpc script above
    . /tmp/lease.env
    route=$(ip -4 route show default | head -n 1)
    if [ -z "$router" ]; then
        res dhcp_lease_and_default_route fail "lease $ip without a router option"
    elif echo "$route" | grep -q "via ${router%% *}"; then
        res dhcp_lease_and_default_route pass "lease $ip, router $router, dns ${dns:-none}, mtu ${mtu:-not sent}"
    else
        res dhcp_lease_and_default_route fail "lease $ip router $router, but no default route via it afterwards ($route)"
    fi
else
    res dhcp_lease_and_default_route fail "no lease (udhcpc status $rc: $(echo "$out" | tail -n 1))"
fi

# --- wait for the host's end of the auto-forward probes (bounded), then leave
i=0
while [ "$i" -lt 75 ]; do
    timeout 2 wget -q -O /dev/null "http://$GW:$HOST_PORT/cf-done" 2>/dev/null && break
    sleep 0.2
    i=$((i + 1))
done
echo "CFVM-END"
