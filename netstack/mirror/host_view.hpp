// Mirrored mode: the host's view of its own network, read with libnl and
// followed through netlink notifications.
//
// Two NETLINK_ROUTE sockets in the namespace being watched (normally the one
// causeway runs in; tests pass another through a SocketMaker):
//   - a notification socket, non-blocking, subscribed to RTNLGRP_LINK,
//     IPV4_IFADDR, IPV6_IFADDR, IPV4_ROUTE and IPV6_ROUTE, watched by Asio.
//     Its messages are only a signal: they are drained, not parsed;
//   - a request socket for libnl's cache dumps (links, addresses, routes of
//     every table), converted into plan.hpp's NetState.
// The first notification of a burst arms a debounce timer (kDebounce); when
// it fires the whole state is read again, so an overrun (ENOBUFS: the kernel
// dropped notifications) needs nothing special — it is counted and leads to
// the same full re-read. A dump interrupted by a concurrent change
// (NLE_DUMP_INTR) is retried after another debounce period. The callback
// runs only when the state read differs from the previous one.
//
// Limits: what is converted is capped (kMaxRead*; the plan applies the
// tighter product caps). libnl's caches themselves hold a whole dump; the
// input is the host's own kernel.
//
// Thread safety: confined to the executor of the io_context it is given.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/unique_fd.hpp"
#include "netstack/mirror/plan.hpp"

struct nl_sock;

namespace causeway::netstack::mirror {

inline constexpr auto kDebounce = std::chrono::milliseconds(50);  // a burst (VPN up: link, addrs, routes) is one read
inline constexpr int kNotifyRcvbuf = 1 << 20;  // bytes; a VPN coming up is a few dozen messages, a route flap more
inline constexpr size_t kMaxReadLinks = 4096;
inline constexpr size_t kMaxReadAddresses = 65536;
inline constexpr size_t kMaxReadRoutes = 262144;

// Makes a socket in the namespace to read: ::socket() for the current one,
// NamespaceSocketFactory::create for another.
using SocketMaker = std::function<boost::system::result<UniqueFd>(int family, int type, int protocol)>;
SocketMaker current_namespace_sockets();

struct NlSockDeleter {
  void operator()(nl_sock* sk) const;
};
using NlSocket = std::unique_ptr<nl_sock, NlSockDeleter>;

// A bound NETLINK_ROUTE libnl socket on a descriptor from `make`.
boost::system::result<NlSocket, std::string> open_route_socket(const SocketMaker& make);

struct ReadCounters {
  uint64_t links_over_cap = 0;
  uint64_t addresses_over_cap = 0;
  uint64_t routes_over_cap = 0;
  uint64_t unknown_ifindex = 0;  // an address or next hop on a link the dump did not list
};

// Dumps links, addresses and routes (all tables) from `sk`'s namespace.
boost::system::result<NetState, std::string> read_netlink_state(nl_sock* sk, ReadCounters& counters);

class HostView {
 public:
  struct Stats {
    uint64_t reads = 0;
    uint64_t changes = 0;        // reads whose result differed from the previous one
    uint64_t notifications = 0;  // netlink messages drained
    uint64_t overruns = 0;       // ENOBUFS on the notification socket
    uint64_t read_errors = 0;
    ReadCounters caps;
  };
  using OnChange = std::function<void(const NetState&)>;

  // `notify_rcvbuf`: the notification socket's SO_RCVBUF (tests make it tiny to force ENOBUFS).
  HostView(boost::asio::io_context& io, SocketMaker make_socket, std::chrono::milliseconds debounce = kDebounce,
           int notify_rcvbuf = kNotifyRcvbuf);
  ~HostView();
  HostView(const HostView&) = delete;
  HostView& operator=(const HostView&) = delete;

  // Subscribes, then reads once (the callback runs before start returns when
  // that read succeeds). Errors are one line for the user.
  boost::system::result<void, std::string> start(OnChange on_change);
  [[nodiscard]] const NetState& state() const { return state_; }
  [[nodiscard]] const Stats& stats() const { return stats_; }
  // Re-read at once (after the debounce), as if the kernel had notified.
  void request_read();

 private:
  void wait_notifications();
  void on_notifications();
  void arm_read();
  void read_now();

  SocketMaker make_socket_;
  std::chrono::milliseconds debounce_;
  int notify_rcvbuf_;
  NlSocket request_;
  boost::asio::posix::stream_descriptor notify_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  OnChange on_change_;
  NetState state_;
  bool have_state_ = false;
  Stats stats_;
};

}  // namespace causeway::netstack::mirror
