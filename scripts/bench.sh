#!/usr/bin/env bash
# bench.sh — every benchmark in one command: installs what they need (as root, from Debian),
# runs each per-area script that exists (scripts/bench-net.sh, bench-forward.sh, bench-dns.sh),
# and prints one combined table from their --json outputs.  See --help.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
# area:script — the known areas first, in this order, then any other scripts/bench-*.sh
ALL_AREAS="net:bench-net.sh forward:bench-forward.sh dns:bench-dns.sh boot:bench-boot.sh vm:bench-vm.sh"
for f in "$SCRIPT_DIR"/bench-*.sh; do
    [[ -e $f ]] || continue
    f=${f##*/}
    [[ " $ALL_AREAS " == *":$f "* ]] || ALL_AREAS+=" $(n=${f#bench-}; echo "${n%.sh}"):$f"
done
PACKAGES="iperf3 passt slirp4netns wrk dnsperf qemu-system-x86 cpio"
RUNS=""
DURATION=""
QUICK=0
JSON_OUT=""
ONLY=""
INSTALL=1
KEEP_LOGS=0

usage() {
    cat <<EOF
Usage: $0 [--runs N] [--duration S] [--quick] [--json FILE] [--only AREA,...] [--no-install]

Runs every per-area benchmark that exists (scripts/bench-*.sh), one after the other (each
interleaves its own contenders: causeway, pasta, pasta-splice, slirp4netns, veth, QEMU ...):
$(for a in $ALL_AREAS; do printf '  %-8s scripts/%s%s\n' "${a%%:*}" "${a#*:}" \
    "$([[ -x $SCRIPT_DIR/${a#*:} ]] || echo '   (not present: skipped)')"; done)
and prints one table of all their rows:
  area, contender, attach, metric, median, [min – max], runs, causeway vs this, better
"causeway vs this" is how many times better causeway's median is than the row's, for the same
area, metric and attachment (>1: causeway better; in the vm area the reference is causeway-run): causeway/row for metrics where higher is
better (Gbit/s, qps, conn/s), row/causeway where lower is better (µs, ms, MB, misses, CPU s per GB).  The
per-area scripts print causeway/this as measured; this table turns it the same way round.  Absolute numbers vary between machines (and up to 2x between
runs on shared VMs): compare only ratios taken in the same run.

Options (passed on to every area script that understands them):
  --runs N            repetitions per contender
  --duration S        seconds per throughput / rate run
  --quick             fewer runs and shorter ones (--runs 2 --duration 2, fewer listens for the
                      detection rows) unless --runs / --duration are given
  --json FILE         write all rows, merged, as one JSON list to FILE (each row also has "area")
  --only LIST         run only these areas (comma-separated; the names listed above)
  --no-install        do not apt-get install missing packages (just name them)
  --keep-logs         keep each area's JSON (directory printed at the end)
  -h, --help          this text

Needs root (the benchmarks create namespaces; installing needs it too).  As root, the missing
ones of these Debian packages are installed first: $PACKAGES.
Everything runs inside private namespaces whose only uplink leads to a namespace that forwards
nothing: no benchmark traffic leaves the machine.  The causeway binary: \$CAUSEWAY, default
$REPO_DIR/build/causeway.
EOF
}

die_usage() { printf 'bench.sh: %s\n(see --help)\n' "$1" >&2; exit 2; }

while (( $# > 0 )); do
    case $1 in
        --runs) [[ $# -ge 2 ]] || die_usage "--runs needs a value"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --duration) [[ $# -ge 2 ]] || die_usage "--duration needs a value"; DURATION=$2; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --quick) QUICK=1; shift ;;
        --json) [[ $# -ge 2 ]] || die_usage "--json needs a value"; JSON_OUT=$2; shift 2 ;;
        --json=*) JSON_OUT=${1#*=}; shift ;;
        --only) [[ $# -ge 2 ]] || die_usage "--only needs a value"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --no-install) INSTALL=0; shift ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done
[[ -z $RUNS || $RUNS =~ ^[1-9][0-9]*$ ]] || die_usage "--runs must be a positive integer"
[[ -z $DURATION || $DURATION =~ ^[1-9][0-9]*$ ]] || die_usage "--duration must be a positive integer (seconds)"
USER_RUNS=$RUNS USER_DURATION=$DURATION
if (( QUICK )); then
    RUNS=${RUNS:-2}
    DURATION=${DURATION:-2}
fi
AREAS=()
for a in $ALL_AREAS; do
    if [[ -n $ONLY && ,$ONLY, != *",${a%%:*},"* ]]; then continue; fi
    AREAS+=("$a")
done
if [[ -n $ONLY ]]; then
    IFS=',' read -r -a wanted <<< "$ONLY"
    for w in "${wanted[@]}"; do
        [[ " $ALL_AREAS " == *" $w:"* ]] || die_usage "unknown area '$w' (known: $(for a in $ALL_AREAS; do printf '%s ' "${a%%:*}"; done))"
    done
fi
if [[ -n $JSON_OUT ]]; then
    [[ $JSON_OUT == /* ]] || JSON_OUT=$PWD/$JSON_OUT
    : > "$JSON_OUT" 2>/dev/null || die_usage "cannot write $JSON_OUT"
fi

# ---------------------------------------------------------------------------------------------
# Packages

missing_packages() {
    local p st out=()
    for p in $PACKAGES; do
        st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [[ $st == ii* ]] || out+=("$p")
    done
    (( ${#out[@]} == 0 )) || printf '%s\n' "${out[@]}"
}

mapfile -t MISSING < <(missing_packages)
if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
    if (( ${#MISSING[@]} > 0 )); then
        printf 'bench.sh: missing Debian packages: %s\n  (as root: apt-get install %s)\n' \
            "${MISSING[*]}" "${MISSING[*]}" >&2
    fi
    bench_require_root
fi
if (( ${#MISSING[@]} > 0 )); then
    if (( INSTALL )); then
        bench_log "installing missing packages: ${MISSING[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${MISSING[@]}" >&2; then
            bench_log "apt-get install failed; refreshing the package lists and trying once more"
            DEBIAN_FRONTEND=noninteractive apt-get update >&2 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${MISSING[@]}" >&2 ||
                bench_warn "could not install: ${MISSING[*]} — rows that need them will show as missing"
        fi
    else
        bench_warn "missing packages (not installed: --no-install): ${MISSING[*]} — rows that need them will show as missing"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Header

bench_init
BENCH_KEEP_TMP=$KEEP_LOGS
areas_line=""
for a in "${AREAS[@]}"; do
    s=${a#*:}
    areas_line+="${areas_line:+, }${a%%:*} ($s$([[ -x $SCRIPT_DIR/$s ]] || echo ': not present, skipped'))"
done
bench_header "causeway bench: every area, one table" \
    "accel:   $(bench_accel_line)" \
    "areas:   ${areas_line:-none}" \
    "options: ${RUNS:+--runs $RUNS }${DURATION:+--duration $DURATION }$( ((QUICK)) && echo '(--quick)')" \
    "cpu use: $(bench_cpu_busy 1)% of all CPUs busy in the second before the first run"

# ---------------------------------------------------------------------------------------------
# The areas

# script_supports SCRIPT OPTION: the script's --help mentions OPTION
script_supports() { "$SCRIPT_DIR/$1" --help 2>/dev/null | grep -q -- "$2\b"; }

declare -A AREA_STATUS=()
JSONS=()
any_failed=0
for a in "${AREAS[@]}"; do
    area=${a%%:*} script=${a#*:}
    if [[ ! -x $SCRIPT_DIR/$script ]]; then
        AREA_STATUS[$area]="skipped: scripts/$script does not exist (yet)"
        bench_log "== $area: scripts/$script not present — skipped"
        continue
    fi
    args=()
    runs=$RUNS duration=$DURATION
    if (( QUICK )) && script_supports "$script" --quick; then
        args+=(--quick)                      # the script knows best what "quick" means for it
        runs=$USER_RUNS duration=$USER_DURATION
    fi
    [[ -n $runs ]] && script_supports "$script" --runs && args+=(--runs "$runs")
    [[ -n $duration ]] && script_supports "$script" --duration && args+=(--duration "$duration")
    if (( QUICK )); then
        if script_supports "$script" --quick; then
            :
        else
            # bench-forward's detection rows: 50 listens per address per run by default
            script_supports "$script" --listens && args+=(--listens 10)
            script_supports "$script" --rr-count && args+=(--rr-count 2000)
        fi
    fi
    json=$BENCH_TMPDIR/$area.json
    args+=(--json "$json")
    bench_log ""
    bench_log "== $area: scripts/$script ${args[*]}"
    rc=0
    bench_run "$SCRIPT_DIR/$script" "${args[@]}" || rc=$?
    case $rc in
        0) AREA_STATUS[$area]="ok" ;;
        1) AREA_STATUS[$area]="ran; some contenders failed (see its output above)"; any_failed=1 ;;
        *) AREA_STATUS[$area]="did not run (exit status $rc; see its output above)"; any_failed=1 ;;
    esac
    [[ -s $json ]] && JSONS+=("$area=$json")
done

# ---------------------------------------------------------------------------------------------
# One table

MERGED=$BENCH_TMPDIR/all.json
py=/usr/bin/python3
[[ -x $py ]] || py=python3
printf '\n== all areas, %s ==\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '"causeway vs this": how many times better causeway did than the row, on that metric (>1: causeway better;\n'
printf 'for "higher" metrics causeway/row, for "lower" ones row/causeway); "–" without a causeway row or a zero.\n\n'
"$py" - "$MERGED" "${JSONS[@]}" <<'EOF'
import json, sys

out = sys.argv[1]
rows = []
for spec in sys.argv[2:]:
    area, path = spec.split("=", 1)
    try:
        data = json.load(open(path))
    except Exception as e:  # an area that wrote no valid JSON
        print("(%s: unreadable JSON: %s)" % (area, e))
        continue
    for r in data:
        r = dict(r)
        r["area"] = area
        rows.append(r)

HIGHER = ("_gbps", "_mbps", "_bps", "_qps", "_per_s", "qps")
LOWER = ("_us", "_ms", "_mb", "_missed", "_per_gb")
def better(metric):
    if metric.endswith(HIGHER):
        return "higher"
    if metric.endswith(LOWER) or "missed" in metric:
        return "lower"
    return "?"

# the reference row of an (area, attachment, metric): causeway's; in the VM areas that is
# "causeway-run" (bench-vm.sh) where there is no plain "causeway" row
REFS = ("causeway", "causeway-run")
ref = {}
for name in reversed(REFS):
    for r in rows:
        if r.get("contender") == name and r.get("median") is not None:
            ref[(r["area"], r.get("attach"), r.get("metric"))] = r["median"]

def fmt(v):
    if v is None:
        return "–"
    v = float(v)
    if abs(v) >= 1000:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v

head = ("area", "contender", "attach", "metric", "median", "[min – max]", "runs", "causeway vs this", "better")
table = []
for r in rows:
    med = r.get("median")
    key = (r["area"], r.get("attach"), r.get("metric"))
    if med is None:
        ratio = "–"
        medtxt = r.get("status") or "no value"
        spread = ""
    else:
        c = ref.get(key)
        b = better(str(r.get("metric")))
        if c is None or b == "?" or float(med) == 0 or float(c) == 0:
            ratio = "–"
        elif b == "higher":
            ratio = "%.2fx" % (float(c) / float(med))
        else:
            ratio = "%.2fx" % (float(med) / float(c))
        medtxt = fmt(med)
        spread = "[%s – %s]" % (fmt(r.get("min")), fmt(r.get("max")))
    table.append((r["area"], str(r.get("contender")), str(r.get("attach")), str(r.get("metric")),
                  medtxt, spread, str(r.get("runs", "")), ratio, better(str(r.get("metric")))))

if not table:
    print("no rows: no area produced results")
else:
    w = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(head)]
    right = {4, 6, 7}
    def line(cells):
        return "  ".join(c.rjust(w[i]) if i in right else c.ljust(w[i]) for i, c in enumerate(cells)).rstrip()
    print(line(head))
    print("  ".join("-" * x for x in w))
    prev = None
    for t in table:
        if prev is not None and (t[0], t[3]) != prev:
            print()
        print(line(t))
        prev = (t[0], t[3])

json.dump(rows, open(out, "w"), indent=1)
EOF
printf '\n'
for a in "${AREAS[@]}"; do
    printf '%-8s %s\n' "${a%%:*}" "${AREA_STATUS[${a%%:*}]:-not run}"
done
printf '\nNOTE: absolute numbers vary between machines (and up to 2x between runs on shared VMs);\n'
printf '      only ratios between contenders measured in the same run compare.\n'
if [[ -n $JSON_OUT ]]; then
    cp "$MERGED" "$JSON_OUT"
    printf 'JSON (all rows merged) written to %s\n' "$JSON_OUT"
fi
exit "$any_failed"
