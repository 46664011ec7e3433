#!/usr/bin/env bash
# scripts/lint.sh — the static checks CI runs before it builds:
#   1. the layer table (scripts/check-layering.py) on every #include;
#   2. clang-format (.clang-format) on every C++ file of the tree;
#   3. clang-tidy (.clang-tidy; cli/.clang-tidy adds the function-size limit of
#      the composition root) on the library and cli .cpp files changed since BASE
#      (the checks were chosen on those; tests/ is not held to them).
#
#   scripts/lint.sh [--base REV] [--build DIR] [--fix]
#     --base REV   clang-tidy checks files changed since REV (default: the commit in
#                  .clang-tidy-baseline, else the commit that last changed .clang-tidy: the code then passed every check
#                  it lists, so only later changes can fail it)
#     --build DIR  a configured tree with compile_commands.json (default: build)
#     --fix        reformat in place instead of failing on formatting
#
# Exit 1 on any finding, with the findings; a missing tool is a loud SKIPPED.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
base="" build=build fix=0
while (($#)); do
  case $1 in
    --base) base=$2; shift ;;
    --build) build=$2; shift ;;
    --fix) fix=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "lint.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
status=0

echo "--- layering"
scripts/check-layering.py || status=1

echo "--- clang-format"
mapfile -t cxx < <(git ls-files '*.cpp' '*.hpp' | grep -v '^tests/conformance/targets/')
if ! command -v clang-format >/dev/null; then
  echo "SKIPPED: clang-format is not installed (scripts/setup.sh --deps installs it)"
elif ((fix)); then
  clang-format -i "${cxx[@]}"
else
  mapfile -t unformatted < <(for f in "${cxx[@]}"; do clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
  if ((${#unformatted[@]})); then
    echo "not formatted as .clang-format says (fix: scripts/lint.sh --fix):"
    printf '  %s\n' "${unformatted[@]}"
    status=1
  else
    echo "${#cxx[@]} files formatted"
  fi
fi

echo "--- clang-tidy"
# .clang-tidy-baseline names a commit at which clang-tidy was run over every file changed
# since the one before and found them clean: moving it forward after such a run keeps this
# pass to what changed since (it took 5 minutes on 2 cores once 40 files had changed).
if [[ -z $base && -s .clang-tidy-baseline ]]; then base=$(cat .clang-tidy-baseline); fi
[[ -n $base ]] || base=$(git log -1 --format=%H -- .clang-tidy)
if ! command -v clang-tidy >/dev/null; then
  echo "SKIPPED: clang-tidy is not installed (scripts/setup.sh --deps installs it)"
elif [[ -z $base ]]; then
  echo "SKIPPED: no base revision (.clang-tidy is not committed yet)"
elif [[ ! -f $build/compile_commands.json ]]; then
  echo "SKIPPED: no $build/compile_commands.json (configure first: cmake --preset release)"
else
  mapfile -t changed < <({ git diff --name-only --diff-filter=AMR "$base" HEAD; git diff --name-only --diff-filter=AMR HEAD; } |
                         sort -u | grep -E '\.cpp$' | grep -vE '^tests/' || true)
  if ((${#changed[@]} == 0)); then
    echo "no .cpp file changed since ${base:0:12}"
  else
    echo "${#changed[@]} file(s) changed since ${base:0:12}"
    out=$(printf '%s\n' "${changed[@]}" | xargs -P "$(nproc)" -n 1 clang-tidy -p "$build" --quiet 2>/dev/null || true)
    if grep -qE 'warning:|error:' <<<"$out"; then
      grep -E -A3 'warning:|error:' <<<"$out"
      status=1
    else
      echo "clean"
    fi
  fi
fi
exit $status
