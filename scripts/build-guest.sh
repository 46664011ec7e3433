#!/usr/bin/env bash
#
# build-guest.sh — build causeway's default guest: Debian's cloud kernel + a busybox
# initramfs with the causeway guest agent, for booting under QEMU (KVM or TCG) with the
# network provided by causeway.
#
# Usage: scripts/build-guest.sh [--out DIR] [--agent PATH | --no-agent] [--force] [--quiet]
#                                [--with-bench-tools | --bench-only] [--bench-out DIR2]
#   --out DIR      output directory (default: <repo>/build/guest)
#   --agent PATH   the statically linked guest agent (default: <repo>/build/causeway-agent,
#                  built by `cmake --build build --target causeway-agent`)
#   --no-agent     build the image without the agent (only scripts/guest-image/init.sh as /init)
#   --force        rebuild even if the stamp says the inputs are unchanged
#   --quiet        only print errors and the final line
#   --with-bench-tools  also derive the bench image (below) from the default one
#   --bench-only   only derive the bench image from the default image already in DIR (no
#                  kernel download, no agent needed; DIR is not modified)
#   --bench-out DIR2  where the bench image goes (default: DIR/bench)
#
# Outputs (in DIR):
#   vmlinuz               the kernel (bzImage) from Debian's linux-image-<ver>-cloud-amd64
#   initramfs.cpio.gz     newc cpio, gzip: busybox-static + applet symlinks, /init
#                         (scripts/guest-image/init.sh), /sbin/causeway-agent (the agent, stripped),
#                         /etc/udhcpc.script (scripts/guest-image/udhcpc.script), the virtio/vsock/diag/
#                         blk/balloon modules and /lib/modules/load.list (load order), and /sbin/e2fsck:
#                         e2fsck-static's e2fsck.static when installed, else the host's e2fsck with the
#                         shared libraries ldd lists and the loader (at their host paths), stripped; the
#                         agent checks a distribution's disk with it before mounting it (cw.root=,
#                         vmm/agent/guest/rootfs.hpp)
#   kernel-release        the kernel release string (e.g. 6.1.0-56-cloud-amd64)
#   .stamp                hash of all inputs; the build is skipped when it is unchanged
#   cache/                the downloaded .deb and its extracted tree (reused)
#
# The bench image (--with-bench-tools / --bench-only; for scripts/bench-vm.sh), in DIR2:
#   vmlinuz               the same kernel (a hard link, or a copy across file systems)
#   initramfs.cpio.gz     the default initramfs with a second gzip'd cpio appended (the kernel
#                         unpacks both; later entries win): /usr/bin/iperf3 with the shared
#                         libraries ldd lists and the dynamic loader, at their host paths;
#                         /sbin/cw-bench (scripts/guest-image/bench-guest.sh); /init = scripts/guest-image/init.sh of
#                         this tree (so cw.mode=dhcp-exec exists even in an older default
#                         image). The default image is left as it is (and as small as it is).
#
# Booting: the kernel runs /init (scripts/guest-image/init.sh: the marker-printing test guest its
# cw.mode=... parameters select) unless the command line says rdinit=/sbin/causeway-agent,
# which makes the agent PID 1 — what `causeway run` does. The agent connects to the host
# over vsock (CID 2, port 1024; cw.agent.port=N) or, with cw.agent.transport=serial, over
# the virtio-serial port org.causeway.agent (vmm/agent/guest/boot.hpp).
#
# Inputs hashed into the stamp: this script, the kernel package name and version that
# linux-image-cloud-amd64 depends on, busybox-static's version and binary, the agent binary,
# e2fsck and its libraries, and every file in guest/. Change any of them and the next run
# rebuilds.
#
# Needs (Debian 12 packages): apt (apt-get download / apt-cache), dpkg (dpkg -x),
# busybox-static, e2fsck-static (or e2fsprogs and libc-bin's ldd), cpio, kmod (depmod: the .deb ships no modules.dep), gzip, coreutils,
# binutils (strip; optional: without it the agent goes in with its debug info);
# xz-utils / zstd only if the kernel's modules are compressed. No root needed unless the apt
# lists are missing (then it runs `apt-get update`, which needs root).
# The kernel is never installed into /boot and never built.
#
# Environment: CW_KERNEL_DEB=/path/to/linux-image-*.deb uses that package instead of
# downloading one (offline builds).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/build-guest.sh"
OUT="$ROOT/build/guest"
FORCE=0
QUIET=0
AGENT="$ROOT/build/causeway-agent"
WITH_AGENT=1
BENCH=0            # 1: --with-bench-tools, 2: --bench-only
BENCH_OUT=
META_PKG=linux-image-cloud-amd64

# Modules the guest needs, by module name. Their dependencies are pulled in from modules.dep;
# the initramfs loads everything in dependency order. Names listed in OPTIONAL_MODULES may be
# built in or absent in a given kernel.
MODULES=(
    virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev virtio_mmio
    failover net_failover virtio_net
    vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
    virtio_rng
    virtio_console
    inet_diag tcp_diag udp_diag
    macvlan
    virtio_blk virtio_balloon
)
# virtio_console carries the agent's debugging transport (virtio-serial); the image works
# without it over vsock. macvlan (CONFIG_MACVLAN=m): mirrored mode's guest links
# (vmm/agent/guest/mirror.hpp). virtio_blk: a distribution's ext4 disk (cw.root=/dev/vda);
# virtio_balloon: free page reporting back to the host.
OPTIONAL_MODULES=" virtio_pci_modern_dev virtio_pci_legacy_dev virtio_console "

say() { [[ $QUIET == 1 ]] || printf 'build-guest: %s\n' "$*"; }
die() { printf 'build-guest: ERROR: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        --agent) [[ $# -ge 2 ]] || die "--agent needs a path"; AGENT=$2; WITH_AGENT=1; shift 2 ;;
        --agent=*) AGENT=${1#--agent=}; WITH_AGENT=1; shift ;;
        --no-agent) WITH_AGENT=0; shift ;;
        --force) FORCE=1; shift ;;
        --quiet) QUIET=1; shift ;;
        --with-bench-tools) [[ $BENCH == 2 ]] || BENCH=1; shift ;;
        --bench-only) BENCH=2; shift ;;
        --bench-out) [[ $# -ge 2 ]] || die "--bench-out needs a directory"; BENCH_OUT=$2; shift 2 ;;
        --bench-out=*) BENCH_OUT=${1#--bench-out=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ $BENCH == 2 ]] || mkdir -p "$OUT"
[[ -d $OUT ]] || die "no directory $OUT (--bench-only derives from an existing image)"
OUT=$(cd "$OUT" && pwd)
CACHE="$OUT/cache"
BENCH_OUT=${BENCH_OUT:-$OUT/bench}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install $2"; }
need apt-cache apt
need apt-get apt
need dpkg dpkg
need dpkg-deb dpkg
need cpio cpio
need gzip gzip
need sha256sum coreutils

# ------------------------------------------------------------------ bench image
# build_bench_image: DIR's default image + iperf3 (and its libraries and loader) +
# /sbin/cw-bench + this tree's /init, in BENCH_OUT (see the header).
build_bench_image() {
    local iperf stage tree f n=0
    [[ -f $OUT/vmlinuz && -f $OUT/initramfs.cpio.gz ]] ||
        die "no default image in $OUT to derive the bench image from (build it first: scripts/build-guest.sh --out $OUT)"
    need ldd libc-bin
    iperf=$(command -v iperf3 || true)
    [[ -n $iperf ]] || die "iperf3 not found: apt-get install iperf3"
    iperf=$(readlink -f "$iperf")
    [[ -f $ROOT/scripts/guest-image/bench-guest.sh ]] || die "missing $ROOT/scripts/guest-image/bench-guest.sh"
    mkdir -p "$BENCH_OUT"
    BENCH_OUT=$(cd "$BENCH_OUT" && pwd)
    [[ $BENCH_OUT != "$OUT" ]] || die "--bench-out must differ from --out (the default image stays as it is)"
    stage=$(mktemp -d "$BENCH_OUT/.staging.XXXXXX")
    tree=$stage/tree
    mkdir -p "$tree/usr/bin" "$tree/sbin"
    cp "$iperf" "$tree/usr/bin/iperf3"
    # Every library at the path ldd resolves it to on this host (the loader's default
    # directories include Debian's multiarch ones), and the loader itself ("/lib64/ld-...").
    while IFS= read -r f; do
        [[ -n $f && -e $f ]] || continue
        mkdir -p "$tree$(dirname "$f")"
        cp -L "$f" "$tree$f"
        n=$((n + 1))
    done < <(ldd "$iperf" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    (( n >= 2 )) || die "ldd $iperf listed no libraries and loader (is iperf3 statically linked?)"
    if command -v strip >/dev/null 2>&1; then
        find "$tree" -type f \( -name '*.so*' -o -name iperf3 \) -exec strip --strip-unneeded {} + 2>/dev/null || true
    fi
    install -m 0755 "$ROOT/scripts/guest-image/bench-guest.sh" "$tree/sbin/cw-bench"
    install -m 0755 "$ROOT/scripts/guest-image/init.sh" "$tree/init"
    (cd "$tree" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --quiet -o -0 -H newc -R 0:0) | gzip -9n > "$stage/extra.cpio.gz"
    cat "$OUT/initramfs.cpio.gz" "$stage/extra.cpio.gz" > "$stage/initramfs.cpio.gz"
    mv -f "$stage/initramfs.cpio.gz" "$BENCH_OUT/initramfs.cpio.gz"
    rm -f "$BENCH_OUT/vmlinuz"
    ln "$OUT/vmlinuz" "$BENCH_OUT/vmlinuz" 2>/dev/null || cp "$OUT/vmlinuz" "$BENCH_OUT/vmlinuz"
    [[ -f $OUT/kernel-release ]] && cp "$OUT/kernel-release" "$BENCH_OUT/kernel-release"
    rm -rf "$stage"
    printf 'build-guest: bench image %s: initramfs.cpio.gz %s KiB (default %s KiB + iperf3 %s, %d libraries and loader, /sbin/cw-bench)\n' \
        "$BENCH_OUT" "$(du -k "$BENCH_OUT/initramfs.cpio.gz" | cut -f1)" "$(du -k "$OUT/initramfs.cpio.gz" | cut -f1)" \
        "$(dpkg-query -W -f='${Version}' iperf3 2>/dev/null || echo '?')" $((n - 1))
}
if [[ $BENCH == 2 ]]; then
    build_bench_image
    exit 0
fi

# ------------------------------------------------------------------ busybox-static
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] || die "busybox not found: apt-get install busybox-static"
BUSYBOX=$(readlink -f "$BUSYBOX")
ldd_out=$(ldd "$BUSYBOX" 2>&1 || true)
[[ $ldd_out == *"not a dynamic executable"* || $ldd_out == *"statically linked"* ]] ||
    die "$BUSYBOX is dynamically linked: apt-get install busybox-static"
BB_VERSION=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)
[[ -n $BB_VERSION ]] || BB_VERSION=$("$BUSYBOX" 2>&1 | head -n 1 || true)

# ------------------------------------------------------------------ e2fsck
# e2fsck-static's /sbin/e2fsck.static when installed (865 KiB gzipped); else the host's
# e2fsck and what it links (ldd: libraries and the dynamic loader, at their host paths; about
# 1.5 MiB gzipped, most of it libc).
E2FSCK_LIBS=()
if [[ -x /sbin/e2fsck.static ]]; then
    E2FSCK=$(readlink -f /sbin/e2fsck.static)
else
    E2FSCK=$(command -v e2fsck || true)
    [[ -n $E2FSCK ]] || E2FSCK=/sbin/e2fsck
    [[ -x $E2FSCK ]] || die "e2fsck not found: apt-get install e2fsck-static (or e2fsprogs)"
    E2FSCK=$(readlink -f "$E2FSCK")
    need ldd libc-bin
    mapfile -t E2FSCK_LIBS < <(ldd "$E2FSCK" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    (( ${#E2FSCK_LIBS[@]} >= 2 )) || die "ldd $E2FSCK listed no libraries and loader (install e2fsck-static)"
fi

# ------------------------------------------------------------------ guest agent
if [[ $WITH_AGENT == 1 ]]; then
    [[ -e $AGENT ]] || die "guest agent not found at $AGENT: build it first (cmake --build build --target causeway-agent), pass --agent PATH, or --no-agent for an image without it"
    [[ -f $AGENT && -x $AGENT ]] || die "guest agent $AGENT is not an executable file"
    AGENT=$(readlink -f "$AGENT")
    ldd_out=$(ldd "$AGENT" 2>&1 || true)
    [[ $ldd_out == *"not a dynamic executable"* || $ldd_out == *"statically linked"* ]] ||
        die "guest agent $AGENT is dynamically linked (the initramfs has no libc): build it without CAUSEWAY_SANITIZE (the release preset)"
    AGENT_VERSION=$("$AGENT" --version 2>/dev/null | head -n 1 || true)
    [[ $AGENT_VERSION == causeway-agent* ]] || die "$AGENT --version did not identify a causeway agent (got '${AGENT_VERSION}')"
fi

# ------------------------------------------------------------------ kernel package
apt_updated=0
apt_update_once() {
    [[ $apt_updated == 0 ]] || return 1
    apt_updated=1
    if [[ $(id -u) != 0 ]]; then
        die "apt lists look missing/outdated and 'apt-get update' needs root; run it (as root) and retry"
    fi
    say "apt lists missing or stale: running apt-get update"
    apt-get update -qq >"$OUT/apt-update.log" 2>&1 ||
        die "apt-get update failed (see $OUT/apt-update.log)"
}

resolve_kernel_pkg() {
    apt-cache depends "$META_PKG" 2>/dev/null |
        awk '$1 ~ /^\|?Depends:$/ && $2 ~ /^linux-image-/ { print $2; exit }'
}
candidate_version() {
    apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }'
}

if [[ -n ${CW_KERNEL_DEB:-} ]]; then
    [[ -f $CW_KERNEL_DEB ]] || die "CW_KERNEL_DEB=$CW_KERNEL_DEB does not exist"
    KPKG=$(dpkg-deb -f "$CW_KERNEL_DEB" Package)
    KVER=$(dpkg-deb -f "$CW_KERNEL_DEB" Version)
    say "using local kernel package $KPKG $KVER ($CW_KERNEL_DEB)"
else
    KPKG=$(resolve_kernel_pkg || true)
    if [[ -z $KPKG ]]; then
        apt_update_once || true
        KPKG=$(resolve_kernel_pkg || true)
    fi
    [[ -n $KPKG ]] || die "cannot resolve the kernel package $META_PKG depends on (apt-cache depends $META_PKG found none; is this Debian with a main component in sources.list?)"
    KVER=$(candidate_version "$KPKG")
    [[ -n $KVER && $KVER != "(none)" ]] || die "no installable version of $KPKG in the apt lists"
    say "kernel package: $KPKG $KVER (dependency of $META_PKG)"
fi

# ------------------------------------------------------------------ stamp
input_hash() {
    {
        echo "script $(sha256sum <"$SELF")"
        echo "kernel $KPKG $KVER"
        echo "busybox $BB_VERSION $(sha256sum <"$BUSYBOX")"
        for f in "$E2FSCK" "${E2FSCK_LIBS[@]}"; do echo "e2fsck $f $(sha256sum <"$f")"; done
        if [[ $WITH_AGENT == 1 ]]; then echo "agent $(sha256sum <"$AGENT")"; else echo "agent none"; fi
        if [[ -d $ROOT/guest ]]; then
            (cd "$ROOT/guest" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
        fi
    } | sha256sum | cut -d' ' -f1
}
HASH=$(input_hash)
if [[ $FORCE == 0 && -f $OUT/.stamp && -f $OUT/vmlinuz && -f $OUT/initramfs.cpio.gz ]] &&
    [[ $(cat "$OUT/.stamp") == "$HASH" ]]; then
    say "up to date: $OUT (kernel $(cat "$OUT/kernel-release" 2>/dev/null || echo '?'))"
    [[ $BENCH == 1 ]] && build_bench_image
    exit 0
fi

# ------------------------------------------------------------------ download + extract
mkdir -p "$CACHE"
deb_version_matches() { [[ -f $1 && $(dpkg-deb -f "$1" Package 2>/dev/null) == "$KPKG" && $(dpkg-deb -f "$1" Version 2>/dev/null) == "$KVER" ]]; }

DEB=
if [[ -n ${CW_KERNEL_DEB:-} ]]; then
    DEB=$CW_KERNEL_DEB
else
    for f in "$CACHE/${KPKG}"_*.deb; do
        if deb_version_matches "$f"; then DEB=$f; break; fi
    done
    if [[ -z $DEB ]]; then
        rm -f "$CACHE/${KPKG}"_*.deb
        say "downloading $KPKG=$KVER (apt-get download) into $CACHE"
        apt_opts=()
        # As root, apt drops privileges to _apt, which cannot write into $CACHE: stay root.
        [[ $(id -u) == 0 ]] && apt_opts=(-o APT::Sandbox::User=root)
        dl() { (cd "$CACHE" && apt-get "${apt_opts[@]}" download "$KPKG=$KVER") >"$CACHE/download.log" 2>&1; }
        if ! dl; then
            # The most common cause is missing/outdated lists (the pool file moved on):
            # update once and retry.
            if grep -qiE 'unable to locate|no longer available|404|failed to fetch|has no installation candidate' "$CACHE/download.log" && apt_update_once; then
                KVER=$(candidate_version "$KPKG")
                dl || true
            fi
        fi
        for f in "$CACHE/${KPKG}"_*.deb; do
            [[ -f $f ]] && DEB=$f && break
        done
        if [[ -z $DEB ]]; then
            sed 's/^/  apt: /' "$CACHE/download.log" >&2 || true
            die "could not fetch the kernel package $KPKG=$KVER with apt-get download"
        fi
        KVER=$(dpkg-deb -f "$DEB" Version)
        HASH=$(input_hash)
    else
        say "using cached $(basename "$DEB")"
    fi
fi

KROOT="$CACHE/kernel-$KPKG"
DEB_ID="$KPKG $(dpkg-deb -f "$DEB" Version) $(stat -c %s "$DEB")"
if [[ -f $KROOT/.extracted && $(cat "$KROOT/.extracted") == "$DEB_ID" ]]; then
    say "reusing extracted kernel tree $KROOT"
else
    say "extracting $(basename "$DEB") (dpkg -x) into $KROOT"
    rm -rf "$KROOT"
    mkdir -p "$KROOT"
    dpkg -x "$DEB" "$KROOT"
    # merged-/usr packages may ship modules under usr/lib/modules
    if [[ ! -d $KROOT/lib/modules && -d $KROOT/usr/lib/modules ]]; then
        ln -s usr/lib "$KROOT/lib"
    fi
    echo "$DEB_ID" >"$KROOT/.extracted"
fi
shopt -s nullglob
krels=("$KROOT"/lib/modules/*/)
vmlinuz=("$KROOT"/boot/vmlinuz-*)
shopt -u nullglob
[[ ${#krels[@]} == 1 ]] || die "expected one /lib/modules/<release> in $DEB, found ${#krels[@]}"
[[ ${#vmlinuz[@]} == 1 ]] || die "expected one /boot/vmlinuz-* in $DEB, found ${#vmlinuz[@]}"
KREL=$(basename "${krels[0]}")
KMODDIR="$KROOT/lib/modules/$KREL"
say "kernel release $KREL"

if [[ ! -s $KMODDIR/modules.dep ]]; then
    command -v depmod >/dev/null 2>&1 || [[ -x /sbin/depmod ]] ||
        die "depmod not found (the kernel .deb ships no modules.dep): apt-get install kmod"
    DEPMOD=$(command -v depmod || echo /sbin/depmod)
    say "generating modules.dep (depmod -b)"
    "$DEPMOD" -b "$KROOT" "$KREL" || die "depmod -b $KROOT $KREL failed"
fi

# ------------------------------------------------------------------ module closure
declare -A PATH_OF=() DEPS_OF=() SEEN=()
modname() { local b=${1##*/}; b=${b%%.ko*}; echo "${b//-/_}"; }
while IFS= read -r line; do
    key=${line%%:*}
    PATH_OF[$(modname "$key")]=$key
    DEPS_OF[$key]=${line#*:}
done <"$KMODDIR/modules.dep"

builtin_has() {
    [[ -f $KMODDIR/modules.builtin ]] &&
        awk -v n="$1" '{ b=$0; sub(/.*\//, "", b); sub(/\.ko.*/, "", b); gsub(/-/, "_", b); if (b == n) f=1 } END { exit !f }' "$KMODDIR/modules.builtin"
}

ORDER=()
visit() {
    local p=$1 d i
    [[ -z ${SEEN[$p]:-} ]] || return 0
    SEEN[$p]=1
    local -a deps
    read -r -a deps <<<"${DEPS_OF[$p]:-}"
    # modules.dep lists the closure with the deepest dependencies last: load them first.
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
        d=${deps[i]}
        visit "$d"
    done
    ORDER+=("$p")
}
for m in "${MODULES[@]}"; do
    if [[ -n ${PATH_OF[$m]:-} ]]; then
        visit "${PATH_OF[$m]}"
    elif builtin_has "$m"; then
        say "module $m is built in"
    elif [[ $OPTIONAL_MODULES == *" $m "* ]]; then
        say "optional module $m not present: skipped"
    else
        die "module $m is neither in modules.dep nor built in for $KREL"
    fi
done
say "modules (load order): $(for p in "${ORDER[@]}"; do printf '%s ' "$(modname "$p")"; done)"

# ------------------------------------------------------------------ initramfs tree
STAGE="$OUT/.staging"
rm -rf "$STAGE"
mkdir -p "$STAGE/tree"
TREE="$STAGE/tree"
mkdir -p "$TREE"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,www,root,lib/modules}

cp "$BUSYBOX" "$TREE/bin/busybox"
chmod 0755 "$TREE/bin/busybox"
n_applets=0
while IFS= read -r applet; do
    applet=${applet#/}
    [[ -n $applet && $applet != bin/busybox ]] || continue
    [[ -e $TREE/$applet || -L $TREE/$applet ]] && continue
    mkdir -p "$TREE/$(dirname "$applet")"
    ln -s /bin/busybox "$TREE/$applet"
    n_applets=$((n_applets + 1))
done < <("$BUSYBOX" --list-full)
[[ -L $TREE/bin/sh ]] || die "busybox --list-full gave no bin/sh"
say "busybox $BB_VERSION with $n_applets applet links"

[[ -f $ROOT/scripts/guest-image/init.sh ]] || die "missing $ROOT/scripts/guest-image/init.sh"
install -m 0755 "$ROOT/scripts/guest-image/init.sh" "$TREE/init"
if [[ $WITH_AGENT == 1 ]]; then
    # Stripped: the debug info is most of the binary and no use inside the guest.
    if command -v strip >/dev/null 2>&1; then
        strip -o "$TREE/sbin/causeway-agent" "$AGENT" || die "strip $AGENT failed"
    else
        cp "$AGENT" "$TREE/sbin/causeway-agent"
    fi
    chmod 0755 "$TREE/sbin/causeway-agent"
    say "agent: $AGENT_VERSION ($(du -k "$TREE/sbin/causeway-agent" | cut -f1) KiB) at /sbin/causeway-agent"
else
    say "no agent (--no-agent): the image boots scripts/guest-image/init.sh only"
fi
# e2fsck for a distribution's disk, with its libraries at their host paths (the loader's
# default directories include Debian's multiarch ones), stripped.
mkdir -p "$TREE/sbin"
cp "$E2FSCK" "$TREE/sbin/e2fsck"
for f in "${E2FSCK_LIBS[@]}"; do
    mkdir -p "$TREE$(dirname "$f")"
    cp -L "$f" "$TREE$f"
done
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$TREE/sbin/e2fsck" 2>/dev/null || true
    for f in "${E2FSCK_LIBS[@]}"; do strip --strip-unneeded "$TREE$f" 2>/dev/null || true; done
fi
say "e2fsck $E2FSCK ($(dpkg-query -W -f='${Version}' e2fsprogs 2>/dev/null || echo '?'), ${#E2FSCK_LIBS[@]} libraries and loader: $(du -ck "$TREE/sbin/e2fsck" "${E2FSCK_LIBS[@]/#/$TREE}" | tail -n 1 | cut -f1) KiB)"
if [[ -f $ROOT/scripts/guest-image/udhcpc.script ]]; then
    install -m 0755 "$ROOT/scripts/guest-image/udhcpc.script" "$TREE/etc/udhcpc.script"
fi
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$TREE/etc/passwd"
printf 'root:x:0:\n' >"$TREE/etc/group"
printf '127.0.0.1 localhost\n' >"$TREE/etc/hosts"
echo cw-guest >"$TREE/etc/hostname"
# /dev/console for the kernel to open before /init runs (the kernel's built-in initramfs
# has one too; creating the node needs root).
if [[ $(id -u) == 0 ]]; then
    mknod -m 0600 "$TREE/dev/console" c 5 1
    mknod -m 0666 "$TREE/dev/null" c 1 3
fi

MODDST="$TREE/lib/modules/$KREL"
: >"$TREE/lib/modules/load.list"
for p in "${ORDER[@]}"; do
    src="$KMODDIR/$p"
    dst_rel=${p%.xz}; dst_rel=${dst_rel%.zst}; dst_rel=${dst_rel%.gz}
    mkdir -p "$MODDST/$(dirname "$dst_rel")"
    # busybox insmod uses init_module() on the raw bytes: store modules uncompressed.
    case "$p" in
        *.ko) cp "$src" "$MODDST/$dst_rel" ;;
        *.ko.xz) need xz xz-utils; xz -dc "$src" >"$MODDST/$dst_rel" ;;
        *.ko.zst) need zstd zstd; zstd -qdc "$src" >"$MODDST/$dst_rel" ;;
        *.ko.gz) gzip -dc "$src" >"$MODDST/$dst_rel" ;;
        *) die "unexpected module file $p" ;;
    esac
    echo "$dst_rel" >>"$TREE/lib/modules/load.list"
done
cp "$KMODDIR/modules.builtin" "$MODDST/" 2>/dev/null || true
say "staged ${#ORDER[@]} modules ($(du -sk "$MODDST" | cut -f1) KiB)"

# ------------------------------------------------------------------ pack
say "packing initramfs (newc cpio, gzip)"
(cd "$TREE" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --quiet -o -0 -H newc -R 0:0) | gzip -9n >"$STAGE/initramfs.cpio.gz"
cp "${vmlinuz[0]}" "$STAGE/vmlinuz"

mv -f "$STAGE/vmlinuz" "$OUT/vmlinuz"
mv -f "$STAGE/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
echo "$KREL" >"$OUT/kernel-release"
echo "$HASH" >"$OUT/.stamp"
rm -rf "$STAGE"
printf 'build-guest: built %s: vmlinuz (%s KiB), initramfs.cpio.gz (%s KiB), kernel %s, %s\n' \
    "$OUT" "$(du -k "$OUT/vmlinuz" | cut -f1)" "$(du -k "$OUT/initramfs.cpio.gz" | cut -f1)" "$KREL" \
    "$([[ $WITH_AGENT == 1 ]] && echo "agent (rdinit=/sbin/causeway-agent)" || echo "no agent")"
[[ $BENCH == 1 ]] && build_bench_image
exit 0
