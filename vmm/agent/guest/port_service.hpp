// PortService: the guest agent's half of automatic localhost forwarding.
//
// Theory of operation
//   Listeners (what the guest serves):
//     1. Event: the commands the agent starts (and everything they fork) run
//        under the bind/listen trap (portfwd/listener_trap.hpp); the agent
//        holds the notification descriptors (one per command, exec sessions'
//        included). Each trapped syscall is answered
//        at once (the kernel then runs it unchanged) and a sock_diag scan
//        follows 1 ms later, then twice more 3 ms apart — the syscall
//        completes only after our answer.
//     2. Safety net: a scan every `poll` (1 s), which also notices sockets
//        closing (close(2) is not trapped) and listeners of processes outside
//        the command's tree.
//     Each scan is diffed against the last; differences go to the host as
//     ListenerAppeared / ListenerGone (protocol.hpp). At most kMaxListeners
//     are reported; the rest are counted (a guest process opening thousands
//     of sockets must not flood the control stream).
//   Relays (what the host forwards in): the agent listens on a stream socket
//   (vsock port kAgentRelayPort in a VM; any listening stream socket in test
//   mode). Each accepted stream carries one RelayRequest (relay.hpp); the
//   agent connects to the guest's own loopback — so services bound only to
//   127.0.0.1 or ::1 are reachable — and answers with a RelayReply, then
//   moves bytes (TCP) or framed datagrams (UDP) until either side ends.
//     TCP: two directions, each with one kRelayBuffer buffer, read only when
//          its buffer is empty (backpressure: a slow reader stops the other
//          side's reads, and vsock credit stops the host). EOF on one side
//          becomes shutdown(SHUT_WR) on the other; the relay ends when both
//          directions are done or a side fails.
//     UDP: a socket connected to the loopback port; datagrams from the
//          stream are sent as they are decoded (dropped and counted when the
//          socket is full, as UDP would); replies are framed into a bounded
//          queue (kMaxUdpQueue; beyond it replies are dropped and counted).
//   At most max_relays relays at once: further streams are accepted and
//   closed at once (counted). A stream that does not deliver its request, or
//   whose loopback connect does not finish, within handshake_timeout is
//   closed.
//
// Integration: single-threaded, driven by the agent's poll(2) loop through
// add_pollfds / handle / deadline / on_deadline. Nothing here blocks.
//
// Thread safety: single-threaded.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <span>
#include <vector>

#include "base/unique_fd.hpp"
#include "portfwd/listener.hpp"
#include "portfwd/listener_trap.hpp"
#include "portfwd/sock_diag.hpp"
#include "vmm/agent/protocol.hpp"
#include "vmm/agent/relay.hpp"

namespace causeway::agent::guest {

struct PortServiceOptions {
  std::chrono::milliseconds poll{1000};
  std::chrono::milliseconds handshake_timeout{5000};
  size_t max_relays = 256;
};

struct PortServiceCounters {
  uint64_t scans = 0, scan_errors = 0, trapped = 0;
  uint64_t listeners_over_cap = 0;
  uint64_t relays = 0;           // requests served (loopback connect succeeded)
  uint64_t relays_failed = 0;    // loopback connect failed (answered with its errno)
  uint64_t relays_rejected = 0;  // over capacity, malformed request, handshake timeout
  uint64_t udp_dropped = 0;      // datagrams dropped (socket or queue full)
};

class PortService {
 public:
  static constexpr size_t kMaxListeners = 1024;
  static constexpr size_t kRelayBuffer = 64 * 1024;
  static constexpr size_t kMaxUdpQueue = 256 * 1024;
  using Clock = std::chrono::steady_clock;
  // appeared = true: ListenerAppeared, else ListenerGone.
  using OnListener = std::function<void(bool appeared, const Listener&)>;
  using OnProblem = std::function<void(std::string text)>;

  // Either descriptor may be empty: no relays, or no listener reports.
  PortService(UniqueFd relay_listener, UniqueFd sock_diag, PortServiceOptions opts, OnListener on_listener);
  ~PortService();
  PortService(const PortService&) = delete;
  PortService& operator=(const PortService&) = delete;

  // Starts listener reporting (the first scan). Call once the host can take events.
  void start();
  // A trap notification descriptor, once a command runs under it: the main
  // session's command's, or one an exec session handed over (agent.hpp). Each is
  // watched until every process under it has exited (the kernel reports hangup);
  // closing one earlier would make its processes' bind/listen fail (ENOSYS), so
  // there is no cap here — the agent caps the sessions that bring them.
  void add_trap(UniqueFd notify);
  [[nodiscard]] size_t traps() const { return traps_.size(); }
  // Problems worth one line in the host's log (the first scan error of a run of them).
  void set_on_problem(OnProblem cb) { on_problem_ = std::move(cb); }

  // poll(2) integration: append our descriptors, then hand back the same
  // entries (same order) after poll returns.
  void add_pollfds(std::vector<pollfd>& fds);
  void handle(std::span<const pollfd> fds);
  [[nodiscard]] std::optional<Clock::time_point> deadline() const;
  void on_deadline(Clock::time_point now);

  [[nodiscard]] const PortServiceCounters& counters() const { return counters_; }
  [[nodiscard]] size_t relays() const { return relays_.size(); }

 private:
  struct Relay;
  void scan();
  void schedule_scan(Clock::duration delay);
  void accept_relays();
  void service(Relay& r, short host_ev, short guest_ev);

  UniqueFd listen_fd_;
  std::optional<portfwd::SockDiag> diag_;
  std::vector<UniqueFd> traps_;
  portfwd::ListenerTrapResponder responder_;
  PortServiceOptions opts_;
  OnListener on_listener_;
  OnProblem on_problem_;
  bool started_ = false;
  bool scan_failing_ = false;
  std::set<portfwd::Listener> reported_;
  std::optional<Clock::time_point> next_scan_;
  int burst_left_ = 0;
  std::list<std::unique_ptr<Relay>> relays_;
  // What add_pollfds registered, to match handle()'s entries.
  std::vector<Relay*> polled_relays_;
  bool polled_listen_ = false;
  size_t polled_traps_ = 0;
  std::vector<uint8_t> scratch_;  // one UDP datagram
  PortServiceCounters counters_;
};

// portfwd's listener (sock_diag's view) as the protocol's.
[[nodiscard]] Listener to_protocol(const portfwd::Listener& l);

}  // namespace causeway::agent::guest
