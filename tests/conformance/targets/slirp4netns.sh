# shellcheck shell=bash
# Target adapter: slirp4netns (libslirp), attached to a namespace made with `ip netns add`.
#
# Started the way its man page tells a user who wants what the checks test:
#   slirp4netns --configure --mtu=65520 --enable-ipv6 --api-socket SOCK \
#               --netns-type=path /run/netns/GUEST tap0
# (BASELINE: --mtu=65520 for parity with the others; IPv6 is opt-in.)  Published ports go
# through the API socket (add_hostfwd), for 127.0.0.1 and ::1.  The guest's resolv.conf names
# 10.0.2.3, slirp4netns's DNS forwarder, which uses the first server of the host's
# /etc/resolv.conf (it runs in the host's network and mount namespaces).  Gateway to the host's
# loopback: 10.0.2.2.  Interface contract: see targets/causeway-nat.sh.

# shellcheck source=../lib/netns-guest.sh
. "$CF_LIB/netns-guest.sh"

target_check_env() {
    command -v slirp4netns >/dev/null 2>&1 ||
        { echo "slirp4netns not found (Debian: apt-get install slirp4netns)"; return 1; }
}

target_version() {
    printf 'slirp4netns %s' "$(slirp4netns --version 2>/dev/null |
        awk '/^slirp4netns version/ {v = $3} /^libslirp:/ {l = $2} END {printf "%s (libslirp %s)", v, l}')"
}

target_mode_unavailable() { return 1; }

target_promises() {
    case $1 in
        dhcp|ipv6|icmp|host_loopback|dns|dns_tcp|dns_follow|publish|publish_udp) return 0 ;;
        auto_forward|auto_forward_udp)
            echo "slirp4netns has no automatic forwarding (ports are added one by one with add_hostfwd on its API socket)"; return 1 ;;
        port_conflict_report)
            echo "slirp4netns has no automatic forwards, hence no standing report of ports it could not open"; return 1 ;;
        dns_local_zone)
            echo "slirp4netns has no local DNS zone (host.causeway.internal is causeway's)"; return 1 ;;
        mirrored)
            echo "slirp4netns has NAT only (no mirrored mode)"; return 1 ;;
        *) echo "slirp4netns: unknown feature $1"; return 1 ;;
    esac
}

target_note() {
    case $1 in
        manual_publish_v4_v6) echo "documented: add_hostfwd is IPv4 only (man slirp4netns)" ;;
        dns_follows_host_change*)
            echo "libslirp re-checks /etc/resolv.conf (stat) at most once a second, when a query comes" ;;
    esac
}

SL_PID=""
SL_SOCK=""
TARGET_IFNAME=tap0
TARGET_GW4=10.0.2.2
TARGET_GW6=fd00::2
TARGET_MTU=65520
TARGET_CTL=""

# sl_api JSON: one request to the API socket; prints the reply
sl_api() {
    printf '%s' "$1" | timeout 5 socat -t 2 -T 2 - "UNIX-CONNECT:$SL_SOCK" 2>&1
}

target_start() {
    local pubs=() p proto rest hp gp reply addr
    while (( $# > 0 )); do
        case $1 in
            --publish) pubs+=("$2"); shift 2 ;;
            --control) shift ;;   # no control API: checks that need it are n/a
            *) echo "slirp4netns adapter: unknown start option $1" >&2; return 1 ;;
        esac
    done
    cf_host_up || return 1
    ng_create_guest 10.0.2.3
    SL_SOCK=$CF_TMP/slirp4netns.sock
    "${CF_HOST_EXEC[@]}" slirp4netns --configure --mtu=65520 --enable-ipv6 \
        --api-socket "$SL_SOCK" --netns-type=path "/run/netns/$CF_GUEST" tap0 \
        > "$CF_TMP/engine.log" 2>&1 &
    SL_PID=$!
    cf_track "$SL_PID"
    if ! ng_wait_configured 10; then
        kill -0 "$SL_PID" 2>/dev/null && echo "slirp4netns did not configure the guest within 10 s" >&2 ||
            echo "slirp4netns exited before configuring the guest" >&2
        return 1
    fi
    if ! bench_wait_for 5 test -S "$SL_SOCK"; then
        echo "no API socket at $SL_SOCK within 5 s" >&2
        return 1
    fi
    for p in "${pubs[@]}"; do
        proto=${p%%:*}; rest=${p#*:}; hp=${rest%%:*}; gp=${rest#*:}
        for addr in 127.0.0.1 ::1; do
            reply=$(sl_api "{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"$proto\",\"host_addr\":\"$addr\",\"host_port\":$hp,\"guest_port\":$gp}}")
            printf 'add_hostfwd %s %s:%s -> %s: %s\n' "$proto" "$addr" "$hp" "$gp" "$reply" >> "$CF_TMP/publish.log"
        done
    done
}

target_stop() {
    [[ -n $SL_PID ]] || return 0
    cf_kill "$SL_PID"
    SL_PID=""
}

target_cleanup() { target_stop; }
