// A distribution's disk as the guest's root: what the agent does as PID 1
// when the kernel command line says cw.root=/dev/vda, and the files it
// manages in the distribution (/etc/hosts, /etc/resolv.conf via netconfig).
//
// Theory of operation (switch_to_disk_root)
//   1. Wait (bounded, kDeviceWait) for the block device: virtio_blk probes
//      asynchronously after its module is loaded, and devtmpfs creates the node.
//   2. Check it: when its superblock says it was cleanly unmounted (valid, no errors,
//      no journal to recover — ext4_needs_check), the check is skipped: e2fsck -p would
//      only read that superblock too, and starting a 1.8 MB static e2fsck costs ~0.2 s
//      under TCG. Otherwise /sbin/e2fsck -p DEVICE (the initramfs carries e2fsck; the
//      disk is not mounted yet, so fixes need no reboot). It replays a journal left by a
//      killed VM. Exit status (e2fsck(8)): 0 clean, 1 repaired, 2 repaired (reboot
//      advised — only meaningful for a mounted file system, so treated as 1);
//      ≥ 4 errors left or an operational error: fatal — the agent prints why and
//      that the image needs `e2fsck -f` on the host, tells the host (Error) and
//      powers off. An initramfs without e2fsck (an older image) skips the check
//      with a warning; the kernel still replays the journal at mount.
//   3. Mount it ext4 read-write on /newroot; move /dev (with /dev/pts and
//      /dev/shm), /proc, /sys and /run into it (MS_MOVE); drop the initramfs's
//      /tmp (the distribution's /tmp is its own).
//   4. Switch root as switch_root(8) does — the initramfs (rootfs) cannot be
//      pivot_root(2)ed: delete the initramfs's files (they are RAM; never
//      crossing into another file system), chdir to the new root, MS_MOVE it
//      onto /, chroot(".").
//   The agent binary keeps running from its deleted initramfs inode; nothing of
//   causeway is copied into the distribution.
//
// Shutdown (stop_and_power_off): SIGTERM to every process, reap them (bounded),
// SIGKILL the rest, sync, remount / read-only — so a clean shutdown leaves a clean
// file system; a killed VM leaves a journal that the next boot's e2fsck replays —
// then power off. With systemd as PID 1 the agent instead asks systemd to power
// off (SIGRTMIN+4 to PID 1: systemd starts poweroff.target, the orderly way)
// and waits to be stopped with everything else.
//
// /etc/hosts (render_hosts) is rewritten when the network is configured unless
// /etc/wsl.conf [network] generateHosts=false: a managed block between marker
// comments (localhost, the hostname on 127.0.1.1, host.causeway.internal → the
// NAT gateway, the IPv6 localhost lines); every other line of the file is the
// user's and is kept, except exact duplicates of managed lines (a distribution's
// stock localhost lines, on the first boot).
//
// Thread safety: single-threaded (PID 1 before and after the session).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace causeway::agent::guest {

constexpr std::chrono::milliseconds kDeviceWait{10'000};
constexpr std::string_view kHostAlias = "host.causeway.internal";
constexpr std::string_view kDefaultNatGateway = "10.0.2.2";
constexpr std::string_view kHostsBegin = "# --- causeway: begin of generated lines";
constexpr std::string_view kHostsEnd = "# --- causeway: end of generated lines";

// ---------------------------------------------------------------- pure
struct FsckVerdict {
  bool ok = false;   // mount it
  std::string text;  // one line for the console and the host
};
// The ext4 superblock (the 1024 bytes at offset 1024 of the device): nullopt when it is
// not one (bad magic); else whether e2fsck must look at it — not cleanly unmounted
// (s_state lacks EXT2_VALID_FS), errors recorded (EXT2_ERROR_FS), or a journal to
// replay (INCOMPAT_RECOVER). Periodic checks (max mount count, interval) are not
// honoured: mkfs.ext4 disables them by default.
std::optional<bool> ext4_needs_check(std::span<const uint8_t> superblock);

// e2fsck's wait status (waitpid) for `device` → what to do.
FsckVerdict classify_fsck(int wait_status, std::string_view device);

// The new /etc/hosts from the current one (`existing`, "" if none).
std::string render_hosts(std::string_view existing, std::string_view hostname, std::string_view gateway);

// ---------------------------------------------------------------- I/O (PID 1)
struct RootResult {
  bool ok = false;
  std::vector<std::string> lines;  // progress for the host's log
  std::string fatal;               // !ok: the console/Error message
};
RootResult switch_to_disk_root(const std::string& device, std::chrono::milliseconds device_wait = kDeviceWait);

// Writes /etc/hosts (see above) below `root`; returns a log line, or an error line in `problem`.
std::string write_hosts(const std::string& root, std::string_view hostname, std::string_view gateway,
                        std::string& problem);

// A boolean of ROOT/etc/wsl.conf (`fallback` when the file or the key is absent).
bool wsl_conf_flag(const std::string& root, std::string_view section, std::string_view key, bool fallback);
// Where the distribution's systemd is ("" when absent).
std::string find_systemd(const std::string& root);

// Mounts cgroup2 on /sys/fs/cgroup (what container tools expect; systemd mounts its own).
std::string mount_cgroup2();

// See "Shutdown" above. `disk_root`: remount / read-only; `systemd_pid1`: ask systemd, wait
// for it (bounded), then exit — this process is not PID 1 then.
[[noreturn]] void stop_and_power_off(bool disk_root, bool systemd_pid1);

}  // namespace causeway::agent::guest
