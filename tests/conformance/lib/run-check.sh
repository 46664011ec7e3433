#!/usr/bin/env bash
# run-check.sh — runs ONE conformance check in its own process (scripts/conformance.sh starts
# one of these per check, under `timeout`).  It sources bench-common.sh (cleanup by PID,
# namespaces), lib/common.sh (the check API), the target adapter and the check, runs
# check_main, and leaves the verdict in the result file.  Everything it created is removed on
# exit, whatever happens; the runner also stops what a killed run-check.sh left behind.
#
#   run-check.sh TARGET CHECK RESULT_FILE PID_FILE TMP_DIR NS_PREFIX
set -uo pipefail

CF_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CF_DIR=$(cd "$CF_LIB/.." && pwd)
CF_REPO=$(cd "$CF_DIR/../.." && pwd)

(( $# == 6 )) || { echo "usage: $0 TARGET CHECK RESULT_FILE PID_FILE TMP_DIR NS_PREFIX" >&2; exit 2; }
CF_TARGET=$1
CF_CHECK=$2
CF_RESULT=$3
CF_PIDFILE=$4
CF_TMP=$5
CF_HOST=$6-host
CF_SINK=$6-sink
CF_GUEST=$6-guest

# shellcheck source=../../../scripts/lib/bench-common.sh
. "$CF_REPO/scripts/lib/bench-common.sh"
# shellcheck source=common.sh
. "$CF_LIB/common.sh"
# shellcheck source=/dev/null
. "$CF_DIR/targets/$CF_TARGET.sh"
# shellcheck source=/dev/null
. "$CF_DIR/checks/$CF_CHECK.sh"

bench_init
trap cf_cleanup EXIT
: > "$CF_PIDFILE"
rm -f -- "$CF_RESULT"

check_main
# a check that returns without a verdict is a bug in the check: say so, never pass
cf_fail "check ended without a verdict (bug in checks/$CF_CHECK.sh)"
