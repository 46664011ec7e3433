#!/usr/bin/env bash
# scripts/test.sh — the whole test suite, from a clean clone:
#   installs what it needs (scripts/setup.sh --deps; as root), builds the
#   release and ASan/UBSan configurations, builds the guest image, and runs
#   ctest on both: unit, component, integration (real namespaces; root) and
#   e2e (a real guest under QEMU/TCG), then builds the libFuzzer targets with
#   clang (guest-facing parsers, the virtqueue walker, the TCP fast path and
#   mirrored links) and runs each briefly. Tests whose prerequisites are missing
#   are reported as skipped with the reason, never as passed.
#
#   scripts/test.sh              everything (what CI runs)
#   scripts/test.sh --quick      release build only (no sanitizer pass)
#   scripts/test.sh -L unit      extra arguments go to both ctest runs
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
quick=0
ctest_args=()
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) ctest_args+=("$arg") ;;
  esac
done

start=$SECONDS
scripts/setup.sh --deps
echo "==> release build"
cmake --preset release >/dev/null
cmake --build --preset release
echo "==> guest image"
scripts/build-guest.sh --out "$here/build/guest"

status=0
echo "==> ctest (release)"
ctest --preset release --timeout 300 "${ctest_args[@]}" || status=1

if ((!quick)); then
  echo "==> ASan/UBSan build"
  cmake --preset asan-ubsan -DCAUSEWAY_GUEST_DIR="$here/build/guest" >/dev/null
  cmake --build --preset asan-ubsan
  echo "==> ctest (asan-ubsan)"
  # detect_leaks: the sanitizer pass is also the leak check.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan-ubsan --timeout 300 "${ctest_args[@]}" || status=1
  echo "==> fuzz smoke (clang + libFuzzer)"
  if command -v clang++ >/dev/null; then
    cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build-fuzz --target dns_fuzz_wire vmm_fuzz_virtqueue vmm_fuzz_vhost_user tcp_fast_path_fuzz agent_fuzz_protocol
    ctest --test-dir build-fuzz -L fuzz --timeout 300 || status=1
  else
    echo "SKIPPED: no clang++ for the libFuzzer targets (scripts/setup.sh --deps installs clang)"
  fi
fi
echo "==> test.sh finished in $((SECONDS - start)) s: $([[ $status == 0 ]] && echo PASS || echo FAIL)"
exit $status
