// The relay channel: how a host-side forward reaches a service on the
// guest's own loopback in a VM (docs/ARCHITECTURE.md, "Automatic localhost
// forwarding").
//
// The control stream (protocol.hpp) carries listener events; data travels on
// separate vsock streams, one per relayed TCP connection or UDP flow, so a
// bulk transfer never queues behind control messages and each stream has its
// own vsock credit (backpressure per connection).
//
//   host                                      guest agent (listens on vsock port kAgentRelayPort)
//   connect(guest CID, kAgentRelayPort) ───►  accept
//   RelayRequest (8 bytes)              ───►  connect to 127.0.0.1:port or [::1]:port (TCP),
//                                             or a UDP socket connected there
//                                       ◄───  RelayReply (4 bytes): 0, or the errno of the connect
//   TCP: raw bytes both ways; half-close is vsock SHUTDOWN ↔ shutdown(SHUT_WR) on the guest socket.
//   UDP: datagrams both ways, each framed as u16 length (little-endian) + payload.
//   Either side closes the stream to end the relay.
//
// Wire format (little-endian, no padding):
//   RelayRequest := 'C' 'W' u8 version (=1) u8 proto (6 TCP, 17 UDP) u8 family (4, 6) u8 0 u16 port (≠ 0)
//   RelayReply   := 'C' 'W' u16 error (0 = connected; else a Linux errno)
// Anything else is a protocol error and the receiver closes the stream.
//
// Sans-I/O and std-only (the static agent links it). Thread safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "vmm/agent/protocol.hpp"

namespace causeway::agent {

// The agent's relay listener (guest side, any CID); cw.relay.port=N is not offered: fixed.
constexpr uint32_t kAgentRelayPort = 1025;
constexpr uint8_t kRelayVersion = 1;
constexpr size_t kRelayRequestSize = 8;
constexpr size_t kRelayReplySize = 4;
// Largest UDP payload a relay frame carries (IPv6 jumbograms aside, 65535 minus
// the UDP header; IPv4 datagrams are smaller still).
constexpr size_t kMaxRelayDatagram = 65527;

struct RelayRequest {
  IpProto proto = IpProto::Tcp;
  uint8_t family = 4;  // 4 → 127.0.0.1, 6 → ::1
  uint16_t port = 0;
  friend bool operator==(const RelayRequest&, const RelayRequest&) = default;
};

[[nodiscard]] std::array<uint8_t, kRelayRequestSize> encode_relay_request(const RelayRequest& r);
// nullopt for anything malformed (bad magic, version, proto, family, port 0).
[[nodiscard]] std::optional<RelayRequest> decode_relay_request(std::span<const uint8_t, kRelayRequestSize> bytes);

[[nodiscard]] std::array<uint8_t, kRelayReplySize> encode_relay_reply(uint16_t error);
// The error code (0 = connected), or nullopt when the bytes are not a reply.
[[nodiscard]] std::optional<uint16_t> decode_relay_reply(std::span<const uint8_t, kRelayReplySize> bytes);

// UDP framing: appends one frame; the payload must be ≤ kMaxRelayDatagram.
void append_relay_datagram(std::span<const uint8_t> payload, std::vector<uint8_t>& out);

// Splits a byte stream into datagrams. feed() bytes, then take next() until
// empty. A frame longer than kMaxRelayDatagram is a protocol error (error()
// turns true and stays so). Memory: at most one frame plus one feed.
class RelayDatagramReader {
 public:
  void feed(std::span<const uint8_t> bytes);
  std::optional<std::span<const uint8_t>> next();
  [[nodiscard]] bool error() const { return error_; }

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  bool error_ = false;
};

}  // namespace causeway::agent
