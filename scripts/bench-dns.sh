#!/usr/bin/env bash
# bench-dns.sh — DNS through the engines' resolvers: maximum queries/s and latency at a fixed
# rate, for one local dnsmasq queried directly, through slirp4netns's DNS forwarder and through
# causeway's DNS proxy, interleaved in one run.  See --help.
#
# Topology (everything stays on this machine):
#
#   sink ns  <--veth-->  "host" ns   dnsmasq on 127.0.0.1:53 (answers www.example.test from
#   (forwards nothing)       |       its cache: a --host-record), the engines, the direct client
#                            +-- direct       dnsperf -s 127.0.0.1 in the host ns
#                            +-- slirp4netns  guest ns: dnsperf -s 10.0.2.3  (libslirp forwards to
#                            |                the first nameserver of /etc/resolv.conf, which is
#                            |                bind-mounted, in slirp4netns's own mount namespace,
#                            |                to a file naming 127.0.0.1)
#                            +-- causeway     causeway netns --host-resolv-conf FILE --
#                                             dnsperf -s 10.0.2.3  (FILE names 127.0.0.1)
#
# Per round and contender two fresh engine instances: one for the maximum rate (dnsperf -c 4
# -l DURATION), one for latency at a fixed rate (-Q QPS; average from dnsperf's summary, the
# 99th percentile from its per-query report, -v).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
ALL_CONTENDERS="direct,slirp4netns,causeway"
RUNS=3
DURATION=5
QPS=20000
CLIENTS=4
MTU=65520
CONTENDERS=$ALL_CONTENDERS
JSON_OUT=""
QNAME=www.example.test
QADDR=192.0.2.10

usage() {
    cat <<EOF
Usage: $0 [options]

DNS queries from a network namespace (the guest) to a dnsmasq on the host's loopback that
answers one name from its cache, three ways:
  direct        dnsperf -s 127.0.0.1 on the host itself (the baseline: no engine)
  slirp4netns   slirp4netns --configure; the guest asks 10.0.2.3 (libslirp's DNS forwarder)
  causeway      \$CAUSEWAY netns --host-resolv-conf FILE -- dnsperf -s 10.0.2.3 ...
                (CAUSEWAY=${CAUSEWAY:-build/causeway}; the DNS proxy, c-ares upstream)
Per run: the maximum rate (dnsperf -c $CLIENTS -l DURATION, ${QNAME} A) and, with a fresh
engine, the average and 99th-percentile latency at a fixed rate (-Q QPS).  Runs are
interleaved round-robin (N rounds, every contender once per round) and summarised as
median [min-max] with the ratio of causeway's median to each contender's median.

Options:
  --runs N            repetitions per contender (default $RUNS)
  --duration SECONDS  length of each dnsperf run (default $DURATION)
  --qps N             the fixed rate of the latency runs (default $QPS)
  --contenders LIST   comma-separated subset of: $ALL_CONTENDERS
  --json FILE         also write the rows as JSON to FILE (metrics dns_qps, dns_avg_us,
                      dns_p99_us; contenders direct, slirp4netns, causeway)
  --keep-logs         keep the per-run logs (temp directory is printed at exit)
  -h, --help          this text

Needs root (it creates namespaces).  Debian packages: apt-get install dnsperf dnsmasq-base
slirp4netns (run as root, the script installs dnsperf itself when it is missing).
Everything runs inside a private "host" namespace whose only uplink goes to a namespace that
forwards nothing; no query leaves the machine.
EOF
}

die_usage() { printf 'bench-dns.sh: %s\n(see --help)\n' "$1" >&2; exit 2; }

while (( $# > 0 )); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || die_usage "--runs needs a value"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --duration) [[ $# -ge 2 ]] || die_usage "--duration needs a value"; DURATION=$2; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --qps) [[ $# -ge 2 ]] || die_usage "--qps needs a value"; QPS=$2; shift 2 ;;
        --qps=*) QPS=${1#*=}; shift ;;
        --contenders) [[ $# -ge 2 ]] || die_usage "--contenders needs a value"; CONTENDERS=$2; shift 2 ;;
        --contenders=*) CONTENDERS=${1#*=}; shift ;;
        --json) [[ $# -ge 2 ]] || die_usage "--json needs a value"; JSON_OUT=$2; shift 2 ;;
        --json=*) JSON_OUT=${1#*=}; shift ;;
        --keep-logs) BENCH_KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die_usage "--runs must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die_usage "--duration must be a positive integer (seconds)"
[[ $QPS =~ ^[1-9][0-9]*$ ]] || die_usage "--qps must be a positive integer"

IFS=',' read -r -a CLIST <<< "$CONTENDERS"
(( ${#CLIST[@]} > 0 )) || die_usage "--contenders is empty"
for c in "${CLIST[@]}"; do
    [[ ,$ALL_CONTENDERS, == *",$c,"* ]] || die_usage "unknown contender '$c' (known: $ALL_CONTENDERS)"
done

bench_require_root

# dnsperf is in Debian; as root we may install it (the only thing this script installs).
if ! bench_have dnsperf; then
    bench_log "dnsperf is missing; installing it:  apt-get install -y dnsperf"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsperf >&2; then
        bench_log "apt-get install failed; trying again after apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsperf >&2 ||
            bench_die "could not install dnsperf  (Debian: apt-get install dnsperf)"
    fi
fi
bench_check_tools REQUIRED ip:iproute2 ss:iproute2 dnsperf:dnsperf dnsmasq:dnsmasq-base \
    timeout:coreutils awk:mawk sort:coreutils mount:mount

# The causeway binary: relative paths are taken from the current directory, the default from
# the repository.
if [[ -n ${CAUSEWAY:-} ]]; then
    [[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
else
    CAUSEWAY=$REPO_DIR/build/causeway
fi
if [[ -n $JSON_OUT ]]; then
    : > "$JSON_OUT" || bench_die "cannot write $JSON_OUT"
fi

contender_binary() {
    case $1 in
        causeway) printf '%s' "$CAUSEWAY" ;;
        slirp4netns) command -v slirp4netns || printf 'slirp4netns' ;;
        direct) printf '' ;;
    esac
}
contender_available() {
    local bin
    bin=$(contender_binary "$1")
    [[ -z $bin ]] && return 0
    [[ $bin == /* && -x $bin && -f $bin ]]
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

bench_init

# Measure a copy: others may rebuild build/causeway while this runs.
CAUSEWAY_ORIG=$CAUSEWAY
if [[ -f $CAUSEWAY && -x $CAUSEWAY ]]; then
    cp -p -- "$CAUSEWAY" "$BENCH_TMPDIR/causeway" || bench_die "cannot copy $CAUSEWAY"
    CAUSEWAY=$BENCH_TMPDIR/causeway
fi

HOST_NS=cwdns-$$-host
SINK_NS=cwdns-$$-sink
GUEST_NS=cwdns-$$-guest
CLIENT_TIMEOUT=$((DURATION + 20))
QUERIES=$BENCH_TMPDIR/queries.txt
HOST_RESOLV=$BENCH_TMPDIR/host-resolv.conf
printf '%s A\n' "$QNAME" > "$QUERIES"
printf 'nameserver 127.0.0.1\n' > "$HOST_RESOLV"

header_lines=(
    "test:    dnsperf -c $CLIENTS, ${DURATION}s per run, one name (${QNAME} A, from dnsmasq's cache); max rate, then latency at -Q $QPS; ${RUNS} runs per contender, interleaved"
    "peers:   dnsperf $(pkg_version dnsperf), dnsmasq $(pkg_version dnsmasq-base), slirp4netns $(pkg_version slirp4netns)"
)
if [[ ,$CONTENDERS, == *,causeway,* ]]; then
    if [[ -x $CAUSEWAY ]]; then
        cw_version=$(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || true)
        header_lines+=("causeway: $CAUSEWAY_ORIG (${cw_version:-version unknown}, $(date -u -r "$CAUSEWAY" '+built %Y-%m-%d %H:%M UTC'); a copy taken at start is measured)")
    else
        header_lines+=("causeway: $CAUSEWAY_ORIG (not found)")
    fi
fi
busy=$(bench_cpu_busy 1)
busy_note=""
if [[ $busy != '?' ]] && (( busy > 25 )); then
    busy_note="  <- someone else is using the machine: expect noisy numbers"
fi
header_lines+=("others:  CPUs ${busy}% busy in the second before the first run$busy_note")
bench_header "causeway bench-dns: DNS queries/s and latency, guest namespace -> host resolver" "${header_lines[@]}"

for c in "${CLIST[@]}"; do
    if ! contender_available "$c"; then
        if [[ $c == causeway ]]; then
            bench_warn "contender causeway: $CAUSEWAY_ORIG not found; reported as missing  (build it, or set CAUSEWAY=/path/to/causeway)"
        else
            bench_warn "contender $c: $(contender_binary "$c") not found; reported as missing  (Debian: apt-get install $c)"
        fi
    fi
done

bench_setup_host_ns "$HOST_NS" "$SINK_NS" "$MTU"

# ---------------------------------------------------------------------------------------------
# The upstream: one dnsmasq for the whole run, on the host namespace's own loopback.

# shellcheck disable=SC2317  # called through bench_wait_for
_udp53_listening() { [[ -n $(ip netns exec "$HOST_NS" ss -Hlun 'sport = :53' 2>/dev/null) ]]; }

ip netns exec "$HOST_NS" dnsmasq --no-daemon --no-resolv --no-hosts --pid-file --bind-interfaces \
    --listen-address=127.0.0.1 --port=53 --local=/example.test/ \
    --host-record="$QNAME,$QADDR" --log-facility=- > "$BENCH_TMPDIR/dnsmasq.log" 2>&1 &
DNSMASQ_PID=$!
bench_track_pid "$DNSMASQ_PID"
if ! bench_wait_for 10 _udp53_listening; then
    tail -n 20 "$BENCH_TMPDIR/dnsmasq.log" >&2
    bench_die "dnsmasq did not start listening on 127.0.0.1:53 in the host namespace within 10 s"
fi

# ---------------------------------------------------------------------------------------------
# One measurement.  MODE is max (as fast as it goes) or fixed (-Q QPS, -v for per-query
# latencies).  The dnsperf report goes to $LOG.out; failures are explained in $LOG.err.

ENGINE_PID=""

dnsperf_args() { # MODE SERVER
    local a=(dnsperf -s "$2" -d "$QUERIES" -c "$CLIENTS" -l "$DURATION" -t 2)
    [[ $1 == fixed ]] && a+=(-Q "$QPS" -v)
    printf '%s\n' "${a[@]}"
}

# dnsperf_in NS LOG MODE SERVER: dnsperf in namespace NS, bounded in time
dnsperf_in() {
    local ns=$1 log=$2 mode=$3 server=$4 rc=0 args
    mapfile -t args < <(dnsperf_args "$mode" "$server")
    bench_run ip netns exec "$ns" timeout -k 5 "$CLIENT_TIMEOUT" "${args[@]}" \
        > "$log.out" 2>> "$log.err" || rc=$?
    if (( rc == 124 || rc == 137 )); then
        echo "dnsperf timed out after ${CLIENT_TIMEOUT}s" >> "$log.err"
    fi
    return "$rc"
}

run_direct() { # LOG MODE
    dnsperf_in "$HOST_NS" "$1" "$2" 127.0.0.1
}

run_slirp4netns() { # LOG MODE
    local log=$1 mode=$2
    bench_ns_add "$GUEST_NS"
    # `ip netns exec` gives the command a private mount namespace (a slave of the host's), so the
    # bind mount is seen by this slirp4netns only.
    # shellcheck disable=SC2016  # $1/$@ belong to the inner shell
    ip netns exec "$HOST_NS" sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh \
        "$HOST_RESOLV" slirp4netns --configure --mtu="$MTU" \
        --netns-type=path "/run/netns/$GUEST_NS" tap0 > "$log.engine" 2>&1 &
    ENGINE_PID=$!
    bench_track_pid "$ENGINE_PID"
    if ! bench_wait_default_route "$GUEST_NS" 10; then
        if ! kill -0 "$ENGINE_PID" 2>/dev/null; then
            echo "slirp4netns exited before the guest was configured" >> "$log.err"
        else
            echo "slirp4netns did not configure the guest within 10 s" >> "$log.err"
        fi
        return 1
    fi
    dnsperf_in "$GUEST_NS" "$log" "$mode" 10.0.2.3
}

run_causeway() { # LOG MODE
    local log=$1 mode=$2 rc=0 args
    mapfile -t args < <(dnsperf_args "$mode" 10.0.2.3)
    # the engine creates the guest namespace itself and exits with the command's status
    bench_run ip netns exec "$HOST_NS" timeout -k 5 "$CLIENT_TIMEOUT" \
        "$CAUSEWAY" netns --mtu "$MTU" --host-resolv-conf "$HOST_RESOLV" -- "${args[@]}" \
        > "$log.out" 2>> "$log.err" || rc=$?
    if (( rc == 124 || rc == 137 )); then
        echo "causeway netns -- dnsperf timed out after ${CLIENT_TIMEOUT}s" >> "$log.err"
    elif (( rc != 0 )); then
        echo "causeway exited with status $rc" >> "$log.err"
    fi
    return "$rc"
}

# dnsperf's summary: "NAME: value" lines.  Prints the value of the first line starting with $2.
summary_value() { awk -v k="$2" 'index($0, k) == 3 || index($0, k) == 1 { sub(/^[^:]*:[ \t]*/, ""); print $1; exit }' "$1"; }

# parse LOG MODE: sets VAL_QPS (max) or VAL_AVG / VAL_P99 (fixed) in µs; 1 if the report is unusable.
VAL_QPS="" VAL_AVG="" VAL_P99="" NOTE=""
parse_run() {
    local log=$1 mode=$2 completed sent lost qps avg
    completed=$(summary_value "$log.out" "Queries completed") || true
    sent=$(summary_value "$log.out" "Queries sent") || true
    lost=$(summary_value "$log.out" "Queries lost") || true
    qps=$(summary_value "$log.out" "Queries per second") || true
    if [[ -z $completed || -z $qps || $completed == 0 ]]; then
        echo "no dnsperf summary, or no query answered" >> "$log.err"
        return 1
    fi
    NOTE=""
    [[ ${lost:-0} != 0 ]] && NOTE="$lost of $sent lost"
    if ! grep -q "NOERROR $completed " "$log.out"; then
        echo "not every answer was NOERROR: $(grep 'Response codes' "$log.out")" >> "$log.err"
        return 1
    fi
    if [[ $mode == max ]]; then
        VAL_QPS=$(awk -v q="$qps" 'BEGIN { printf "%.0f", q }')
        return 0
    fi
    avg=$(summary_value "$log.out" "Average Latency (s)")
    VAL_AVG=$(awk -v a="$avg" 'BEGIN { printf "%.1f", a * 1e6 }')
    # Per-query lines: "> NOERROR www.example.test A 0.000123"
    VAL_P99=$(awk '$1 == ">" { print $NF }' "$log.out" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR == 0) exit 1; i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1; printf "%.1f", v[i] * 1e6 }') || {
        echo "no per-query latencies in the dnsperf report" >> "$log.err"
        return 1
    }
    if awk -v q="$qps" -v t="$QPS" 'BEGIN { exit !(q < 0.95 * t) }'; then
        NOTE="${NOTE:+$NOTE; }reached only $(printf '%.0f' "$qps") of $QPS qps"
    fi
}

# run_one CONTENDER LOG MODE: one measurement, always torn down; sets VAL_* and NOTE.
# Not to be called in a subshell: the EXIT trap must know every namespace and PID.
run_one() {
    local c=$1 log=$2 mode=$3 rc=0
    if ! kill -0 "$DNSMASQ_PID" 2>/dev/null; then
        echo "dnsmasq (the upstream) is gone" >> "$log.err"
        return 1
    fi
    case $c in
        direct)      run_direct "$log" "$mode" || rc=$? ;;
        slirp4netns) run_slirp4netns "$log" "$mode" || rc=$? ;;
        causeway)    run_causeway "$log" "$mode" || rc=$? ;;
    esac
    if [[ -n $ENGINE_PID ]]; then
        bench_kill_pid "$ENGINE_PID"; ENGINE_PID=""
    fi
    bench_ns_del "$GUEST_NS"
    (( rc == 0 )) || return "$rc"
    parse_run "$log" "$mode"
}

failure_text() {
    local log=$1 f
    for f in "$log.err" "$log.engine" "$log.out"; do
        [[ -s $f ]] || continue
        printf '    --- %s (last 12 lines)\n' "${f##*.}"
        tail -n 12 "$f" | sed 's/^/    | /'
    done
}

# ---------------------------------------------------------------------------------------------
# Interleaved runs: round r starts at contender r (mod count).  Progress on stderr.

declare -A QPS_V=() AVG_V=() P99_V=() FAILS=() FIRST_FAIL=() NOTES=()
NC=${#CLIST[@]}
for ((r = 0; r < RUNS; r++)); do
    for ((k = 0; k < NC; k++)); do
        c=${CLIST[(k + r) % NC]}
        contender_available "$c" || continue
        for mode in max fixed; do
            log=$BENCH_TMPDIR/$c.run$((r + 1)).$mode
            if run_one "$c" "$log" "$mode"; then
                if [[ $mode == max ]]; then
                    QPS_V[$c]="${QPS_V[$c]:-} $VAL_QPS"
                    printf 'run %d/%d  %-12s %9s qps max%s\n' $((r + 1)) "$RUNS" "$c" "$VAL_QPS" \
                        "${NOTE:+   ($NOTE)}" >&2
                else
                    AVG_V[$c]="${AVG_V[$c]:-} $VAL_AVG"
                    P99_V[$c]="${P99_V[$c]:-} $VAL_P99"
                    printf 'run %d/%d  %-12s %9s us avg, %s us p99 at %s qps%s\n' $((r + 1)) "$RUNS" "$c" \
                        "$VAL_AVG" "$VAL_P99" "$QPS" "${NOTE:+   ($NOTE)}" >&2
                fi
                [[ -n $NOTE ]] && NOTES[$c.$mode]="${NOTES[$c.$mode]:+${NOTES[$c.$mode]}; }run $((r + 1)): $NOTE"
            else
                FAILS[$c.$mode]=$(( ${FAILS[$c.$mode]:-0} + 1 ))
                [[ -n ${FIRST_FAIL[$c]:-} ]] || FIRST_FAIL[$c]=$log
                printf 'run %d/%d  %-12s %s FAILED: %s\n' $((r + 1)) "$RUNS" "$c" "$mode" \
                    "$(head -n 1 "$log.err" 2>/dev/null || true)" >&2
            fi
        done
    done
done
printf '\n' >&2
busy_after=$(bench_cpu_busy 1)

# ---------------------------------------------------------------------------------------------
# Tables: one per metric; the ratio column is causeway's median over each row's median.

any_failed=0
BENCH_NAME_WIDTH=12
report_metric() { # METRIC MODE VALUES-ARRAY-NAME UNIT TITLE
    local metric=$1 mode=$2 unit=$4 title=$5 c vals nfail note attach
    local -n arr=$3
    local file=$BENCH_TMPDIR/results.$metric
    : > "$file"
    for c in "${CLIST[@]}"; do
        attach=netns
        [[ $c == direct ]] && attach=host
        vals=${arr[$c]:-}
        vals=${vals# }
        nfail=${FAILS[$c.$mode]:-0}
        if ! contender_available "$c"; then
            bench_result_add "$file" "$c" "$attach" "$metric" missing "" "$(contender_binary "$c") not found"
        elif [[ -z $vals ]]; then
            any_failed=1
            bench_result_add "$file" "$c" "$attach" "$metric" failed "" "all $RUNS runs failed"
        else
            note=${NOTES[$c.$mode]:-}
            (( nfail > 0 )) && note="${note:+$note; }$nfail of $RUNS runs failed"
            bench_result_add "$file" "$c" "$attach" "$metric" ok "$vals" "$note"
        fi
    done
    printf '%s\n' "$title"
    bench_report "$file" causeway "$unit" "${JSON_OUT:+$BENCH_TMPDIR/json.$metric}" "causeway/this"
    printf '\n'
}

report_metric dns_qps max QPS_V "qps" "Maximum rate (dnsperf -c $CLIENTS, ${DURATION}s): higher is better"
report_metric dns_avg_us fixed AVG_V "us" "Average latency at $QPS qps: lower is better"
report_metric dns_p99_us fixed P99_V "us" "99th-percentile latency at $QPS qps: lower is better"

# What the issue's target compares: causeway's rate against slirp4netns's, and the latency each
# engine adds to the direct query.
median_of() { # "V1 V2 ...": prints their median, nothing for no values
    local v=${1# } m
    [[ -n $v ]] || return 0
    # shellcheck disable=SC2086  # one argument per value
    read -r m _ < <(bench_stats $v)
    printf '%s' "$m"
}
d_avg=$(median_of "${AVG_V[direct]:-}")
s_avg=$(median_of "${AVG_V[slirp4netns]:-}")
c_avg=$(median_of "${AVG_V[causeway]:-}")
s_qps=$(median_of "${QPS_V[slirp4netns]:-}")
c_qps=$(median_of "${QPS_V[causeway]:-}")
printf 'Summary (medians):\n'
if [[ -n $d_avg ]]; then
    [[ -n $s_avg ]] && printf '  latency added over direct at %s qps: slirp4netns %+.1f us\n' "$QPS" \
        "$(awk -v a="$s_avg" -v b="$d_avg" 'BEGIN { print a - b }')"
    [[ -n $c_avg ]] && printf '  latency added over direct at %s qps: causeway    %+.1f us\n' "$QPS" \
        "$(awk -v a="$c_avg" -v b="$d_avg" 'BEGIN { print a - b }')"
fi
if [[ -n $s_qps && -n $c_qps ]]; then
    printf '  max rate causeway/slirp4netns: %.2fx (issue 5 target: >= 1.00x)\n' \
        "$(awk -v a="$c_qps" -v b="$s_qps" 'BEGIN { print (b > 0) ? a / b : 0 }')"
fi
printf 'others:  CPUs %s%% busy in the second after the last run\n' "$busy_after"

if [[ -n $JSON_OUT ]]; then
    bench_json_concat "$JSON_OUT" "$BENCH_TMPDIR/json.dns_qps" "$BENCH_TMPDIR/json.dns_avg_us" \
        "$BENCH_TMPDIR/json.dns_p99_us"
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
