// The engine's confinement of itself: what a process keeps after set-up.
//
// causeway parses everything a hostile guest sends (frames, virtio descriptors, vsock
// packets, DNS, agent messages). Once an attachment has done its set-up (taps open, sockets
// bound, namespaces joined, QEMU started) it calls confine(), so a bug in a parser meets a
// process that can do little more than what the engine already does:
//
//   1. mount isolation: a new mount namespace (unprivileged: inside a new user namespace
//      that maps only our own uid and gid) whose root is an empty directory (pivot_root),
//      into which only Policy's paths are bind-mounted, at the same path, read-only or
//      read-write. /proc, /dev, /home, /etc (except what Policy keeps) are gone.
//   2. PR_SET_NO_NEW_PRIVS: no execve can gain privileges.
//   3. every capability dropped: effective, permitted, inheritable, ambient and bounding.
//   4. rlimits: RLIMIT_NOFILE hard = soft (the budget raise_nofile_limit() set is locked),
//      RLIMIT_NPROC = the processes the uid runs now (no fork succeeds), RLIMIT_CORE = 0.
//   5. a seccomp-bpf allowlist (libseccomp, the native architecture's syscall numbers),
//      applied to every thread (SECCOMP_FILTER_FLAG_TSYNC). A syscall outside it kills the
//      process (SECCOMP_RET_KILL_PROCESS); debug builds (NDEBUG unset) trap instead and
//      log the syscall's name from the SIGSYS handler before dying, which is how the list
//      is grown (see sandbox.cpp for the list and why each group is there).
//
// Each layer is applied on its own: one that the host cannot provide (no unprivileged user
// namespaces, a kernel without seccomp) is reported in Status.reason and the others still
// apply. confine() never throws.
//
// Threading: confine() must run before any thread starts (unshare(CLONE_NEWUSER) refuses a
// multi-threaded process); current() and support_summary() may be called from any thread
// after that. raise_nofile_limit() once, at the top of main().
#pragma once

#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace causeway::sandbox {

// Called once at the top of main(): RLIMIT_NOFILE soft = hard (the engine's fd budget is
// derived from the result), RLIMIT_CORE = 0 (a core dump would write guest memory and
// host secrets to disk). Returns the new soft limit.
rlim_t raise_nofile_limit();

struct Policy {
  bool enabled = true;  // false: --no-sandbox
  // "netns", "netns-mirrored", "serve", "vm", "vm-mirrored", "instance": named in Status and
  // the log, and selects the mode's additions to the common allowlist.
  std::string mode;
  std::vector<std::filesystem::path> read_only;   // stay reachable at the same path, read-only
  std::vector<std::filesystem::path> read_write;  // stay reachable at the same path, read-write
  std::vector<std::string> extra_syscalls;        // the caller's additions to the allowlist, by name
  std::vector<unsigned long> extra_ioctls;        // the caller's ioctl requests (ioctl is allowed by request)
};

// What was applied; each layer on its own.
struct Status {
  bool enabled = false;
  bool no_new_privs = false;
  bool caps_dropped = false;
  bool mount_isolated = false;
  bool seccomp = false;
  bool rlimits = false;
  std::string mode;
  std::string reason;  // why off, or which layer could not be applied and why
  int syscalls = 0;    // size of the allowlist applied (0: none)

  bool on() const;  // every layer applied
  nlohmann::json to_json() const;
};

// Set in the environment (tests), it makes confine() end with a syscall the
// allowlist forbids once the filter is loaded: the process dies by SIGSYS
// (debug builds log the syscall's name first).
inline constexpr const char* kSelfTestVariable = "CAUSEWAY_SANDBOX_SELFTEST";

// After set-up, before any thread starts. See the header comment for the layers. A layer
// that cannot be applied is reported in the returned Status; the others still apply. Never
// throws. Call it once per process; a second call returns the first one's status.
Status confine(const Policy& p);

// The process's status (for `ctl status`): what confine() applied, or "not confined".
const Status& current();

// Removes `dir` and what it holds. A directory kept read-write (Policy::read_write) is a
// mount point in the confined process, so its own path cannot be removed (EBUSY): this
// removes it through a descriptor of its real parent taken before pivot_root. Any other
// directory: std::filesystem::remove_all.
std::error_code remove_kept_directory(const std::filesystem::path& dir);

// For --version: what this host and kernel allow (seccomp, user namespaces, libseccomp's
// version), one line.
std::string support_summary();

}  // namespace causeway::sandbox
