// AgentSession: the host's end of the agent protocol (protocol.hpp) over one
// vsock stream — the connection the guest agent opens to port
// kAgentVsockPort at boot.
//
// Theory of operation
//   start() sends Hello and arms the ready timer. Everything the owner sends
//   afterwards (configure_network, run, stdin, signals) is queued behind it
//   at once: the agent handles messages in order, so there is no round trip
//   before the command starts.
//   Guest messages are decoded with a Decoder that accepts guest→host types
//   only, and checked against the state:
//     AwaitingReady  Ready (same protocol version), Log, Error
//     Ready          + Stdout/Stderr/Exited once run() was called, listener events
//     Exited         Log, Error, listener events — output after Exited is a violation
//   A malformed or out-of-place message, a Ready that does not come within
//   ready_timeout, or the stream ending before Exited ends the session with
//   a reason (SessionEnd) — never a hang, never an exception. shutdown()
//   sends Shutdown and waits up to shutdown_timeout for the stream to end
//   (the agent powers the guest off); past it the session ends with
//   ShutdownTimeout and the owner stops QEMU itself.
//
// Flow control, host → guest: VsockStream::write takes what guest credit
// allows; the rest waits in our queue. Stdin is bounded by max_stdin_queue:
// send_stdin() takes what fits (possibly 0) and on_stdin_writable fires
// when there is room again — the owner stops reading its stdin meanwhile.
// Control messages (Signal, Resize, Shutdown) are small and always queued.
// Guest → host output is delivered to the callbacks as it arrives; a slow
// consumer calls pause_receive(true): the stream stops delivering (and
// stops giving the guest credit), so the agent — and the command writing
// its output — waits. Listener events on the same stream wait too.
//
// Guest-triggered logs (its Log/Error messages, violations) go through a
// RateLimitedLog and are counted.
//
// Lifetime: the owner holds the session (unique_ptr). It must not destroy
// it inside a data callback (on_stdout, ...); on_end is posted to the
// executor, so destroying the session from on_end is fine.
//
// Thread safety: confined to the executor the stream's callbacks run on.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "vmm/agent/protocol.hpp"
#include "vmm/vsock.hpp"

namespace causeway::agent {

struct AgentSessionOptions {
  // From start() to the guest's Ready. Over vsock the guest is already up
  // when it connects, so this is about a wedged agent, not boot time. Over
  // the virtio-serial transport QEMU connects at start-up: cover the boot.
  std::chrono::milliseconds ready_timeout{10'000};
  // From shutdown() to the end of the stream (the guest syncs and powers off).
  std::chrono::milliseconds shutdown_timeout{10'000};
  size_t max_stdin_queue = 1u << 20;  // bytes (all queued frames) beyond which send_stdin() refuses
};

enum class EndReason {
  Completed,          // the command exited (Exited received) and the stream then ended
  Stopped,            // shutdown() before the command exited; the stream then ended
  ReadyTimeout,       // no Ready within ready_timeout
  VersionMismatch,    // the agent speaks another protocol version
  ProtocolViolation,  // malformed or out-of-place message from the guest
  StreamClosed,       // the stream ended before Exited: agent or guest died
  ShutdownTimeout,    // shutdown() and the stream did not end in time
  Aborted,            // abort() by the owner
};
std::string_view to_string(EndReason r);

struct SessionEnd {
  EndReason reason = EndReason::Completed;
  std::string detail;          // human-readable, actionable
  std::optional<Exited> exit;  // when the command's Exited was received
  [[nodiscard]] bool ok() const { return reason == EndReason::Completed || reason == EndReason::Stopped; }
};

struct AgentCallbacks {
  std::function<void(const Ready&)> on_ready;
  std::function<void(std::span<const uint8_t>)> on_stdout;
  std::function<void(std::span<const uint8_t>)> on_stderr;
  std::function<void(const Exited&)> on_exited;
  std::function<void()> on_stdin_writable;  // room again after send_stdin() took less than offered
  std::function<void(const ListenerAppeared&)> on_listener_appeared;
  std::function<void(const ListenerGone&)> on_listener_gone;
  std::function<void(const MirrorReport&)> on_mirror_report;  // mirrored mode (cli/mirror_vm.hpp)
  // Guest Log/Error text; default: spdlog debug / warn, rate-limited.
  std::function<void(std::string_view)> on_log;
  std::function<void(std::string_view)> on_guest_error;
  std::function<void(const SessionEnd&)> on_end;  // exactly once, posted
};

struct AgentSessionCounters {
  uint64_t messages_in = 0, messages_out = 0;
  uint64_t stdout_bytes = 0, stderr_bytes = 0, stdin_bytes = 0;
  uint64_t guest_logs = 0, guest_errors = 0;
  uint64_t violations = 0;    // malformed or out-of-place guest messages (each ends the session)
  uint64_t write_stalls = 0;  // times the stream took less than offered
};

class AgentSession {
 public:
  enum class State { Idle, AwaitingReady, Ready, Exited, ShuttingDown, Ended };

  AgentSession(boost::asio::any_io_executor ex, std::shared_ptr<vmm::VsockStream> stream, AgentCallbacks callbacks,
               AgentSessionOptions options = {});
  ~AgentSession();
  AgentSession(const AgentSession&) = delete;
  AgentSession& operator=(const AgentSession&) = delete;

  // Installs the stream callbacks, sends Hello, arms the ready timer.
  void start();

  // Both validate their message first (protocol.hpp limits): an argv or env
  // over the limits comes back as an error and nothing is sent.
  std::error_code configure_network(const NetConfig& cfg);
  std::error_code run(const Run& run);
  // Mirrored mode: the desired guest state. Refused (an error, nothing sent)
  // when over the protocol's limits or the session cannot send.
  std::error_code mirror_apply(const MirrorApply& m);
  // The guest's resolver changed (live search domains): the agent rewrites /etc/resolv.conf.
  // Refused (an error, nothing sent) when over the protocol's limits or the session cannot send.
  std::error_code dns_config(const DnsConfig& d);

  // Queues up to data.size() bytes of stdin; returns how many were taken.
  size_t send_stdin(std::span<const uint8_t> data);
  void close_stdin();
  // Stops (true) or resumes (false) delivery of guest messages: back-pressure
  // for a consumer of on_stdout/on_stderr that cannot keep up.
  void pause_receive(bool paused);
  void signal(int signo);
  void resize(uint16_t rows, uint16_t cols);
  // Asks the agent to stop the command and power off.
  void shutdown();
  // Ends the session now (resets the stream); on_end gets Aborted.
  void abort(std::string why = "aborted by the host");

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] const std::optional<Ready>& ready() const { return ready_; }
  [[nodiscard]] const AgentSessionCounters& counters() const { return counters_; }

 private:
  void send(const Message& m);
  void flush();
  void on_data(std::span<const uint8_t> bytes);
  void on_message(Message& m);
  void on_stream_end(std::string_view why);
  void violation(std::string detail);
  void end(EndReason reason, std::string detail);
  [[nodiscard]] size_t queued() const { return queue_.size() - queue_off_; }
  [[nodiscard]] bool can_send() const;

  boost::asio::any_io_executor ex_;
  std::shared_ptr<vmm::VsockStream> stream_;
  AgentCallbacks cb_;
  AgentSessionOptions opts_;
  Decoder decoder_{Direction::GuestToHost};
  State state_ = State::Idle;
  bool run_sent_ = false;
  bool stdin_closed_ = false;
  bool stdin_blocked_ = false;  // send_stdin() refused bytes: fire on_stdin_writable later
  std::optional<Ready> ready_;
  std::optional<Exited> exit_;
  std::vector<uint8_t> queue_;  // encoded frames the stream has not taken yet
  size_t queue_off_ = 0;
  boost::asio::steady_timer timer_;
  RateLimitedLog guest_log_limit_{20, 1000};
  AgentSessionCounters counters_;
  // Handlers (timer, stream callbacks, posted on_end) hold a weak copy: they
  // do nothing once the session is gone.
  std::shared_ptr<AgentSession*> self_ = std::make_shared<AgentSession*>(this);
};

}  // namespace causeway::agent
