// The engine's confinement of itself (see sandbox.hpp for the layers and the contract).
//
// Theory of operation
//   confine() applies five layers in order, each on its own, and records in Status what
//   it applied and, for what it could not, why. Order matters:
//     mount isolation first: it needs privilege (CAP_SYS_ADMIN in the owning user
//       namespace: root's, or a new user namespace of our own when unprivileged) and
//       /proc (uid_map, the task count for RLIMIT_NPROC);
//     rlimits next (RLIMIT_NPROC is counted from /proc, which the new root no longer has:
//       the count is taken before pivot_root, the limit set after);
//     no_new_privs, then the capability drop (the bounding set needs CAP_SETPCAP, so it
//       goes before the effective set is cleared);
//     seccomp last: the filter's allowlist need not cover the set-up syscalls above.
//
//   The empty root (bubblewrap's shape): a tmpfs is mounted over /tmp in the new mount
//   namespace (invisible to the host: everything is MS_PRIVATE first), holding newroot/
//   and oldroot/. pivot_root moves the old root to /oldroot, so every kept path is bound
//   from /oldroot/PATH to /newroot/PATH (sources under /tmp stay reachable), read-only
//   ones remounted MS_RDONLY. Then the old root is detached, /newroot becomes / (the
//   pivot_root(".", ".") idiom), and the tmpfs root itself is made read-only. The host's
//   filesystem is gone except those paths; /proc, /sys and /dev are gone too, except the
//   two device nodes every mode keeps (/dev/null for c-ares' empty resolv.conf, /dev/urandom
//   for glib's and c-ares' random seeds).
//
//   A kept directory is a mount point in our namespace, so it cannot be removed by its
//   path (EBUSY). remove_kept_directory() removes its contents by path and the directory
//   itself through a descriptor of its parent taken before pivot_root (the real parent's
//   entry is not a mount point here).
//
//   The seccomp filter (libseccomp, native architecture; a foreign one is killed) is the
//   common allowlist below, the mode's group, and the caller's extra names. Syscall names
//   that this architecture lacks (poll, epoll_wait on aarch64) are skipped. Arguments are checked
//   where that is cheap and meaningful: clone only for threads (CLONE_THREAD set: no new
//   processes), clone3 fails with ENOSYS (glibc then uses clone), socket only for the
//   families the engine uses, ioctl only for its requests, mmap/mprotect never PROT_EXEC
//   (no new code). Default action: SECCOMP_RET_KILL_PROCESS (SIGSYS); with NDEBUG unset,
//   SECCOMP_RET_TRAP and a SIGSYS handler that writes the syscall's name (from a table
//   resolved at confine time: the handler may not allocate) and then dies by SIGSYS.
//
//   Sanitizer builds (ASan/UBSan): LeakSanitizer's exit check clones a tracer task,
//   ptrace()s and reads /proc/self/maps, and the symbolizer execs llvm-symbolizer, none of
//   which the engine needs. There the mount layer and RLIMIT_NPROC are skipped and the
//   filter logs (SCMP_ACT_LOG) instead of killing; Status.reason says so.
//
// Limits: a kept directory is kept whole (the resolver's directory is /etc on most hosts;
// as root, root-owned 0600 files there stay readable: no capability is needed to read
// one's own files). A kept path replaced on the host by a new directory (not a new file
// in it) is not followed. RLIMIT_NPROC counts threads too, so kThreadHeadroom threads may
// still start (the output pumps of `causeway run`); the filter forbids new processes
// whatever the limit says.
//
// Thread safety: confine() before threads start; the status is written once, then read.
#include "base/sandbox/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "base/log.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAUSEWAY_SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define CAUSEWAY_SANDBOX_SANITIZED 1
#endif
#endif
#ifndef CAUSEWAY_SANDBOX_SANITIZED
#define CAUSEWAY_SANDBOX_SANITIZED 0
#endif

namespace causeway::sandbox {
namespace fs = std::filesystem;

namespace {

constexpr bool kSanitized = CAUSEWAY_SANDBOX_SANITIZED != 0;
#ifdef NDEBUG
constexpr bool kTrapAndLog = false;
#else
constexpr bool kTrapAndLog = true;
#endif

// Threads that may still start after confine() (RLIMIT_NPROC counts threads): the two
// OutputPump writers of `causeway run`, with room to spare.
constexpr rlim_t kThreadHeadroom = 4;
// Every mode's device nodes (see the theory of operation).
const std::array<const char*, 2> kDevices = {"/dev/null", "/dev/urandom"};

// ---------------------------------------------------------------- the allowlist
//
// Derived by running each mode under strace -f -c after its set-up (serve with QEMU
// traffic, run with guest DNS/TCP/UDP/forwards, run -d with exec sessions and idle
// shutdown, mirrored VM mode) and by their tests; each group says why it is there.
struct Group {
  const char* why;
  std::vector<const char*> names;
};

const std::vector<Group>& common_groups() {
  static const std::vector<Group> groups = {
      {"the event loop: Asio's epoll reactor and its timerfd (made before confinement); poll: c-ares and the "
       "vhost-user message reads; ppoll and epoll_pwait are what aarch64 has instead",
       {"epoll_wait", "epoll_pwait", "epoll_ctl", "timerfd_settime", "poll", "ppoll"}},
      {"serve: each QEMU connection's engine gets a libslirp bridge with an epoll set of its own", {"epoll_create1"}},
      {"descriptors: sockets, the vhost-user kick/call eventfds, the guest's memory fds, our stdio; lseek: the "
       "console and QEMU log tails in an error report",
       {"read", "readv", "write", "writev", "close", "fcntl", "lseek", "fstat", "newfstatat"}},
      {"sockets: NAT flows, forwards, DNS upstreams (c-ares), the control API, QEMU's sockets; SCM_RIGHTS for "
       "vhost-user memory tables (socket() itself is checked by family below)",
       {"bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "setsockopt", "getsockopt",
        "shutdown", "sendto", "recvfrom", "sendmsg", "recvmsg"}},
      {"a relayed connection to the guest (auto forwards in a VM) is a socketpair bridged to a vsock stream",
       {"socketpair"}},
      {"memory: allocation, the guest RAM regions vhost-user maps and unmaps (mmap/mprotect checked below: never "
       "executable)",
       {"brk", "munmap", "mremap", "madvise"}},
      {"threads: OutputPump's writers (clone checked below: threads only), their start, locks and exit",
       {"futex", "set_robust_list", "rseq", "gettid", "exit", "exit_group"}},
      {"signals: Asio's signal_set (SIGINT/SIGTERM), raise() of SIGSYS or SIGABRT, QEMU's SIGTERM/SIGKILL",
       {"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "tgkill", "getpid", "kill"}},
      {"time and identity: clocks (the vDSO's fallback), the control API's peer uid check, the fd budget, "
       "random numbers (TCP ISNs, DNS ids)",
       {"clock_gettime", "gettimeofday", "clock_nanosleep", "getuid", "geteuid", "prlimit64", "getrandom"}},
      {"files that stay reachable: the resolver file and its symlinks (DNS watch re-reads it, re-adds its watches), "
       "libslirp's resolv.conf without DNS tunneling, the control socket's unlink at exit, remove_kept_directory()",
       {"openat", "readlink", "readlinkat", "unlink", "unlinkat", "rmdir", "getdents64", "inotify_add_watch",
        "inotify_rm_watch"}},
  };
  return groups;
}

// Each mode's additions to the common list.
const std::map<std::string, std::vector<Group>, std::less<>>& mode_groups() {
  static const std::vector<Group> vm = {
      {"QEMU: its exit (its pidfd becomes readable, then it is reaped), terminate() with SIGTERM then SIGKILL",
       {"wait4", "waitid", "pidfd_send_signal"}},
      {"the guest command's stdin: CommandIo reads a dup of fd 0 once the command starts", {"dup"}},
      {"the console log's rotation (vmm/machine/console_log.hpp: FILE becomes FILE.1 at half its cap); in "
       "instance mode also state.json, written by write-then-rename",
       {"rename", "renameat", "renameat2"}},
  };
  static const std::vector<Group> instance_extra = {
      {"after Ready: exec.sock bound under umask 077", {"umask"}},
  };
  static const std::vector<Group> mirrored = {
      {"mirrored mode: the host's links, addresses and routes followed over rtnetlink (socket family below)", {}},
  };
  static const std::map<std::string, std::vector<Group>, std::less<>> m = [] {
    std::map<std::string, std::vector<Group>, std::less<>> out;
    out["serve"] = {};
    out["netns"] = {};
    out["netns-mirrored"] = mirrored;
    out["vm"] = vm;
    out["vm-mirrored"] = vm;
    out["vm-mirrored"].insert(out["vm-mirrored"].end(), mirrored.begin(), mirrored.end());
    out["instance"] = vm;
    out["instance"].insert(out["instance"].end(), instance_extra.begin(), instance_extra.end());
    out["instance-mirrored"] = out["instance"];
    out["instance-mirrored"].insert(out["instance-mirrored"].end(), mirrored.begin(), mirrored.end());
    return out;
  }();
  return m;
}

// ioctl requests the engine makes after set-up.
const std::vector<unsigned long>& allowed_ioctls() {
  static const std::vector<unsigned long> v = {
      FIONBIO,     // Asio: non-blocking sockets it opens (flows, forwards, accepted connections)
      FIONREAD,    // Asio and libslirp: bytes available (also SIOCINQ)
      TIOCOUTQ,    // SIOCOUTQ: unsent bytes (TCP fast path backpressure)
      TCGETS,      // the guest command's terminal: tcgetattr
      TCSETS,      // tcsetattr(TCSANOW) restoring it
      TCSETSW,     // tcsetattr(TCSADRAIN)
      TCSETSF,     // tcsetattr(TCSAFLUSH)
      TIOCGWINSZ,  // window size (SIGWINCH)
  };
  return v;
}

// socket() families: IPv4/IPv6 flows and forwards, unix (control, exec.sock, vhost-user),
// netlink (mirrored mode's host view, sock_diag), vsock is ours (no AF_VSOCK socket).
const std::array<int, 4> kSocketFamilies = {AF_INET, AF_INET6, AF_UNIX, AF_NETLINK};

// ---------------------------------------------------------------- process-wide state

// The one record of what confine() applied: the sandbox is a property of the process,
// not of an object graph. Written once before threads start; read-only after.
struct ProcessState {
  Status status;
  bool confined = false;
  // remove_kept_directory(): a kept directory → a descriptor of its real parent.
  std::map<fs::path, int> parents;
  // The SIGSYS handler's names (debug builds), resolved before the filter loads.
  std::array<std::array<char, 24>, 512> names{};
};
ProcessState& state() {
  static ProcessState s;  // NOLINT: see ProcessState
  return s;
}

std::string errno_text(const char* what, int e = errno) { return std::string(what) + ": " + std::strerror(e); }

void append_reason(Status& s, const std::string& why) {
  if (!s.reason.empty()) s.reason += "; ";
  s.reason += why;
}

bool write_file(const char* path, const std::string& text) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// ---------------------------------------------------------------- layer 1: mount isolation

// mkdir -p of `p` (absolute) under `base`.
bool make_dirs(const std::string& base, const fs::path& p) {
  std::string cur = base;
  for (const auto& part : p.relative_path()) {
    cur += "/" + part.string();
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

// The flags a bind's remount must keep (in a user namespace they are locked).
unsigned long kept_flags(const char* path) {
  struct statvfs v {};
  if (::statvfs(path, &v) != 0) return 0;
  unsigned long f = 0;
  if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (v.f_flag & ST_NODEV) f |= MS_NODEV;
  if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (v.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (v.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (v.f_flag & ST_RELATIME) f |= MS_RELATIME;
  if (v.f_flag & ST_RDONLY) f |= MS_RDONLY;
  return f;
}

// Binds /oldroot/PATH onto /newroot/PATH. Missing paths are skipped (a control socket's
// directory always exists; a device may not).
std::optional<std::string> bind_path(const fs::path& path, bool writable) {
  const std::string src = "/oldroot" + path.string();
  const std::string dst = "/newroot" + path.string();
  struct stat st {};
  if (::stat(src.c_str(), &st) != 0) return std::nullopt;
  if (!make_dirs("/newroot", path.parent_path())) return errno_text(("mkdir " + dst).c_str());
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(dst.c_str(), 0755) != 0 && errno != EEXIST) return errno_text(("mkdir " + dst).c_str());
  } else {
    const int fd = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno_text(("create " + dst).c_str());
    ::close(fd);
  }
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return errno_text(("bind " + path.string()).c_str());
  // Nothing set-uid, and no devices except the device nodes themselves.
  unsigned long flags = kept_flags(dst.c_str()) | MS_NOSUID;
  if (!S_ISCHR(st.st_mode)) flags |= MS_NODEV;
  if (!writable) flags |= MS_RDONLY;
  if (::mount(nullptr, dst.c_str(), nullptr, MS_REMOUNT | MS_BIND | flags, nullptr) != 0)
    return errno_text(("remount " + path.string()).c_str());
  return std::nullopt;
}

// The paths to bind, parents first, without those a kept ancestor already covers (a
// read-write ancestor covers everything under it, a read-only one what is read-only):
// a bind inside another bind would sit on the host's own directory entry, which then
// could not be removed (EBUSY), and its mkdir would write into the host's tree.
std::vector<std::pair<fs::path, bool>> kept_paths(const Policy& p) {
  std::map<fs::path, bool> all;  // path → writable (sorted: parents first)
  for (const auto& x : p.read_only) all.emplace(x, false);
  for (const auto& x : p.read_write) all[x] = true;
  std::vector<std::pair<fs::path, bool>> out;
  for (const auto& [path, writable] : all) {
    bool covered = false;
    for (const auto& [kept, kept_writable] : out) {
      const auto rel = path.lexically_relative(kept);
      const bool inside = !rel.empty() && *rel.begin() != "..";
      if (inside && (kept_writable || !writable)) covered = true;
    }
    if (!covered) out.emplace_back(path, writable);
  }
  return out;
}

// A new user namespace mapping only our ids (unprivileged), then a new mount namespace.
std::optional<std::string> enter_namespaces() {
  if (::geteuid() == 0) {
    if (::unshare(CLONE_NEWNS) != 0) return errno_text("unshare(CLONE_NEWNS)");
    return std::nullopt;
  }
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
    return errno_text(
        "unshare(CLONE_NEWUSER|CLONE_NEWNS) (unprivileged user namespaces off? see "
        "/proc/sys/user/max_user_namespaces)");
  if (!write_file("/proc/self/setgroups", "deny")) return errno_text("write /proc/self/setgroups");
  if (!write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1"))
    return errno_text("write /proc/self/uid_map");
  if (!write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1"))
    return errno_text("write /proc/self/gid_map");
  return std::nullopt;
}

std::optional<std::string> isolate_mounts(const Policy& p, std::map<fs::path, int>& parents) {
  if (auto e = enter_namespaces()) return e;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno_text("make / private");
  if (::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m") != 0)
    return errno_text("mount a tmpfs for the new root");
  if (::chdir("/tmp") != 0 || ::mkdir("newroot", 0755) != 0 || ::mkdir("oldroot", 0755) != 0)
    return errno_text("prepare the new root");
  if (::syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") != 0) return errno_text("pivot_root");
  if (::chdir("/") != 0) return errno_text("chdir /");
  // The new root is a mount of its own (pivot_root wants one).
  if (::mount("/newroot", "/newroot", nullptr, MS_BIND, nullptr) != 0) return errno_text("bind the new root");

  for (const char* dev : kDevices)
    if (auto e = bind_path(dev, true)) return e;
  for (const auto& [path, writable] : kept_paths(p)) {
    if (auto e = bind_path(path, writable)) return e;
    if (!writable) continue;
    // Its real parent, for remove_kept_directory().
    const std::string parent = "/oldroot" + path.parent_path().string();
    const int fd = ::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) parents[path] = fd;
  }

  if (::umount2("/oldroot", MNT_DETACH) != 0) return errno_text("detach the old root");
  if (::chdir("/newroot") != 0) return errno_text("chdir /newroot");
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return errno_text("pivot_root into the new root");
  if (::umount2(".", MNT_DETACH) != 0) return errno_text("detach the tmpfs");
  if (::chdir("/") != 0) return errno_text("chdir /");
  // The root itself: nothing new can be made in it.
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return errno_text("remount / read-only");
  return std::nullopt;
}

// ---------------------------------------------------------------- layer 2: rlimits

// Tasks (threads) RLIMIT_NPROC counts for us now: in a user namespace of our own only ours;
// otherwise every task of our real uid (root is exempt from the limit anyway).
rlim_t count_tasks(bool own_userns) {
  rlim_t n = 0;
  auto threads_of = [](const std::string& status_path, uid_t* uid) -> rlim_t {
    std::ifstream f(status_path);
    rlim_t threads = 0;
    for (std::string line; std::getline(f, line);) {
      if (line.starts_with("Uid:") && uid) *uid = static_cast<uid_t>(std::strtoul(line.c_str() + 4, nullptr, 10));
      if (line.starts_with("Threads:")) threads = std::strtoull(line.c_str() + 8, nullptr, 10);
    }
    return threads;
  };
  if (own_userns) return threads_of("/proc/self/status", nullptr);
  const uid_t me = ::getuid();
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    uid_t uid = static_cast<uid_t>(-1);
    const rlim_t t = threads_of(std::string("/proc/") + e->d_name + "/status", &uid);
    if (uid == me) n += t;
  }
  ::closedir(d);
  return n;
}

std::optional<std::string> set_rlimits(rlim_t tasks) {
  std::string err;
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_max = nofile.rlim_cur;  // the budget, locked
    if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) err = errno_text("RLIMIT_NOFILE");
  }
  const rlimit core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &core) != 0) err = errno_text("RLIMIT_CORE");
  if (!kSanitized && tasks > 0) {
    const rlimit nproc{tasks + kThreadHeadroom, tasks + kThreadHeadroom};
    if (::setrlimit(RLIMIT_NPROC, &nproc) != 0) err = errno_text("RLIMIT_NPROC");
  }
  if (!err.empty()) return err;
  return std::nullopt;
}

// ---------------------------------------------------------------- layer 3: capabilities

std::optional<std::string> drop_capabilities() {
  // Root keeps no special treatment of uid 0 across execve (the filter forbids execve
  // anyway) — only possible while CAP_SETPCAP is still ours; without it, no harm.
  ::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                 SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                                 SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED);
  bool bounding_ok = true;
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap) == 1 && ::prctl(PR_CAPBSET_DROP, cap) != 0) bounding_ok = false;
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (::syscall(SYS_capset, &hdr, data.data()) != 0) return errno_text("capset");
  // Check what is left (a capset that "succeeded" must leave nothing).
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> now{};
  if (::syscall(SYS_capget, &hdr, now.data()) != 0) return errno_text("capget");
  for (const auto& d : now)
    if (d.effective || d.permitted || d.inheritable) return std::string("capabilities remain after capset");
  if (!bounding_ok) {
    // Unprivileged without a user namespace: the bounding set cannot shrink, but with
    // no_new_privs nothing can raise a capability from it.
    spdlog::debug("sandbox: bounding set kept (no CAP_SETPCAP); no_new_privs makes it unusable");
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- layer 4: seccomp

void on_sigsys(int, siginfo_t* info, void*) {
  // Async-signal-safe: the line is put together by hand and written, then SIGSYS kills.
  const int nr = info->si_syscall;
  const auto& names = state().names;
  const char* name = nr >= 0 && static_cast<size_t>(nr) < names.size() && names[nr][0] ? names[nr].data() : "?";
  char line[128] = "causeway: sandbox: forbidden syscall ";
  size_t n = std::strlen(line);
  for (const char* c = name; *c && n < sizeof line - 24; ++c) line[n++] = *c;
  line[n++] = ' ';
  line[n++] = '(';
  char digits[12];
  size_t d = 0;
  for (unsigned v = static_cast<unsigned>(nr < 0 ? 0 : nr); d == 0 || v; v /= 10)
    digits[d++] = static_cast<char>('0' + v % 10);
  while (d) line[n++] = digits[--d];
  for (const char* c = "): killed\n"; *c; ++c) line[n++] = *c;
  [[maybe_unused]] const ssize_t w = ::write(2, line, n);
  ::signal(SIGSYS, SIG_DFL);
  ::raise(SIGSYS);
  ::_exit(128 + SIGSYS);
}

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

bool add_rule(scmp_filter_ctx ctx, const char* name, std::set<int>& added, int& count) {
  const int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return false;  // not on this architecture
  if (added.contains(nr)) return true;
  if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) return false;
  added.insert(nr);
  ++count;
  return true;
}

std::optional<std::string> load_filter(const Policy& p, int& count) {
  const uint32_t def = kSanitized ? SCMP_ACT_LOG : (kTrapAndLog ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
  std::unique_ptr<void, FilterDeleter> ctx(seccomp_init(def));
  if (!ctx) return std::string("seccomp_init failed");
  if (seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1) != 0) return std::string("seccomp: no TSYNC");
  std::set<int> added;
  count = 0;
  for (const auto& g : common_groups())
    for (const char* n : g.names) add_rule(ctx.get(), n, added, count);
  auto mg = mode_groups().find(p.mode);
  if (mg != mode_groups().end())
    for (const auto& g : mg->second)
      for (const char* n : g.names) add_rule(ctx.get(), n, added, count);
  for (const auto& n : p.extra_syscalls)
    if (!add_rule(ctx.get(), n.c_str(), added, count)) spdlog::warn("sandbox: unknown syscall '{}' not allowed", n);

  // One argument comparison (libseccomp's SCMP_An macros are C99 compound literals).
  auto arg = [](unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
    return scmp_arg_cmp{index, op, a, b};
  };
  auto rule = [&](int nr, uint32_t action, std::initializer_list<scmp_arg_cmp> args) {
    if (added.contains(nr)) return true;  // the caller allowed it outright
    return seccomp_rule_add_array(ctx.get(), action, nr, static_cast<unsigned>(args.size()), std::data(args)) == 0;
  };
  bool ok = true;
  // Threads only: clone without CLONE_THREAD is a new process.
  ok &= rule(SCMP_SYS(clone), SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)});
  // clone3's flags are behind a pointer the filter cannot read: ENOSYS, and glibc uses clone.
  ok &= rule(SCMP_SYS(clone3), SCMP_ACT_ERRNO(ENOSYS), {});
  // No new executable memory (no JIT, no dlopen after set-up).
  ok &= rule(SCMP_SYS(mmap), SCMP_ACT_ALLOW, {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)});
  ok &= rule(SCMP_SYS(mprotect), SCMP_ACT_ALLOW, {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)});
  for (int family : kSocketFamilies)
    ok &= rule(SCMP_SYS(socket), SCMP_ACT_ALLOW, {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))});
  for (unsigned long req : allowed_ioctls())
    ok &= rule(SCMP_SYS(ioctl), SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_MASKED_EQ, 0xffffffffU, req)});
  for (unsigned long req : p.extra_ioctls)
    ok &= rule(SCMP_SYS(ioctl), SCMP_ACT_ALLOW, {arg(1, SCMP_CMP_MASKED_EQ, 0xffffffffU, req)});
  if (!ok) return std::string("seccomp: cannot add an argument rule");
  count += 5;  // allowed with their arguments checked: clone, mmap, mprotect, socket, ioctl

  if (kTrapAndLog && !kSanitized) {
    // The handler's names, resolved now (it may not allocate).
    for (size_t i = 0; i < state().names.size(); ++i) {
      if (char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(i))) {
        std::snprintf(state().names[i].data(), state().names[i].size(), "%s", n);
        std::free(n);
      }
    }
    struct sigaction sa {};
    sa.sa_sigaction = &on_sigsys;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    ::sigaction(SIGSYS, &sa, nullptr);
  }
  if (const int rc = seccomp_load(ctx.get()); rc != 0) return errno_text("seccomp_load", -rc);
  return std::nullopt;
}

}  // namespace

rlim_t raise_nofile_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    const rlim_t old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
      spdlog::debug("cannot raise the open-file limit from {}: {}", old, std::strerror(errno));
      lim.rlim_cur = old;
    }
  }
  const rlimit core{0, 0};
  ::setrlimit(RLIMIT_CORE, &core);
  return lim.rlim_cur;
}

bool Status::on() const { return enabled && no_new_privs && caps_dropped && mount_isolated && seccomp && rlimits; }

nlohmann::json Status::to_json() const {
  return nlohmann::json{{"on", on()},
                        {"enabled", enabled},
                        {"mode", mode},
                        {"no_new_privs", no_new_privs},
                        {"caps_dropped", caps_dropped},
                        {"mount_isolated", mount_isolated},
                        {"seccomp", seccomp},
                        {"rlimits", rlimits},
                        {"syscalls", syscalls},
                        {"reason", reason}};
}

Status confine(const Policy& p) {
  ProcessState& ps = state();
  if (ps.confined) return ps.status;
  ps.confined = true;
  Status s;
  s.enabled = p.enabled;
  s.mode = p.mode;
  if (!p.enabled) {
    s.reason = "turned off (--no-sandbox)";
    spdlog::warn("sandbox: off (--no-sandbox): the engine keeps every privilege it started with");
    ps.status = s;
    return s;
  }
  if (kSanitized) append_reason(s, "sanitizer build: no mount isolation, seccomp logs instead of killing");

  // Absolute, normal paths: the new root has no working directory to be relative to.
  Policy abs = p;
  auto normalise = [](std::vector<fs::path>& v) {
    for (auto& x : v) {
      std::error_code ec;
      x = fs::absolute(x, ec).lexically_normal();
      if (x.has_filename() == false && x != "/") x = x.parent_path();
    }
  };
  normalise(abs.read_only);
  normalise(abs.read_write);

  // RLIMIT_NPROC's count, taken while /proc is still there: in a user namespace of our own
  // only our own threads count; otherwise every task of our uid (root is exempt).
  const rlim_t own_threads = count_tasks(true);
  const rlim_t uid_tasks = ::geteuid() == 0 ? own_threads : count_tasks(false);

  // 1. mount isolation (and with it, unprivileged, our own user namespace)
  if (!kSanitized) {
    if (auto e = isolate_mounts(abs, ps.parents))
      append_reason(s, "mount isolation: " + *e);
    else
      s.mount_isolated = true;
  }
  // 2. rlimits
  if (auto e = set_rlimits(s.mount_isolated || ::geteuid() == 0 ? own_threads : uid_tasks))
    append_reason(s, "rlimits: " + *e);
  else
    s.rlimits = true;
  // 3. no_new_privs
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    append_reason(s, errno_text("no_new_privs"));
  else
    s.no_new_privs = true;
  // 4. capabilities
  if (auto e = drop_capabilities())
    append_reason(s, "capabilities: " + *e);
  else
    s.caps_dropped = true;
  // 5. seccomp
  int count = 0;
  if (auto e = load_filter(abs, count))
    append_reason(s, *e);
  else
    s.seccomp = true, s.syscalls = count;

  if (s.on())
    spdlog::info("sandbox: on ({}: empty root, no_new_privs, no capabilities, rlimits, {} syscalls allowed)", s.mode,
                 s.syscalls);
  else
    spdlog::warn("sandbox: partly applied ({}): {}", s.mode, s.reason);
  ps.status = s;
  // The proof the engine's own filter is loaded and kills (tests set it; it
  // only ever ends this process): a syscall no mode allows.
  if (s.seccomp && std::getenv(kSelfTestVariable) != nullptr) {
    spdlog::warn("sandbox: {} is set: calling ptrace, which the filter forbids", kSelfTestVariable);
    ::syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
    spdlog::error("sandbox: the forbidden syscall returned: the filter does not kill");
  }
  return s;
}

const Status& current() {
  ProcessState& ps = state();
  if (!ps.confined && ps.status.reason.empty()) ps.status.reason = "not confined (this command does not confine)";
  return ps.status;
}

std::error_code remove_kept_directory(const fs::path& dir) {
  std::error_code ec;
  ProcessState& ps = state();
  const fs::path key = fs::absolute(dir, ec).lexically_normal();
  auto it = ps.parents.find(key);
  if (it == ps.parents.end()) {
    fs::remove_all(dir, ec);
    return ec;
  }
  for (const auto& e : fs::directory_iterator(dir, ec)) fs::remove_all(e.path(), ec);
  if (::unlinkat(it->second, key.filename().c_str(), AT_REMOVEDIR) != 0) ec = {errno, std::generic_category()};
  ::close(it->second);
  ps.parents.erase(it);
  return ec;
}

std::string support_summary() {
  std::string out = "sandbox: ";
  const scmp_version* v = seccomp_version();
  const bool seccomp_ok = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  out += seccomp_ok ? "seccomp filters yes" : "seccomp filters no";
  out += " (libseccomp " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro) +
         ", API level " + std::to_string(seccomp_api_get()) + ")";
  std::ifstream f("/proc/sys/user/max_user_namespaces");
  long max_ns = -1;
  f >> max_ns;
  if (::geteuid() == 0)
    out += ", mount isolation yes (root)";
  else
    out += max_ns > 0 ? ", mount isolation yes (unprivileged user namespaces)"
                      : ", mount isolation no (unprivileged user namespaces are off)";
  out += kSanitized ? "; sanitizer build: seccomp logs, no mount isolation" : "";
  out += kTrapAndLog ? "; debug build: a forbidden syscall is logged, then kills" : "";
  return out;
}

}  // namespace causeway::sandbox
