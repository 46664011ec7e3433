// The host's end of the agent's relay channel (relay.hpp): automatic (and
// any other) localhost forwards reach services on the guest's own loopback
// through vsock streams to the guest agent.
//
//   TcpForwarder ──StreamSocket──► [socketpair] ──StreamBridge──► VsockStream ──► agent ──► guest 127.0.0.1:P / [::1]:P
//   UdpForwarder ──GuestDatagramChannel──► VsockRelayDatagramChannel ──► VsockStream (framed) ──► agent ──► UDP socket
//
// VsockRelayConnector (portfwd::GuestConnector): opens a stream to the
// agent's relay port, sends the RelayRequest, waits for the RelayReply
// (bounded by kHandshakeTimeout), and on success hands the relay a unix
// socket whose peer a StreamBridge splices to the vsock stream. A refused
// loopback connect in the guest comes back as that errno (ECONNREFUSED when
// nothing listens), so the host client sees its connection reset at once.
//
// StreamBridge backpressure, both ways: host → guest, the bridge reads its
// unix socket only after the previous chunk was fully taken by the stream
// (vsock credit); guest → host, it pauses the stream's receive side while
// more than kBridgeHigh bytes wait for the unix socket. Half-close maps to
// shutdown(SHUT_WR) / VsockStream::shutdown_write. The socketpair costs one
// copy and a syscall per chunk; under TCG the guest, not this hop, bounds
// throughput (issue 8 takes the hop out for the TCP fast path).
//
// VsockRelayDatagramChannel (portfwd::GuestDatagramChannel): one stream per
// flow, datagrams framed as u16 length + payload. Datagrams sent before the
// stream is up wait in a bounded queue (kMaxFlowQueue bytes; beyond it they
// are dropped, as UDP may). At most kMaxFlows flows.
//
// Thread safety: confined to the engine executor (the vsock device's).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "portfwd/guest_connector.hpp"
#include "portfwd/guest_datagram.hpp"
#include "vmm/agent/relay.hpp"
#include "vmm/vsock.hpp"

namespace causeway::agent {

namespace detail {
class StreamBridge;
}

struct RelayClientStats {
  uint64_t streams = 0;      // relay streams opened (TCP connections + UDP flows)
  uint64_t refused = 0;      // the guest answered with an errno
  uint64_t failed = 0;       // no stream, bad reply, handshake timeout
  uint64_t udp_dropped = 0;  // datagrams dropped (queue full, flow gone)
};

class VsockRelayConnector final : public portfwd::GuestConnector {
 public:
  static constexpr auto kHandshakeTimeout = std::chrono::seconds(5);
  // `family` 4: guest 127.0.0.1; 6: guest ::1.
  VsockRelayConnector(boost::asio::io_context& io, vmm::VsockHost& vsock, uint8_t family);
  // Ends the relays it made that are still running (their sockets and streams close).
  ~VsockRelayConnector() override;
  // Only the default loopback (127.0.0.1 / ::1): the relay protocol carries no address.
  void async_connect(const portfwd::GuestTarget& target, ConnectHandler handler) override;
  [[nodiscard]] const RelayClientStats& stats() const { return *stats_; }

 private:
  boost::asio::io_context& io_;
  vmm::VsockHost& vsock_;
  uint8_t family_;
  std::shared_ptr<RelayClientStats> stats_ = std::make_shared<RelayClientStats>();
  // Live bridges (weak: a bridge owns itself through its pending I/O).
  std::shared_ptr<std::vector<std::weak_ptr<detail::StreamBridge>>> bridges_ =
      std::make_shared<std::vector<std::weak_ptr<detail::StreamBridge>>>();
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class VsockRelayDatagramChannel final : public portfwd::GuestDatagramChannel {
 public:
  static constexpr size_t kMaxFlows = 1024;
  static constexpr size_t kMaxFlowQueue = 256 * 1024;
  VsockRelayDatagramChannel(boost::asio::io_context& io, vmm::VsockHost& vsock, uint8_t family);
  ~VsockRelayDatagramChannel() override;

  std::optional<uint16_t> open_flow(uint16_t guest_port, ReplyHandler on_reply) override;
  bool send_on_flow(uint16_t flow, std::span<const uint8_t> payload) override;
  void close_flow(uint16_t flow) override;
  [[nodiscard]] const RelayClientStats& stats() const { return stats_; }
  [[nodiscard]] size_t flows() const { return flows_.size(); }

 private:
  struct Flow;
  void flush(Flow& f);

  vmm::VsockHost& vsock_;
  uint8_t family_;
  uint16_t next_id_ = 1;
  std::map<uint16_t, std::shared_ptr<Flow>> flows_;
  RelayClientStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Splices a unix stream socket and a vsock stream until both directions end
// (owns itself; exposed for tests). `early` are stream bytes that arrived
// with the handshake reply and go to the socket first. The handle lets an
// owner end it early (close_bridge); it expires when the bridge is done.
// `on_done` (optional) runs once when both directions have ended or the
// bridge was closed — the instance daemon counts its exec sessions with it.
std::weak_ptr<detail::StreamBridge> bridge_stream(boost::asio::io_context& io, int unix_fd,
                                                  std::shared_ptr<vmm::VsockStream> stream, std::vector<uint8_t> early,
                                                  std::function<void()> on_done = {});
void close_bridge(detail::StreamBridge& b);

}  // namespace causeway::agent
