// A distribution's disk as the guest's root; see rootfs.hpp.
#include "vmm/agent/guest/rootfs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <thread>

#include "base/unique_fd.hpp"
#include "vmm/agent/guest/accounts.hpp"
#include "vmm/agent/guest/boot.hpp"
#include "vmm/agent/guest/netconfig.hpp"

namespace causeway::agent::guest {
namespace {

constexpr const char* kNewRoot = "/newroot";
constexpr const char* kFsck = "/sbin/e2fsck";
constexpr std::chrono::milliseconds kTermWait{3000};  // processes' grace after SIGTERM at shutdown
constexpr std::chrono::milliseconds kKillWait{1000};
constexpr std::chrono::seconds kSystemdWait{90};  // systemd's own DefaultTimeoutStopSec

std::string errno_text(const std::string& what, int e) { return what + ": " + std::strerror(e); }

bool is_dir(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Collapses runs of blanks, so "127.0.0.1\tlocalhost" and "127.0.0.1  localhost" compare equal.
std::string normalized(std::string_view line) {
  std::string out;
  bool blank = false;
  for (char c : line) {
    if (c == ' ' || c == '\t' || c == '\r') {
      blank = !out.empty();
      continue;
    }
    if (blank) out.push_back(' ');
    blank = false;
    out.push_back(c);
  }
  return out;
}

// Runs e2fsck -p on `device`, its report going to the console (our stdout/stderr); returns
// the wait status, or -1 with errno when it could not be started.
int run_fsck(const std::string& device) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const char* argv[] = {kFsck, "-p", device.c_str(), nullptr};
    const char* envp[] = {"PATH=/sbin:/bin", nullptr};
    execve(kFsck, const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return status;
}

// Removes the initramfs's files below the directory `dirfd` (switch_root's job: they are
// RAM), staying on `dev` and leaving `keep` (the new root's mount point) alone.
void remove_tree(int dirfd, dev_t dev, const char* keep) {
  DIR* d = fdopendir(dirfd);
  if (!d) {
    close(dirfd);
    return;
  }
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (keep && std::strcmp(e->d_name, keep) == 0) continue;
    struct stat st {};
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev) continue;
    if (S_ISDIR(st.st_mode)) {
      const int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) remove_tree(sub, dev, nullptr);
      unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
    } else {
      unlinkat(dirfd, e->d_name, 0);
    }
  }
  closedir(d);  // closes dirfd
}

// Reaps children until none are left or `wait` has passed.
void reap_all(std::chrono::milliseconds wait) {
  const auto end = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const pid_t p = waitpid(-1, nullptr, WNOHANG);
    if (p > 0) continue;
    if (p < 0 && errno == ECHILD) return;
    if (std::chrono::steady_clock::now() >= end) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

// ---------------------------------------------------------------- pure
std::optional<bool> ext4_needs_check(std::span<const uint8_t> sb) {
  // ext4 superblock layout (Documentation/filesystems/ext4/super.rst), little-endian.
  constexpr size_t kMagic = 0x38, kState = 0x3A, kIncompat = 0x60;
  constexpr uint16_t kExt4Magic = 0xEF53;
  constexpr uint16_t kValidFs = 0x0001, kErrorFs = 0x0002;
  constexpr uint32_t kIncompatRecover = 0x0004;
  if (sb.size() < 1024) return std::nullopt;
  auto u16 = [&](size_t o) { return static_cast<uint16_t>(sb[o] | (sb[o + 1] << 8)); };
  auto u32 = [&](size_t o) {
    return static_cast<uint32_t>(sb[o]) | (static_cast<uint32_t>(sb[o + 1]) << 8) |
           (static_cast<uint32_t>(sb[o + 2]) << 16) | (static_cast<uint32_t>(sb[o + 3]) << 24);
  };
  if (u16(kMagic) != kExt4Magic) return std::nullopt;
  const uint16_t state = u16(kState);
  return !(state & kValidFs) || (state & kErrorFs) || (u32(kIncompat) & kIncompatRecover);
}

FsckVerdict classify_fsck(int status, std::string_view device) {
  const std::string dev(device);
  FsckVerdict v;
  if (status < 0) {
    v.ok = true;
    v.text = "disk: cannot run " + std::string(kFsck) + " (" + std::strerror(errno) + "): " + dev +
             " mounted without a check (the kernel replays its journal)";
    return v;
  }
  if (WIFSIGNALED(status)) {
    v.text = "disk: e2fsck on " + dev + " was killed by signal " + std::to_string(WTERMSIG(status));
  } else {
    const int code = WEXITSTATUS(status);
    if (code == 0) {
      v.ok = true;
      v.text = "disk: " + dev + " is clean";
      return v;
    }
    if (code == 1 || code == 2) {
      v.ok = true;
      v.text = "disk: e2fsck repaired " + dev + " (exit " + std::to_string(code) + ")";
      return v;
    }
    if (code == 127) {
      v.ok = true;
      v.text = "disk: no " + std::string(kFsck) +
               " in this guest image (rebuild it with scripts/build-guest.sh): " + dev + " mounted without a check";
      return v;
    }
    v.text = "disk: e2fsck -p found errors on " + dev + " it cannot repair (exit " + std::to_string(code) + ")";
  }
  v.text +=
      ": the distribution's image needs a full check on the host: e2fsck -f IMAGE (the rootfs.ext4 of the "
      "distribution, with its VM stopped); powering off";
  return v;
}

std::string render_hosts(std::string_view existing, std::string_view hostname, std::string_view gateway) {
  std::vector<std::string> managed;
  managed.push_back("127.0.0.1\tlocalhost");
  if (!hostname.empty() && hostname != "localhost") {
    std::string line = "127.0.1.1\t" + std::string(hostname);
    if (const auto dot = hostname.find('.'); dot != std::string_view::npos)
      line += " " + std::string(hostname.substr(0, dot));
    managed.push_back(std::move(line));
  }
  managed.push_back(std::string(gateway) + "\t" + std::string(kHostAlias));
  managed.push_back("::1\tlocalhost ip6-localhost ip6-loopback");
  managed.push_back("ff02::1\tip6-allnodes");
  managed.push_back("ff02::2\tip6-allrouters");

  std::string out(kHostsBegin);
  out +=
      " (causeway writes these at boot; to stop it, set generateHosts = false under [network] in "
      "/etc/wsl.conf)\n";
  for (const auto& m : managed) out += m + "\n";
  out += kHostsEnd;
  out += "\n";
  // The user's lines: everything outside an old managed block, minus copies of managed lines.
  bool inside = false;
  size_t start = 0;
  while (start < existing.size()) {
    size_t end = existing.find('\n', start);
    if (end == std::string_view::npos) end = existing.size();
    const std::string_view line = existing.substr(start, end - start);
    start = end + 1;
    if (line.starts_with(kHostsBegin)) {
      inside = true;
      continue;
    }
    if (line.starts_with(kHostsEnd)) {
      inside = false;
      continue;
    }
    if (inside) continue;
    const std::string n = normalized(line);
    bool dup = false;
    for (const auto& m : managed) dup = dup || normalized(m) == n;
    // A stale name for 127.0.1.1 (Debian's installer writes the build host's name there).
    dup = dup || (n.starts_with("127.0.1.1 ") && !hostname.empty());
    if (dup) continue;
    out.append(line);
    out.push_back('\n');
  }
  return out;
}

// ---------------------------------------------------------------- I/O
RootResult switch_to_disk_root(const std::string& device, std::chrono::milliseconds device_wait) {
  RootResult res;
  // 1. The device.
  const auto t0 = std::chrono::steady_clock::now();
  const auto end = t0 + device_wait;
  struct stat st {};
  while (stat(device.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) {
    if (std::chrono::steady_clock::now() >= end) {
      res.fatal = "disk: no block device " + device + " within " + std::to_string(device_wait.count() / 1000) +
                  " s: the VM has no disk attached (QEMU -drive …,if=none + virtio-blk) or virtio_blk did not load";
      return res;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  // 2. The check (skipped for a cleanly unmounted file system).
  std::array<uint8_t, 1024> sb{};
  bool check = true;
  if (UniqueFd dev(open(device.c_str(), O_RDONLY | O_CLOEXEC)); dev) {
    if (pread(dev.get(), sb.data(), sb.size(), 1024) == static_cast<ssize_t>(sb.size()))
      check = ext4_needs_check(sb).value_or(true);  // not ext4: e2fsck says what it is
  }
  const FsckVerdict v =
      check ? classify_fsck(run_fsck(device), device) : FsckVerdict{true, "disk: " + device + " was cleanly unmounted"};
  res.lines.push_back(v.text + " (device after " + std::to_string(waited) + " ms)");
  if (!v.ok) {
    // e2fsck's own report went to the console above (the host shows its tail): the verdict
    // is the one line for the host.
    res.fatal = v.text;
    return res;
  }
  // 3. Mount and move the API file systems.
  mkdir(kNewRoot, 0755);
  if (mount(device.c_str(), kNewRoot, "ext4", 0, nullptr) != 0) {
    res.fatal = errno_text("disk: cannot mount " + device + " as ext4 on " + kNewRoot, errno) +
                ": is the image an ext4 file system (causeway distro list)?";
    return res;
  }
  if (!is_dir(std::string(kNewRoot) + "/etc"))
    res.lines.push_back("disk: warning: " + device + " has no /etc: is it a root file system?");
  umount2("/tmp", MNT_DETACH);
  for (const char* m : {"/dev", "/proc", "/sys", "/run"}) {
    const std::string target = std::string(kNewRoot) + m;
    mkdir(target.c_str(), 0755);
    if (mount(m, target.c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      res.fatal = errno_text(
          std::string("disk: cannot move ") + m + " into the distribution (is " + m + " a directory there?)", errno);
      return res;
    }
  }
  // 4. Switch root.
  struct stat root_st {};
  if (stat("/", &root_st) == 0) {
    const int rootfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd >= 0) remove_tree(rootfd, root_st.st_dev, kNewRoot + 1);
  }
  if (chdir(kNewRoot) != 0 || mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 || chroot(".") != 0 || chdir("/") != 0) {
    res.fatal = errno_text("disk: cannot switch the root to " + device, errno);
    return res;
  }
  res.ok = true;
  res.lines.push_back("disk: " + device + " is the root (ext4, read-write)");
  return res;
}

std::string write_hosts(const std::string& root, std::string_view hostname, std::string_view gateway,
                        std::string& problem) {
  const std::string base = root == "/" ? "" : root;
  const IniFile wsl = IniFile::parse(read_text_file(base + "/etc/wsl.conf"));
  if (!wsl.get_bool("network", "generateHosts", true))
    return "hosts: /etc/hosts left alone (/etc/wsl.conf [network] generateHosts = false)";
  const std::string path = base + "/etc/hosts";
  const std::string text = render_hosts(read_text_file(path), hostname, gateway);
  if (!replace_file(path, text)) {
    problem = errno_text("hosts: cannot write " + path, errno);
    return {};
  }
  return "hosts: " + std::string(kHostAlias) + " is " + std::string(gateway);
}

bool wsl_conf_flag(const std::string& root, std::string_view section, std::string_view key, bool fallback) {
  const std::string base = root == "/" ? "" : root;
  return IniFile::parse(read_text_file(base + "/etc/wsl.conf")).get_bool(section, key, fallback);
}

std::string find_systemd(const std::string& root) {
  const std::string base = root == "/" ? "" : root;
  for (const char* p : {"/lib/systemd/systemd", "/usr/lib/systemd/systemd"}) {
    if (access((base + p).c_str(), X_OK) == 0) return p;
  }
  return {};
}

std::string mount_cgroup2() {
  mkdir("/sys/fs/cgroup", 0755);
  if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0 && errno != EBUSY)
    return errno_text("mount cgroup2 on /sys/fs/cgroup", errno);
  return {};
}

void stop_and_power_off(bool disk_root, bool systemd_pid1) {
  if (systemd_pid1) {
    console("asking systemd (PID 1) to power off");
    kill(1, SIGRTMIN + 4);
    // systemd stops us with everything else; if it does not, PID 1 is not systemd after all
    // (its exec failed: it powers off when we exit).
    std::this_thread::sleep_for(kSystemdWait);
    _exit(0);
  }
  kill(-1, SIGTERM);  // as PID 1: every process but ourselves
  reap_all(kTermWait);
  kill(-1, SIGKILL);
  reap_all(kKillWait);
  sync();
  if (disk_root && mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0)
    console(errno_text("cannot remount / read-only (the next boot's e2fsck replays the journal)", errno));
  power_off();
}

}  // namespace causeway::agent::guest
