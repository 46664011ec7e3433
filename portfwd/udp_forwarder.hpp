// UdpForwarder: relays datagrams between host clients of a listening address
// and a guest port, keeping a flow per client so replies return to the right
// client.
//
// Each client gets a flow on a GuestDatagramChannel; a datagram from client C
// goes out on C's flow, and replies on that flow are sent back to C from the
// listening socket (so the client sees them come from the address it sent to). Flows expire after kIdleTimeout
// without traffic (checked every kSweepInterval). At most kMaxFlows flows:
// datagrams from new clients beyond that are dropped and counted.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <sys/socket.h>

#include <boost/asio/generic/datagram_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "portfwd/guest_datagram.hpp"

namespace causeway::portfwd {

struct UdpRelayStats {
  uint64_t flows_created = 0;
  uint64_t flows_active = 0;
  uint64_t flows_expired = 0;
  uint64_t datagrams_to_guest = 0;
  uint64_t datagrams_from_guest = 0;
  uint64_t dropped_over_capacity = 0;
  uint64_t dropped_undeliverable = 0;
};

class UdpForwarder {
 public:
  static constexpr size_t kMaxFlows = 256;
  static constexpr auto kIdleTimeout = std::chrono::seconds(60);  // conntrack's UDP default is 30-120 s
  static constexpr auto kSweepInterval = std::chrono::seconds(5);

  UdpForwarder(boost::asio::io_context& io, const Clock& clock, const sockaddr_storage& listen_on, uint16_t guest_port,
               GuestDatagramChannel& channel, std::chrono::milliseconds sweep_interval = kSweepInterval);
  ~UdpForwarder();
  UdpForwarder(const UdpForwarder&) = delete;
  UdpForwarder& operator=(const UdpForwarder&) = delete;

  boost::system::error_code start();
  [[nodiscard]] const UdpRelayStats& stats() const { return stats_; }

 private:
  using Socket = boost::asio::generic::datagram_protocol::socket;
  using Endpoint = boost::asio::generic::datagram_protocol::endpoint;
  struct Flow {
    uint16_t handle = 0;
    Endpoint client;
    int64_t last_ms = 0;
  };

  void receive_from_clients();
  void sweep();
  Flow* flow_for(const Endpoint& client);

  const Clock& clock_;
  sockaddr_storage listen_on_;
  uint16_t guest_port_;
  GuestDatagramChannel& channel_;
  Socket listener_;
  Endpoint sender_;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(65536);
  std::map<std::string, std::unique_ptr<Flow>> flows_;
  boost::asio::steady_timer sweep_timer_;
  std::chrono::milliseconds sweep_interval_;
  UdpRelayStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::portfwd
