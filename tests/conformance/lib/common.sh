# shellcheck shell=bash
# The conformance suite's helpers, sourced by lib/run-check.sh (one process per check) together
# with one target adapter (targets/*.sh) and one check (checks/*.sh).
#
# The world a check sees (built lazily, fresh for every check, all inside namespaces we create):
#
#   sink ns (192.0.2.254, 2001:db8:1::fe; forwards nothing)
#     | also "the outside world": 203.0.113.10 and 2001:db8:ff::10 on its loopback
#     |
#   "host": network ns + its own mount ns (a holder process keeps it)
#     |        uplink0 192.0.2.1/24, 2001:db8:1::1/64, default routes via the sink
#     |        loopback: dnsmasq 127.0.0.53 (www.example.test -> 192.0.2.80, 2001:db8::80)
#     |                  dnsmasq 127.0.0.54 (www.example.test -> 192.0.2.81, 2001:db8::81)
#     |        /etc is an overlay (lower: the real /etc, upper: in the check's temp dir), so the
#     |        host's /etc/resolv.conf is an ordinary file — "nameserver 127.0.0.53" — that checks
#     |        rewrite in place or replace by rename() like NetworkManager, without touching the
#     |        machine's real /etc.  Engines use it as any host's resolv.conf (no special flags).
#     |        net.ipv4.ping_group_range = 0 2147483647 (what systemd sets on desktops)
#     +-- the engine under test (run in the host's network and mount namespaces) --> guest ns
#
# Nothing can leave the machine: the host namespace's only link goes to the sink, which has no
# other link.  192.0.2.0/24, 203.0.113.0/24 and 2001:db8::/32 are documentation ranges.
#
# Check API (what a check file may call):
#   verdicts      cf_pass [NOTE] | cf_fail REASON | cf_na REASON      (each ends the check)
#                 cf_require FEATURE    n/a with the target's reason unless it promises FEATURE
#   host side     cf_host CMD...        run in the host namespace (foreground, bound it yourself)
#                 cf_host_spawn CMD...  start in the host namespace in the background -> CF_SPAWNED
#                 cf_sink_spawn CMD...  same, in the sink namespace ("the outside world")
#                 cf_kill PID           stop something we started (by PID)
#                 cf_set_upstream ADDR [rename]  the host's /etc/resolv.conf now names ADDR
#                                       (rewritten in place, or replaced by rename())
#   tools         cf_net ARGS...        lib/cfnet.py (servers, probes; see its --help)
#                 cf_guest_ready FILE [S]   waits for a --ready file written in the guest
#                 cf_now_ms             CLOCK_MONOTONIC in ms
#   the target    target_start [--publish PROTO:HOSTPORT:GUESTPORT]... [--control]
#                 guest_exec SECONDS CMD...   run in the guest, bounded; stdout/stderr/status
#                 guest_spawn CMD...          start in the guest in the background -> CF_SPAWNED
#                 guest_kill HANDLE           stop it
#                 guest_netns                 path of the guest's network namespace (inspection)
#                 target_stop
#                 TARGET_IFNAME TARGET_GW4 TARGET_MTU TARGET_CTL (after target_start)
#   constants     CF_HOST CF_SINK CF_TMP CF_DNS1 CF_DNS2 CF_NAME CF_ADDR1_A ...

CF_DNS1=127.0.0.53          # the host's resolver at start
CF_DNS2=127.0.0.54          # the one cf_set_upstream switches to
CF_NAME=www.example.test
CF_ADDR1_A=192.0.2.80;  CF_ADDR1_AAAA=2001:db8::80
CF_ADDR2_A=192.0.2.81;  CF_ADDR2_AAAA=2001:db8::81
CF_REMOTE4=203.0.113.10     # "the outside world", in the sink namespace
CF_REMOTE6=2001:db8:ff::10
CF_PY=/usr/bin/python3
[[ -x $CF_PY ]] || CF_PY=python3
CF_SPAWNED=""
CF_HOST_UP=0
CF_ETC_NETNS=()             # /etc/netns/NAME directories we created

# ---------------------------------------------------------------------------------------------
# Verdicts.  The result file holds one line: pass|fail|n/a TAB reason.

_cf_verdict() {
    local v=$1 reason=${2:-}
    reason=${reason//$'\n'/ }
    reason=${reason//$'\t'/ }
    printf '%s\t%s\n' "$v" "$reason" > "$CF_RESULT"
    exit 0
}
cf_pass() { _cf_verdict pass "${1:-}"; }
cf_fail() { _cf_verdict fail "$1"; }
cf_na()   { _cf_verdict n/a "$1"; }

# cf_require FEATURE: the check ends as n/a (with the adapter's reason) unless the target
# promises FEATURE.  Features: see targets/README (the list at the top of each adapter).
cf_require() {
    local why
    if ! why=$(target_promises "$1"); then
        cf_na "${why:-the target does not promise $1}"
    fi
}

# ---------------------------------------------------------------------------------------------
# Processes.  Every PID is tracked twice: for bench-common's cleanup (EXIT trap) and in
# $CF_PIDFILE as "PID STARTTIME", so the runner can stop what a killed check left behind (it
# checks the start time, so a reused PID is never touched).

cf_track() {
    local pid=$1 st
    bench_track_pid "$pid"
    st=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null || true)
    printf '%s %s\n' "$pid" "${st:-?}" >> "$CF_PIDFILE"
}
cf_kill() { [[ -n ${1:-} ]] && bench_kill_pid "$1"; return 0; }

cf_now_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }

cf_net() { "$CF_PY" "$CF_LIB/cfnet.py" "$@"; }

# ---------------------------------------------------------------------------------------------
# The host world

cf_host_up() {
    (( CF_HOST_UP )) && return 0
    CF_HOST_UP=1
    bench_setup_host_ns "$CF_HOST" "$CF_SINK" 65520
    # IPv6 too (pasta enables IPv6 only when the host has an IPv6 default route); nodad: usable now
    ip -n "$CF_SINK" addr add 2001:db8:1::fe/64 dev sink0 nodad
    ip -n "$CF_HOST" addr add 2001:db8:1::1/64 dev uplink0 nodad
    ip -n "$CF_HOST" -6 route add default via 2001:db8:1::fe dev uplink0
    ip -n "$CF_SINK" addr add "$CF_REMOTE4/32" dev lo
    ip -n "$CF_SINK" addr add "$CF_REMOTE6/128" dev lo
    ip netns exec "$CF_HOST" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
    ip netns exec "$CF_SINK" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
    _cf_host_mounts || return 1
    _cf_dnsmasq "$CF_DNS1" "$CF_ADDR1_A" "$CF_ADDR1_AAAA"
    _cf_dnsmasq "$CF_DNS2" "$CF_ADDR2_A" "$CF_ADDR2_AAAA"
    local a
    for a in "$CF_DNS1" "$CF_DNS2"; do
        bench_wait_for 5 _cf_udp53_bound "$a" || { echo "dnsmasq on $a did not start" >&2; return 1; }
    done
}

# The host's mount namespace, with an overlay on /etc, held by a sleeping process we track.
# `ip netns exec` gives it the host namespace's /sys; "slave" propagation: mounts made on the
# machine later (/run/netns/GUEST for the peers) still appear in it, while nothing mounted in it
# (the overlay) propagates back to the machine.
CF_HOLDER=""
CF_HOST_EXEC=()   # prefix that runs a command in the host's namespaces; exec's it (so $! is it)
_cf_host_mounts() {
    local up=$CF_TMP/etc-upper work=$CF_TMP/etc-work ready=$CF_TMP/host-mounts.ready
    mkdir -p "$up" "$work"
    printf '# the conformance host'"'"'s resolver\nnameserver %s\n' "$CF_DNS1" > "$up/resolv.conf"
    ip netns exec "$CF_HOST" unshare --mount --propagation slave -- /bin/sh -c '
        mount -t overlay cf-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc || exit 1
        : > "$3"
        exec sleep 3600' cf-host-mounts "$up" "$work" "$ready" > "$CF_TMP/host-mounts.log" 2>&1 &
    CF_HOLDER=$!
    cf_track "$CF_HOLDER"
    if ! bench_wait_for 5 test -e "$ready"; then
        echo "could not build the host's mount namespace: $(tail -n 1 "$CF_TMP/host-mounts.log")" >&2
        return 1
    fi
    CF_HOST_EXEC=(nsenter "--net=/run/netns/$CF_HOST" "--mount=/proc/$CF_HOLDER/ns/mnt" --)
}

_cf_udp53_bound() { [[ -n $(cf_host ss -Hlun "src $1:53" 2>/dev/null) ]]; }

# a real resolver on ADDR:53 in the host namespace, authoritative for example.test only
_cf_dnsmasq() {
    local addr=$1 a4=$2 a6=$3
    "${CF_HOST_EXEC[@]}" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
        --no-hosts --user=root --group=root --bind-interfaces --listen-address="$addr" --port=53 \
        --local=/example.test/ --host-record="$CF_NAME,$a4,$a6" \
        --pid-file="$CF_TMP/dnsmasq-$addr.pid" --log-facility=- \
        > "$CF_TMP/dnsmasq-$addr.log" 2>&1 &
    cf_track $!
}

# cf_etc_netns NS: /etc/netns/NS (ip netns exec bind-mounts the files in it over /etc)
cf_etc_netns() {
    mkdir -p "/etc/netns/$1"
    CF_ETC_NETNS+=("/etc/netns/$1")
}

# cf_set_upstream ADDR [inplace|rename]: the host's /etc/resolv.conf names ADDR from now on.
# inplace (default): truncated and rewritten (`>`), as an editor or `resolvconf -u` may do;
# rename: a new file renamed over it, as NetworkManager, resolvconf and systemd-resolved do.
cf_set_upstream() {
    local text
    text=$(printf '# the conformance host'"'"'s resolver (changed)\nnameserver %s\n' "$1")
    if [[ ${2:-inplace} == rename ]]; then
        cf_host /bin/sh -c 'printf "%s\n" "$1" > /etc/resolv.conf.cf-new && mv /etc/resolv.conf.cf-new /etc/resolv.conf' sh "$text"
    else
        cf_host /bin/sh -c 'printf "%s\n" "$1" > /etc/resolv.conf' sh "$text"
    fi
}

# cf_host CMD...: CMD in the host's network and mount namespaces, in the foreground.  (In the
# background use "${CF_HOST_EXEC[@]}" CMD... & — a function sent to the background would be a
# subshell, and $! its PID rather than CMD's.)
cf_host() {
    cf_host_up || return 1
    "${CF_HOST_EXEC[@]}" "$@"
}

cf_host_spawn() {
    cf_host_up || return 1
    "${CF_HOST_EXEC[@]}" "$@" >> "$CF_TMP/host-spawn.log" 2>&1 &
    CF_SPAWNED=$!
    cf_track "$CF_SPAWNED"
}

cf_sink_spawn() {
    cf_host_up || return 1
    ip netns exec "$CF_SINK" "$@" >> "$CF_TMP/sink-spawn.log" 2>&1 &
    CF_SPAWNED=$!
    cf_track "$CF_SPAWNED"
}

# cf_host_listening PROTO PORT [ADDR]: something listens/is bound there in the host namespace
cf_host_listening() {
    local opt=-Hltn filter="sport = :$2"
    [[ $1 == udp ]] && opt=-Hlun
    [[ -n ${3:-} ]] && filter="src $3:$2"
    [[ -n $(cf_host ss "$opt" "$filter" 2>/dev/null) ]]
}

# cf_host_refused ADDR PORT: a TCP connection from the host namespace to ADDR:PORT is refused
# (nothing listens there, on that address or a wildcard)
cf_host_refused() {
    local out
    out=$(cf_host timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1) && return 1
    [[ $out == *"Connection refused"* ]]
}

# cf_guest_ready FILE [SECONDS]: waits for a cfnet --ready file (server listening in the guest)
cf_guest_ready() { bench_wait_for "${2:-5}" test -s "$1"; }

# cf_host_server PROTO ADDR PORT REPLY: a cfnet server in the host namespace, waited for
cf_host_server() {
    local proto=$1 addr=$2 port=$3 reply=$4 ready
    ready=$CF_TMP/host-$proto-$port.ready
    cf_host_spawn "$CF_PY" "$CF_LIB/cfnet.py" "serve-$proto" --bind "$addr" --port "$port" \
        --reply "$reply" --ready "$ready" || return 1
    cf_guest_ready "$ready" 5 || { echo "host $proto server on $addr:$port did not start" >&2; return 1; }
}

# cf_start_or_fail [target_start options]: target_start, or the check fails with the reason
# (not in a subshell: the adapter sets TARGET_* and tracks the engine's PID)
cf_start_or_fail() {
    if ! target_start "$@" 2> "$CF_TMP/start.err"; then
        cf_fail "engine did not start: $(tail -n 1 "$CF_TMP/start.err" 2>/dev/null) $(cf_engine_tail)"
    fi
}

# cf_engine_tail: the engine log's last line, for reasons
cf_engine_tail() {
    [[ -s $CF_TMP/engine.log ]] || return 0
    printf '[engine log: %s]' "$(grep -v '^Failed to send .* to syslog' "$CF_TMP/engine.log" | tail -n 1)"
}

# cf_gw_host_loopback: the address that reaches the host's loopback from the guest
cf_gw_host_loopback() { printf '%s' "$TARGET_GW4"; }

# cf_cleanup: EXIT trap (wraps bench_cleanup, which kills PIDs and deletes namespaces)
cf_cleanup() {
    local rc=$? d
    set +e
    type target_cleanup >/dev/null 2>&1 && target_cleanup
    for d in "${CF_ETC_NETNS[@]}"; do rm -rf -- "$d"; done
    (exit "$rc")
    bench_cleanup
}

# ---------------------------------------------------------------------------------------------
# Guest-side helpers shared by several checks

# cf_guest_server PROTO ADDR PORT REPLY [cfnet options...]: a cfnet server in the guest, waited
# for (5 s); sets CF_SPAWNED (its PID) and CF_READY (its --ready file).  On failure the check
# fails with the server's own message.
cf_guest_server() {
    local proto=$1 addr=$2 port=$3 reply=$4; shift 4
    CF_READY=$CF_TMP/guest-$proto-$port.ready
    rm -f -- "$CF_READY"
    guest_spawn "$CF_PY" "$CF_LIB/cfnet.py" "serve-$proto" --bind "$addr" --port "$port" \
        --reply "$reply" --ready "$CF_READY" "$@" ||
        cf_fail "could not start a $proto server in the guest"
    if ! cf_guest_ready "$CF_READY" 5; then
        local why holder
        why=$(tail -n 1 "$CF_SPAWN_LOG" 2>/dev/null)
        if [[ $why == *"Address already in use"* ]]; then
            holder=$(nsenter --net="$(guest_netns)" ss -Hlnp "$( [[ $proto == udp ]] && echo -u || echo -t )" \
                "sport = :$port" 2>/dev/null | grep -o 'users:(("[^"]*"' | head -n 1 | cut -d'"' -f2)
            why="$why${holder:+ (in the guest, $holder holds port $port)}"
        fi
        cf_fail "the guest's $proto server on $addr:$port did not start: $why"
    fi
}

# cf_host_probe PROTO HOST PORT EXPECT DEADLINE [--since FILE]: probes from the host namespace;
# prints milliseconds (success) or the last error (failure, status 1)
cf_host_probe() {
    local proto=$1 host=$2 port=$3 expect=$4 deadline=$5; shift 5
    cf_host "$CF_PY" "$CF_LIB/cfnet.py" "probe-$proto" --host "$host" --port "$port" \
        --expect "$expect" --deadline "$deadline" "$@"
}

# cf_guest_probe PROTO HOST PORT EXPECT DEADLINE: the same from the guest
cf_guest_probe() {
    local proto=$1 host=$2 port=$3 expect=$4 deadline=$5
    guest_exec $(( ${deadline%.*} + 5 )) "$CF_PY" "$CF_LIB/cfnet.py" "probe-$proto" --host "$host" \
        --port "$port" --expect "$expect" --deadline "$deadline"
}

# cf_guest_global6 SECONDS: waits until the guest has a global IPv6 address and an IPv6
# default route; prints the address.  Status 1 (printing what is missing) on timeout.
cf_guest_global6() {
    local deadline=$((SECONDS + $1)) a r
    while true; do
        a=$(guest_exec 5 ip -6 -o addr show scope global 2>/dev/null | awk '!/tentative/ {split($4, x, "/"); print x[1]; exit}')
        r=$(guest_exec 5 ip -6 route show default 2>/dev/null | head -n 1)
        if [[ -n $a && -n $r ]]; then printf '%s' "$a"; return 0; fi
        if (( SECONDS >= deadline )); then
            [[ -z $a ]] && printf 'no global IPv6 address' || printf 'address %s but no IPv6 default route' "$a"
            return 1
        fi
        sleep 0.2
    done
}

# cf_dig ARGS...: dig in the guest against the guest's own /etc/resolv.conf, bounded; the
# answer lines, or dig's first complaint (one line, for a reason)
cf_dig() {
    local out
    out=$(guest_exec 8 dig +time=2 +tries=2 +short "$@" 2>&1)
    if grep -q '^;;' <<< "$out"; then grep -m1 '^;;' <<< "$out"; else printf '%s\n' "$out"; fi
}
