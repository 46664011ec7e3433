// AutoForwarder: keeps host forwards in step with the guest's listeners.
//
// Input: full snapshots of the guest's listeners (a NetnsListenerSource's
// callback in a namespace; the agent's reports, gathered in a
// GuestListenerSet, in a VM). plan_forwards turns a snapshot into
// the set of host forwards wanted; this class diffs it against what is open:
//   wanted, not open  → open (bind 127.0.0.1:P or [::1]:P and relay)
//   open, not wanted  → close the listening socket; relayed connections
//                       already established drain on their own
//   bind fails        → state "conflict" with the reason, one warning, and a
//                       retry every kRetryInterval until it binds or is no
//                       longer wanted — a port that frees up later opens by itself.
//                       Where the fix is known (EACCES: a privileged port) the
//                       warning and list() carry a hint naming it.
// Manual forwards win: the caller passes their (proto, family, port) in the
// settings and the policy leaves those alone.
//
// Capacity: at most kMaxForwards automatic forwards; listeners beyond that
// are counted (over_capacity) and not forwarded — a guest that opens
// thousands of listeners cannot make us open thousands of host ports.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "portfwd/forward_policy.hpp"
#include "portfwd/guest_connector.hpp"
#include "portfwd/guest_datagram.hpp"
#include "portfwd/tcp_forwarder.hpp"
#include "portfwd/udp_forwarder.hpp"

namespace causeway::portfwd {

struct AutoForwardInfo {
  HostForward forward;
  bool active = false;
  std::string reason;  // why not active (conflict)
  std::string hint;    // what the user can do about it, when we know (host_bind_hint)
  uint64_t connections = 0;
  uint64_t bytes_to_guest = 0;
  uint64_t bytes_from_guest = 0;
  uint64_t datagrams = 0;
};

struct AutoForwardStats {
  uint64_t snapshots = 0;
  uint64_t opened = 0;
  uint64_t closed = 0;
  uint64_t conflicts = 0;               // bind failures seen (first per forward)
  uint64_t over_capacity = 0;           // forwards not opened: kMaxForwards reached
  uint64_t accept_backoffs_closed = 0;  // accept_backoffs of TCP forwards since closed
};

// The guest side of an attachment, per address family of the guest's loopback.
struct GuestSide {
  GuestConnector* tcp4 = nullptr;
  GuestConnector* tcp6 = nullptr;
  GuestDatagramChannel* udp4 = nullptr;
  GuestDatagramChannel* udp6 = nullptr;
};

class AutoForwarder {
 public:
  static constexpr size_t kMaxForwards = 256;
  static constexpr auto kRetryInterval = std::chrono::seconds(1);

  AutoForwarder(boost::asio::io_context& io, const Clock& clock, GuestSide guest, PolicySettings settings);
  ~AutoForwarder();

  void on_listeners(const std::set<Listener>& snapshot);
  void set_settings(PolicySettings s);
  [[nodiscard]] std::vector<AutoForwardInfo> list() const;
  [[nodiscard]] const AutoForwardStats& stats() const { return stats_; }
  [[nodiscard]] const std::set<Listener>& listeners() const { return listeners_; }
  // Accepts paused for want of descriptors, over every TCP forward ever opened.
  [[nodiscard]] uint64_t accept_backoffs() const;
  // Caps from the process's descriptor budget (netstack/budget.hpp): automatic forwards (at most
  // kMaxForwards) and live connections per TCP forward. Applies to forwards opened later.
  void set_limits(size_t max_forwards, size_t max_connections_each) {
    max_forwards_ = std::min(max_forwards, kMaxForwards);
    max_connections_each_ = max_connections_each;
  }

 private:
  size_t max_forwards_ = kMaxForwards;
  size_t max_connections_each_ = TcpForwarder::kMaxConnections;
  struct Entry {
    std::unique_ptr<TcpForwarder> tcp;
    std::unique_ptr<UdpForwarder> udp;
    std::string conflict;  // empty when open
    std::string hint;      // host_bind_hint for the conflict
  };
  void apply();
  boost::system::error_code try_open(const HostForward& f, Entry& e);
  void arm_retry();

  boost::asio::io_context& io_;
  const Clock& clock_;
  GuestSide guest_;
  PolicySettings settings_;
  std::set<Listener> listeners_;
  std::map<HostForward, Entry> entries_;
  boost::asio::steady_timer retry_timer_;
  bool retry_armed_ = false;
  AutoForwardStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::portfwd
