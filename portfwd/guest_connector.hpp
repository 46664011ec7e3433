// GuestConnector: how a relay reaches a service in the guest. Implementations
// name their transport: LoopbackConnector (a host loopback port that the NAT
// stack forwards into the guest), later a socket made inside a namespace, or
// vsock to the guest agent.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <functional>

namespace causeway::portfwd {

using StreamSocket = boost::asio::generic::stream_protocol::socket;

class GuestConnector {
 public:
  using ConnectHandler = std::function<void(boost::system::error_code, StreamSocket)>;
  virtual ~GuestConnector() = default;
  // Opens a stream to the guest's TCP port `guest_port`.
  virtual void async_connect(uint16_t guest_port, ConnectHandler handler) = 0;
};

}  // namespace causeway::portfwd
