#!/usr/bin/env bash
# scripts/fuzz.sh — long libFuzzer runs of causeway's fuzz targets (tests/fuzz/), with a summary:
# executions, coverage (cov: edges, ft: features), corpus size and crashes per target.
#
#   scripts/fuzz.sh                        every target, 30 minutes each, one at a time
#   scripts/fuzz.sh --minutes 10 -j 2 virtio_net_fuzz engine_frame_fuzz
#   scripts/fuzz.sh --list                 the targets
#
# Options: --minutes N (per target, default 30), -j N (targets at once, default 1; the machine's
# cores are what bounds it), --build DIR (default build-asan: `cmake --preset asan-ubsan` and
# the targets are built first), --nice N (default 10). Each target keeps its corpus between
# runs in DIR/fuzz-long/TARGET/corpus (seeded from tests/fuzz/corpus/TARGET); a crash, leak or
# timeout stops that target and its input is left in DIR/fuzz-long/TARGET/ (crash-*, leak-*,
# timeout-*): reproduce with `FUZZER that-file`. Targets that open host sockets run in a
# network namespace of their own (needs root; skipped otherwise). Exit status: 1 if any target
# found something.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# target → max_len, and whether it needs a namespace of its own.
declare -A max_len=(
  [engine_frame_fuzz]=65600 [stream_port_fuzz]=262144 [virtio_net_fuzz]=65536 [virtio_vsock_fuzz]=65536
  [vhost_user_session_fuzz]=65536 [agent_session_fuzz]=65536 [mirror_netlink_fuzz]=2097152
  [tcp_fast_path_fuzz]=2048 [agent_fuzz_protocol]=4096 [dns_fuzz_wire]=1024 [vmm_fuzz_virtqueue]=16385
  [vmm_fuzz_vhost_user]=2048)
declare -A netns=([engine_frame_fuzz]=1 [tcp_fast_path_fuzz]=1)
default_targets=(engine_frame_fuzz stream_port_fuzz virtio_net_fuzz virtio_vsock_fuzz vhost_user_session_fuzz
  agent_session_fuzz mirror_netlink_fuzz)

minutes=30 jobs=1 build=build-asan nice_level=10 targets=()
while (($#)); do
  case $1 in
    --minutes) minutes=$2; shift ;;
    -j) jobs=$2; shift ;;
    --build) build=$2; shift ;;
    --nice) nice_level=$2; shift ;;
    --list) printf '%s\n' "${!max_len[@]}" | sort; exit 0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [[ -n ${max_len[$1]:-} ]] || { echo "fuzz.sh: no target $1 (--list)" >&2; exit 2; }
       targets+=("$1") ;;
  esac
  shift
done
((${#targets[@]})) || targets=("${default_targets[@]}")

export CCACHE_BASEDIR=$here CCACHE_NOHASHDIR=1
if [[ $build == build-asan ]]; then
  cmake --preset asan-ubsan >/dev/null
fi
cmake --build "$build" --target "${targets[@]}" -j 2 >/dev/null

seconds=$((minutes * 60))
run_one() {  # run_one TARGET: one bounded run; its log in WORK/log
  local t=$1 work="$here/$build/fuzz-long/$1"
  mkdir -p "$work/corpus"
  local cmd=("$here/$build/$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" -rss_limit_mb=2048
    -timeout=20 -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus")
  [[ -d tests/fuzz/corpus/$t ]] && cmd+=("$here/tests/fuzz/corpus/$t")
  if [[ -n ${netns[$t]:-} ]]; then
    if [[ $(id -u) != 0 ]]; then
      echo "skipped: needs root for a network namespace of its own" >"$work/log"
      return 0
    fi
    cmd=(unshare --net /bin/sh -c 'ip link set lo up && exec "$@"' fuzz "${cmd[@]}")
  fi
  (cd "$work" && nice -n "$nice_level" "${cmd[@]}") >"$work/log" 2>&1 || true
}

echo "==> ${#targets[@]} target(s), $minutes min each, $jobs at a time ($build)"
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

status=0
printf '%-26s %12s %9s %7s %8s %7s %s\n' target executions exec/s cov ft corpus "crashes/leaks/timeouts"
for t in "${targets[@]}"; do
  work="$here/$build/fuzz-long/$t"
  log="$work/log"
  if grep -q '^skipped' "$log" 2>/dev/null; then
    printf '%-26s %s\n' "$t" "$(cat "$log")"
    continue
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  found=$(grep -cE '^==[0-9]+==ERROR|^SUMMARY: |deadly signal|ALARM: working on the last Unit' "$log" || true)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -1)
  printf '%-26s %12s %9s %7s %8s %7s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$( ((found)) && echo "FOUND: ${artifact:-see $log}" || echo 0)"
  ((found == 0)) || status=1
done
exit $status
