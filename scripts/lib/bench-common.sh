# shellcheck shell=bash
# Shared pieces for causeway's benchmarks (throughput, latency, conn/s, DNS, VM).
#
# Source it from a script that runs with `set -euo pipefail`:
#     . "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
#     bench_require_root
#     bench_init            # temp dir + EXIT/INT/TERM traps that clean up
#
# What it offers (all names start with bench_ / BENCH_):
#   options          bench_parse_options (--runs, --duration, --contenders, --json, --keep-logs,
#                    -h; a script's own options through its bench_script_option)
#   logging          bench_log, bench_warn, bench_die
#   preconditions    bench_require_root, bench_have, bench_check_tools
#   header           bench_header
#   resources        bench_init, bench_cleanup, bench_run, bench_track_pid, bench_kill_pid,
#                    bench_ns_add, bench_ns_del, bench_setup_host_ns, bench_veth_pair
#   waiting          bench_wait_for, bench_wait_tcp_listen, bench_wait_default_route
#   iperf3           bench_iperf3_gbps
#   statistics       bench_stats
#   results          bench_result_add, bench_report (table + optional JSON), bench_json_concat
#   machine          bench_cpu_busy
#   processes        bench_wait_pid_exit, bench_child_pids, bench_kill_pid_tree
#   memory           bench_rss_watch, bench_rss_mb (peak RSS of an engine process)
#   accelerator      bench_accel, bench_accel_line (KVM or TCG for the VM rows)
#
# Safety rules the helpers follow: every namespace and process they create is recorded and
# removed on exit; processes are only ever killed by the PID we started; the "host" namespace
# built by bench_setup_host_ns has a single uplink into a sink namespace that forwards nothing,
# so no benchmark traffic can leave the machine.

BENCH_NS_LIST=()   # namespaces we created, deleted in reverse order on exit
BENCH_PIDS=()      # background processes we started, killed on exit
BENCH_TMPDIR=""    # scratch directory, removed on exit
BENCH_KEEP_TMP=0   # set to 1 to keep BENCH_TMPDIR (logs) after exit
BENCH_ARGS=()      # the script's arguments, for messages
BENCH_FS=$'\x1f'   # field separator of results files

bench_log()  { printf '%s\n' "$*" >&2; }
bench_warn() { printf 'WARNING: %s\n' "$*" >&2; }
bench_die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Preconditions

# bench_require_root: without root, a loud message and exit 2.  Set BENCH_ARGS=("$@") first to
# have the command line echoed back.
bench_require_root() {
    if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
        cat >&2 <<EOF

  ************************************************************************
  **  This benchmark must run as root: it creates network namespaces,   **
  **  veth pairs and tap devices.  Nothing was measured.                **
  ************************************************************************
  Re-run it as root, e.g.:  sudo $0 ${BENCH_ARGS[*]:-}

EOF
        exit 2
    fi
}

bench_have() { command -v "$1" >/dev/null 2>&1; }

# bench_check_tools REQUIRED|OPTIONAL TOOL:PACKAGE...
# Prints a line for each missing tool with the Debian package that provides it.
# REQUIRED: exits 1 if any is missing.  OPTIONAL: returns the number missing (warns only).
bench_check_tools() {
    local mode=$1; shift
    local spec tool pkg missing=0 pkgs=()
    for spec in "$@"; do
        tool=${spec%%:*}; pkg=${spec#*:}
        if ! bench_have "$tool"; then
            missing=$((missing + 1))
            pkgs+=("$pkg")
            if [[ $mode == REQUIRED ]]; then
                bench_log "missing required tool: $tool   (Debian: apt-get install $pkg)"
            else
                bench_warn "missing tool: $tool   (Debian: apt-get install $pkg)"
            fi
        fi
    done
    if (( missing > 0 )) && [[ $mode == REQUIRED ]]; then
        bench_die "install the missing tools first:  apt-get install ${pkgs[*]}"
    fi
    return "$missing"
}

# ---------------------------------------------------------------------------------------------
# Header

# bench_header TITLE [EXTRA LINE...]
bench_header() {
    local title=$1; shift
    local cpu cores
    cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
    cores=$(nproc 2>/dev/null || echo '?')
    printf '== %s ==\n' "$title"
    printf 'date:    %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'cpu:     %s (%s online CPUs)\n' "${cpu:-unknown}" "$cores"
    printf 'kernel:  %s %s\n' "$(uname -s)" "$(uname -r)"
    local load
    load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
    if [[ -n $load ]]; then
        printf 'load:    %s (1/5/15 min)%s\n' "$load" "$(awk -v l="${load%% *}" -v c="$cores" \
            'BEGIN { if (c + 0 > 0 && l / c > 0.25) printf "  <- machine busy: expect noisy numbers" }')"
    fi
    local line
    for line in "$@"; do printf '%s\n' "$line"; done
    printf 'NOTE:    absolute numbers vary between machines (and up to 2x between runs on shared\n'
    printf '         VMs); only the ratios between contenders measured in the same run compare.\n'
    printf '\n'
}

# ---------------------------------------------------------------------------------------------
# Resource tracking and cleanup

bench_init() {
    BENCH_TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/causeway-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

bench_track_pid() { BENCH_PIDS+=("$1"); }

# bench_kill_pid PID: SIGTERM, up to ~2 s grace, then SIGKILL; reaps it; forgets it.
bench_kill_pid() {
    local pid=$1 i p keep=()
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            # a zombie child still answers kill -0; reaping happens in wait below
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

# bench_run CMD...: runs CMD in the background and waits for it, returning its status.  Unlike a
# foreground command, this lets a TERM/INT delivered to the script run the EXIT trap at once
# (which then kills CMD); redirect the call as you would redirect CMD.
bench_run() {
    local pid rc=0
    "$@" &
    pid=$!
    bench_track_pid "$pid"
    wait "$pid" || rc=$?
    bench_kill_pid "$pid"   # already gone: just forgets it
    return "$rc"
}

# bench_ns_add NAME: creates a network namespace with lo up; recorded for cleanup.
bench_ns_add() {
    local ns=$1
    ip netns add "$ns"
    BENCH_NS_LIST+=("$ns")
    ip -n "$ns" link set lo up
}

# bench_ns_del NAME: deletes a namespace we created (kills nothing; kill its processes first).
bench_ns_del() {
    local ns=$1 n keep=()
    ip netns del "$ns" 2>/dev/null || true
    for n in "${BENCH_NS_LIST[@]}"; do [[ $n == "$ns" ]] || keep+=("$n"); done
    BENCH_NS_LIST=("${keep[@]}")
}

bench_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM HUP
    set +e
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_kill_pid "${BENCH_PIDS[i]}"
    done
    for ((i = ${#BENCH_NS_LIST[@]} - 1; i >= 0; i--)); do
        ip netns del "${BENCH_NS_LIST[i]}" 2>/dev/null
    done
    BENCH_NS_LIST=()
    if [[ -n $BENCH_TMPDIR && -d $BENCH_TMPDIR ]]; then
        if (( BENCH_KEEP_TMP )); then
            bench_log "logs kept in $BENCH_TMPDIR"
        else
            rm -rf -- "$BENCH_TMPDIR"
        fi
    fi
    exit "$rc"
}

# bench_setup_host_ns HOST SINK MTU
# HOST becomes the benchmark's "host": lo up, one uplink (veth "uplink0", 192.0.2.1/24, default
# route via 192.0.2.254) into SINK, which has no other interface and forwarding disabled, so
# nothing leaves the machine.  192.0.2.0/24 is TEST-NET-1 (documentation only, never routed).
# Tools that insist on a routable host interface (pasta) are satisfied by it.
bench_setup_host_ns() {
    local host=$1 sink=$2 mtu=$3
    bench_ns_add "$sink"
    bench_ns_add "$host"
    ip netns exec "$sink" sysctl -qw net.ipv4.ip_forward=0
    ip netns exec "$sink" sysctl -qw net.ipv6.conf.all.forwarding=0 2>/dev/null || true
    ip -n "$host" link add uplink0 mtu "$mtu" type veth peer name sink0 netns "$sink"
    ip -n "$sink" link set sink0 mtu "$mtu" up
    ip -n "$sink" addr add 192.0.2.254/24 dev sink0
    ip -n "$host" link set uplink0 up
    ip -n "$host" addr add 192.0.2.1/24 dev uplink0
    ip -n "$host" route add default via 192.0.2.254 dev uplink0
}

# bench_veth_pair NS_A IF_A ADDR_A/PLEN NS_B IF_B ADDR_B/PLEN MTU
bench_veth_pair() {
    local nsa=$1 ifa=$2 addra=$3 nsb=$4 ifb=$5 addrb=$6 mtu=$7
    ip -n "$nsa" link add "$ifa" mtu "$mtu" type veth peer name "$ifb" netns "$nsb"
    ip -n "$nsb" link set "$ifb" mtu "$mtu"
    ip -n "$nsa" addr add "$addra" dev "$ifa"
    ip -n "$nsb" addr add "$addrb" dev "$ifb"
    ip -n "$nsa" link set "$ifa" up
    ip -n "$nsb" link set "$ifb" up
}

# ---------------------------------------------------------------------------------------------
# Waiting (always bounded)

# bench_wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds; 1 on timeout.
bench_wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    while true; do
        "$@" >/dev/null 2>&1 && return 0
        (( SECONDS >= deadline )) && return 1
        sleep 0.05
    done
}

_bench_tcp_listening() { # NS PORT [ADDR]
    local filter="sport = :$2"
    [[ -n ${3:-} ]] && filter="src $3:$2"
    [[ -n $(ip netns exec "$1" ss -Hltn "$filter" 2>/dev/null) ]]
}

# bench_wait_tcp_listen NS PORT SECONDS [ADDR]: until something listens on [ADDR:]PORT in NS.
bench_wait_tcp_listen() { bench_wait_for "$3" _bench_tcp_listening "$1" "$2" "${4:-}"; }

_bench_has_default_route() { [[ -n $(ip -n "$1" -4 route show default 2>/dev/null) ]]; }

# bench_wait_default_route NS SECONDS
bench_wait_default_route() { bench_wait_for "$2" _bench_has_default_route "$1"; }

# ---------------------------------------------------------------------------------------------
# iperf3

# bench_iperf3_gbps JSON_FILE [sum_received|sum_sent]: prints Gbit/s from an iperf3 -J report
# (receiver side by default); returns 1 (printing the iperf3 error, if any, on stderr) on failure.
bench_iperf3_gbps() {
    local file=$1 which=${2:-sum_received} out
    [[ -s $file ]] || return 1
    if bench_have jq; then
        out=$(jq -r --arg w "$which" '
            if (.error // "") != "" then "ERR " + .error
            else (.end[$w].bits_per_second // empty) / 1e9 end' "$file" 2>/dev/null) || return 1
    else
        out=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if d.get("error"):
    print("ERR " + d["error"])
else:
    print(d["end"][sys.argv[2]]["bits_per_second"] / 1e9)
' "$file" "$which" 2>/dev/null) || return 1
    fi
    if [[ -z $out ]]; then return 1; fi
    if [[ $out == ERR* ]]; then printf 'iperf3: %s\n' "${out#ERR }" >&2; return 1; fi
    printf '%.3f\n' "$out"
}

# ---------------------------------------------------------------------------------------------
# Statistics

# bench_stats VALUE...: prints "median min max n" (median of an even count = mean of the middle
# two).  Prints nothing and returns 1 when given no values.
bench_stats() {
    (( $# > 0 )) || return 1
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            n = NR
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%.6g %.6g %.6g %d\n", med, v[1], v[n], n
        }'
}

# ---------------------------------------------------------------------------------------------
# Results: a file with one line per contender, fields separated by BENCH_FS (ASCII unit
# separator; not TAB, which `read` would collapse when a field is empty):
#   contender FS attach FS metric FS status FS space-separated values FS note
# status: ok | failed | missing | skipped.  Contenders with status ok may still have failed runs
# (runs = number of values).

# bench_result_add FILE CONTENDER ATTACH METRIC STATUS "VALUES" [NOTE]
bench_result_add() {
    local IFS=$BENCH_FS
    printf '%s\n' "${*:2:5}$BENCH_FS${7:-}" >> "$1"
}

# bench_report FILE REF UNIT [JSON_FILE] [RATIO_LABEL]
# Prints the table (contender, median, [min-max], runs, REF's median / this median) and, if
# JSON_FILE is non-empty, writes a JSON list of rows:
#   {"contender", "attach", "metric", "median", "min", "max", "runs", "status"}
# (median/min/max are null when a contender produced no value).
# BENCH_NAME_WIDTH (default 14) sets the width of the contender column.
bench_report() {
    local file=$1 ref=$2 unit=$3 json=${4:-} rlabel=${5:-"$2/peer"}
    local c attach metric status vals note med min max n ref_med="" ratio
    local -a rows=()
    # first pass: REF's median
    while IFS=$BENCH_FS read -r c attach metric status vals note; do
        if [[ $c == "$ref" && -n $vals ]]; then
            # shellcheck disable=SC2086
            read -r ref_med _ < <(bench_stats $vals)
        fi
    done < "$file"

    printf "%-${BENCH_NAME_WIDTH:-14}s %10s  %-21s %5s  %s\n" contender "median" "[min – max]" runs "$rlabel"
    printf "%-${BENCH_NAME_WIDTH:-14}s %10s  %-21s %5s  %s\n" "" "$unit" "" "" ""
    printf '%s\n' "-------------------------------------------------------------------"
    while IFS=$BENCH_FS read -r c attach metric status vals note; do
        med="" min="" max="" n=0
        if [[ -n $vals ]]; then
            # shellcheck disable=SC2086
            read -r med min max n < <(bench_stats $vals)
        fi
        if [[ -n $med ]]; then
            ratio="–"
            if [[ -n $ref_med ]]; then
                ratio=$(awk -v a="$ref_med" -v b="$med" \
                    'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "inf" }')
            fi
            printf "%-${BENCH_NAME_WIDTH:-14}s %10.2f  %-21s %5s  %s%s\n" "$c" "$med" \
                "$(printf '[%.2f – %.2f]' "$min" "$max")" "$n" "$ratio" \
                "${note:+   ($note)}"
        else
            printf "%-${BENCH_NAME_WIDTH:-14}s %10s  %-21s %5s  %s\n" "$c" "$status" "" 0 "${note:-}"
        fi
        rows+=("$(printf '{"contender": "%s", "attach": "%s", "metric": "%s", "median": %s, "min": %s, "max": %s, "runs": %d, "status": "%s"}' \
            "$c" "$attach" "$metric" "${med:-null}" "${min:-null}" "${max:-null}" "$n" "$status")")
    done < "$file"

    if [[ -n $json ]]; then
        {
            printf '[\n'
            local i
            for ((i = 0; i < ${#rows[@]}; i++)); do
                printf '  %s%s\n' "${rows[i]}" "$( (( i + 1 < ${#rows[@]} )) && echo ,)"
            done
            printf ']\n'
        } > "$json"
        if bench_have jq; then
            jq empty "$json" || bench_warn "wrote invalid JSON to $json"
        fi
    fi
}

# ---------------------------------------------------------------------------------------------
# Additions for scripts with several tables (bench-forward.sh)

# bench_json_concat OUT FILE...: joins JSON lists written by bench_report into one list in OUT
# (files that are missing or empty are skipped).  No jq needed.
bench_json_concat() {
    local out=$1 f line first=1
    shift
    {
        printf '[\n'
        for f in "$@"; do
            [[ -s $f ]] || continue
            while IFS= read -r line; do
                [[ $line == '[' || $line == ']' ]] && continue
                line=${line%,}
                (( first )) || printf ',\n'
                printf '%s' "$line"
                first=0
            done < "$f"
        done
        (( first )) || printf '\n'
        printf ']\n'
    } > "$out"
    if bench_have jq; then
        jq empty "$out" || bench_warn "wrote invalid JSON to $out"
    fi
}

# bench_cpu_busy [SECONDS]: prints how busy all CPUs were over the next SECONDS (default 1), as
# a percentage of their total capacity (from /proc/stat; "?" if unreadable).  Before a run it
# tells whether others are using the machine.
bench_cpu_busy() {
    local secs=${1:-1} a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' /proc/stat 2>/dev/null) || a=""
    sleep "$secs"
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' /proc/stat 2>/dev/null) || b=""
    if [[ -z $a || -z $b ]]; then echo '?'; return 0; fi
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; idle = y[2] - x[2]
        if (busy + idle <= 0) print "?"; else printf "%.0f\n", 100 * busy / (busy + idle) }'
}

# bench_wait_pid_exit PID SECONDS: until PID (a child of this shell) has exited; 1 on timeout.
bench_wait_pid_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
        (( SECONDS >= deadline )) && return 1
        sleep 0.05
    done
}

# ---------------------------------------------------------------------------------------------
# Options every benchmark script shares

# bench_parse_options "$@": parses the shared options into the script's globals
#   --runs N            RUNS (positive integer)
#   --duration S        DURATION (positive integer, seconds)
#   --contenders LIST   CONTENDERS (comma-separated; each must be in ALL_CONTENDERS); sets CLIST
#   --json FILE         JSON_OUT (truncated here, so a bad path fails before any measurement)
#   --keep-logs         BENCH_KEEP_TMP=1
#   -h, --help          calls the script's usage and exits 0
# (each also as --opt=value).  Anything else goes to the script's bench_script_option "$@", if it
# defines one, which sets BENCH_SHIFT to the number of words it consumed (0: unknown; then this
# stops with a usage error).  BENCH_SCRIPT (default: the script's file name) prefixes messages.
BENCH_SHIFT=0
bench_die_usage() { printf '%s: %s\n(see --help)\n' "${BENCH_SCRIPT:-${0##*/}}" "$1" >&2; exit 2; }
# bench_opt_value NAME "$@": the value of an option given as "--name VALUE" (BENCH_SHIFT=2) or
# "--name=VALUE" (BENCH_SHIFT=1), for bench_script_option implementations
bench_opt_value() {
    local name=$1; shift
    if [[ $1 == "$name="* ]]; then BENCH_OPTVAL=${1#*=}; BENCH_SHIFT=1; return 0; fi
    [[ $# -ge 2 ]] || bench_die_usage "$name needs a value"
    BENCH_OPTVAL=$2; BENCH_SHIFT=2
}
bench_parse_options() {
    local c
    while (( $# > 0 )); do
        BENCH_SHIFT=0
        case $1 in
            --runs|--runs=*) bench_opt_value --runs "$@"; RUNS=$BENCH_OPTVAL ;;
            --duration|--duration=*) bench_opt_value --duration "$@"; DURATION=$BENCH_OPTVAL ;;
            --contenders|--contenders=*) bench_opt_value --contenders "$@"; CONTENDERS=$BENCH_OPTVAL ;;
            --json|--json=*) bench_opt_value --json "$@"; JSON_OUT=$BENCH_OPTVAL ;;
            --keep-logs) BENCH_KEEP_TMP=1; BENCH_SHIFT=1 ;;
            -h|--help) usage; exit 0 ;;
            *)
                if declare -F bench_script_option >/dev/null; then bench_script_option "$@"; fi
                (( BENCH_SHIFT > 0 )) || bench_die_usage "unknown argument: $1" ;;
        esac
        shift "$BENCH_SHIFT"
    done
    [[ ${RUNS:-} =~ ^[1-9][0-9]*$ ]] || bench_die_usage "--runs must be a positive integer"
    [[ ${DURATION:-} =~ ^[1-9][0-9]*$ ]] || bench_die_usage "--duration must be a positive integer (seconds)"
    IFS=',' read -r -a CLIST <<< "${CONTENDERS:-}"
    (( ${#CLIST[@]} > 0 )) || bench_die_usage "--contenders is empty"
    for c in "${CLIST[@]}"; do
        [[ ,${ALL_CONTENDERS:-}, == *",$c,"* ]] || bench_die_usage "unknown contender '$c' (known: ${ALL_CONTENDERS:-})"
    done
    if [[ -n ${JSON_OUT:-} ]]; then
        [[ $JSON_OUT == /* ]] || JSON_OUT=$PWD/$JSON_OUT
        : > "$JSON_OUT" 2>/dev/null || bench_die_usage "cannot write $JSON_OUT"
    fi
}

# ---------------------------------------------------------------------------------------------
# Processes: children, and stopping a process together with the ones it started

# bench_child_pids PID: the direct children of PID (one per line)
bench_child_pids() {
    local t
    for t in /proc/"$1"/task/*/children; do
        [[ -r $t ]] && tr ' ' '\n' < "$t"
    done | awk 'NF' || true
}

# bench_kill_pid_tree PID: stops PID as bench_kill_pid does, then its direct children of that
# moment if they outlived it (a launcher killed while its VMM runs must not leave the VMM
# behind).  Only PIDs read from PID's own children list are touched, right before the kill.
bench_kill_pid_tree() {
    local pid=$1 kids k i
    kids=$(bench_child_pids "$pid")
    bench_kill_pid "$pid"
    for k in $kids; do
        kill -0 "$k" 2>/dev/null || continue
        kill -TERM "$k" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do kill -0 "$k" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$k" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------------------------------------
# Peak memory of an engine process

# bench_rss_watch PID FILE: samples PID's peak RSS (VmHWM) and its shared-memory RSS
# (RssShmem) every 100 ms into FILE ("hwm_kB shmem_kB", rewritten each time) until PID exits;
# VmHWM only grows, so the last sample is the peak up to 100 ms before the end (call
# bench_rss_sample right before killing an engine to close that gap).  Sets
# BENCH_RSS_WATCH_PID (tracked; stop it with bench_kill_pid after PID is gone).
bench_rss_sample() { # PID FILE: writes "VmHWM_kB RssShmem_kB cpu_ticks" (user+system, clock ticks)
    local line ticks
    line=$(awk '/^VmHWM:/ {h = $2} /^RssShmem:/ {s = $2} END {if (h != "") print h, s + 0}' "/proc/$1/status" 2>/dev/null) || return 0
    # /proc/PID/stat: utime and stime are fields 14 and 15, counted after the ")" that ends comm
    ticks=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}') || ticks=""
    # A temporary file per process: the watcher and a last sample before a kill may both write.
    [[ -n $line ]] && printf '%s %s\n' "$line" "${ticks:-0}" > "$2.tmp.$BASHPID" && mv -f "$2.tmp.$BASHPID" "$2"
    return 0
}
# bench_cpu_seconds FILE: the engine's user+system CPU seconds at its last sample
bench_cpu_seconds() {
    [[ -s $1 ]] || return 1
    awk -v hz="$(getconf CLK_TCK)" 'NR == 1 && NF >= 3 && $3 > 0 {printf "%.3f\n", $3 / hz; ok = 1} END {exit !ok}' "$1"
}
bench_rss_watch() {
    local pid=$1 file=$2
    (
        while kill -0 "$pid" 2>/dev/null; do
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            bench_rss_sample "$pid" "$file"
            sleep 0.1
        done
    ) &
    BENCH_RSS_WATCH_PID=$!
    bench_track_pid "$BENCH_RSS_WATCH_PID"
}
# bench_rss_mb FILE: the peak RSS in MB (MiB, one decimal) from a bench_rss_watch file
bench_rss_mb() {
    [[ -s $1 ]] || return 1
    awk 'NR == 1 && $1 > 0 {printf "%.1f\n", $1 / 1024; ok = 1} END {exit !ok}' "$1"
}

# ---------------------------------------------------------------------------------------------
# Accelerator for VM rows

# bench_accel: "kvm" when the host really has hardware virtualization, "tcg" otherwise (PVM's
# /dev/kvm answers the KVM API but cannot run a stock guest at a usable speed)
bench_accel() {
    if [[ -w /dev/kvm ]] && grep -Eqw 'vmx|svm' /proc/cpuinfo 2>/dev/null && [[ ! -d /sys/module/kvm_pvm ]]; then
        echo kvm
    else
        echo tcg
    fi
}
bench_accel_line() {
    if [[ $(bench_accel) == kvm ]]; then
        echo "KVM (hardware virtualization): VM rows (attach=vm) run at near-native CPU speed"
    elif [[ -d /sys/module/kvm_pvm ]]; then
        echo "TCG — no hardware virtualization (/dev/kvm is PVM, unusable for a stock guest): every VM row (attach=vm) is bounded by the emulated CPU"
    else
        echo "TCG — no hardware virtualization (no vmx/svm): every VM row (attach=vm) is bounded by the emulated CPU"
    fi
}
