#!/bin/sh
# ctest-vm.sh — ctest's entry for the conformance suite's VM subset (tests/conformance/CMakeLists.txt):
#   ctest-vm.sh CONFORMANCE_SH GUEST_DIR
# Skips LOUDLY (exit 77, which ctest shows as "Skipped", never as a pass) when it cannot run:
# not root, no QEMU, no curl, no guest image.  Otherwise runs
#   conformance.sh --target causeway-nat --attach vm --guest-dir GUEST_DIR
# (one boot of `causeway run`, ~10 s under TCG) and exits with its status.
set -eu
conformance=$1
guest=${CAUSEWAY_GUEST_DIR:-$2}
skip() {
    echo "************************************************************************"
    echo "** SKIPPED: the VM conformance subset did not run: $1"
    echo "************************************************************************"
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "it needs root (network namespaces)"
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
command -v curl >/dev/null 2>&1 || skip "no curl (apt-get install curl)"
{ [ -f "$guest/vmlinuz" ] && [ -f "$guest/initramfs.cpio.gz" ]; } ||
    skip "no guest image in $guest (scripts/build-guest.sh builds it; or set CAUSEWAY_GUEST_DIR)"
exec "$conformance" --target causeway-nat --attach vm --guest-dir "$guest"
