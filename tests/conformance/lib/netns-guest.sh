# shellcheck shell=bash
# The guest side shared by the adapters of engines that attach to an existing namespace
# (pasta, slirp4netns): the guest is `ip netns add $CF_GUEST`, commands run with
# `ip netns exec`, and its /etc/resolv.conf is /etc/netns/$CF_GUEST/resolv.conf (bind-mounted
# by ip netns exec) naming the DNS address the engine serves — the file those engines expect
# their users to write.

ng_create_guest() { # DNS_ADDR
    bench_ns_add "$CF_GUEST"
    cf_etc_netns "$CF_GUEST"
    printf '# conformance guest (%s)\nnameserver %s\n' "$CF_TARGET" "$1" > "/etc/netns/$CF_GUEST/resolv.conf"
}

# ng_wait_configured SECONDS: until the guest has an IPv4 default route
ng_wait_configured() { bench_wait_default_route "$CF_GUEST" "$1"; }

guest_exec() {
    local secs=$1; shift
    timeout -k 1 "$secs" ip netns exec "$CF_GUEST" "$@"
}

NG_SEQ=0
guest_spawn() {
    NG_SEQ=$((NG_SEQ + 1))
    CF_SPAWN_LOG=$CF_TMP/guest-spawn.$NG_SEQ.log
    ip netns exec "$CF_GUEST" "$@" < /dev/null >> "$CF_SPAWN_LOG" 2>&1 &
    CF_SPAWNED=$!
    cf_track "$CF_SPAWNED"
}

guest_kill() { cf_kill "$1"; }

guest_netns() { printf '/run/netns/%s' "$CF_GUEST"; }

# ng_gateway4: the guest's IPv4 default gateway
ng_gateway4() {
    ip -n "$CF_GUEST" -4 route show default 2>/dev/null |
        awk '{for (i = 1; i < NF; i++) if ($i == "via") {print $(i + 1); exit}}'
}
