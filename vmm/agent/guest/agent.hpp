// The guest agent's session with the host: one poll(2) loop over the
// transport, the command's stdio and a signalfd for SIGCHLD.
//
// Theory of operation
//   States:  AwaitHello → Configuring → Running → Exited → (end)
//     AwaitHello   Ready is queued at once; the first message must be a Hello
//                  of our protocol version (else Error and end). Bounded by
//                  hello_timeout.
//     Configuring  NetConfig is applied when it arrives (it may also come
//                  later). MirrorApply (mirrored mode) is applied whenever it
//                  comes, in any state after Hello, and answered with one
//                  MirrorReport; the converge runs on this thread (netlink to
//                  the local kernel: milliseconds). Run starts the command; if
//                  no NetConfig came first — or none within netconfig_timeout
//                  — the network is configured by DHCP before it starts.
//     Running      stdout/stderr (pipes) or the pty master are read in chunks
//                  of kMaxChunk and sent as Stdout/Stderr; Stdin is queued to
//                  the command; Signal goes to its process group (with a pty:
//                  the terminal's foreground group); Resize sets the window
//                  size (the kernel sends SIGWINCH).
//     Exited       after the command's exit the output is drained until EOF or
//                  until no byte arrived for drain_idle (a background process
//                  may hold the pipe forever); then Exited is sent and the
//                  agent waits up to shutdown_wait for the host's Shutdown
//                  (which also tells it the Exited arrived) or end of stream.
//   Shutdown at any time kills the command's process group and ends the
//   session; so does end of stream. The outbound queue is then flushed for
//   at most flush_timeout.
//
// Sessions (protocol v3, protocol.hpp "Sessions"): an Agent runs one session in
// one of two roles.
//   Main   the stream the agent opened to the host at boot. Carries NetConfig,
//          MirrorApply, DnsConfig, listener reports; may carry no Run ("instance
//          mode": it then stays in Configuring with no deadline until Shutdown).
//          Once its Hello has arrived it accepts exec sessions on exec_listener
//          (vsock port kAgentExecPort; at most max_exec_sessions at once, more are
//          closed at once): each accepted stream gets a fork()ed child of the
//          agent that drops the main session's descriptors and runs an Agent in
//          the Exec role on it, then _exit()s. The main agent reaps it.
//   Exec   one command; no network messages (answered with Error), no
//          PortService of its own. Its command still runs under the bind/listen
//          trap: the trap's notification descriptor goes to the main agent over
//          trap_sink (a SOCK_SEQPACKET socketpair, SCM_RIGHTS), and the main
//          agent's PortService answers it and reports the listeners on the main
//          session — so every listener is reported on the main session within
//          milliseconds, whichever session started it.
//
// Users (v3): with accounts_root set (the guest: "/"), Run.user is resolved from
// the distribution's files (accounts.hpp) and the child switches to it —
// setgroups, setgid, setuid after the trap is installed (which needs root) —
// with the login-like environment and cwd of plan_launch. An unknown user is an
// Error naming it and an Exited with status 1. Without accounts_root (test mode
// by default) commands run as the agent with PATH and HOME=/root, as before v3.
//
// Port forwarding: a PortService (port_service.hpp) shares the loop. It
// reports the guest's listeners as ListenerAppeared/Gone once Ready is sent
// and serves relay streams on its own listener; the command is started under
// the bind/listen trap so a new listener is reported within milliseconds.
//
// Flow control: at most kMaxOutQueue bytes wait for the transport; above
// that the command's output is not read (the pipe fills, the command blocks).
// At most kMaxStdinQueue bytes wait for the command's stdin; above that the
// transport is not read (vsock credit stops the host).
//
// Orphans: every child is reaped (waitpid(-1)); as PID 1 the agent inherits
// all orphans. In --test-fd mode it is made a child subreaper to match.
//
// Errors: a malformed message from the host ends the session (Error sent
// first); unexpected but well-formed messages are answered with Error and
// ignored. Nothing here exits the process: run() returns and the caller
// powers off (or, in test mode, exits).
//
// Thread safety: single-threaded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "vmm/agent/guest/netconfig.hpp"
#include "vmm/agent/guest/port_service.hpp"
#include "vmm/agent/protocol.hpp"

namespace causeway::agent::guest {

struct AgentOptions {
  std::string agent_version;
  std::string kernel_release;
  uint32_t uptime_ms = 0;
  std::chrono::milliseconds hello_timeout{30'000};
  std::chrono::milliseconds netconfig_timeout{10'000};
  std::chrono::milliseconds drain_idle{500};
  std::chrono::milliseconds shutdown_wait{10'000};
  std::chrono::milliseconds flush_timeout{2'000};
  bool debug = false;
  // Network actions, injected: the real ones in the VM; test mode reports
  // what it would do and touches nothing.
  std::function<NetReport(const NetConfig&)> apply_net_config;
  std::function<NetReport()> run_dhcp;
  // Mirrored mode: converge the guest to a MirrorApply (vmm/agent/guest/mirror.hpp);
  // absent (test mode): every MirrorApply is answered with an error report.
  std::function<MirrorReport(const MirrorApply&)> apply_mirror;
  std::vector<std::string> early_logs;  // from boot, sent after Ready
  // Automatic localhost forwarding (port_service.hpp): the relay listener
  // (vsock port kAgentRelayPort in a VM), a NETLINK_SOCK_DIAG socket for
  // listener reports, and whether the command runs under the bind/listen
  // trap. Any of them may be absent.
  UniqueFd relay_listener;
  UniqueFd sock_diag;
  bool trap_listeners = false;
  PortServiceOptions ports;
  // v3 (see "Sessions" and "Users" above).
  enum class Role : uint8_t { Main, Exec };
  Role role = Role::Main;
  UniqueFd exec_listener;  // Main: a listening stream socket for exec sessions (absent: none)
  size_t max_exec_sessions = 64;
  UniqueFd trap_sink;         // Exec: where the command's trap descriptor goes (to the main agent)
  std::string accounts_root;  // "" = run commands as the agent itself (no Run.user)
  // DnsConfig (main session): rewrite resolv.conf; `ipv6` as the last NetConfig said.
  std::function<NetReport(const DnsConfig&, bool ipv6)> apply_dns;
};

struct AgentCounters {
  uint64_t messages_in = 0, messages_out = 0;
  uint64_t stdout_bytes = 0, stderr_bytes = 0, stdin_bytes = 0;
  uint64_t orphans_reaped = 0;
  uint64_t unexpected = 0;                       // well-formed messages that did not fit the state
  uint64_t exec_sessions = 0, exec_refused = 0;  // Main: exec sessions started / closed over the cap
  uint64_t traps_forwarded = 0;                  // Main: trap descriptors received from exec sessions
};

class Agent {
 public:
  static constexpr size_t kMaxOutQueue = 256 * 1024;
  static constexpr size_t kMaxStdinQueue = 256 * 1024;

  Agent(UniqueFd transport, AgentOptions opts);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  enum class Outcome {
    Shutdown,       // the host asked for it (the normal end)
    HostGone,       // end of stream / transport error
    ProtocolError,  // the host sent something malformed or of another version
    Timeout,        // no Hello, or no Shutdown after Exited
  };
  // Runs the session to its end.
  Outcome run();
  [[nodiscard]] const AgentCounters& counters() const { return counters_; }
  [[nodiscard]] const std::string& end_reason() const { return end_reason_; }
  [[nodiscard]] const PortService* ports() const { return ports_.get(); }

 private:
  using Clock = std::chrono::steady_clock;
  enum class State { AwaitHello, Configuring, Running, Exited, Done };
  struct Child;

  void send(const Message& m);
  void log(std::string text);
  void error(std::string text);
  void end(Outcome o, std::string why);

  void on_transport_readable();
  void on_message(Message& m);
  void on_run(const Run& run);
  void on_signalfd();
  void on_output(int which);
  void on_stdin_writable();
  void flush_out();
  void configure_network_default();
  void finish_command();
  void kill_command();
  std::optional<Clock::time_point> deadline() const;
  void on_deadline();
  void accept_exec();
  [[noreturn]] void run_exec_child(UniqueFd conn);
  void on_trap_sink();
  void hand_over_trap(UniqueFd trap);

  UniqueFd transport_;
  AgentOptions opts_;
  Decoder decoder_{Direction::HostToGuest};
  State state_ = State::AwaitHello;
  std::optional<Outcome> outcome_;
  std::string end_reason_;
  std::vector<uint8_t> out_;
  size_t out_off_ = 0;
  bool transport_eof_ = false;
  bool net_done_ = false;
  bool ran_ = false;
  Clock::time_point hello_deadline_;
  Clock::time_point netconfig_deadline_;
  Clock::time_point exited_at_;
  UniqueFd sigfd_;
  std::unique_ptr<Child> child_;
  std::unique_ptr<PortService> ports_;
  UniqueFd trap_sink_r_, trap_sink_w_;  // Main: exec sessions' trap descriptors arrive on _r
  std::vector<pid_t> exec_pids_;        // Main: live exec session children
  bool net_ipv6_ = false;               // the last NetConfig's ipv6 (for DnsConfig)
  AgentCounters counters_;
};

// Argument parsing and the boot sequence of agent_main.cpp, exposed so the
// binary's main() stays a few lines.
int agent_main(int argc, char** argv);

}  // namespace causeway::agent::guest
