// GuestDatagramChannel: how a UDP relay exchanges datagrams with a guest
// port. The NAT engine implements it by writing UDP frames to the guest
// itself (one virtual source port per flow) and catching the replies before
// its stack sees them.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>

namespace causeway::portfwd {

class GuestDatagramChannel {
 public:
  using ReplyHandler = std::function<void(std::span<const uint8_t> payload)>;
  virtual ~GuestDatagramChannel() = default;
  // Opens a flow to `guest_port`; nothing if the channel is full.
  virtual std::optional<uint16_t> open_flow(uint16_t guest_port, ReplyHandler on_reply) = 0;
  // Sends one datagram on a flow; false if it could not be delivered now.
  virtual bool send_on_flow(uint16_t flow, std::span<const uint8_t> payload) = 0;
  virtual void close_flow(uint16_t flow) = 0;
};

}  // namespace causeway::portfwd
