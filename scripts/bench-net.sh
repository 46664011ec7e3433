#!/usr/bin/env bash
# bench-net.sh — iperf3 TCP throughput, network namespace (guest) → host, for causeway and its
# peers, interleaved in one run.  See --help.
#
# Topology (everything stays on this machine):
#
#   sink ns  <--veth-->  "host" ns  (iperf3 -s on 127.0.0.1, the engines run here)
#   (forwards nothing)       |
#                            +-- causeway / slirp4netns / pasta  -->  guest ns (iperf3 -c)
#                            +-- veth (kernel path, the physical limit) --> guest ns
#
# The guest always reaches the host's loopback through the engine's gateway mapping:
#   causeway      10.0.2.2            (engine maps the gateway to host loopback)
#   causeway-base  10.0.2.2           the same with --no-offload (fast path; tap without checksum/TSO)
#   causeway-slirp 10.0.2.2           the same with --tcp-engine slirp (libslirp's TCP; the default
#                                     is the TCP fast path where the kernel has it)
#   slirp4netns   10.0.2.2            (libslirp's host-loopback mapping)
#   pasta         the gateway pasta copies from the host (192.0.2.254), mapped to host loopback
#   pasta-splice  127.0.0.1 in the guest, forwarded with -T PORT (loopback splice, no tap)
#   veth          10.0.3.1, the host end of a veth pair (server bound there, not to loopback)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
ALL_CONTENDERS="causeway,causeway-base,causeway-slirp,pasta,pasta-splice,slirp4netns,veth"
RUNS=3
DURATION=5
MTU=65520
CONTENDERS=$ALL_CONTENDERS
JSON_OUT=""
PORT_BASE=15201

usage() {
    cat <<EOF
Usage: $0 [options]

Measures iperf3 TCP throughput from a network namespace (the guest) to the host, for:
  causeway      \$CAUSEWAY netns --mtu MTU -- iperf3 -c 10.0.2.2 ...  (CAUSEWAY=${CAUSEWAY:-build/causeway})
  causeway-base the same with --no-offload (fast path, tap without checksum/TSO offloads)
  causeway-slirp the same with --tcp-engine slirp (libslirp's TCP stack instead of the fast path)
  pasta         pasta's tap path (guest -> gateway address, mapped to host loopback)
  pasta-splice  pasta's loopback splice (guest 127.0.0.1:PORT -> host 127.0.0.1:PORT, -T PORT)
  slirp4netns   slirp4netns --configure (guest -> 10.0.2.2 = host loopback)
  veth          the kernel's veth path between two namespaces (the physical limit)
Runs are interleaved round-robin (N rounds, every contender once per round) and summarised as
median [min-max] Gbit/s plus the ratio of causeway's median to each contender's median.
A third table, cpu_s_per_gb, is the engine process's user+system CPU seconds per GB moved.
A second table, rss_mb, is each engine process's peak RSS (VmHWM from /proc, sampled every
100 ms and once more right before an engine is stopped) over the same runs (veth: no engine).

Options:
  --runs N            repetitions per contender (default $RUNS)
  --duration SECONDS  length of each iperf3 run (default $DURATION)
  --mtu MTU           guest MTU for every contender (default $MTU)
  --contenders LIST   comma-separated subset of: $ALL_CONTENDERS
  --json FILE         also write the summary rows as JSON to FILE
  --keep-logs         keep the per-run logs (temp directory is printed at exit)
  -h, --help          this text

Needs root (it creates namespaces).  Debian packages: apt-get install iperf3 passt slirp4netns
Everything runs inside a private "host" namespace whose only uplink goes to a namespace that
forwards nothing; no traffic leaves the machine.
EOF
}

BENCH_SCRIPT=bench-net.sh
bench_script_option() {
    case $1 in
        --mtu|--mtu=*) bench_opt_value --mtu "$@"; MTU=$BENCH_OPTVAL ;;
    esac
}
bench_parse_options "$@"
if ! [[ $MTU =~ ^[0-9]+$ ]] || (( MTU < 1280 || MTU > 65521 )); then
    bench_die_usage "--mtu must be between 1280 and 65521"
fi

bench_require_root
bench_check_tools REQUIRED ip:iproute2 ss:iproute2 iperf3:iperf3 timeout:coreutils awk:mawk
if ! bench_have jq && ! bench_have python3; then
    bench_die "need jq or python3 to read iperf3's JSON  (Debian: apt-get install jq)"
fi

# The causeway binary: relative paths are taken from the current directory, the default from
# the repository.
if [[ -n ${CAUSEWAY:-} ]]; then
    [[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
else
    CAUSEWAY=$REPO_DIR/build/causeway
fi

# contender -> binary it needs ("" when only the kernel is needed)
contender_binary() {
    case $1 in
        causeway|causeway-base|causeway-slirp) printf '%s' "$CAUSEWAY" ;;
        pasta|pasta-splice) command -v pasta || printf 'pasta' ;;
        slirp4netns) command -v slirp4netns || printf 'slirp4netns' ;;
        veth) printf '' ;;
    esac
}
contender_available() {
    local bin
    bin=$(contender_binary "$1")
    [[ -z $bin ]] && return 0
    [[ $bin == /* && -x $bin && -f $bin ]]
}
contender_package() {
    case $1 in
        pasta|pasta-splice) echo passt ;;
        slirp4netns) echo slirp4netns ;;
    esac
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

bench_init

HOST_NS=cwbench-$$-host
SINK_NS=cwbench-$$-sink
GUEST_NS=cwbench-$$-guest
CLIENT_TIMEOUT=$((DURATION + 25))

header_lines=(
    "test:    iperf3 TCP, guest namespace -> host loopback, ${DURATION}s per run, ${RUNS} runs per contender, MTU ${MTU}, interleaved"
    "peers:   iperf3 $(pkg_version iperf3), passt/pasta $(pkg_version passt), slirp4netns $(pkg_version slirp4netns)"
)
if [[ ,$CONTENDERS, == *,causeway,* ]]; then
    if [[ -x $CAUSEWAY ]]; then
        cw_version=$(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || true)
        header_lines+=("causeway: $CAUSEWAY (${cw_version:-version unknown}, $(date -u -r "$CAUSEWAY" '+built %Y-%m-%d %H:%M UTC'))")
    else
        header_lines+=("causeway: $CAUSEWAY (not found)")
    fi
fi
bench_header "causeway bench-net: TCP throughput namespace -> host" "${header_lines[@]}"

for c in "${CLIST[@]}"; do
    if ! contender_available "$c"; then
        if [[ $c == causeway ]]; then
            bench_warn "contender causeway: $CAUSEWAY not found; reported as missing  (build it, or set CAUSEWAY=/path/to/causeway)"
        else
            bench_warn "contender $c: $(contender_binary "$c") not found; reported as missing  (Debian: apt-get install $(contender_package "$c"))"
        fi
    fi
done

bench_setup_host_ns "$HOST_NS" "$SINK_NS" "$MTU"

# ---------------------------------------------------------------------------------------------
# One measurement.  Each run gets a fresh guest namespace, a fresh engine instance, a fresh
# one-shot iperf3 server on a fresh port.  Prints Gbit/s on stdout; on failure returns 1 and
# leaves the explanation in $LOG.err / $LOG.engine.

SERVER_PID=""
ENGINE_PID=""

start_server() { # ADDR PORT LOG
    ip netns exec "$HOST_NS" iperf3 -s -1 -B "$1" -p "$2" > "$3.server" 2>&1 &
    SERVER_PID=$!
    bench_track_pid "$SERVER_PID"
    if ! bench_wait_tcp_listen "$HOST_NS" "$2" 10 "$1"; then
        echo "iperf3 server did not start listening on $1:$2 within 10 s" >> "$3.err"
        return 1
    fi
}

# start_engine LOG CMD...: runs CMD in the host namespace, in the background
start_engine() {
    local log=$1; shift
    ip netns exec "$HOST_NS" "$@" > "$log.engine" 2>&1 &
    ENGINE_PID=$!
    bench_track_pid "$ENGINE_PID"
    RSS_FILE=$log.rss
    bench_rss_watch "$ENGINE_PID" "$RSS_FILE"
}

engine_alive() {
    if ! kill -0 "$ENGINE_PID" 2>/dev/null; then
        echo "engine exited before the guest was configured" >> "$1.err"
        return 1
    fi
}

# client_in_guest LOG TARGET PORT: iperf3 client in the guest namespace, bounded in time
client_in_guest() {
    local log=$1 target=$2 port=$3 rc=0
    bench_run ip netns exec "$GUEST_NS" timeout -k 5 "$CLIENT_TIMEOUT" \
        iperf3 -c "$target" -p "$port" -t "$DURATION" -J --connect-timeout 5000 \
        > "$log.json" 2>> "$log.err" || rc=$?
    if (( rc == 124 || rc == 137 )); then
        echo "iperf3 client timed out after ${CLIENT_TIMEOUT}s" >> "$log.err"
    fi
    return "$rc"
}

run_veth() { # LOG PORT
    local log=$1 port=$2
    bench_ns_add "$GUEST_NS"
    bench_veth_pair "$HOST_NS" vguest0 10.0.3.1/24 "$GUEST_NS" eth0 10.0.3.2/24 "$MTU"
    start_server 10.0.3.1 "$port" "$log" || return 1
    client_in_guest "$log" 10.0.3.1 "$port"
}

run_slirp4netns() { # LOG PORT
    local log=$1 port=$2
    bench_ns_add "$GUEST_NS"
    start_server 127.0.0.1 "$port" "$log" || return 1
    # host loopback access (10.0.2.2 -> 127.0.0.1) is on unless --disable-host-loopback
    start_engine "$log" slirp4netns --configure --mtu="$MTU" \
        --netns-type=path "/run/netns/$GUEST_NS" tap0
    if ! bench_wait_default_route "$GUEST_NS" 10; then
        engine_alive "$log" || return 1
        echo "slirp4netns did not configure the guest within 10 s" >> "$log.err"
        return 1
    fi
    client_in_guest "$log" 10.0.2.2 "$port"
}

run_pasta() { # LOG PORT splice|tap
    local log=$1 port=$2 mode=$3 target fwd=none
    bench_ns_add "$GUEST_NS"
    start_server 127.0.0.1 "$port" "$log" || return 1
    [[ $mode == splice ]] && fwd=$port
    # --runas 0: as root, pasta otherwise drops to nobody and cannot enter an `ip netns`
    # namespace.  No automatic forwarding in either direction except -T PORT for the splice.
    start_engine "$log" pasta --runas 0 -f -q --config-net --mtu "$MTU" \
        -t none -u none -T "$fwd" -U none --netns "/run/netns/$GUEST_NS"
    if ! bench_wait_default_route "$GUEST_NS" 10; then
        engine_alive "$log" || return 1
        echo "pasta did not configure the guest within 10 s" >> "$log.err"
        return 1
    fi
    if [[ $mode == splice ]]; then
        if ! bench_wait_tcp_listen "$GUEST_NS" "$port" 10; then
            echo "pasta did not bind port $port in the guest within 10 s" >> "$log.err"
            return 1
        fi
        target=127.0.0.1
    else
        # the guest's gateway is the address pasta maps to the host's loopback
        target=$(ip -n "$GUEST_NS" -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "via") {print $(i + 1); exit}}')
        if [[ -z $target ]]; then
            echo "no IPv4 gateway in the guest after pasta --config-net" >> "$log.err"
            return 1
        fi
    fi
    client_in_guest "$log" "$target" "$port"
}

run_causeway() { # LOG PORT [EXTRA CAUSEWAY OPTIONS...]
    local log=$1 port=$2 rc=0 pid
    shift 2
    start_server 127.0.0.1 "$port" "$log" || return 1
    # the engine creates the guest namespace itself and exits with the command's status; its
    # PID is the engine's (ip execs it), so its peak RSS can be sampled; bounded by our own
    # watchdog instead of timeout(1), which would put itself in between
    ip netns exec "$HOST_NS" "$CAUSEWAY" netns --mtu "$MTU" "$@" -- \
        iperf3 -c 10.0.2.2 -p "$port" -t "$DURATION" -J --connect-timeout 5000 \
        > "$log.json" 2>> "$log.err" &
    pid=$!
    bench_track_pid "$pid"
    RSS_FILE=$log.rss
    bench_rss_watch "$pid" "$RSS_FILE"
    if ! bench_wait_pid_exit "$pid" "$CLIENT_TIMEOUT"; then
        echo "causeway netns -- iperf3 timed out after ${CLIENT_TIMEOUT}s" >> "$log.err"
        bench_kill_pid_tree "$pid"
        return 124
    fi
    wait "$pid" || rc=$?
    bench_kill_pid "$pid"   # forgets it
    (( rc == 0 )) || echo "causeway exited with status $rc" >> "$log.err"
    return "$rc"
}

# run_one CONTENDER LOG PORT: runs one measurement, always tears down what it created, and sets
# GBPS.  Not to be called in a subshell: the EXIT trap must know every namespace and PID.
GBPS=""
RSS="" RSS_FILE="" CPU_S=""
run_one() {
    local c=$1 log=$2 port=$3 rc=0
    RSS="" RSS_FILE="" CPU_S=""
    case $c in
        causeway)     run_causeway "$log" "$port" || rc=$? ;;
        causeway-base) run_causeway "$log" "$port" --no-offload || rc=$? ;;
        causeway-slirp) run_causeway "$log" "$port" --tcp-engine slirp || rc=$? ;;
        pasta)        run_pasta "$log" "$port" tap || rc=$? ;;
        pasta-splice) run_pasta "$log" "$port" splice || rc=$? ;;
        slirp4netns)  run_slirp4netns "$log" "$port" || rc=$? ;;
        veth)         run_veth "$log" "$port" || rc=$? ;;
    esac
    if [[ -n $ENGINE_PID ]]; then
        if (( rc == 0 )) && ! kill -0 "$ENGINE_PID" 2>/dev/null; then
            echo "note: the engine had exited by the end of the run" >> "$log.err"
        fi
        bench_rss_sample "$ENGINE_PID" "$RSS_FILE"
        bench_kill_pid "$ENGINE_PID"; ENGINE_PID=""
    fi
    if [[ -n ${BENCH_RSS_WATCH_PID:-} ]]; then bench_kill_pid "$BENCH_RSS_WATCH_PID"; BENCH_RSS_WATCH_PID=""; fi
    [[ -n $RSS_FILE ]] && RSS=$(bench_rss_mb "$RSS_FILE" || true)
    [[ -n $RSS_FILE ]] && CPU_S=$(bench_cpu_seconds "$RSS_FILE" || true)
    if [[ -n $SERVER_PID ]]; then bench_kill_pid "$SERVER_PID"; SERVER_PID=""; fi
    bench_ns_del "$GUEST_NS"
    (( rc == 0 )) || return "$rc"
    bench_iperf3_gbps "$log.json" sum_received > "$log.gbps" 2>> "$log.err" || return 1
    GBPS=$(< "$log.gbps")
}

# failure_text LOG: what a failed run printed, for the report
failure_text() {
    local log=$1 f
    for f in "$log.err" "$log.engine" "$log.json" "$log.server"; do
        [[ -s $f ]] || continue
        printf '    --- %s (last 15 lines)\n' "${f##*.}"
        tail -n 15 "$f" | sed 's/^/    | /'
    done
}

# ---------------------------------------------------------------------------------------------
# Interleaved runs: round r starts at contender r (mod count) so no contender is always first.
# One measurement for each one printed before the next, on stderr; the summary goes to stdout.

declare -A VALUES=() FAILS=() FIRST_FAIL=() RSSV=() CPUV=()
NC=${#CLIST[@]}
port=$PORT_BASE
for ((r = 0; r < RUNS; r++)); do
    for ((k = 0; k < NC; k++)); do
        c=${CLIST[(k + r) % NC]}
        contender_available "$c" || continue
        log=$BENCH_TMPDIR/$c.run$((r + 1))
        port=$((port + 1))
        if run_one "$c" "$log" "$port"; then
            VALUES[$c]="${VALUES[$c]:-} $GBPS"
            [[ -n $RSS ]] && RSSV[$c]="${RSSV[$c]:-} $RSS"
            # CPU seconds per GB moved: the engine's user+system time over the bytes iperf3 counted
            if [[ -n $CPU_S ]]; then
                CPUV[$c]="${CPUV[$c]:-} $(awk -v s="$CPU_S" -v g="$GBPS" -v d="$DURATION" \
                    'BEGIN {gb = g * d / 8; if (gb > 0) printf "%.3f", s / gb}')"
            fi
            printf 'run %d/%d  %-13s %8.2f Gbit/s%s\n' $((r + 1)) "$RUNS" "$c" "$GBPS" \
                "${RSS:+   (engine peak RSS $RSS MB)}" >&2
        else
            FAILS[$c]=$(( ${FAILS[$c]:-0} + 1 ))
            [[ -n ${FIRST_FAIL[$c]:-} ]] || FIRST_FAIL[$c]=$log
            printf 'run %d/%d  %-13s   FAILED: %s\n' $((r + 1)) "$RUNS" "$c" \
                "$(head -n 1 "$log.err" 2>/dev/null || true)" >&2
        fi
    done
done
printf '\n' >&2

RESULTS=$BENCH_TMPDIR/results.tsv
: > "$RESULTS"
any_failed=0
for c in "${CLIST[@]}"; do
    vals=${VALUES[$c]:-}
    vals=${vals# }
    nfail=${FAILS[$c]:-0}
    if ! contender_available "$c"; then
        bench_result_add "$RESULTS" "$c" netns tcp_g2h_gbps missing "" \
            "$(contender_binary "$c") not found"
    elif [[ -z $vals ]]; then
        any_failed=1
        bench_result_add "$RESULTS" "$c" netns tcp_g2h_gbps failed "" "all $RUNS runs failed"
    else
        note=""
        (( nfail > 0 )) && note="$nfail of $RUNS runs failed"
        bench_result_add "$RESULTS" "$c" netns tcp_g2h_gbps ok "$vals" "$note"
    fi
done

bench_report "$RESULTS" causeway "Gbit/s" "$BENCH_TMPDIR/json.tcp" "causeway/this"

# peak RSS of each engine process over its successful runs (veth has none)
RSS_RESULTS=$BENCH_TMPDIR/results-rss.tsv
: > "$RSS_RESULTS"
for c in "${CLIST[@]}"; do
    [[ $c == veth ]] && continue
    contender_available "$c" || continue
    vals=${RSSV[$c]:-}
    vals=${vals# }
    if [[ -n $vals ]]; then
        bench_result_add "$RSS_RESULTS" "$c" netns rss_mb ok "$vals" ""
    else
        bench_result_add "$RSS_RESULTS" "$c" netns rss_mb failed "" "no sample"
    fi
done
if [[ -s $RSS_RESULTS ]]; then
    printf '\npeak RSS of the engine process (VmHWM; lower is better)\n'
    bench_report "$RSS_RESULTS" causeway "MB" "$BENCH_TMPDIR/json.rss" "causeway/this"
fi
# engine CPU per GB moved (user+system of the engine process; sampled every 0.1 s, so a
# slight underestimate)
CPU_RESULTS=$BENCH_TMPDIR/results-cpu.tsv
: > "$CPU_RESULTS"
for c in "${CLIST[@]}"; do
    [[ $c == veth ]] && continue
    contender_available "$c" || continue
    vals=${CPUV[$c]:-}
    vals=${vals# }
    [[ -n $vals ]] && bench_result_add "$CPU_RESULTS" "$c" netns cpu_s_per_gb ok "$vals" ""
done
if [[ -s $CPU_RESULTS ]]; then
    printf '\nengine CPU seconds (user+system) per GB moved (lower is better)\n'
    bench_report "$CPU_RESULTS" causeway "s/GB" "$BENCH_TMPDIR/json.cpu" "causeway/this"
fi
[[ -n $JSON_OUT ]] && bench_json_concat "$JSON_OUT" "$BENCH_TMPDIR/json.tcp" "$BENCH_TMPDIR/json.rss" "$BENCH_TMPDIR/json.cpu"

if (( ${#FIRST_FAIL[@]} > 0 )); then
    printf '\nFailures (first failed run of each contender):\n'
    for c in "${CLIST[@]}"; do
        [[ -n ${FIRST_FAIL[$c]:-} ]] || continue
        printf '  %s (%s):\n' "$c" "${FIRST_FAIL[$c]##*/}"
        failure_text "${FIRST_FAIL[$c]}"
    done
fi
[[ -n $JSON_OUT ]] && printf '\nJSON written to %s\n' "$JSON_OUT"
exit "$any_failed"
