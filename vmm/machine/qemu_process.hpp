// Running QEMU: finding and checking the binary, starting it, noticing its
// exit on the executor, stopping it, and reading what it and the guest
// console said when something went wrong.
//
// Process handling
//   - fork + exec (PATH resolved before the fork), stdin on /dev/null,
//     stdout and stderr into a log file (QEMU's own error messages, e.g.
//     "Failed to connect to '…/vsock.sock'").
//   - The child gets its own process group, so a Ctrl-C at the terminal
//     reaches causeway (which shuts the guest down cleanly) and not QEMU
//     directly; and PR_SET_PDEATHSIG(SIGKILL), so QEMU never outlives a
//     crashed causeway. (The death signal follows the *thread* that forked:
//     spawn from the long-lived main/engine thread.)
//   - Exit is noticed through a pidfd (Linux ≥ 5.3) watched on the
//     executor, else by polling waitpid every 50 ms. The process is reaped
//     with waitpid(pid): an owner that reaps with waitpid(-1) elsewhere
//     would steal the status (then it is reported as unknown, code -1).
//   - terminate(grace): SIGTERM (QEMU exits at once, the guest does not get
//     to shut down: ask the agent first), then SIGKILL after `grace`.
//   - The destructor of a still-running process kills and reaps it.
//
// Thread safety: confined to the executor given at spawn.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmm/machine/qemu_cmdline.hpp"

namespace causeway::machine {

struct ExitStatus {
  bool signaled = false;
  int code = 0;  // exit status, or the signal number; -1 if unknown
  [[nodiscard]] bool success() const { return !signaled && code == 0; }
  [[nodiscard]] std::string describe() const;  // "exited with status 1", "killed by signal 9 (Killed)"
};

// Finds `binary` (a path, or a name searched in PATH) and checks that
// `binary --version` is at least kMinQemuVersion. Errors are actionable:
// a missing binary names the Debian package qemu-system-x86.
boost::system::result<QemuVersion, std::string> check_qemu(
    const std::string& binary, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Checks that the kernel (and initrd, if any) of `o` are readable files.
boost::system::result<void, std::string> check_guest_files(const QemuOptions& o);

class QemuProcess {
 public:
  // Starts argv (argv[0] searched in PATH); QEMU's stdout and stderr go to
  // `output_log` (created or truncated).
  static boost::system::result<std::unique_ptr<QemuProcess>, std::string> spawn(boost::asio::any_io_executor ex,
                                                                                const std::vector<std::string>& argv,
                                                                                const std::string& output_log);
  ~QemuProcess();
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool running() const { return !status_; }
  [[nodiscard]] const std::optional<ExitStatus>& exit_status() const { return status_; }
  [[nodiscard]] const std::string& output_log() const { return output_log_; }

  // Calls `on_exit` once, on the executor, when QEMU has exited and been
  // reaped (at once — posted — if it already has). Replaces an earlier one.
  void async_wait(std::function<void(const ExitStatus&)> on_exit);
  // SIGTERM now, SIGKILL after `grace` if it is still running.
  void terminate(std::chrono::milliseconds grace = std::chrono::seconds(3));
  void kill_now();

 private:
  QemuProcess(boost::asio::any_io_executor ex, pid_t pid, int pidfd, std::string output_log);
  void watch();
  void reap(bool block);

  boost::asio::any_io_executor ex_;
  pid_t pid_;
  std::string output_log_;
  std::optional<boost::asio::posix::stream_descriptor> pidfd_;
  boost::asio::steady_timer poll_timer_;
  boost::asio::steady_timer kill_timer_;
  std::optional<ExitStatus> status_;
  std::function<void(const ExitStatus&)> on_exit_;
  std::shared_ptr<QemuProcess*> self_ = std::make_shared<QemuProcess*>(this);
};

// The last `max_lines` lines of a text file (the guest console, QEMU's
// log), for error messages; "" if it cannot be read. Reads at most the last
// 64 KiB.
std::string tail_file(const std::string& path, size_t max_lines = 20);

}  // namespace causeway::machine
