#!/bin/sh
# Runs a fuzzer (its path and arguments) in a network namespace of its own with only loopback
# up: what a fuzzed segment connects to or sends to never leaves it. Exit 77 (skipped) when not
# root.
if [ "$(id -u)" -ne 0 ]; then echo "SKIPPED: needs root for a network namespace of its own"; exit 77; fi
exec unshare --net /bin/sh -c 'ip link set lo up && exec "$@"' fuzz "$@"
