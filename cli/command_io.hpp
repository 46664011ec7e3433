// CommandIo: our end of one command running in the guest, over an agent
// session — what `causeway run` does for the command whether it booted the
// VM itself (attach_vm.cpp, the main session) or joined a distribution's
// running VM (instance_client.cpp, an exec session over exec.sock).
//
// Theory of operation
//   install() puts its handlers into the session's callbacks: the command's
//   stdout/stderr go to OutputPumps (writer threads: a slow reader of ours
//   holds up the guest's command through vsock back-pressure, never the
//   engine — issue 13), Exited is recorded (and handed to the owner).
//   start(), after the agent's Ready, sends Run (with the terminal's size
//   when it is a tty) and starts forwarding our stdin: a terminal (raw mode,
//   restored however we leave), a pipe or a socket; anything epoll cannot
//   watch (a regular file, /dev/null) counts as empty. Stdin is read only
//   while the session takes it: when send_stdin() takes less than offered,
//   the rest waits here until on_stdin_writable.
//   Signals: the first SIGINT/SIGTERM goes to the command in the guest;
//   later ones go to the owner (on_escalate(count)): the single-VM path
//   shuts the guest down on the second and stops QEMU on the third; the
//   join client closes its session. SIGWINCH sends Resize (tty only).
//
// Thread safety: confined to the io_context's thread (the pumps' writer
// threads are theirs, see output_pump.hpp).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>

#include "cli/output_pump.hpp"
#include "vmm/agent/session.hpp"

namespace causeway::cli {

class RawTerminal;

class CommandIo {
 public:
  // `run` is sent as given, except rows/cols (filled from our terminal when run.tty).
  CommandIo(boost::asio::io_context& io, agent::Run run);
  ~CommandIo();
  CommandIo(const CommandIo&) = delete;
  CommandIo& operator=(const CommandIo&) = delete;

  // Fills cb's on_stdout, on_stderr, on_stdin_writable and on_exited; the
  // owner's on_exited (may be empty) runs after the status is recorded.
  // `session` returns the session (it may be created after this call).
  void install(agent::AgentCallbacks& cb, std::function<agent::AgentSession*()> session,
               std::function<void(const agent::Exited&)> on_exited);
  // After Ready: Run, then stdin forwarding. An error when the session refused the Run.
  std::error_code start();
  // SIGINT/SIGTERM: the first to the command; the count of later ones to `on_escalate`.
  void handle_signals(std::function<void(int count)> on_escalate);
  // Stops reading stdin and signals, restores the terminal (idempotent).
  void stop();

  [[nodiscard]] bool exited() const { return exited_; }
  [[nodiscard]] int status() const { return status_; }  // the shell's $? for the command (valid when exited())
  [[nodiscard]] const agent::Run& run() const { return run_; }

 private:
  void forward_stdin();
  void read_stdin();
  void send_pending_stdin();
  void on_output_pressure();
  void wait_signal();
  void wait_winch();

  boost::asio::io_context& io_;
  agent::Run run_;
  std::function<agent::AgentSession*()> session_;
  std::optional<OutputPump> out_pump_, err_pump_;
  std::unique_ptr<RawTerminal> term_;
  boost::asio::posix::stream_descriptor in_{io_};
  std::array<uint8_t, 16 * 1024> inbuf_{};
  size_t in_off_ = 0, in_len_ = 0;  // read but not yet taken by the session
  bool reading_ = false;
  bool stdin_done_ = false;
  boost::asio::signal_set signals_{io_};
  boost::asio::signal_set winch_{io_};
  std::function<void(int)> on_escalate_;
  int interrupts_ = 0;
  bool exited_ = false;
  int status_ = 1;
  bool stopped_ = false;
};

}  // namespace causeway::cli
