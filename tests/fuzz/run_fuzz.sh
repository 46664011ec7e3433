#!/usr/bin/env bash
# run_fuzz.sh WORKDIR FUZZER [libFuzzer arguments...] CORPUS: one bounded libFuzzer run for
# ctest. WORKDIR/corpus (emptied first) takes what the run finds, so the committed CORPUS is
# never written; crash, leak and timeout files land in WORKDIR. The run's exit status is the
# test's.
set -euo pipefail
work=$1 fuzzer=$2
shift 2
rm -rf "$work/corpus"
mkdir -p "$work/corpus"
cd "$work"
exec "$fuzzer" -artifact_prefix="$work/" "$work/corpus" "$@"
