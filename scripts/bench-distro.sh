#!/usr/bin/env bash
# scripts/bench-distro.sh — a distribution's VM beside the busybox image, in one run.
#
#   scripts/bench-distro.sh [--image IMAGE] [--cold-runs N] [--join-runs N] [--json FILE]
#
# Rows (host wall time of the whole `causeway` command, medians):
#   cold_busybox_ms   `causeway run -q -- true`: boot the busybox image, run, power off
#   cold_distro_ms    `causeway run -d NAME -- true` with NAME stopped: start the daemon,
#                     boot the distribution's disk (fsck, mount, switch root), run `true`
#                     (the VM stays up: it is then terminated, outside the timing)
#                     ratio cold_distro / cold_busybox: issue 15's target ≤ 1.3
#   join_ms           `causeway run -d NAME -- true` into the running VM (target ≤ 50)
# and, to see where a join's time goes:
#   client_floor_ms   `causeway --version`: starting the binary (loader, libraries)
#   join_connect_ms, join_ready_ms, join_exited_ms
#                     inside the client (--log-level debug): connect to exec.sock; Hello
#                     → the agent's Ready (the daemon's vsock relay, the agent's fork);
#                     Ready → Exited (Run went with Hello: the guest runs the command —
#                     user lookup, fork, exec)
# Cold runs are interleaved (busybox, distro, busybox, ...). IMAGE is a raw ext4
# distribution image (default $CAUSEWAY_TEST_DISTRO_IMAGE; unset: a busybox ext4 made
# here, which measures causeway, not a distribution's userland). Under TCG the emulated CPU
# bounds the boot and the guest's part of a join. Everything lives in a temporary
# CAUSEWAY_HOME; the daemons are stopped at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cw=${CAUSEWAY:-$here/build/causeway}
guest=${CAUSEWAY_GUEST_DIR:-$here/build/guest}
image=${CAUSEWAY_TEST_DISTRO_IMAGE:-}
cold_runs=3
join_runs=20
json=
while (($#)); do
  case $1 in
    --image) image=$2; shift 2 ;;
    --cold-runs) cold_runs=$2; shift 2 ;;
    --join-runs) join_runs=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench-distro: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x $cw ]] || { echo "bench-distro: no $cw (scripts/setup.sh builds it)" >&2; exit 2; }
[[ -f $guest/vmlinuz ]] || { echo "bench-distro: no guest image in $guest (scripts/build-guest.sh)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "bench-distro: apt-get install qemu-system-x86" >&2; exit 2; }

work=$(mktemp -d)
export CAUSEWAY_GUEST_DIR=$guest CAUSEWAY_HOME=$work/home CAUSEWAY_CONFIG=$work/config
: >"$CAUSEWAY_CONFIG"
cleanup() { timeout 60 "$cw" shutdown >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

what="image $image"
if [[ -z $image ]]; then
  command -v busybox >/dev/null || { echo "bench-distro: apt-get install busybox-static" >&2; exit 2; }
  tree=$work/tree
  mkdir -p "$tree"/{bin,etc,tmp,root,proc,sys,dev,run}
  cp "$(command -v busybox)" "$tree/bin/busybox"
  for a in $("$tree/bin/busybox" --list); do [[ -e $tree/bin/$a ]] || ln -s busybox "$tree/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
  printf 'root:x:0:\n' >"$tree/etc/group"
  image=$work/tiny.ext4
  mkfs.ext4 -q -F -d "$tree" "$image" 256M
  what="a busybox ext4 (no --image / CAUSEWAY_TEST_DISTRO_IMAGE)"
fi
mkdir -p "$CAUSEWAY_HOME/data/distros/bench"
cp --sparse=always "$image" "$CAUSEWAY_HOME/data/distros/bench/rootfs.ext4"
printf '{"format":1,"name":"bench","source":"bench","created":"2026-01-01T00:00:00Z"}\n' \
  >"$CAUSEWAY_HOME/data/distros/bench/distro.json"

accel=tcg
if grep -qE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm && -w /dev/kvm ]]; then accel=kvm; fi
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A vals
add() { vals[$1]+="$2 "; }
timed() {  # NAME COMMAND... → adds ms to NAME; the command must succeed
  local t0 t1
  t0=${EPOCHREALTIME/[.,]/}
  "${@:2}" >/dev/null 2>"$work/last.err" || { echo "bench-distro: $* failed: $(cat "$work/last.err")" >&2; exit 1; }
  t1=${EPOCHREALTIME/[.,]/}
  add "$1" "$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", d / 1000}')"
}

echo "bench-distro: accelerator $accel; $what; $cold_runs cold runs each, $join_runs joins" >&2
for ((i = 1; i <= cold_runs; i++)); do
  timed cold_busybox "$cw" run -q -- true
  timed cold_distro "$cw" run -d bench -- true
  "$cw" terminate bench >/dev/null
  printf '  cold %d/%d: busybox %s ms, distro %s ms\n' "$i" "$cold_runs" \
    "$(awk '{print $NF}' <<<"${vals[cold_busybox]}")" "$(awk '{print $NF}' <<<"${vals[cold_distro]}")" >&2
done

"$cw" run -d bench -- true  # start it
for ((i = 1; i <= join_runs; i++)); do
  timed join "$cw" run -d bench -- true
  "$cw" --log-level debug run -d bench -- true 2>"$work/join.err" >/dev/null
  read -r c r e < <(sed -n 's/.*connected in \([0-9.]*\) ms.*Ready \([0-9.]*\) ms later, Exited \([0-9.]*\) ms after Ready.*/\1 \2 \3/p' "$work/join.err")
  add join_connect "${c:-}"
  add join_ready "${r:-}"
  add join_exited "${e:-}"
  timed client_floor "$cw" --version
done

row() { printf '%-18s %8s ms   (%s)\n' "$1" "$(median <<<"${vals[$1]}")" "${vals[$1]% }"; }
echo
echo "== $(date -u +%FT%TZ) accelerator $accel, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $what"
row cold_busybox
row cold_distro
cb=$(median <<<"${vals[cold_busybox]}")
cd_=$(median <<<"${vals[cold_distro]}")
ratio=$(awk -v a="$cd_" -v b="$cb" 'BEGIN {printf "%.2f", a / b}')
echo "cold ratio distro/busybox: $ratio (target <= 1.3)"
row join
echo "join target: median <= 50 ms"
echo "where a join goes (medians):"
row client_floor
row join_connect
row join_ready
row join_exited
if [[ -n $json ]]; then
  python3 - "$json" "$accel" "$ratio" <<EOF
import json, sys, statistics
vals = {k: [float(x) for x in v.split()] for k, v in {
  "cold_busybox_ms": "${vals[cold_busybox]}", "cold_distro_ms": "${vals[cold_distro]}",
  "join_ms": "${vals[join]}", "client_floor_ms": "${vals[client_floor]}",
  "join_connect_ms": "${vals[join_connect]}", "join_ready_ms": "${vals[join_ready]}",
  "join_exited_ms": "${vals[join_exited]}"}.items()}
out = {k: {"median": statistics.median(v) if v else None, "runs": v} for k, v in vals.items()}
out["accelerator"] = sys.argv[2]
out["cold_ratio"] = float(sys.argv[3])
json.dump(out, open(sys.argv[1], "w"), indent=2)
EOF
fi
