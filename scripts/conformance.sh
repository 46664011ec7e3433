#!/usr/bin/env bash
# conformance.sh — does a network engine keep the promises a user relies on?  Runs the small,
# independent checks in tests/conformance/checks/ against one target engine and prints a
# check × result matrix (--attach vm: a subset in one boot of causeway run, lib/vm-batch.sh).
# See --help and tests/conformance/README.md.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CF_REPO=$(cd "$SCRIPT_DIR/.." && pwd)
CF_DIR=$CF_REPO/tests/conformance
CF_LIB=$CF_DIR/lib
TARGETS="causeway-nat causeway-mirrored causeway-vm causeway-vm-mirrored pasta slirp4netns"

usage() {
    cat <<EOF
Usage: $0 --target TARGET [--attach netns|vm] [--guest-dir DIR] [--json FILE] [--only CHECK,...]
       $0 --list
       $0 --merge-md [--brief] FILE.json...  (a Markdown matrix of several --json results)

Runs every check in tests/conformance/checks/ against TARGET and prints a matrix of
  pass  the user's expectation holds
  FAIL  it does not (with a one-line reason)
  n/a   the target does not promise it, or the attachment lacks it (with why; never a pass)
and finally "N passed, N failed, N skipped" (n/a counts as skipped).

Targets:  $TARGETS
  causeway-*  use \$CAUSEWAY (default: $CF_REPO/build/causeway)

Options:
  --target T          the engine to check (required)
  --attach netns|vm   how the guest is attached (default netns).  vm: a subset of the checks
                      (tests/conformance/lib/vm-subset.sh) runs in ONE boot of \`causeway run\`
                      (busybox guest; needs QEMU and the guest image); the rest are n/a with
                      why.  Only --target causeway-nat has a VM adapter.
  --guest-dir DIR     the guest image for --attach vm (default: \$CAUSEWAY_GUEST_DIR, else
                      guest/ beside \$CAUSEWAY, else $CF_REPO/build/guest)
  --json FILE         also write the results as JSON
  --only LIST         run only these checks (comma-separated names; see --list)
  --check-timeout S   stop a check that runs longer than S seconds (default 60; it fails)
  --keep-logs         keep each check's logs (engine, servers) and print where
  --list              list the checks with their one-line summaries
  -h, --help          this text

Exit status: 0 nothing failed, 1 something failed, 2 usage error, not root, or a tool or the
target's binary is missing.  Needs root: each check builds its own namespaces — a "host"
namespace whose only link leads to a sink namespace that forwards nothing (no traffic leaves
the machine), DNS upstreams (dnsmasq) on that host namespace's loopback, and the guest.
Debian packages: iproute2 dnsmasq-base bind9-dnsutils busybox-static socat python3
util-linux, plus passt / slirp4netns for the peer targets; for --attach vm also
qemu-system-x86 and curl (the guest image: scripts/build-guest.sh).
EOF
}

die_usage() { printf 'conformance.sh: %s\n(see --help)\n' "$1" >&2; exit 2; }

all_checks() {
    local f
    for f in "$CF_DIR"/checks/*.sh; do
        [[ -e $f ]] || continue
        f=${f##*/}
        printf '%s\n' "${f%.sh}"
    done
}

check_summary() { # NAME: the CHECK_SUMMARY line of the check's file
    sed -n 's/^CHECK_SUMMARY="\(.*\)"$/\1/p' "$CF_DIR/checks/$1.sh" | head -n 1
}

# ---------------------------------------------------------------------------------------------
# --merge-md: one Markdown table from several --json files (used for RESULTS.md / README)

merge_md() {
    local py=/usr/bin/python3
    [[ -x $py ]] || py=python3
    "$py" - "$@" <<'EOF'
import json, sys
args = sys.argv[1:]
brief = bool(args) and args[0] == "--brief"
if brief:
    args = args[1:]
runs = [json.load(open(p)) for p in args]
checks = []
for r in runs:
    for c in r["results"]:
        if c["check"] not in checks:
            checks.append(c["check"])
cols = ["%s (%s)" % (r["target"], r["attach"]) for r in runs]
print("| check | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(runs))
sym = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a"}
for name in checks:
    cells = []
    for r in runs:
        c = next((x for x in r["results"] if x["check"] == name), None)
        if c is None:
            cells.append("–")
            continue
        cell = sym.get(c["result"], c["result"])
        if c.get("reason") and not (brief and c["result"] == "pass"):
            reason = c["reason"]
            if brief:  # the first clause only
                reason = reason.split(" — ")[0]
                reason = reason if len(reason) <= 90 else reason[:87] + "..."
            cell += ": " + reason.replace("|", "\\|")
        cells.append(cell)
    print("| `%s` | %s |" % (name, " | ".join(cells)))
print()
for r in runs:
    print("- %s (%s), %s: %s — %s" % (r["target"], r["attach"], r["date"], r["engine"], r["summary"]))
EOF
}

# ---------------------------------------------------------------------------------------------
# Arguments

TARGET=""
ATTACH=netns
JSON_OUT=""
ONLY=""
CHECK_TIMEOUT=60
KEEP_LOGS=0
GUEST_DIR=""
(( $# > 0 )) || { usage >&2; exit 2; }
while (( $# > 0 )); do
    case $1 in
        --target) [[ $# -ge 2 ]] || die_usage "--target needs a value"; TARGET=$2; shift 2 ;;
        --target=*) TARGET=${1#*=}; shift ;;
        --attach) [[ $# -ge 2 ]] || die_usage "--attach needs a value"; ATTACH=$2; shift 2 ;;
        --attach=*) ATTACH=${1#*=}; shift ;;
        --json) [[ $# -ge 2 ]] || die_usage "--json needs a value"; JSON_OUT=$2; shift 2 ;;
        --guest-dir) [[ $# -ge 2 ]] || die_usage "--guest-dir needs a value"; GUEST_DIR=$2; shift 2 ;;
        --guest-dir=*) GUEST_DIR=${1#*=}; shift ;;
        --json=*) JSON_OUT=${1#*=}; shift ;;
        --only) [[ $# -ge 2 ]] || die_usage "--only needs a value"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --check-timeout) [[ $# -ge 2 ]] || die_usage "--check-timeout needs a value"; CHECK_TIMEOUT=$2; shift 2 ;;
        --check-timeout=*) CHECK_TIMEOUT=${1#*=}; shift ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        --list)
            for c in $(all_checks); do printf '%-36s %s\n' "$c" "$(check_summary "$c")"; done
            exit 0 ;;
        --merge-md)
            shift
            (( $# > 0 )) || die_usage "--merge-md needs JSON files"
            merge_md "$@"; exit $? ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done

[[ -n $TARGET ]] || die_usage "--target is required (one of: $TARGETS)"
[[ " $TARGETS " == *" $TARGET "* ]] || die_usage "unknown target '$TARGET' (one of: $TARGETS)"
[[ $ATTACH == netns || $ATTACH == vm ]] || die_usage "--attach must be netns or vm"
[[ $CHECK_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die_usage "--check-timeout must be a positive integer"

mapfile -t CHECKS < <(all_checks)
(( ${#CHECKS[@]} > 0 )) || die_usage "no checks found in $CF_DIR/checks"
if [[ -n $ONLY ]]; then
    IFS=',' read -r -a wanted <<< "$ONLY"
    for c in "${wanted[@]}"; do
        [[ -f $CF_DIR/checks/$c.sh ]] || die_usage "unknown check '$c' (see --list)"
    done
    CHECKS=("${wanted[@]}")
fi
if [[ -n $JSON_OUT ]]; then
    [[ $JSON_OUT == /* ]] || JSON_OUT=$PWD/$JSON_OUT
    : > "$JSON_OUT" 2>/dev/null || die_usage "cannot write $JSON_OUT"
fi

if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
    cat >&2 <<EOF

  ************************************************************************
  **  The conformance suite must run as root: every check creates       **
  **  network namespaces, veth pairs and tap devices.  Nothing was      **
  **  checked.                                                          **
  ************************************************************************
  Re-run it as root, e.g.:  sudo $0 --target $TARGET${ONLY:+ --only $ONLY}

EOF
    exit 2
fi

missing=()
for spec in ip:iproute2 ss:iproute2 dnsmasq:dnsmasq-base dig:bind9-dnsutils busybox:busybox-static \
            socat:socat timeout:coreutils unshare:util-linux nsenter:util-linux ping:iputils-ping; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
done
[[ -x /usr/bin/python3 ]] || command -v python3 >/dev/null 2>&1 || missing+=(python3)
if (( ${#missing[@]} > 0 )); then
    printf 'conformance.sh: missing tools; install them first:  apt-get install %s\n' "${missing[*]}" >&2
    exit 2
fi

# The adapter, for its environment check, version and mode probe (checks source it again in
# their own process).
CF_TARGET=$TARGET
export CAUSEWAY="${CAUSEWAY:-$CF_REPO/build/causeway}"
[[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
# shellcheck source=/dev/null
. "$CF_DIR/targets/$TARGET.sh"
if ! why=$(target_check_env); then
    printf 'conformance.sh: target %s cannot run here: %s\n' "$TARGET" "$why" >&2
    exit 2
fi

# ---------------------------------------------------------------------------------------------
# Reasons that make every check n/a without running it

ALL_NA=""
VM_BATCH=0
if [[ $ATTACH == vm ]]; then
    # shellcheck source=../tests/conformance/lib/vm-subset.sh
    . "$CF_LIB/vm-subset.sh"
    if [[ $TARGET != causeway-nat ]]; then
        ALL_NA="no VM adapter for target $TARGET (the VM subset runs causeway run: --target causeway-nat)"
    elif ! "$CAUSEWAY" --help 2>/dev/null | awk '/^Subcommands:/ {f = 1; next} f && $1 == "run" {found = 1} END {exit !found}'; then
        ALL_NA="VM attachment not available: $CAUSEWAY has no run subcommand"
    else
        if [[ -z $GUEST_DIR ]]; then
            if [[ -n ${CAUSEWAY_GUEST_DIR:-} ]]; then GUEST_DIR=$CAUSEWAY_GUEST_DIR
            elif [[ -f $(dirname "$CAUSEWAY")/guest/vmlinuz ]]; then GUEST_DIR=$(dirname "$CAUSEWAY")/guest
            else GUEST_DIR=$CF_REPO/build/guest
            fi
        fi
        [[ $GUEST_DIR == /* ]] || GUEST_DIR=$PWD/$GUEST_DIR
        vm_missing=()
        command -v qemu-system-x86_64 >/dev/null 2>&1 || vm_missing+=(qemu-system-x86)
        command -v curl >/dev/null 2>&1 || vm_missing+=(curl)
        if (( ${#vm_missing[@]} > 0 )); then
            printf 'conformance.sh: --attach vm needs: apt-get install %s\n' "${vm_missing[*]}" >&2
            exit 2
        fi
        if [[ ! -f $GUEST_DIR/vmlinuz || ! -f $GUEST_DIR/initramfs.cpio.gz ]]; then
            printf 'conformance.sh: --attach vm: no guest image (vmlinuz, initramfs.cpio.gz) in %s\n  (build it: scripts/build-guest.sh; or --guest-dir DIR / CAUSEWAY_GUEST_DIR)\n' "$GUEST_DIR" >&2
            exit 2
        fi
        VM_BATCH=1
    fi
elif mode_why=$(target_mode_unavailable); then
    ALL_NA=${mode_why:-mode not available}
fi

# ---------------------------------------------------------------------------------------------
# Running the checks

RUN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/causeway-conformance.XXXXXX")
NS_BASE=cwconf-$$
CUR_PID=""

# stop_leftovers IDX: what a check that was killed left behind: its processes (by the PIDs it
# recorded, only if the start time still matches) and its namespaces and /etc/netns entries.
stop_leftovers() {
    local dir=$RUN_TMP/$1 prefix=$NS_BASE-$1 pid st cur ns
    if [[ -s $dir/pids ]]; then
        while read -r pid st; do
            [[ $pid =~ ^[0-9]+$ ]] || continue
            cur=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) || continue
            [[ $cur == "$st" ]] || continue
            kill -KILL "$pid" 2>/dev/null
        done < "$dir/pids"
    fi
    for ns in "$prefix-guest" "$prefix-host" "$prefix-sink"; do
        ip netns del "$ns" 2>/dev/null
        rm -rf -- "/etc/netns/$ns"
    done
}

on_signal() {
    [[ -n $CUR_PID ]] && kill -TERM "$CUR_PID" 2>/dev/null && wait "$CUR_PID" 2>/dev/null
    [[ -n ${CUR_IDX:-} ]] && stop_leftovers "$CUR_IDX"
    rm -rf -- "$RUN_TMP"
    exit 130
}
trap on_signal INT TERM HUP

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
ENGINE_LINE=$(target_version)
{
    printf '== causeway conformance: target %s, attach %s ==\n' "$TARGET" "$ATTACH"
    printf 'date:    %s\n' "$START_DATE"
    printf 'engine:  %s\n' "$ENGINE_LINE"
    printf 'kernel:  %s %s, %s CPUs, load %s\n' "$(uname -s)" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    [[ -n $ALL_NA ]] && printf 'note:    every check is n/a: %s\n' "$ALL_NA"
    (( VM_BATCH )) && printf 'vm:      one boot of causeway run (guest image %s) for the VM subset: %s\n' "$GUEST_DIR" "${CF_VM_SUBSET[*]}"
    printf '\n'
} >&2

# --attach vm: the subset runs in one boot, before the matrix is filled in
VM_MS=0
if (( VM_BATCH )); then
    CUR_IDX=vm
    dir=$RUN_TMP/vm
    mkdir -p "$dir/verdicts"
    printf '[vm] booting causeway run for %d checks ...\n' "${#CF_VM_SUBSET[@]}" >&2
    t0=$(date +%s%N)
    timeout -k 10 "$CHECK_TIMEOUT" bash "$CF_LIB/vm-batch.sh" "$dir/verdicts" "$dir/pids" "$dir" \
        "$NS_BASE-vm" "$GUEST_DIR" > "$dir/stdout" 2> "$dir/stderr" &
    CUR_PID=$!
    wait "$CUR_PID"; rc=$?
    CUR_PID=""
    VM_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    stop_leftovers vm
    (( rc == 0 )) || printf '[vm] the batch ended with status %s%s\n' "$rc" \
        "$( (( rc == 124 || rc == 137 )) && echo " (stopped after ${CHECK_TIMEOUT} s)")" >&2
    printf '[vm] %.1f s for the boot and the subset\n' "$(awk -v m="$VM_MS" 'BEGIN {print m / 1000}')" >&2
    CUR_IDX=""
fi

declare -a R_NAME=() R_RES=() R_REASON=() R_MS=()
n_pass=0 n_fail=0 n_skip=0
total=${#CHECKS[@]}
idx=0
for c in "${CHECKS[@]}"; do
    idx=$((idx + 1))
    CUR_IDX=$idx
    res="" reason="" ms=0
    if [[ -n $ALL_NA ]]; then
        res=n/a reason=$ALL_NA
    elif (( VM_BATCH )); then
        if ! cf_vm_in_subset "$c"; then
            res=n/a reason=$(cf_vm_na_reason "$c")
        elif [[ -s $RUN_TMP/vm/verdicts/$c ]]; then
            IFS=$'\t' read -r res reason < "$RUN_TMP/vm/verdicts/$c"
            ms=$VM_MS
        else
            res=fail
            reason="no verdict from the VM batch: $(grep -v '^causeway: ' "$RUN_TMP/vm/stderr" 2>/dev/null | tail -n 1)"
        fi
    else
        dir=$RUN_TMP/$idx
        mkdir -p "$dir"
        t0=$(date +%s%N)
        timeout -k 10 "$CHECK_TIMEOUT" bash "$CF_LIB/run-check.sh" "$TARGET" "$c" \
            "$dir/result" "$dir/pids" "$dir" "$NS_BASE-$idx" > "$dir/stdout" 2> "$dir/stderr" &
        CUR_PID=$!
        wait "$CUR_PID"; rc=$?
        CUR_PID=""
        ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        stop_leftovers "$idx"
        if [[ -s $dir/result ]]; then
            IFS=$'\t' read -r res reason < "$dir/result"
        elif (( rc == 124 || rc == 137 )); then
            res=fail reason="check did not finish within ${CHECK_TIMEOUT} s (stopped)"
        else
            res=fail
            reason="check ended without a verdict (status $rc): $(grep -v '^causeway: ' "$dir/stderr" | tail -n 1)"
        fi
        if [[ $res == fail ]] && type target_note >/dev/null 2>&1; then
            note=$(target_note "$c")
            [[ -n $note ]] && reason="$reason — $note"
        fi
    fi
    case $res in
        pass) n_pass=$((n_pass + 1)) ;;
        n/a)  n_skip=$((n_skip + 1)) ;;
        *)    res=fail; n_fail=$((n_fail + 1)) ;;
    esac
    R_NAME+=("$c") R_RES+=("$res") R_REASON+=("$reason") R_MS+=("$ms")
    if [[ -z $ALL_NA ]] && ! { (( VM_BATCH )) && [[ $res == n/a ]]; }; then
        printf '[%2d/%d] %-34s %-4s  %5.1f s  %s\n' "$idx" "$total" "$c" \
            "$( [[ $res == fail ]] && echo FAIL || echo "$res")" "$(awk -v m="$ms" 'BEGIN {print m / 1000}')" \
            "${reason:0:100}" >&2
    fi
done
CUR_IDX=""

# ---------------------------------------------------------------------------------------------
# The matrix

width=34
for c in "${R_NAME[@]}"; do (( ${#c} > width )) && width=${#c}; done
printf '\nConformance matrix — %s, attach %s, %s\n' "$TARGET" "$ATTACH" "$START_DATE"
printf '%-*s  %-*s  %s\n' "$width" check "${#TARGET}" "$TARGET" "reason / note"
printf '%-*s  %-*s  %s\n' "$width" "$(printf '%*s' "$width" '' | tr ' ' -)" "${#TARGET}" \
    "$(printf '%*s' "${#TARGET}" '' | tr ' ' -)" "-------------"
for ((i = 0; i < ${#R_NAME[@]}; i++)); do
    shown=${R_RES[i]}
    [[ $shown == fail ]] && shown=FAIL
    printf '%-*s  %-*s  %s\n' "$width" "${R_NAME[i]}" "${#TARGET}" "$shown" "${R_REASON[i]}"
done
SUMMARY="$n_pass passed, $n_fail failed, $n_skip skipped"
printf '\n'

if [[ -n $JSON_OUT ]]; then
    tsv=$RUN_TMP/results.tsv
    : > "$tsv"
    for ((i = 0; i < ${#R_NAME[@]}; i++)); do
        printf '%s\t%s\t%s\t%s\n' "${R_NAME[i]}" "${R_RES[i]}" "${R_REASON[i]}" "${R_MS[i]}" >> "$tsv"
    done
    py=/usr/bin/python3; [[ -x $py ]] || py=python3
    "$py" - "$tsv" "$JSON_OUT" "$TARGET" "$ATTACH" "$START_DATE" "$ENGINE_LINE" "$SUMMARY" <<'EOF'
import json, sys
tsv, out, target, attach, date, engine, summary = sys.argv[1:8]
rows = []
for line in open(tsv, encoding="utf-8"):
    name, res, reason, ms = line.rstrip("\n").split("\t")
    rows.append({"check": name, "result": res, "reason": reason, "ms": int(ms)})
json.dump({"target": target, "attach": attach, "date": date, "engine": engine,
           "summary": summary, "results": rows}, open(out, "w"), indent=2)
EOF
    printf 'JSON written to %s\n' "$JSON_OUT"
fi

if (( KEEP_LOGS )); then
    printf 'logs kept in %s (one directory per check, in order)\n' "$RUN_TMP"
else
    rm -rf -- "$RUN_TMP"
fi
printf '%s\n' "$SUMMARY"
(( n_fail == 0 ))
