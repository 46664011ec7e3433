// The instance daemon: one persistent VM per distribution that every
// `causeway run -d NAME` joins (the command side is instance_client.hpp).
//
// Starting (start_instance_daemon, in the client that found no VM)
//   The client holds RUNTIME/instances/NAME.start (cli/instance_paths.hpp)
//   and starts `causeway instance NAME --ready-fd N [VM options]` detached:
//   fork → setsid → fork (the daemon is nobody's session leader and is
//   re-parented away from the client) → stdin /dev/null, stdout/stderr to
//   RUNTIME/instances/NAME/daemon.log (truncated), working directory / (the
//   client makes the paths it passes absolute) → exec /proc/self/exe. The
//   intermediate child writes "pid P\n" to the ready pipe; the daemon writes
//   "ready\n" once the VM is up and exec.sock listens, or "error\n" and what
//   it printed (its log: the same lines a failed `causeway run` prints,
//   with the guest console's tail — an unclean disk that fsck must repair,
//   QEMU missing, a corrupt image) and exits. The client waits, bounded,
//   with a progress line on a terminal; past the bound it stops the daemon
//   (SIGTERM to P) and says where the log is.
//
// The daemon (run_instance_daemon)
//   Takes RUNTIME/instances/NAME/lock (exclusive, for its whole life: "NAME
//   is running"), finds NAME in the store, and runs attach_vm in instance
//   mode: the distribution's image as /dev/vda, the default guest kernel and
//   initramfs, kernel parameters cw.root=/dev/vda cw.hostname=NAME
//   (+ cw.systemd=1 with [boot] systemd=true), the engine in NAT or mirrored
//   mode, automatic localhost forwarding, the DNS proxy, a control socket,
//   exec.sock and idle shutdown (cli/instance_service.hpp). It exits when
//   the VM is off, removing its runtime files (not the lock, the logs).
//
// Thread safety: process-level functions, called from main.
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "cli/attach_vm.hpp"
#include "cli/instance_paths.hpp"
#include "cli/net_options.hpp"

namespace causeway::cli {

constexpr auto kInstanceStartTimeout = std::chrono::seconds(150);  // the daemon's boot bound (90 s) and slack

struct InstanceDaemonOptions {
  std::string name;
  int ready_fd = -1;  // -1: started by hand (errors only on stderr)
  bool systemd = false;
  int64_t idle_timeout_ms = 60'000;
};

// The daemon's body. `ro` carries the VM options (memory, cpus, mode, ...).
int run_instance_daemon(const InstanceDaemonOptions& d, RunOptions ro, NetSettings s);

// An option given on `run -d`'s command line: a flag (flag_count > 0) or its values.
struct GivenOption {
  std::string name;  // "--memory"
  std::vector<std::string> values;
  size_t flag_count = 0;
};

// The daemon's arguments after the program name: "instance NAME" and the VM
// options of `run -d` (not -d, -u, --cd, -t), paths made absolute against
// `cwd` (the daemon runs in /). The names passed go to `passed`.
std::vector<std::string> daemon_argv(std::string_view name, const std::vector<GivenOption>& options,
                                     const std::filesystem::path& cwd, std::vector<std::string>& passed);

struct DaemonStart {
  pid_t pid = -1;  // the daemon
};

// Client side: starts the daemon (argv after the program: "instance NAME
// [options]"; --ready-fd is added) and waits up to `timeout` for it to be
// ready. The error is the daemon's own message when it gave one.
boost::system::result<DaemonStart, std::string> start_instance_daemon(const InstancePaths& p,
                                                                      std::vector<std::string> args,
                                                                      std::chrono::milliseconds timeout, bool progress);

}  // namespace causeway::cli
