# shellcheck shell=bash
# Target adapter: pasta (passt project), attached to a namespace made with `ip netns add`.
#
# Started with pasta's defaults plus what this machine and the checks need:
#   pasta --runas 0 -f --config-net --dns-forward 169.254.1.1 --netns /run/netns/GUEST
#     --runas 0      as root pasta otherwise drops to nobody and cannot enter an `ip netns`
#                    namespace (BASELINE)
#     --config-net   pasta configures the guest's address, routes and MTU itself
#     --dns-forward  the host's resolver is on its loopback (127.0.0.53), unreachable from the
#                    guest; pasta maps this guest-side address to the host's first resolver
#                    (what podman does with pasta).  The guest's resolv.conf names it.
# Port forwarding: pasta's defaults (-t auto -u auto -T auto -U auto); --publish replaces them
# with -t/-u HOSTPORT:GUESTPORT.  The gateway (192.0.2.254, copied from the host) is mapped to
# the host's loopback.  pasta needs a routable host interface: the host namespace's uplink0.
# Interface contract: see targets/causeway-nat.sh.

# shellcheck source=../lib/netns-guest.sh
. "$CF_LIB/netns-guest.sh"

PA_DNS=169.254.1.1

target_check_env() {
    command -v pasta >/dev/null 2>&1 ||
        { echo "pasta not found (Debian: apt-get install passt)"; return 1; }
}

target_version() {
    printf 'pasta (Debian passt %s)' "$(dpkg-query -W -f='${Version}' passt 2>/dev/null || echo '?')"
}

target_mode_unavailable() { return 1; }

target_promises() {
    case $1 in
        dhcp|ipv6|icmp|host_loopback|dns|dns_tcp|dns_follow) return 0 ;;
        auto_forward|auto_forward_udp|publish|publish_udp) return 0 ;;
        port_conflict_report)
            echo "pasta has no report of forwards it could not open (no control API)"; return 1 ;;
        dns_local_zone)
            echo "pasta has no local DNS zone (host.causeway.internal is causeway's)"; return 1 ;;
        mirrored)
            echo "pasta has no mirrored mode (it copies one host interface's address and routes once, at start)"; return 1 ;;
        *) echo "pasta: unknown feature $1"; return 1 ;;
    esac
}

target_note() {
    case $1 in
        auto_forward_udp) echo "documented: -u auto derives UDP ports only when pasta starts (man pasta)" ;;
        auto_forward_tcp_v4|auto_forward_tcp_v6|auto_forward_loopback_only|auto_forward_v6_loopback_only|auto_forward_removed_after_exit)
            echo "pasta rescans /proc/net/tcp* once a second (man pasta, -t auto)" ;;
        auto_forward_conflict_then_free)
            echo "pasta's default -T auto forwards the host's listener into the guest, so the guest cannot listen on that port" ;;
        dns_tcp) echo "documented: --dns-forward maps UDP port 53 only (man pasta)" ;;
        dns_follows_host_change*) echo "pasta reads /etc/resolv.conf once, at start" ;;
    esac
}

PA_PID=""
TARGET_IFNAME=""
TARGET_GW4=""
TARGET_GW6=""
TARGET_MTU=65520
TARGET_CTL=""

target_start() {
    local fwd=() p proto rest tcp_set=0 udp_set=0
    while (( $# > 0 )); do
        case $1 in
            --publish)
                p=$2; shift 2
                proto=${p%%:*}; rest=${p#*:}
                if [[ $proto == tcp ]]; then fwd+=(-t "$rest"); tcp_set=1; else fwd+=(-u "$rest"); udp_set=1; fi ;;
            --control) shift ;;   # no control API: checks that need it are n/a
            *) echo "pasta adapter: unknown start option $1" >&2; return 1 ;;
        esac
    done
    cf_host_up || return 1
    ng_create_guest "$PA_DNS"
    "${CF_HOST_EXEC[@]}" pasta --runas 0 -f --config-net --dns-forward "$PA_DNS" \
        "${fwd[@]}" --netns "/run/netns/$CF_GUEST" > "$CF_TMP/engine.log" 2>&1 &
    PA_PID=$!
    cf_track "$PA_PID"
    if ! ng_wait_configured 10; then
        kill -0 "$PA_PID" 2>/dev/null && echo "pasta did not configure the guest within 10 s" >&2 ||
            echo "pasta exited before configuring the guest" >&2
        return 1
    fi
    TARGET_GW4=$(ng_gateway4)
    TARGET_GW6=$(ip -n "$CF_GUEST" -6 route show default 2>/dev/null |
        awk '{for (i = 1; i < NF; i++) if ($i == "via") {print $(i + 1); exit}}')
    TARGET_IFNAME=$(ip -n "$CF_GUEST" -o link show 2>/dev/null |
        awk -F': ' '$2 != "lo" {sub(/@.*/, "", $2); print $2; exit}')
}

target_stop() {
    [[ -n $PA_PID ]] || return 0
    cf_kill "$PA_PID"
    PA_PID=""
}

target_cleanup() { target_stop; }
