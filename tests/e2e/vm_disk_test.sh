#!/usr/bin/env bash
# e2e: the guest agent boots an ext4 disk as / (cw.root=/dev/vda): `causeway run --disk IMAGE`
# boots a tiny "distribution" made here — busybox-static as /bin/busybox with its applet links,
# /etc/passwd with root and alice, /etc/group, /etc/wsl.conf ([user] default = alice), a stock
# /etc/hosts with a line of the user's, and /etc/resolv.conf as a dangling systemd-resolved
# symlink — packed with `mkfs.ext4 -d` (no root needed; debugfs sets alice's home owner).
#   Boot 1 (no -u: the wsl.conf default user): `id -un` is alice, HOME=/home/alice, PATH is
#     Debian's user PATH, the cwd is the home, the hostname is cw.hostname's; /etc/hosts has the
#     managed block (host.causeway.internal → 10.0.2.2) and still the user's line;
#     /etc/resolv.conf is a file naming 10.0.2.3; a file is written to the home.
#   Boot 2 (-u root): `id -un` is root with root's PATH, and boot 1's file is there (the disk
#     persists; the first boot shut down cleanly: the image is clean for the host's e2fsck -n).
#
# NOTE for the lead: `causeway run --disk` and `-u` come from the `instance` branch (helper C).
# On a tree without them this test SKIPS (77) loudly; after the merge it runs as is.
#
# Usage: vm_disk_test.sh CAUSEWAY_BIN GUEST_DIR. Exit 77 (skipped) without QEMU, the guest
# image, busybox-static, mkfs.ext4/debugfs or `run --disk`. Two TCG boots (~5 s each).
# Cleans up its temporary directory; starts no process that outlives it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$1
guest=$2
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd qemu-system-x86_64 "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || skip "no guest image in $guest (scripts/build-guest.sh)"
need_cmd busybox "busybox missing (apt-get install busybox-static)"
need_cmd mkfs.ext4 "mkfs.ext4 missing (apt-get install e2fsprogs)"
need_cmd debugfs "debugfs missing (apt-get install e2fsprogs)"
"$cw" run --help 2>/dev/null | grep -q -- '--disk' ||
    skip "this causeway has no 'run --disk' (the instance branch adds it): nothing to boot the disk with"

make_work cw-e2e-disk
export CAUSEWAY_GUEST_DIR=$guest
on_fail() { [[ -f $work/console.log ]] && { echo "--- guest console (tail)"; tail -n 40 "$work/console.log"; }; }

echo "== building the test distribution"
tree=$work/tree
mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc,home/alice,root,tmp,dev,proc,sys,run,var}
cp "$(readlink -f "$(command -v busybox)")" "$tree/bin/busybox"
while IFS= read -r applet; do
    [[ -n $applet && $applet != bin/busybox ]] || continue
    mkdir -p "$tree/$(dirname "$applet")"
    ln -sf /bin/busybox "$tree/$applet"
done < <(busybox --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n' >"$tree/etc/passwd"
printf 'root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n' >"$tree/etc/group"
printf '[user]\ndefault = alice\n' >"$tree/etc/wsl.conf"
printf '127.0.0.1 localhost\n127.0.1.1 buildhost\n10.1.2.3 mynas\n' >"$tree/etc/hosts"
ln -s ../run/systemd/resolve/stub-resolv.conf "$tree/etc/resolv.conf"
chmod 1777 "$tree/tmp"
img=$work/rootfs.ext4
truncate -s 64M "$img"
mkfs.ext4 -q -d "$tree" "$img" || fail "mkfs.ext4 -d failed"
for f in uid gid; do debugfs -w -R "set_inode_field /home/alice $f 1000" "$img" >/dev/null 2>&1; done

echo "== boot 1: the default user"
# shellcheck disable=SC2016  # the guest's shell expands these
out=$(timeout 120 "$cw" run -q --disk "$img" --console-log "$work/console.log" --cmdline 'cw.hostname=cw-disk-test' -- \
    sh -c 'id -un; echo "HOME=$HOME"; echo "PATH=$PATH"; echo "PWD=$(pwd)"; hostname; cat /etc/hosts;
           test -L /etc/resolv.conf && echo resolv-is-a-link; cat /etc/resolv.conf;
           echo persisted > "$HOME/boot1.txt" && echo wrote') || fail "boot 1 failed: $out"
echo "$out" | sed 's/^/  guest: /'
grep -qx 'alice' <<<"$out" || fail "id -un is not alice (the wsl.conf default user)"
grep -qx 'HOME=/home/alice' <<<"$out" || fail "HOME is not /home/alice"
grep -qx 'PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games' <<<"$out" || fail "not Debian's user PATH"
grep -qx 'PWD=/home/alice' <<<"$out" || fail "the cwd is not the home directory"
grep -qx 'cw-disk-test' <<<"$out" || fail "the hostname is not cw.hostname's"
grep -qE '^10\.0\.2\.2[[:space:]]+host\.causeway\.internal$' <<<"$out" || fail "/etc/hosts does not name host.causeway.internal"
grep -qE '^10\.1\.2\.3 mynas$' <<<"$out" || fail "the user's /etc/hosts line was lost"
! grep -q 'resolv-is-a-link' <<<"$out" || fail "/etc/resolv.conf is still a symlink"
grep -qx 'nameserver 10.0.2.3' <<<"$out" || fail "/etc/resolv.conf does not point at 10.0.2.3"
grep -q 'generateResolvConf' <<<"$out" || fail "/etc/resolv.conf has no header saying how to stop causeway writing it"
grep -qx 'wrote' <<<"$out" || fail "could not write to the home directory"
e2fsck -n "$img" >"$work/fsck.log" 2>&1 || fail "the image is not clean after a clean shutdown: $(cat "$work/fsck.log")"

echo "== boot 2: -u root, and boot 1's file"
# shellcheck disable=SC2016  # the guest's shell expands these
out=$(timeout 120 "$cw" run -q --disk "$img" --console-log "$work/console.log" -u root -- \
    sh -c 'id -un; echo "PATH=$PATH"; cat /home/alice/boot1.txt') || fail "boot 2 failed: $out"
echo "$out" | sed 's/^/  guest: /'
grep -qx 'root' <<<"$out" || fail "id -un is not root with -u root"
grep -qx 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' <<<"$out" || fail "not Debian's root PATH"
grep -qx 'persisted' <<<"$out" || fail "boot 1's file did not survive into boot 2"
echo "PASS"
