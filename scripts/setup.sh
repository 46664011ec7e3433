#!/usr/bin/env bash
# scripts/setup.sh — install causeway's build and test dependencies from
# Debian 12's archive, build causeway and the default guest image, and
# (with --demo) show it working.
#
#   sudo scripts/setup.sh            # install + build (build/causeway, build/guest/)
#   sudo scripts/setup.sh --demo     # ... then run the demo (scripts/demo.sh)
#   sudo scripts/setup.sh --deps     # install packages only
#
# Idempotent: packages already installed are not fetched again, the build is
# incremental, the guest image is cached (scripts/build-guest.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
want_build=1
want_demo=0
for arg in "$@"; do
  case $arg in
    --demo) want_demo=1 ;;
    --deps) want_build=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

# Build: compiler, CMake, and the libraries causeway links (see README, "Dependencies").
build_pkgs=(g++ cmake make pkg-config libslirp-dev libglib2.0-dev libnl-3-dev libnl-route-3-dev
            libboost1.81-dev libc-ares-dev libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
            libfmt-dev libspdlog-dev libsodium-dev libarchive-dev libext2fs-dev libseccomp-dev
            ccache lld)  # the last two: faster rebuilds and links (used when present)
# Tests, the guest image and the benchmarks' peers.
test_pkgs=(iproute2 iputils-ping curl dnsutils iperf3 qemu-system-x86 busybox-static dnsmasq-base
           socat util-linux cpio kmod passt slirp4netns jq python3 procps dnsperf wrk tcpdump
           e2fsprogs mmdebstrap uidmap   # causeway distro: mkfs.ext4/debugfs, create, rootless create
           clang libclang-rt-14-dev   # the sanitizer build and the libFuzzer targets
           clang-format clang-tidy    # scripts/lint.sh
           e2fsck-static)             # the guest image's e2fsck (scripts/build-guest.sh)

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: missing packages: ${missing[*]}" >&2
    echo "setup.sh: run as root (sudo $0) or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "==> installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "==> all packages present"
fi

# Unprivileged namespaces need to open /dev/net/tun, as with slirp4netns and
# pasta. Debian's udev rule makes it 0666; some container hosts ship 0600.
if [[ $(id -u) -eq 0 && -c /dev/net/tun ]] && [[ $(stat -c %a /dev/net/tun) != 666 ]]; then
  echo "==> chmod 0666 /dev/net/tun (Debian's default; needed for causeway netns without root)"
  chmod 0666 /dev/net/tun
fi

((want_build)) || exit 0

# Only what the main job needs: the binary and the guest agent (the image
# embeds it). The tests build in scripts/test.sh.
echo "==> building causeway and its guest agent (build/)"
cmake --preset release >/dev/null
cmake --build --preset release --target causeway causeway-agent
echo "==> building the default guest image (build/guest/)"
"$here/scripts/build-guest.sh" --out "$here/build/guest"

if ((want_demo)); then
  exec "$here/scripts/demo.sh"
fi
echo "==> done: $here/build/causeway (try: $here/build/causeway --help)"
