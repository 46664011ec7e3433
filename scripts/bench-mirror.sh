#!/usr/bin/env bash
# bench-mirror.sh — mirrored mode: guest → LAN server throughput beside NAT mode and the host's
# own path, and the sync latency of host changes. See --help.
#
# Topology (everything stays on this machine):
#
#   lan ns (192.168.77.1, iperf3 -s)  <══ veth, MTU 1500 ══>  lan0 in the "host" ns (192.168.77.2)
#                                                                 │
#      causeway netns --mode mirrored ── guest ns: lan0 (the host's address, MTU, routes)
#      causeway netns (NAT)           ── guest ns: tap0 10.0.2.15, MTU 65520
#      host                           ── iperf3 -c straight from the "host" ns (the kernel's path)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
ALL_CONTENDERS="causeway-mirrored,causeway-nat,host"
RUNS=3
DURATION=5
CONTENDERS=$ALL_CONTENDERS
JSON_OUT=""
CHANGES=20
CAUSEWAY=${CAUSEWAY:-$REPO_DIR/build/causeway}

usage() {
    cat <<EOF
Usage: $0 [options]

Mirrored mode against NAT mode, same run, same LAN (a veth to a "lan" namespace, MTU 1500):
  causeway-mirrored  causeway netns --mode mirrored -- iperf3 -c 192.168.77.1 (the guest has the
                     host's lan0: its traffic leaves through host sockets bound to 192.168.77.2)
  causeway-nat       causeway netns -- iperf3 -c 192.168.77.1 (NAT: 10.0.2.15 → host sockets)
  host               iperf3 -c 192.168.77.1 from the host namespace itself (the kernel's path)
Throughput is iperf3 TCP, guest → LAN server, median [min-max] of interleaved runs.
Then sync latency: CHANGES host changes (an address added to / removed from a second link, in
turn), each timed from the host's \`ip\` command to the guest showing the change (polled every
5 ms), median / p90 / max in ms.

Options:
  --runs N           rounds (default $RUNS)
  --duration S       seconds per iperf3 run (default $DURATION)
  --contenders LIST  comma-separated subset of: $ALL_CONTENDERS
  --changes N        host changes to time (default $CHANGES; 0 skips the latency part)
  --json FILE        write the rows as JSON
  --keep-logs        keep the scratch directory
Environment: CAUSEWAY (default build/causeway).
Needs root, iproute2, iperf3, nsenter.
EOF
}
bench_script_option() {
    case $1 in
        --changes|--changes=*) bench_opt_value --changes "$@"; CHANGES=$BENCH_OPTVAL ;;
    esac
}
bench_parse_options "$@"
[[ $CHANGES =~ ^[0-9]+$ ]] || bench_die_usage "--changes must be a number"
bench_require_root
bench_check_tools REQUIRED ip:iproute2 iperf3:iperf3 nsenter:util-linux
[[ -x $CAUSEWAY ]] || bench_die "no causeway binary at $CAUSEWAY (build it, or set CAUSEWAY)"
bench_init

H=cwbm-host-$$ L=cwbm-lan-$$
bench_ns_add "$H"
bench_ns_add "$L"
ip netns exec "$H" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip -n "$H" link add lan0 type veth peer name lanp netns "$L"
ip -n "$H" link set lan0 mtu 1500 up
ip -n "$L" link set lanp mtu 1500 up
ip -n "$H" addr add 192.168.77.2/24 dev lan0
ip -n "$L" addr add 192.168.77.1/24 dev lanp
ip -n "$H" route add default via 192.168.77.1 dev lan0 metric 100
# The link the latency part changes addresses on (a veth: the dummy module may be missing).
ip -n "$H" link add dum0 type veth peer name dump netns "$L"
ip -n "$L" link set dump up
ip -n "$H" link set dum0 up

ip netns exec "$L" iperf3 -s -B 192.168.77.1 -p 5201 >"$BENCH_TMPDIR/iperf3-s.log" 2>&1 &
bench_track_pid $!
bench_wait_tcp_listen "$L" 5201 5 || bench_die "iperf3 server did not start"

bench_header "bench-mirror: guest → LAN server, mirrored vs NAT; host-change sync latency" \
    "causeway: $("$CAUSEWAY" --version 2>/dev/null | head -n1 || echo '?')" \
    "lan:     veth MTU 1500, iperf3 ${DURATION}s × $RUNS rounds"

results=$BENCH_TMPDIR/results
: >"$results"
declare -A vals
for ((r = 1; r <= RUNS; r++)); do
    for c in "${CLIST[@]}"; do
        out=$BENCH_TMPDIR/$c-$r.json
        case $c in
            causeway-mirrored)
                timeout $((DURATION + 30)) ip netns exec "$H" "$CAUSEWAY" netns --mode mirrored -- \
                    sh -c 'for i in $(seq 200); do ip route show default | grep -q lan0 && break; sleep 0.02; done
                           exec iperf3 -c 192.168.77.1 -p 5201 -t '"$DURATION"' -J' >"$out" 2>"$out.err" || true ;;
            causeway-nat)
                timeout $((DURATION + 30)) ip netns exec "$H" "$CAUSEWAY" netns -- \
                    iperf3 -c 192.168.77.1 -p 5201 -t "$DURATION" -J >"$out" 2>"$out.err" || true ;;
            host)
                timeout $((DURATION + 30)) ip netns exec "$H" iperf3 -c 192.168.77.1 -p 5201 -t "$DURATION" -J \
                    >"$out" 2>"$out.err" || true ;;
        esac
        if g=$(bench_iperf3_gbps "$out"); then
            vals[$c]+="$g "
            bench_log "round $r: $c $g Gbit/s"
        else
            bench_warn "round $r: $c failed ($(head -c 300 "$out.err"))"
        fi
    done
done
for c in "${CLIST[@]}"; do
    bench_result_add "$results" "$c" netns tcp_g2lan_gbps "$([[ -n ${vals[$c]:-} ]] && echo ok || echo failed)" \
        "${vals[$c]:-}"
done
printf '\nTCP guest → LAN server, Gbit/s (ratio: causeway-mirrored / this)\n'
json_tp=""
[[ -n $JSON_OUT ]] && json_tp=$BENCH_TMPDIR/tp.json
bench_report "$results" causeway-mirrored Gbit/s "$json_tp" "mirrored/this"

if ((CHANGES > 0)); then
    ip netns exec "$H" "$CAUSEWAY" netns --mode mirrored -- sleep 600 >"$BENCH_TMPDIR/cw-sync.log" 2>&1 &
    cwpid=$!
    bench_track_pid "$cwpid"
    gpid=""
    bench_wait_for 5 sh -c "ps -o pid= --ppid $cwpid | grep -q ." || bench_die "causeway (sync) did not start"
    gpid=$(ps -o pid= --ppid "$cwpid" | tr -d ' ' | head -n1)
    bench_wait_for 5 sh -c "nsenter -t $gpid -n ip link show dum0 >/dev/null 2>&1" || bench_die "dum0 never mirrored"
    lat=()
    for ((i = 0; i < CHANGES; i++)); do

        t0=$(date +%s%N)
        if ((i % 2 == 0)); then
            ip -n "$H" addr add "10.99.$i.1/24" dev dum0
            want="10.99.$i.1"; present=1
        else
            ip -n "$H" addr del "10.99.$((i - 1)).1/24" dev dum0
            want="10.99.$((i - 1)).1"; present=0
        fi
        deadline=$((t0 + 3000000000))
        while :; do
            if nsenter -t "$gpid" -n ip -4 -o addr show dev dum0 | grep -q "inet $want/"; then seen=1; else seen=0; fi
            now=$(date +%s%N)
            ((seen == present)) && break
            ((now > deadline)) && { bench_warn "change $i not seen within 3 s"; break; }
            sleep 0.005
        done
        lat+=("$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')")

    done
    sorted=$(printf '%s\n' "${lat[@]}" | sort -g)
    med=$(bench_stats "${lat[@]}" | cut -d' ' -f1)
    p90=$(printf '%s\n' "$sorted" | awk -v n="${#lat[@]}" 'NR == int((n * 9 + 9) / 10) { print; exit }')
    max=$(printf '%s\n' "$sorted" | tail -n1)
    printf '\nSync latency, host change → guest state (%d changes): median %s ms, p90 %s ms, max %s ms\n' \
        "${#lat[@]}" "$med" "$p90" "$max"
    printf 'all (ms): %s\n' "${lat[*]}"
    bench_kill_pid "$cwpid"
    if [[ -n $JSON_OUT ]]; then
        # one row per line between lone brackets: the layout bench_json_concat merges
        printf '[\n{"contender": "causeway-mirrored", "attach": "netns", "metric": "sync_ms", "median": %s, "p90": %s, "max": %s, "runs": %d, "status": "ok"}\n]\n' \
            "$med" "$p90" "$max" "${#lat[@]}" >"$BENCH_TMPDIR/sync.json"
    fi
fi
if [[ -n $JSON_OUT ]]; then
    bench_json_concat "$JSON_OUT" "${json_tp:-}" "$BENCH_TMPDIR/sync.json"
fi
