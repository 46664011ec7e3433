// The runtime directory of a distribution's running VM (its instance) and
// the locks that make "one VM per distribution" hold across processes.
//
// Layout (RUNTIME is distro::Dirs::runtime: $XDG_RUNTIME_DIR/causeway,
// /run/causeway for root, CAUSEWAY_HOME/run in tests):
//   RUNTIME/                       0700, ours (checked: it may be under /tmp)
//   RUNTIME/instances/NAME.start   flock'ed by a `causeway run -d NAME` while it
//                                  starts NAME, so concurrent starts make one VM
//   RUNTIME/instances/NAME/        0700
//     lock          flock'ed (exclusive) by the instance daemon for its whole life:
//                   "NAME is running" (distro::instance_running probes it)
//     state.json    {"pid","qemu_pid","started","mode","distro","image","idle_timeout_ms"}
//     exec.sock     each connection is one command in the VM (agent protocol)
//     control.sock  the control API (`causeway ctl`; `shutdown` powers the VM off)
//     daemon.log    the daemon's stderr (this boot's; truncated at start)
//     console.log   the guest's serial console (this boot's)
//     vm/           the VM's vhost-user sockets, QEMU's log (removed at exit)
// Lock files are never removed: a process that opened one must lock the same
// inode everybody else locks (removing it would let two holders exist).
// state.json, exec.sock, control.sock and vm/ exist only while the daemon runs.
//
// Thread safety: plain functions; the locks are per process (flock).
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/unique_fd.hpp"

namespace causeway::cli {

struct InstancePaths {
  std::string name;
  std::filesystem::path runtime;  // RUNTIME
  std::filesystem::path dir;      // RUNTIME/instances/NAME
  std::filesystem::path start_lock, lock, state, exec, control, log, console, vm_dir;
};

InstancePaths instance_paths(const std::filesystem::path& runtime, std::string_view name);

// Creates RUNTIME/instances/NAME (0700 each) if needed. RUNTIME must be ours
// and not writable by others (it may be /tmp/causeway-UID, which anybody
// could have made first); the socket paths must fit a sockaddr_un.
boost::system::result<void, std::string> prepare_instance_dirs(const InstancePaths& p);

// Names of instances that have a directory under RUNTIME/instances (running or not).
std::vector<std::string> instance_names(const std::filesystem::path& runtime);

struct LockError {
  bool held = false;  // another process holds it (else: the file cannot be used)
  std::string why;
};

// An flock on a file (created 0600 if missing); released when destroyed.
class FileLock {
 public:
  FileLock() = default;
  // Exclusive, without waiting.
  static boost::system::result<FileLock, LockError> try_exclusive(const std::filesystem::path& path);
  // Exclusive, waiting up to `timeout`; `on_wait` runs once if it has to wait.
  static boost::system::result<FileLock, LockError> exclusive(const std::filesystem::path& path,
                                                              std::chrono::milliseconds timeout,
                                                              const std::function<void()>& on_wait = {});
  [[nodiscard]] bool held() const { return static_cast<bool>(fd_); }
  void release() { fd_.reset(); }
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Waits up to `timeout` for NAME's lock to be free (its daemon gone); true if it is.
bool wait_instance_stopped(const InstancePaths& p, std::chrono::milliseconds timeout);

// state.json: written atomically (temporary file + rename), read leniently.
boost::system::result<void, std::string> write_state(const InstancePaths& p, const nlohmann::json& state);
std::optional<nlohmann::json> read_state(const InstancePaths& p);

// Connects to a unix stream socket; an invalid fd (errno set) when nobody listens.
UniqueFd connect_unix(const std::filesystem::path& path);

}  // namespace causeway::cli
