#!/usr/bin/env bash
# Runs a fuzzer (its path and arguments) in a network namespace of its own with only loopback
# up: what a fuzzed segment connects to or sends to never leaves it. Exit 77 (skipped) when not
# root.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
[[ $(id -u) == 0 ]] || skip "needs root for a network namespace of its own"
exec unshare --net /bin/sh -c 'ip link set lo up && exec "$@"' fuzz "$@"
