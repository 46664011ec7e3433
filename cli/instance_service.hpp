// InstanceService: what the instance daemon (a distribution's persistent VM,
// `causeway instance NAME`) serves beside the VM itself — exec sessions on
// exec.sock, the idle rule, and state.json. The VM (engine, devices, QEMU,
// the agent's main session) is VmAttachment's (attach_vm.cpp).
//
// Exec sessions
//   Every connection to RUNTIME/instances/NAME/exec.sock is one command: the
//   daemon opens a vsock stream to the guest agent's port kAgentExecPort and
//   relays the two byte for byte (agent::bridge_stream: back-pressure both
//   ways — the client's socket is read only as fast as guest credit allows,
//   and the guest's stream is paused while the socket is behind). The client
//   speaks the agent protocol itself (Hello → Ready → Run → … → Exited); the
//   daemon never parses it, so a join costs one connect and one vsock
//   handshake. When the guest refuses the stream (an agent that has no exec
//   sessions), the client gets one agent-protocol Error saying so, then EOF.
//   Access: exec.sock is 0600 in a 0700 directory, and each peer's
//   SO_PEERCRED uid must be ours or root (as the control socket).
//   At most kMaxSessions at once; more are refused (counted).
//
// Idle shutdown (the rule: cli/idle_rule.hpp): sessions are counted from
// accept to the end of their relay; listeners come from the owner
// (on_listeners, after every change). When the IdleRule's deadline passes,
// on_idle runs once (the owner powers the VM off).
//
// Lifetime: start() once the VM is ready; the destructor closes exec.sock
// and removes it and state.json. Open relays end when the VM goes away
// (their vsock streams close).
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "base/accept_backoff.hpp"
#include "base/clock.hpp"
#include "cli/idle_rule.hpp"
#include "cli/instance_paths.hpp"
#include "vmm/vsock.hpp"

namespace causeway::cli {

struct InstanceServiceStats {
  uint64_t exec_sessions = 0;  // relays started
  uint64_t exec_failed = 0;    // the guest refused the vsock stream
  uint64_t refused_peers = 0;  // closed at once: peer uid neither ours nor root
  uint64_t over_capacity = 0;  // refused: kMaxSessions open
};

class InstanceService {
 public:
  static constexpr size_t kMaxSessions = 1024;

  InstanceService(boost::asio::io_context& io, const Clock& clock, vmm::VsockHost& vsock, InstancePaths paths,
                  int64_t idle_timeout_ms, std::function<void()> on_idle);
  ~InstanceService();
  InstanceService(const InstanceService&) = delete;
  InstanceService& operator=(const InstanceService&) = delete;

  // The VM is ready: writes state.json, listens on exec.sock, starts the idle
  // clock; `guest_listeners` (what the guest listens on now) is the baseline
  // that does not keep the VM up.
  boost::system::result<void, std::string> start(const nlohmann::json& state,
                                                 const std::set<ListenerKey>& guest_listeners);
  // The guest's listeners and the automatically forwarded ones, after a change.
  void on_listeners(const std::set<ListenerKey>& guest, const std::set<ListenerKey>& forwarded);
  // Shutting down: no new sessions (exec.sock goes away; clients start a new VM).
  void stop_accepting();

  [[nodiscard]] size_t open_sessions() const { return open_; }
  [[nodiscard]] nlohmann::json status_json() const;
  [[nodiscard]] const InstanceServiceStats& stats() const { return stats_; }

 private:
  void accept();
  void on_connection(boost::asio::local::stream_protocol::socket sock);
  void session_ended();
  void rearm();

  boost::asio::io_context& io_;
  const Clock& clock_;
  vmm::VsockHost& vsock_;
  InstancePaths paths_;
  std::function<void()> on_idle_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  bool bound_ = false;
  bool started_ = false;
  bool idle_fired_ = false;
  AcceptBackoff backoff_;
  boost::asio::steady_timer idle_timer_;
  IdleRule rule_;
  LateListeners late_;
  size_t open_ = 0;
  InstanceServiceStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards relay completions
};

}  // namespace causeway::cli
