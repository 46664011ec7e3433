// GuestConnector: how a relay reaches a service in the guest. Implementations
// name their transport: LoopbackConnector (a host loopback port that the NAT
// stack forwards into the guest), a socket made inside the namespace
// (netstack/netns_sockets.hpp), or vsock to the guest agent
// (vmm/agent/relay_client.hpp).
//
// Thread safety: confined to the engine executor.
#pragma once

#include <array>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <functional>

namespace causeway::portfwd {

using StreamSocket = boost::asio::generic::stream_protocol::socket;

// Where in the guest a relayed connection goes: a port on the guest's
// loopback. An IPv4 connector uses `v4_loopback` (127.0.0.1 unless the guest
// listens only on another 127.0.0.0/8 address); IPv6 has one loopback, ::1.
struct GuestTarget {
  static constexpr std::array<uint8_t, 4> kDefaultV4 = {127, 0, 0, 1};
  // A bare port means the default loopback: most callers name only a port.
  GuestTarget(uint16_t p) : port(p) {}  // NOLINT(google-explicit-constructor)
  GuestTarget(uint16_t p, std::array<uint8_t, 4> v4) : port(p), v4_loopback(v4) {}
  [[nodiscard]] bool default_loopback() const { return v4_loopback == kDefaultV4; }
  uint16_t port = 0;
  std::array<uint8_t, 4> v4_loopback = kDefaultV4;
};

class GuestConnector {
 public:
  using ConnectHandler = std::function<void(boost::system::error_code, StreamSocket)>;
  virtual ~GuestConnector() = default;
  // Opens a stream to the guest's TCP port `target.port` on its loopback.
  // A connector whose transport cannot name another loopback address (the
  // VM relay carries a port only) fails targets with !default_loopback();
  // the forward policy does not plan those for it (PolicySettings).
  virtual void async_connect(const GuestTarget& target, ConnectHandler handler) = 0;
};

}  // namespace causeway::portfwd
