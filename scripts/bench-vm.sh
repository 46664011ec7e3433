#!/usr/bin/env bash
# bench-vm.sh — iperf3 TCP throughput between a VM and the host, guest→host and host→guest
# (through a published port), for causeway and its peers under the same QEMU, interleaved in
# one run.  See --help.
#
# Topology (everything stays on this machine):
#
#   sink ns  <--veth-->  "host" ns: iperf3 server on 127.0.0.1:P1, the engines, QEMU
#   (forwards nothing)       |
#                            +-- causeway run            (QEMU + our vhost-user virtio-net)
#                            +-- QEMU -netdev user        (libslirp inside QEMU)
#                            +-- passt      <-- QEMU -netdev stream (unix socket)
#                            +-- causeway serve <-- QEMU -netdev stream (unix socket)
#
# One boot per measurement, both directions in it: the guest (/sbin/cw-bench of the bench
# image, see scripts/build-guest.sh --with-bench-tools) runs an iperf3 client to its default
# gateway (each engine's alias for the host's loopback) port P1 — the host's server reports
# guest→host — then an iperf3 server on guest port 5201 that the host reaches on 127.0.0.1:P2
# through the engine's port forward — the host's client reports host→guest.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
BENCH_SCRIPT=bench-vm.sh
ALL_CONTENDERS="causeway-run,qemu-user,qemu-passt,qemu-causeway"
CONTENDERS=$ALL_CONTENDERS
RUNS=3
DURATION=5
JSON_OUT=""
MEMORY=512M
CPUS=1
VM_MTU=16384          # causeway's VM default (README, Limits); given to causeway serve too
GUEST_DIR=""
BENCH_GUEST=""
PORT_BASE=15401
GUEST_PORT=5201

usage() {
    cat <<EOF
Usage: $0 [options]

Measures iperf3 TCP throughput between a VM and the host, in both directions, for:
  causeway-run   \$CAUSEWAY run -p 127.0.0.1:P2:$GUEST_PORT -- /sbin/cw-bench ...   (QEMU + causeway's
                 vhost-user virtio-net and vsock devices, the guest agent as PID 1)
  qemu-user      QEMU -netdev user,hostfwd=...  (libslirp inside QEMU; MTU 1500, no option)
  qemu-passt     passt -t 127.0.0.1/P2:$GUEST_PORT + QEMU -netdev stream  (passt's default MTU 65520)
  qemu-causeway  \$CAUSEWAY serve --qemu-socket S --mtu $VM_MTU -p ... + QEMU -netdev stream
Every contender boots the same kernel and bench initramfs with the same board (q35), memory,
CPUs and accelerator; each engine keeps its own default MTU, except causeway serve, given
causeway's VM default (--mtu $VM_MTU; 65520 stalls a Linux guest against libslirp's 64 KiB
window, see README Limits).  The rows note the MTU the guest's eth0 really had (a plain QEMU
guest learns it only from DHCP).  One boot per measurement:
  tcp_g2h_gbps   guest iperf3 client -> its default gateway (= host loopback) -> host server
  tcp_h2g_gbps   host client -> 127.0.0.1:P2 -> the engine's forward -> guest server :$GUEST_PORT
  rss_mb         peak RSS (VmHWM) of the engine process: causeway run (engine + devices + agent
                 link; guest-memory pages its vhost-user devices map count too, shared with
                 QEMU), passt, causeway serve.  qemu-user: the engine is inside QEMU (no row).
Runs are interleaved round-robin; medians [min-max] and causeway-run's ratio to each.

Options:
  --runs N            repetitions per contender (default $RUNS)
  --duration SECONDS  length of each iperf3 run, per direction (default $DURATION)
  --contenders LIST   comma-separated subset of: $ALL_CONTENDERS
  --json FILE         also write the summary rows as JSON to FILE ("attach": "vm")
  --keep-logs         keep the per-run logs (guest console, engine, iperf3 JSON)
  --guest-dir DIR     the default guest image (vmlinuz, initramfs.cpio.gz) the bench image is
                      derived from (default: \$CAUSEWAY_GUEST_DIR, else guest/ beside
                      \$CAUSEWAY, else $REPO_DIR/build/guest)
  --bench-guest DIR   use this bench image (built by scripts/build-guest.sh --with-bench-tools)
                      instead of deriving one into the temp directory
  --memory SIZE       guest memory for every contender (default $MEMORY)
  --cpus N            guest CPUs for every contender (default $CPUS)
  -h, --help          this text

Needs root (it creates namespaces).  Debian packages: apt-get install qemu-system-x86 iperf3
passt cpio.  The causeway binary: \$CAUSEWAY (default $REPO_DIR/build/causeway).  Without
hardware virtualization QEMU runs under TCG and the emulated CPU bounds every row: compare the
contenders with each other, not with the namespace rows.  No traffic leaves the machine: the
engines and QEMU run in a private "host" namespace whose only uplink leads to a namespace that
forwards nothing.  Every QEMU runs under timeout(1); everything is stopped by PID.
EOF
}

bench_script_option() {
    case $1 in
        --guest-dir|--guest-dir=*) bench_opt_value --guest-dir "$@"; GUEST_DIR=$BENCH_OPTVAL ;;
        --bench-guest|--bench-guest=*) bench_opt_value --bench-guest "$@"; BENCH_GUEST=$BENCH_OPTVAL ;;
        --memory|--memory=*) bench_opt_value --memory "$@"; MEMORY=$BENCH_OPTVAL ;;
        --cpus|--cpus=*) bench_opt_value --cpus "$@"; CPUS=$BENCH_OPTVAL ;;
    esac
}
bench_parse_options "$@"
[[ $MEMORY =~ ^[1-9][0-9]*[MG]?$ ]] || bench_die_usage "--memory must look like 512M or 1G"
[[ $MEMORY =~ [MG]$ ]] || MEMORY=${MEMORY}M
[[ $CPUS =~ ^[1-9][0-9]?$ ]] || bench_die_usage "--cpus must be a small positive integer"

bench_require_root
bench_check_tools REQUIRED ip:iproute2 ss:iproute2 iperf3:iperf3 timeout:coreutils awk:mawk \
    qemu-system-x86_64:qemu-system-x86 cpio:cpio gzip:gzip
if ! bench_have jq && ! bench_have python3; then
    bench_die "need jq or python3 to read iperf3's JSON  (Debian: apt-get install jq)"
fi

if [[ -n ${CAUSEWAY:-} ]]; then
    [[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
else
    CAUSEWAY=$REPO_DIR/build/causeway
fi
if [[ -z $GUEST_DIR ]]; then
    if [[ -n ${CAUSEWAY_GUEST_DIR:-} ]]; then GUEST_DIR=$CAUSEWAY_GUEST_DIR
    elif [[ -f $(dirname "$CAUSEWAY")/guest/vmlinuz ]]; then GUEST_DIR=$(dirname "$CAUSEWAY")/guest
    else GUEST_DIR=$REPO_DIR/build/guest
    fi
fi

contender_binary() {
    case $1 in
        causeway-run|qemu-causeway) printf '%s' "$CAUSEWAY" ;;
        qemu-passt) command -v passt || printf 'passt' ;;
        qemu-user) command -v qemu-system-x86_64 || printf 'qemu-system-x86_64' ;;
    esac
}
contender_available() {
    local bin
    bin=$(contender_binary "$1")
    [[ $bin == /* && -x $bin && -f $bin ]]
}
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

bench_init
ACCEL=$(bench_accel)

# The bench image: given, or derived from the default image into the temp directory.
if [[ -n $BENCH_GUEST ]]; then
    [[ -f $BENCH_GUEST/vmlinuz && -f $BENCH_GUEST/initramfs.cpio.gz ]] ||
        bench_die "no bench image in $BENCH_GUEST (scripts/build-guest.sh --with-bench-tools builds one)"
    BENCH_GUEST=$(cd "$BENCH_GUEST" && pwd)
else
    [[ -f $GUEST_DIR/vmlinuz && -f $GUEST_DIR/initramfs.cpio.gz ]] ||
        bench_die "no guest image in $GUEST_DIR (scripts/build-guest.sh builds it; or --guest-dir DIR / CAUSEWAY_GUEST_DIR)"
    BENCH_GUEST=$BENCH_TMPDIR/guest-bench
    if ! "$SCRIPT_DIR/build-guest.sh" --out "$GUEST_DIR" --bench-only --bench-out "$BENCH_GUEST" \
            > "$BENCH_TMPDIR/build-guest.log" 2>&1; then
        cat "$BENCH_TMPDIR/build-guest.log" >&2
        bench_die "could not derive the bench image from $GUEST_DIR"
    fi
fi

HOST_NS=cwbench-$$-host
SINK_NS=cwbench-$$-sink
BOOT_BOUND=90                          # boot + both directions must end within this + 2×D
VM_TIMEOUT=$((BOOT_BOUND + 2 * DURATION))
CLIENT_TIMEOUT=$((DURATION + 25))

header_lines=(
    "accel:   $(bench_accel_line)"
    "test:    iperf3 TCP, VM <-> host loopback, ${DURATION}s per direction, ${RUNS} runs per contender, interleaved, one boot per run"
    "guest:   q35, ${CPUS} vCPU, ${MEMORY}, kernel $(cat "$BENCH_GUEST/kernel-release" 2>/dev/null || echo '?') + bench initramfs ($BENCH_GUEST)"
    "peers:   QEMU $(pkg_version qemu-system-x86), passt $(pkg_version passt), iperf3 $(pkg_version iperf3)"
    "MTU:     each engine's own: causeway-run $VM_MTU (its VM default, virtio host_mtu), qemu-causeway --mtu $VM_MTU (DHCP is all a"
    "         plain QEMU guest learns it from), qemu-passt 65520 (passt's default, DHCP), qemu-user 1500 (fixed); the rows"
    "         show the MTU the guest's eth0 really had"
)
if [[ -x $CAUSEWAY ]]; then
    cw_version=$(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || true)
    header_lines+=("causeway: $CAUSEWAY (${cw_version:-version unknown}, $(date -u -r "$CAUSEWAY" '+built %Y-%m-%d %H:%M UTC'))")
else
    header_lines+=("causeway: $CAUSEWAY (not found)")
fi
bench_header "causeway bench-vm: TCP throughput VM <-> host ($ACCEL)" "${header_lines[@]}"

for c in "${CLIST[@]}"; do
    if ! contender_available "$c"; then
        case $c in
            causeway-run|qemu-causeway) bench_warn "contender $c: $CAUSEWAY not found; reported as missing  (build it, or set CAUSEWAY=/path/to/causeway)" ;;
            qemu-passt) bench_warn "contender $c: passt not found; reported as missing  (Debian: apt-get install passt)" ;;
            *) bench_warn "contender $c: qemu-system-x86_64 not found  (Debian: apt-get install qemu-system-x86)" ;;
        esac
    fi
done

bench_setup_host_ns "$HOST_NS" "$SINK_NS" 65520

# ---------------------------------------------------------------------------------------------
# One measurement: a host iperf3 server (g2h), the engine, one boot, the host's client (h2g).
# Sets G2H, H2G, RSS (empty when that part failed); explanations go to $LOG.err.

SERVER_PID="" ENGINE_PID="" VM_PID="" VM_KIDS="" RSS_FILE=""

start_server() { # PORT LOG
    ip netns exec "$HOST_NS" iperf3 -s -1 -J -B 127.0.0.1 -p "$1" > "$2.g2h.json" 2> "$2.server.err" &
    SERVER_PID=$!
    bench_track_pid "$SERVER_PID"
    bench_wait_tcp_listen "$HOST_NS" "$1" 10 127.0.0.1 ||
        { echo "iperf3 server did not start listening on 127.0.0.1:$1 within 10 s" >> "$2.err"; return 1; }
}

# start_engine LOG CMD...: an engine process in the host namespace (PID = the engine: ip execs)
start_engine() {
    local log=$1; shift
    ip netns exec "$HOST_NS" "$@" > "$log.engine" 2>&1 &
    ENGINE_PID=$!
    bench_track_pid "$ENGINE_PID"
    RSS_FILE=$log.rss
    bench_rss_watch "$ENGINE_PID" "$RSS_FILE"
}

wait_socket() { # PATH LOG WHAT
    if ! bench_wait_for 10 test -S "$1"; then
        echo "$3 did not create its socket $1 within 10 s" >> "$2.err"
        return 1
    fi
}

# start_qemu LOG NETDEV: plain QEMU, same board, memory, CPUs and image as causeway run
start_qemu() {
    local log=$1 netdev=$2 p1=$3
    ip netns exec "$HOST_NS" timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" \
        -machine q35 -m "$MEMORY" -smp "$CPUS" -nodefaults -no-user-config -display none -no-reboot \
        -serial "file:$log.out" -kernel "$BENCH_GUEST/vmlinuz" -initrd "$BENCH_GUEST/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1 cw.mode=dhcp-exec cw.exec=/sbin/cw-bench cw.bench.mode=both cw.bench.port=$p1 cw.bench.time=$DURATION cw.bench.sport=$GUEST_PORT" \
        -netdev "$netdev" -device virtio-net-pci,netdev=n0 > "$log.qemu" 2>&1 &
    VM_PID=$!
    bench_track_pid "$VM_PID"
}

_guest_said() { [[ -s $1 ]] && tr -d '\r' < "$1" | grep -q "^$2"; }

run_vm() { # CONTENDER LOG P1 P2
    local c=$1 log=$2 p1=$3 p2=$4 sock rc=0
    : > "$log.out"
    start_server "$p1" "$log" || return 1
    case $c in
        causeway-run)
            # the launcher is the engine: QEMU is its child, stopped with it
            ip netns exec "$HOST_NS" "$CAUSEWAY" run -q --guest-dir "$BENCH_GUEST" --accel "$ACCEL" \
                --memory "$MEMORY" --cpus "$CPUS" -p "127.0.0.1:$p2:$GUEST_PORT" \
                -- /sbin/cw-bench both "$p1" "$DURATION" "$GUEST_PORT" > "$log.out" 2> "$log.engine" &
            VM_PID=$!
            bench_track_pid "$VM_PID"
            RSS_FILE=$log.rss
            bench_rss_watch "$VM_PID" "$RSS_FILE" ;;
        qemu-user)
            start_qemu "$log" "user,id=n0,hostfwd=tcp:127.0.0.1:$p2-:$GUEST_PORT" "$p1" ;;
        qemu-passt)
            sock=$BENCH_TMPDIR/passt.sock
            rm -f "$sock"
            # --runas 0: as root passt would otherwise drop to nobody; -f: stay in the foreground
            # (its PID is ours to stop and to measure)
            start_engine "$log" passt --runas 0 -f -q -s "$sock" -t "127.0.0.1/$p2:$GUEST_PORT" -u none
            wait_socket "$sock" "$log" passt || return 1
            start_qemu "$log" "stream,id=n0,server=off,addr.type=unix,addr.path=$sock" "$p1" ;;
        qemu-causeway)
            sock=$BENCH_TMPDIR/causeway.sock
            rm -f "$sock"
            start_engine "$log" "$CAUSEWAY" serve --qemu-socket "$sock" --mtu "$VM_MTU" \
                -p "127.0.0.1:$p2:$GUEST_PORT"
            wait_socket "$sock" "$log" "causeway serve" || return 1
            start_qemu "$log" "stream,id=n0,server=off,addr.type=unix,addr.path=$sock" "$p1" ;;
    esac

    # guest→host runs first, by itself; then the guest's server says READY
    local deadline=$((SECONDS + BOOT_BOUND + DURATION)) k
    while ! _guest_said "$log.out" "CW-BENCH-READY"; do
        # causeway run's QEMU: tracked too, so that an interrupted run stops it as well
        if [[ $c == causeway-run && -z $VM_KIDS ]]; then
            for k in $(bench_child_pids "$VM_PID"); do bench_track_pid "$k"; VM_KIDS+=" $k"; done
        fi
        if ! kill -0 "$VM_PID" 2>/dev/null || (( SECONDS >= deadline )); then
            echo "the guest's iperf3 server never became ready ($( kill -0 "$VM_PID" 2>/dev/null && echo "no READY within $((BOOT_BOUND + DURATION)) s" || echo "the VM exited" ))" >> "$log.err"
            rc=1
            break
        fi
        sleep 0.1
    done
    if (( rc == 0 )); then
        bench_run ip netns exec "$HOST_NS" timeout -k 5 "$CLIENT_TIMEOUT" iperf3 -c 127.0.0.1 -p "$p2" \
            -t "$DURATION" -J --connect-timeout 5000 > "$log.h2g.json" 2>> "$log.err" ||
            echo "host iperf3 client to 127.0.0.1:$p2 failed (status $?)" >> "$log.err"
    fi
    # the guest powers off by itself; bounded
    if ! bench_wait_pid_exit "$VM_PID" 30; then
        echo "the VM did not power off within 30 s of the end (stopped)" >> "$log.err"
    fi
    [[ -n $ENGINE_PID ]] && bench_rss_sample "$ENGINE_PID" "$RSS_FILE"
    return 0
}

G2H="" H2G="" RSS=""
run_one() { # CONTENDER LOG P1 P2 — always tears down what it started
    local c=$1 log=$2 k
    G2H="" H2G="" RSS=""
    run_vm "$@" || true
    if [[ -n $VM_PID ]]; then bench_kill_pid_tree "$VM_PID"; VM_PID=""; fi
    for k in $VM_KIDS; do bench_kill_pid "$k"; done    # gone with their parent: just forgotten
    VM_KIDS=""
    if [[ -n $ENGINE_PID ]]; then bench_kill_pid "$ENGINE_PID"; ENGINE_PID=""; fi
    if [[ -n ${BENCH_RSS_WATCH_PID:-} ]]; then bench_kill_pid "$BENCH_RSS_WATCH_PID"; BENCH_RSS_WATCH_PID=""; fi
    if [[ -n $SERVER_PID ]]; then bench_kill_pid "$SERVER_PID"; SERVER_PID=""; fi
    G2H=$(bench_iperf3_gbps "$log.g2h.json" sum_received 2>> "$log.err") ||
        { G2H=""; echo "guest->host: no result ($(tr -d '\r' < "$log.out" | grep -m1 '^CW-BENCH g2h' || echo 'the guest never ran its client'))" >> "$log.err"; }
    H2G=$(bench_iperf3_gbps "$log.h2g.json" sum_received 2>> "$log.err") ||
        { H2G=""; echo "host->guest: no result" >> "$log.err"; }
    if [[ -n $RSS_FILE ]]; then RSS=$(bench_rss_mb "$RSS_FILE" || true); fi
    RSS_FILE=""
}

failure_text() {
    local log=$1 f
    for f in "$log.err" "$log.engine" "$log.qemu" "$log.out"; do
        [[ -s $f ]] || continue
        printf '    --- %s (last 12 lines)\n' "${f##*.}"
        tr -d '\r' < "$f" | grep -v '^$' | tail -n 12 | sed 's/^/    | /'
    done
}

# ---------------------------------------------------------------------------------------------
# Interleaved rounds (round r starts at contender r mod count)

declare -A V_G2H=() V_H2G=() V_RSS=() FAILS=() FIRST_FAIL=() SHMEM=() GMTU=()
NC=${#CLIST[@]}
port=$PORT_BASE
for ((r = 0; r < RUNS; r++)); do
    for ((k = 0; k < NC; k++)); do
        c=${CLIST[(k + r) % NC]}
        contender_available "$c" || continue
        log=$BENCH_TMPDIR/$c.run$((r + 1))
        port=$((port + 2))
        run_one "$c" "$log" "$port" $((port + 1))
        [[ -n $G2H ]] && V_G2H[$c]="${V_G2H[$c]:-} $G2H"
        [[ -n $H2G ]] && V_H2G[$c]="${V_H2G[$c]:-} $H2G"
        [[ -n $RSS ]] && V_RSS[$c]="${V_RSS[$c]:-} $RSS"
        if [[ -s $log.rss ]]; then SHMEM[$c]=$(awk '{printf "%.0f", $2 / 1024}' "$log.rss"); fi
        # the MTU the guest's eth0 really had (what the engine advertised and the guest applied)
        m=$(tr -d '\r' < "$log.out" 2>/dev/null | sed -n 's/^CW-BENCH-START mtu \([0-9]*\).*/\1/p' | head -n 1)
        if [[ -n $m && " ${GMTU[$c]:-} " != *" $m "* ]]; then GMTU[$c]="${GMTU[$c]:+${GMTU[$c]} }$m"; fi
        if [[ -z $G2H || -z $H2G ]]; then
            FAILS[$c]=$(( ${FAILS[$c]:-0} + 1 ))
            [[ -n ${FIRST_FAIL[$c]:-} ]] || FIRST_FAIL[$c]=$log
        fi
        printf 'run %d/%d  %-14s g->h %8s  h->g %8s Gbit/s   rss %s MB%s\n' $((r + 1)) "$RUNS" "$c" \
            "${G2H:-FAILED}" "${H2G:-FAILED}" "${RSS:--}" \
            "$( [[ -z $G2H || -z $H2G ]] && printf '   (%s)' "$(head -n 1 "$log.err" 2>/dev/null)")" >&2
    done
done
printf '\n' >&2

# ---------------------------------------------------------------------------------------------
# Tables (one per metric) and JSON

any_failed=0
report_metric() { # METRIC UNIT ARRAY-NAME TITLE
    local metric=$1 unit=$2 arr=$3 title=$4 c vals note res=$BENCH_TMPDIR/results.$1
    local -n values=$arr
    : > "$res"
    for c in "${CLIST[@]}"; do
        vals=${values[$c]:-}; vals=${vals# }
        note=""
        if ! contender_available "$c"; then
            bench_result_add "$res" "$c" vm "$metric" missing "" "$(contender_binary "$c") not found"
            continue
        fi
        if [[ $metric != rss_mb && -n ${GMTU[$c]:-} ]]; then
            note="guest MTU ${GMTU[$c]// /\/}"
        fi
        if [[ $metric == rss_mb ]]; then
            [[ $c == qemu-user ]] && continue          # libslirp runs inside QEMU: no engine process
            if [[ $c == causeway-run ]] && (( ${SHMEM[$c]:-0} >= 1 )); then
                note="of which ~${SHMEM[$c]} MB guest memory shared with QEMU at the last sample"
            fi
        fi
        if [[ -z $vals ]]; then
            any_failed=1
            bench_result_add "$res" "$c" vm "$metric" failed "" "all $RUNS runs failed"
        else
            local n; n=$(wc -w <<< "$vals")
            (( n < RUNS )) && note="${note:+$note; }$((RUNS - n)) of $RUNS runs failed"
            bench_result_add "$res" "$c" vm "$metric" ok "$vals" "$note"
        fi
    done
    printf '\n%s\n' "$title"
    BENCH_NAME_WIDTH=14 bench_report "$res" causeway-run "$unit" "$BENCH_TMPDIR/json.$metric" "causeway-run/this"
}
report_metric tcp_g2h_gbps "Gbit/s" V_G2H "TCP guest -> host ($ACCEL)"
report_metric tcp_h2g_gbps "Gbit/s" V_H2G "TCP host -> guest through a published port ($ACCEL)"
report_metric rss_mb "MB" V_RSS "peak RSS of the engine process (lower is better)"

if [[ -n $JSON_OUT ]]; then
    bench_json_concat "$JSON_OUT" "$BENCH_TMPDIR/json.tcp_g2h_gbps" "$BENCH_TMPDIR/json.tcp_h2g_gbps" "$BENCH_TMPDIR/json.rss_mb"
    # every VM row says which accelerator ran it
    if bench_have jq; then
        jq --arg a "$ACCEL" 'map(. + {accel: $a})' "$JSON_OUT" > "$JSON_OUT.tmp" && mv -f "$JSON_OUT.tmp" "$JSON_OUT"
    fi
fi

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
