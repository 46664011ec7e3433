#!/usr/bin/env bash
# scripts/test-distro.sh — the Debian distribution the VM tests and the VM
# conformance targets boot (scripts/test.sh runs it before ctest).
#
#   scripts/test-distro.sh [--build DIR] [--quiet]
#
# Two steps, so the part that needs the network runs once per machine and the
# part that is causeway's own code runs on every CI run:
#   1. the root filesystem tarball: Debian bookworm, variant minbase, plus what
#      the tests and the conformance checks run in the guest (python3, curl,
#      dig, iproute2, ping), made by mmdebstrap from Debian's archive. It is
#      cached OUTSIDE the clone, in $CAUSEWAY_TEST_CACHE (default: root
#      /var/cache/causeway-test, others ~/.cache/causeway-test), under a key
#      hashed from its inputs (suite, variant, packages, mmdebstrap's version);
#      a machine without the cache builds it (≈ 100 s here, ≈ 270 MB).
#   2. `causeway distro import debian-test TARBALL` into CAUSEWAY_HOME=DIR/test-home
#      (DIR: the build directory, default build/), redone when the tarball or
#      the causeway binary changed.
#
# Prints the image's path last. Needs root for mmdebstrap's root mode, or
# subordinate IDs for its unshare mode (see README, "Distributions").
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build
quiet=0
while (($#)); do
  case $1 in
    --build) build=$(cd "$2" && pwd); shift ;;
    --quiet) quiet=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "test-distro.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
say() { ((quiet)) || echo "test-distro: $*" >&2; }

suite=bookworm
variant=minbase
packages=python3,curl,dnsutils,iproute2,iputils-ping,ca-certificates,procps
name=debian-test
cw=$build/causeway
[[ -x $cw ]] || { echo "test-distro: $cw not built (cmake --build --preset release)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "test-distro: mmdebstrap not installed (scripts/setup.sh --deps)" >&2; exit 1; }

if [[ -n ${CAUSEWAY_TEST_CACHE:-} ]]; then cache=$CAUSEWAY_TEST_CACHE
elif [[ $(id -u) -eq 0 ]]; then cache=/var/cache/causeway-test
else cache=${XDG_CACHE_HOME:-$HOME/.cache}/causeway-test
fi
mkdir -p "$cache"
key=$(printf '%s\n' "$suite" "$variant" "$packages" "$(dpkg-query -W -f='${Version}' mmdebstrap)" | sha256sum | cut -c1-16)
tarball=$cache/$name-$key.tar

if [[ ! -s $tarball ]]; then
  say "building the test distribution's root filesystem (mmdebstrap $suite $variant + $packages; once per machine)"
  mode=root
  [[ $(id -u) -eq 0 ]] || mode=unshare
  t0=$SECONDS
  tmp=$(mktemp "$cache/.$name-XXXXXX.tar")
  trap 'rm -f "$tmp"' EXIT
  if ! mmdebstrap --quiet --mode="$mode" --variant="$variant" --include="$packages" "$suite" "$tmp" >"$tmp.log" 2>&1; then
    tail -20 "$tmp.log" >&2
    rm -f "$tmp.log"
    echo "test-distro: mmdebstrap failed (log above)" >&2
    exit 1
  fi
  rm -f "$tmp.log"
  mv "$tmp" "$tarball"
  trap - EXIT
  say "tarball ready in $((SECONDS - t0)) s: $tarball ($(du -h "$tarball" | cut -f1))"
  # Older tarballs of other keys are of no further use.
  find "$cache" -maxdepth 1 -name "$name-*.tar" ! -name "$(basename "$tarball")" -delete
fi

export CAUSEWAY_HOME=$build/test-home
image=$CAUSEWAY_HOME/data/distros/$name/rootfs.ext4
stamp=$CAUSEWAY_HOME/$name.stamp
want=$(printf '%s\n' "$key" "$(sha256sum "$cw" | cut -c1-16)")
if [[ ! -f $image || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  "$cw" distro remove "$name" >/dev/null 2>&1 || true
  say "importing it (causeway distro import $name)"
  t0=$SECONDS
  import_args=(distro import "$name" "$tarball")
  ((quiet)) && import_args+=(--quiet)
  "$cw" "${import_args[@]}"
  printf '%s\n' "$want" >"$stamp"
  say "imported in $((SECONDS - t0)) s"
fi
echo "$image"
