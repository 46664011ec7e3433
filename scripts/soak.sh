#!/usr/bin/env bash
# soak.sh — endurance: the same churn against causeway, slirp4netns and pasta, one after the
# other, sampling each engine's memory and descriptors.  See --help.
#
# Topology (everything stays on this machine; the helpers of scripts/lib/bench-common.sh):
#
#   sink ns  <--veth-->  "host" ns   127.0.0.1: tcp-server :9090, udp-echo :9091, dnsmasq :53
#   (forwards nothing)       |       (answers every name under soak.test); the churn's host-side
#                            |       clients; veth pairs flapping (links appearing and going)
#                            +-- ENGINE (one at a time) --> guest ns: tcp-server 0.0.0.0:8080,
#                                                           the guest-side clients, listeners
# The churn, for --minutes N per engine (each kind stops at its count or at the deadline):
#   forward   10^5 short TCP connections host 192.0.2.1:18080 -> guest :8080 (a manual forward:
#             causeway -p, slirp4netns add_hostfwd, pasta -t)
#   gateway   10^5 short TCP connections guest -> the gateway's address:9090 (host loopback)
#   udp       10^4 UDP flows guest -> gateway:9091 (a new source port each: a new flow)
#   dns       10^5 DNS queries to the engine's resolver address, every 10th malformed
#   listeners guest listeners appearing and going (causeway forwards them automatically)
#   links     host links flapping every second (causeway-mirrored mirrors them into the guest)
# Every 2 s: the engine's VmRSS and its number of open descriptors.  Figures per engine:
#   warm-up RSS (at the end of the warm-up, the first quarter of the churn, at least 20 s), peak
#   (VmHWM), slope after warm-up (least squares, KiB/min), descriptors before the churn and
#   after it (once the churn stopped and the engine had up to --settle s), flows left
#   (causeway: `ctl stats` fast-path TCP flows + UDP forward flows + DNS in flight).
# Verdict (exit 1 when causeway or causeway-mirrored fails one; peers are only reported):
#   flat   growth after warm-up (median of the last 5 samples minus the warm-up RSS) at most
#          max(2 MiB, 5% of the warm-up RSS), or a slope of at most 64 KiB/min;
#   peak   VmHWM at most --max-rss-mb (default 64 MiB);
#   flows  no fast-path TCP flow, UDP forward flow or DNS query left;
#   fds    after the churn, at most the baseline + the sockets libslirp still holds (guest UDP
#          sockets live 240 s after their last datagram) + 4, and those within the budget's cap.
# shellcheck disable=SC2317  # functions called through bench_wait_for
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
ALL_ENGINES="causeway,causeway-mirrored,slirp4netns,pasta"
ENGINES=$ALL_ENGINES
MINUTES=1
MAX_RSS_MB=64
MTU=65520
TCP_COUNT=100000
UDP_COUNT=10000
DNS_COUNT=100000
SAMPLE_S=2
SETTLE_S=20

usage() {
    cat <<EOF
Usage: $0 [--minutes N] [--engines LIST] [--max-rss-mb M] [--settle S] [--keep-logs]

The same churn against each engine in turn (N minutes each; about N*engines + 1 minutes in
all): 10^5 short TCP connections through a forward and 10^5 through the gateway, 10^4 UDP
flows, 10^5 DNS queries (every 10th malformed), guest listeners appearing and going, host
links flapping.  Samples each engine's RSS and descriptors and prints warm-up RSS, peak,
slope (KiB/min), descriptors before/after and flows left.  Exits 1 if causeway's RSS grows
after warm-up, its peak exceeds --max-rss-mb, or it leaves flows behind.

Options:
  --minutes N        churn per engine, in minutes (default $MINUTES); counts not reached by then
                     are reported as they are
  --engines LIST     comma-separated subset of: $ALL_ENGINES
                     (a peer that is not installed is skipped loudly)
  --max-rss-mb M     causeway's peak RSS bound (default $MAX_RSS_MB)
  --settle S         after the churn, wait up to S seconds for the descriptors to come back
                     (default $SETTLE_S; libslirp keeps a guest's UDP socket 240 s after its last
                     datagram, so --settle 260 shows them all closed)
  --keep-logs        keep the engines' logs and samples (the path is printed)

Needs root (it creates namespaces).  Debian packages: iproute2 python3 dnsmasq-base passt
slirp4netns.  CAUSEWAY=/path/to/causeway (default build/causeway).
EOF
}

die_usage() { printf 'soak.sh: %s\n(see --help)\n' "$1" >&2; exit 2; }
while (( $# > 0 )); do
    case $1 in
        --minutes) [[ $# -ge 2 ]] || die_usage "--minutes needs a value"; MINUTES=$2; shift 2 ;;
        --minutes=*) MINUTES=${1#*=}; shift ;;
        --engines) [[ $# -ge 2 ]] || die_usage "--engines needs a value"; ENGINES=$2; shift 2 ;;
        --engines=*) ENGINES=${1#*=}; shift ;;
        --max-rss-mb) [[ $# -ge 2 ]] || die_usage "--max-rss-mb needs a value"; MAX_RSS_MB=$2; shift 2 ;;
        --max-rss-mb=*) MAX_RSS_MB=${1#*=}; shift ;;
        --settle) [[ $# -ge 2 ]] || die_usage "--settle needs a value"; SETTLE_S=$2; shift 2 ;;
        --settle=*) SETTLE_S=${1#*=}; shift ;;
        --keep-logs) BENCH_KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done
[[ $MINUTES =~ ^[1-9][0-9]*$ ]] || die_usage "--minutes must be a positive integer"
[[ $MAX_RSS_MB =~ ^[1-9][0-9]*$ ]] || die_usage "--max-rss-mb must be a positive integer"
[[ $SETTLE_S =~ ^[0-9]+$ ]] || die_usage "--settle must be a whole number of seconds"
IFS=',' read -r -a ELIST <<< "$ENGINES"
(( ${#ELIST[@]} > 0 )) || die_usage "--engines is empty"
for e in "${ELIST[@]}"; do
    [[ ,$ALL_ENGINES, == *",$e,"* ]] || die_usage "unknown engine '$e' (known: $ALL_ENGINES)"
done

bench_require_root
bench_check_tools REQUIRED ip:iproute2 ss:iproute2 timeout:coreutils awk:mawk python3:python3 \
    dnsmasq:dnsmasq-base
PYTHON=$(command -v python3)
LOAD=$SCRIPT_DIR/lib/soak_load.py
if [[ -n ${CAUSEWAY:-} ]]; then
    [[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
else
    CAUSEWAY=$REPO_DIR/build/causeway
fi
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

bench_init
CAUSEWAY_ORIG=$CAUSEWAY
if [[ -f $CAUSEWAY && -x $CAUSEWAY ]]; then
    # others may relink build/causeway meanwhile: soak one snapshot
    cp -p -- "$CAUSEWAY" "$BENCH_TMPDIR/causeway" || bench_die "cannot copy $CAUSEWAY"
    CAUSEWAY=$BENCH_TMPDIR/causeway
fi
declare -A SKIP=()
for e in "${ELIST[@]}"; do
    case $e in
        causeway*) [[ -x $CAUSEWAY ]] || SKIP[$e]="$CAUSEWAY_ORIG not found (build it, or set CAUSEWAY=)" ;;
        slirp4netns) bench_have slirp4netns || SKIP[$e]="slirp4netns not installed (apt-get install slirp4netns)" ;;
        pasta) bench_have pasta || SKIP[$e]="pasta not installed (apt-get install passt)" ;;
    esac
    [[ -n ${SKIP[$e]:-} ]] && bench_warn "SKIPPING $e: ${SKIP[$e]}"
done

HOST_NS=cwsoak-$$-host
SINK_NS=cwsoak-$$-sink
GUEST_NS=cwsoak-$$-guest
HOST_ADDR=192.0.2.1          # the host namespace's uplink (bench_setup_host_ns)
FWD_HOST_PORT=18080 FWD_GUEST_PORT=8080 GW_TCP_PORT=9090 GW_UDP_PORT=9091
CHURN_S=$((MINUTES * 60))
WARMUP_S=$(( CHURN_S / 4 > 20 ? CHURN_S / 4 : 20 ))
HOST_RESOLV=$BENCH_TMPDIR/host-resolv.conf
printf 'nameserver 127.0.0.1\n' > "$HOST_RESOLV"

bench_header "causeway soak: memory and descriptors under churn" \
    "churn:   ${MINUTES} min per engine (warm-up ${WARMUP_S} s); at most ${TCP_COUNT} TCP via forward, ${TCP_COUNT} TCP via gateway, ${UDP_COUNT} UDP flows, ${DNS_COUNT} DNS queries (10% malformed); listeners and links churning" \
    "verdict: causeway flat after warm-up (growth <= max(2 MiB, 5%) or slope <= 64 KiB/min), peak <= ${MAX_RSS_MB} MiB, no flow left" \
    "peers:   slirp4netns $(pkg_version slirp4netns), passt/pasta $(pkg_version passt), dnsmasq $(pkg_version dnsmasq-base)" \
    "causeway: $CAUSEWAY_ORIG ($(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || echo '?'))"

bench_setup_host_ns "$HOST_NS" "$SINK_NS" "$MTU"

# ---------------------------------------------------------------------------------------------
# The host's services: they live for the whole run.

in_ns_bg() { # NS LOG CMD...: CMD in NS in the background, tracked; sets BG_PID
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" > "$log" 2>&1 &
    BG_PID=$!
    bench_track_pid "$BG_PID"
}
# shellcheck disable=SC2317  # called through bench_wait_for
_ready() { grep -q '^ready' "$1"; }
_listening() { [[ -n $(ip netns exec "$1" ss -Hl"$2"n "sport = :$3" 2>/dev/null) ]]; }

in_ns_bg "$HOST_NS" "$BENCH_TMPDIR/host-tcp.log" "$PYTHON" "$LOAD" tcp-server 127.0.0.1 "$GW_TCP_PORT"
in_ns_bg "$HOST_NS" "$BENCH_TMPDIR/host-udp.log" "$PYTHON" "$LOAD" udp-echo 127.0.0.1 "$GW_UDP_PORT"
in_ns_bg "$HOST_NS" "$BENCH_TMPDIR/dnsmasq.log" dnsmasq --no-daemon --no-resolv --no-hosts \
    --pid-file --bind-interfaces --listen-address=127.0.0.1 --port=53 --cache-size=1000 \
    --address=/soak.test/192.0.2.99 --log-facility=-
bench_wait_for 30 _ready "$BENCH_TMPDIR/host-tcp.log" || bench_die "the host's TCP server did not start"
bench_wait_for 30 _ready "$BENCH_TMPDIR/host-udp.log" || bench_die "the host's UDP echo did not start"
bench_wait_for 30 _listening "$HOST_NS" u 53 || bench_die "dnsmasq did not listen on 127.0.0.1:53"

# ---------------------------------------------------------------------------------------------
# One engine

ENGINE_PID="" GUEST_SRV_PID=""
GW_ADDR="" DNS_ADDR="" FWD_ADDR=$HOST_ADDR
CTL=$BENCH_TMPDIR/ctl.sock
SLIRP_API=$BENCH_TMPDIR/slirp.sock

slirp_add_hostfwd() { # HOSTPORT GUESTPORT
    ip netns exec "$HOST_NS" timeout 10 "$PYTHON" - "$SLIRP_API" "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "tcp",
    "host_addr": "0.0.0.0", "host_port": int(sys.argv[2]), "guest_port": int(sys.argv[3])}}).encode())
s.shutdown(socket.SHUT_WR)
reply = s.recv(4096).decode()
if "error" in json.loads(reply):
    sys.exit("add_hostfwd: " + reply)
EOF
}

ctl() { ip netns exec "$HOST_NS" timeout 10 "$CAUSEWAY" ctl "$CTL" "$@"; }

_default_route() { [[ -n $(ip -n "$GUEST_NS" -4 route show default 2>/dev/null) ]]; }
_forward_works() {
    ip netns exec "$HOST_NS" timeout 5 "$PYTHON" "$LOAD" tcp-client "$FWD_ADDR" "$FWD_HOST_PORT" 1 1 3 \
        "$BENCH_TMPDIR/probe.json" >/dev/null 2>&1 && grep -q '"ok": 1' "$BENCH_TMPDIR/probe.json"
}

# start_engine NAME LOG: the engine attached to GUEST_NS, the forward in place; sets ENGINE_PID,
# GW_ADDR and DNS_ADDR.  1 (reason on stderr) on failure.
start_engine() {
    local e=$1 log=$2
    FWD_ADDR=$HOST_ADDR
    case $e in
        causeway|causeway-mirrored)
            local mode=nat
            [[ $e == causeway-mirrored ]] && mode=mirrored
            rm -f "$CTL"
            in_ns_bg "$HOST_NS" "$log" "$CAUSEWAY" netns --attach "/run/netns/$GUEST_NS" --mode "$mode" \
                --mtu "$MTU" --control "$CTL" --host-resolv-conf "$HOST_RESOLV" \
                -p "0.0.0.0:$FWD_HOST_PORT:$FWD_GUEST_PORT"
            GW_ADDR=10.0.2.2 DNS_ADDR=10.0.2.3 ;;
        slirp4netns)
            rm -f "$SLIRP_API"
            # `ip netns exec` gives it a private mount namespace: the bind mount is its own
            # shellcheck disable=SC2016
            in_ns_bg "$HOST_NS" "$log" sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh \
                "$HOST_RESOLV" slirp4netns --configure --mtu="$MTU" --api-socket "$SLIRP_API" \
                --netns-type=path "/run/netns/$GUEST_NS" tap0
            GW_ADDR=10.0.2.2 DNS_ADDR=10.0.2.3 ;;
        pasta)
            # --runas 0: as root, pasta otherwise drops to nobody and cannot enter the namespace;
            # the gateway (the host's, 192.0.2.254) maps to the host's loopback by default
            # shellcheck disable=SC2016
            in_ns_bg "$HOST_NS" "$log" sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh \
                "$HOST_RESOLV" pasta --runas 0 -f -q --config-net --mtu "$MTU" -4 \
                -t "$FWD_HOST_PORT:$FWD_GUEST_PORT" -u none -T none -U none --dns-forward 10.0.2.3 \
                --netns "/run/netns/$GUEST_NS"
            # Its tap path does not complete a TCP handshake here (scripts/bench-forward.sh and
            # PLATFORM.md: it stalls guest->host), so the forward's clients come from 127.0.0.1,
            # which pasta splices; the gateway's TCP churn goes through the tap path and is
            # reported as it goes.
            GW_ADDR=192.0.2.254 DNS_ADDR=10.0.2.3 FWD_ADDR=127.0.0.1 ;;
    esac
    ENGINE_PID=$BG_PID
    if ! bench_wait_for 15 _default_route; then
        bench_warn "$e did not configure the guest within 15 s (log: $(tail -n 3 "$log" | tr '\n' ' '))"
        return 1
    fi
    if [[ $e == slirp4netns ]] && ! slirp_add_hostfwd "$FWD_HOST_PORT" "$FWD_GUEST_PORT" >> "$log" 2>&1; then
        bench_warn "slirp4netns add_hostfwd failed"
        return 1
    fi
    if ! bench_wait_for 15 _forward_works; then
        bench_warn "$e: the forward $FWD_ADDR:$FWD_HOST_PORT -> guest :$FWD_GUEST_PORT does not answer"
        return 1
    fi
}

# sample PID: "RSS_kB HWM_kB FDS"
sample() {
    local rss hwm fds
    read -r rss hwm < <(awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {print r + 0, h + 0}' "/proc/$1/status" 2>/dev/null) || return 1
    fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    printf '%s %s %s\n' "$rss" "$hwm" "$fds"
}

sampler() { # PID FILE START_EPOCH: "t rss hwm fds" every SAMPLE_S
    local s
    while kill -0 "$1" 2>/dev/null; do
        s=$(sample "$1") || break
        printf '%s %s\n' "$(( $(date +%s) - $3 ))" "$s" >> "$2"
        sleep "$SAMPLE_S"
    done
}

flapper() { # SECONDS: veth pairs appear (with addresses) and go in the host namespace
    local end=$((SECONDS + $1)) i=0
    while (( SECONDS < end )); do
        i=$(( (i + 1) % 4 ))
        ip -n "$HOST_NS" link add "flap$i" type veth peer name "flap${i}p" 2>/dev/null || true
        ip -n "$HOST_NS" addr add "198.51.100.$((i * 16 + 1))/28" dev "flap$i" 2>/dev/null || true
        ip -n "$HOST_NS" link set "flap$i" up 2>/dev/null || true
        ip -n "$HOST_NS" link set "flap${i}p" up 2>/dev/null || true
        sleep 0.5
        ip -n "$HOST_NS" link del "flap$i" 2>/dev/null || true
        sleep 0.5
        echo $((++FLAPS)) > "$BENCH_TMPDIR/flaps"
    done
}

# stop_engine: the engine, the guest's processes and the guest namespace
stop_engine() {
    local p
    [[ -n $ENGINE_PID ]] && bench_kill_pid "$ENGINE_PID"
    [[ -n $GUEST_SRV_PID ]] && bench_kill_pid "$GUEST_SRV_PID"
    ENGINE_PID="" GUEST_SRV_PID=""
    for p in $(ip netns pids "$GUEST_NS" 2>/dev/null); do bench_kill_pid "$p"; done
    bench_ns_del "$GUEST_NS"
}

ROWS=()   # "engine|status|warm|peak|slope|growth|fds0|fds1|flows|counts|verdict"
FAILED=0

soak_engine() {
    local e=$1 dir=$BENCH_TMPDIR/soak-$1 t0 pids=() p
    mkdir -p "$dir"
    bench_log "== $e: ${MINUTES} min of churn"
    bench_ns_add "$GUEST_NS"
    in_ns_bg "$GUEST_NS" "$dir/guest-tcp.log" "$PYTHON" "$LOAD" tcp-server 0.0.0.0 "$FWD_GUEST_PORT"
    GUEST_SRV_PID=$BG_PID
    bench_wait_for 30 _ready "$dir/guest-tcp.log" || bench_die "the guest's TCP server did not start"
    if ! start_engine "$e" "$dir/engine.log"; then
        ROWS+=("$e|failed to start|||||||||")
        stop_engine
        [[ $e == causeway* ]] && FAILED=1
        return 0
    fi
    sleep 2
    local before
    before=$(sample "$ENGINE_PID") || before="0 0 0"
    t0=$(date +%s)
    sampler "$ENGINE_PID" "$dir/samples" "$t0" &
    bench_track_pid $!
    local sampler_pid=$!

    local bound=$((CHURN_S + 30))
    ip netns exec "$HOST_NS" timeout -k 5 "$bound" "$PYTHON" "$LOAD" tcp-client "$FWD_ADDR" "$FWD_HOST_PORT" \
        "$TCP_COUNT" 16 "$CHURN_S" "$dir/fwd.json" > "$dir/fwd.log" 2>&1 & pids+=($!)
    ip netns exec "$GUEST_NS" timeout -k 5 "$bound" "$PYTHON" "$LOAD" tcp-client "$GW_ADDR" "$GW_TCP_PORT" \
        "$TCP_COUNT" 16 "$CHURN_S" "$dir/gw.json" > "$dir/gw.log" 2>&1 & pids+=($!)
    ip netns exec "$GUEST_NS" timeout -k 5 "$bound" "$PYTHON" "$LOAD" udp-client "$GW_ADDR" "$GW_UDP_PORT" \
        "$UDP_COUNT" 4 "$CHURN_S" "$dir/udp.json" > "$dir/udp.log" 2>&1 & pids+=($!)
    ip netns exec "$GUEST_NS" timeout -k 5 "$bound" "$PYTHON" "$LOAD" dns-client "$DNS_ADDR" \
        "$DNS_COUNT" 8 "$CHURN_S" "$dir/dns.json" > "$dir/dns.log" 2>&1 & pids+=($!)
    ip netns exec "$GUEST_NS" timeout -k 5 "$bound" "$PYTHON" "$LOAD" listeners 20000 20999 \
        "$CHURN_S" "$dir/listeners.json" > "$dir/listeners.log" 2>&1 & pids+=($!)
    FLAPS=0
    echo 0 > "$BENCH_TMPDIR/flaps"
    flapper "$CHURN_S" & pids+=($!)
    for p in "${pids[@]}"; do bench_track_pid "$p"; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; bench_kill_pid "$p"; done

    # settle: up to SETTLE_S for the descriptors to come back
    local after fds0 i
    fds0=${before##* }
    for ((i = 0; i <= SETTLE_S; i++)); do
        after=$(sample "$ENGINE_PID") || { after=""; break; }
        (( ${after##* } <= fds0 + 2 )) && break
        sleep 1
    done
    local flows="–" stats=""
    if [[ $e == causeway* && -n $after ]]; then
        stats=$(ctl stats 2>/dev/null || true)
        printf '%s\n' "$stats" > "$dir/stats.json"
        flows=$(printf '%s' "$stats" | "$PYTHON" -c '
import json, sys
s = json.load(sys.stdin)
g = s["guests"][0]["engine"]
print(g["tcp_fast"]["flows"] + g["udp_flows"] + s.get("dns", {}).get("in_flight", 0), g["host_sockets"],
      s["budget"]["caps"]["slirp_sockets"])' 2>/dev/null || echo "?")
    fi
    local alive=1
    [[ -z $after ]] && alive=0
    bench_kill_pid "$sampler_pid"
    stop_engine

    # figures
    local counts
    counts=$("$PYTHON" - "$dir" "$(cat "$BENCH_TMPDIR/flaps")" <<'EOF'
import json, os, sys
d = sys.argv[1]
def get(name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
f, g, u, q, l = (get(n) for n in ("fwd", "gw", "udp", "dns", "listeners"))
print(f"fwd {f.get('ok', 0)}/{f.get('started', 0)}, gw {g.get('ok', 0)}/{g.get('started', 0)}, "
      f"udp {u.get('ok', 0)}/{u.get('started', 0)}, dns {q.get('ok', 0)}/{q.get('started', 0)} "
      f"({q.get('malformed', 0)} malformed), listeners {l.get('opened', 0)}, link flaps {sys.argv[2]}")
EOF
)
    local fig
    fig=$(awk -v w="$WARMUP_S" '
        { t[NR] = $1; r[NR] = $2; h = ($3 > h ? $3 : h) }
        END {
            n = NR; if (n == 0) { print "? ? ? ?"; exit }
            warm = r[1]; k = 0
            for (i = 1; i <= n; i++) if (t[i] <= w) warm = r[i]
            sx = sy = sxx = sxy = 0
            for (i = 1; i <= n; i++) if (t[i] >= w) { k++; x = t[i] / 60; sx += x; sy += r[i]; sxx += x * x; sxy += x * r[i] }
            slope = (k >= 3 && k * sxx - sx * sx > 0) ? (k * sxy - sx * sy) / (k * sxx - sx * sx) : 0
            m = (n < 5 ? n : 5)
            for (i = 1; i <= m; i++) last[i] = r[n - i + 1]
            for (i = 2; i <= m; i++) for (j = i; j > 1 && last[j - 1] > last[j]; j--) { v = last[j]; last[j] = last[j - 1]; last[j - 1] = v }
            tail = last[int((m + 1) / 2)]
            printf "%d %d %.0f %d\n", warm, h, slope, tail - warm
        }' "$dir/samples" 2>/dev/null || echo "? ? ? ?")
    local warm peak slope growth
    read -r warm peak slope growth <<< "$fig"
    local fds1=${after##* }
    [[ -z $after ]] && fds1="exited"
    local verdict="–"
    if [[ $e == causeway* ]]; then
        local why=()
        (( alive )) || why+=("the engine died")
        if [[ $warm != "?" ]]; then
            local allow=$(( warm / 20 > 2048 ? warm / 20 : 2048 ))
            if (( growth > allow && slope > 64 )); then why+=("RSS not flat"); fi
            (( peak <= MAX_RSS_MB * 1024 )) || why+=("peak over ${MAX_RSS_MB} MiB")
        else
            why+=("no samples")
        fi
        [[ ${flows%% *} == 0 ]] || why+=("flows left")
        # libslirp keeps a guest's UDP socket 240 s after its last datagram (SO_EXPIRE): what
        # it still holds must be within the budget's cap, and nothing else may stay open
        local slirp_left slirp_cap
        read -r _ slirp_left slirp_cap <<< "$flows"
        if [[ -n $after && -n $slirp_cap ]]; then
            (( slirp_left <= slirp_cap )) || why+=("libslirp sockets over the budget")
            (( fds1 <= fds0 + slirp_left + 4 )) || why+=("descriptors left")
        fi
        if (( ${#why[@]} )); then verdict="FAIL: $(IFS=,; echo "${why[*]}")"; FAILED=1; else verdict=PASS; fi
    fi
    ROWS+=("$e|ok|$warm|$peak|$slope|$growth|$fds0|$fds1|$flows|$counts|$verdict")
}

for e in "${ELIST[@]}"; do
    if [[ -n ${SKIP[$e]:-} ]]; then
        ROWS+=("$e|skipped: ${SKIP[$e]}|||||||||")
        continue
    fi
    soak_engine "$e"
done

# ---------------------------------------------------------------------------------------------
printf '\n%-18s %9s %9s %9s %9s %7s %7s %9s  %s\n' engine "warm KiB" "peak KiB" "KiB/min" "growth" \
    "fds<" "fds>" "flows" verdict
printf '%s\n' "---------------------------------------------------------------------------------------------"
for row in "${ROWS[@]}"; do
    IFS='|' read -r e st warm peak slope growth fds0 fds1 flows counts verdict <<< "$row"
    if [[ $st != ok ]]; then
        printf '%-18s %s\n' "$e" "$st"
        continue
    fi
    printf '%-18s %9s %9s %9s %9s %7s %7s %9s  %s\n' "$e" "$warm" "$peak" "$slope" "$growth" "$fds0" "$fds1" \
        "${flows%% *}" "$verdict"
    extra=""
    if [[ $flows == *" "* ]]; then
        read -r _ sl sc <<< "$flows"
        extra="; libslirp sockets left $sl (cap $sc; they expire 240 s after their last datagram)"
    fi
    printf '%-18s   %s%s\n' "" "$counts" "$extra"
done
printf '\nwarm: RSS at the end of the warm-up (%s s); peak: VmHWM; KiB/min: least-squares slope after\n' "$WARMUP_S"
printf 'warm-up; growth: median of the last 5 samples minus warm; fds: before the churn / after it\n'
printf 'settled (up to %s s); flows: fast-path TCP + UDP forward flows + DNS in flight (causeway).\n' "$SETTLE_S"
exit "$FAILED"
