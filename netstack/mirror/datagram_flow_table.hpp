// DatagramFlowTable: a mirrored link's UDP and echo flows, each a host socket
// bound to the guest's source address (mirror_link.hpp has the whole data path).
//
//   UDP                  → one host socket per (guest address, guest port),
//                          bound to that address and, when free, the same
//                          port (else an ephemeral one); replies from any
//                          peer go back as frames (endpoint-independent
//                          mapping, RFC 4787 §4.1)
//   ICMP / ICMPv6 echo   → one ping socket (SOCK_DGRAM, IPPROTO_ICMP[V6]) per
//                          (guest address, echo id), bound to the address;
//                          the kernel picks the id on the wire, replies get
//                          the guest's id back
//
// Bounds: each table has a cap (max_udp_flows, max_ping_flows); a new flow
// past it closes the least recently used one (counted as udp_evicted, for
// both tables). A sweep every kSweepEvery closes flows idle for longer than
// udp_idle (dns_idle for port 53; 30 s for ping). Replies that would not fit
// the link MTU are dropped and counted (too_big): no fragmentation toward the
// guest. Idle time is measured on the injected Clock; the sweep's period is
// an Asio timer.
//
// The caller (MirrorLink) has already checked the frame the arguments come
// from and the policy for its source and destination.
//
// Thread safety: confined to the executor of the io_context it is built on.
#pragma once

#include <netinet/in.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "netstack/frame.hpp"

namespace causeway::netstack::mirror {

struct DatagramFlowConfig {
  std::string name;      // the guest link's (for logs)
  int host_ifindex = 0;  // scope of link-local IPv6 peers
  Mac our_mac{};
  size_t mtu = 1500;
  size_t max_udp_flows = 1024;
  size_t max_ping_flows = 256;
  std::chrono::seconds udp_idle{180};
  std::chrono::seconds dns_idle{20};
};

struct DatagramFlowStats {
  uint64_t udp_flows_opened = 0, udp_out = 0, udp_in = 0;
  uint64_t udp_errors = 0;   // a bind or send the host refused
  uint64_t udp_evicted = 0;  // flows (UDP or ping) closed to make room (cap)
  uint64_t ping_out = 0, ping_in = 0, ping_errors = 0;
  uint64_t too_big = 0;  // replies over the link MTU, dropped
};

class DatagramFlowTable {
 public:
  using SendToGuest = std::function<void(std::span<const uint8_t>)>;

  // `clock` must outlive the table; `send` carries reply frames to the guest.
  DatagramFlowTable(boost::asio::io_context& io, const Clock& clock, DatagramFlowConfig cfg, SendToGuest send);
  ~DatagramFlowTable();
  DatagramFlowTable(const DatagramFlowTable&) = delete;
  DatagramFlowTable& operator=(const DatagramFlowTable&) = delete;

  // A guest datagram from `src`:`sport` (4 or 16 address bytes by family) to `dst`:`dport`.
  void on_udp(int family, const Mac& src_mac, const uint8_t* src, const uint8_t* dst, uint16_t sport, uint16_t dport,
              std::span<const uint8_t> payload);
  // A guest echo request (`icmp`: the ICMP or ICMPv6 message, at least 8 bytes).
  void on_echo(int family, const Mac& src_mac, const uint8_t* src, const uint8_t* dst, std::span<const uint8_t> icmp);
  void set_mtu(size_t mtu) { cfg_.mtu = mtu; }
  // Closes every flow (the link goes away).
  void close_all();

  [[nodiscard]] const DatagramFlowStats& stats() const { return stats_; }
  [[nodiscard]] size_t udp_flows() const { return udp_.size(); }
  [[nodiscard]] size_t ping_flows() const { return ping_.size(); }

  struct Flow;  // a UDP or ping socket, private to datagram_flow_table.cpp

 private:
  using Table = std::map<std::vector<uint8_t>, std::shared_ptr<Flow>>;  // key: family, address, port or echo id
  void read_flow(const std::shared_ptr<Flow>& f);
  void deliver(Flow& f, const sockaddr_storage& peer, std::span<const uint8_t> data);
  bool make_room(Table& table, size_t cap);
  void sweep();

  boost::asio::io_context& io_;
  const Clock& clock_;
  DatagramFlowConfig cfg_;
  SendToGuest send_;
  Table udp_;
  Table ping_;
  boost::asio::steady_timer sweep_timer_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> rx_;
  DatagramFlowStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::netstack::mirror
