#!/usr/bin/env bash
# scripts/test.sh — the whole test suite, from a clean clone:
#   installs what it needs (scripts/setup.sh --deps; as root), checks the
#   layering and lints the files changed since the lint rules came in
#   (scripts/lint.sh), builds the release configuration and the guest image
#   and runs every test on it: unit, component, integration (real namespaces;
#   root), e2e (a real guest under QEMU/TCG; the distribution tests boot a
#   Debian made by scripts/test-distro.sh) and conformance. Then the
#   sanitizer pass: a clang build with ASan + UBSan (-O1) of the test targets
#   and the libFuzzer targets (guest-facing parsers, the virtqueue walker, the
#   TCP fast path, mirrored links), the whole suite again under the sanitizers,
#   and each fuzz target briefly. Tests whose prerequisites are missing are
#   reported as skipped with the reason, never as passed.
#
#   scripts/test.sh              everything (what CI runs)
#   scripts/test.sh --quick      release build only (no sanitizer pass)
#   scripts/test.sh -L unit      extra arguments go to both ctest runs
#
# Compiler output is cached with ccache (~/.cache/ccache, keyed on paths
# relative to the clone), so a second run, in this clone or a fresh one on the
# same machine, recompiles only what changed. CTEST_PARALLEL (default 2) sets
# how many tests run at once; tests that cannot share the machine hold a
# RESOURCE_LOCK.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
quick=0
ctest_args=()
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) ctest_args+=("$arg") ;;
  esac
done

export CCACHE_BASEDIR="$here" CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-10G}
jobs=${CTEST_PARALLEL:-2}
start=$SECONDS
timings=()
phase_name=setup phase_start=$SECONDS
phase() {  # phase NAME: stops the clock of the phase before, prints the banner
  timings+=("$phase_name: $((SECONDS - phase_start)) s")
  phase_name=$1 phase_start=$SECONDS
  echo "==> $1"
}

scripts/setup.sh --deps
status=0
phase "lint"
cmake --preset release >/dev/null
scripts/lint.sh --build build || status=1

phase "release build"
cmake --build --preset release
phase "guest image"
scripts/build-guest.sh --out "$here/build/guest"
phase "test distribution"
# The Debian distribution the VM tests boot (its tarball is cached outside the clone, keyed on
# its inputs; the import is redone here: it is causeway's own code). Without it those tests
# fall back to a busybox disk and say so.
if image=$(scripts/test-distro.sh --build "$here/build" --quiet); then
  export CAUSEWAY_TEST_DISTRO_IMAGE=$image
else
  echo "==> no test distribution (above): the VM tests use their busybox stand-in" >&2
  status=1
fi
# Every test's causeway starts from an empty store (no default distribution), whatever this
# machine's own /var/lib/causeway or ~/.local/share/causeway holds.
export CAUSEWAY_HOME=$here/build/ctest-home
rm -rf "$CAUSEWAY_HOME"
phase "ctest (release)"
ctest --preset release -j "$jobs" --timeout 300 "${ctest_args[@]}" || status=1

if ((!quick)); then
  phase "sanitizer build (clang, ASan + UBSan, libFuzzer targets)"
  cmake --preset asan-ubsan -DCAUSEWAY_GUEST_DIR="$here/build/guest" >/dev/null
  cmake --build --preset asan-ubsan
  phase "ctest (asan-ubsan, fuzz smoke included)"
  # detect_leaks: the sanitizer pass is also the leak check.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset asan-ubsan -j "$jobs" --timeout 300 "${ctest_args[@]}" || status=1
fi
phase "done"
printf '    %s\n' "${timings[@]}"
command -v ccache >/dev/null && ccache --show-stats 2>/dev/null | grep -E 'Hits|Misses' | head -2 | sed 's/^/    ccache /'
echo "==> test.sh finished in $((SECONDS - start)) s: $([[ $status == 0 ]] && echo PASS || echo FAIL)"
exit $status
