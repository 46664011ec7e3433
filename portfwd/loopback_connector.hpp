// LoopbackConnector: reaches the guest through a host loopback port that the
// NAT stack (libslirp's host forward) carries into the guest. Used to give
// IPv6 host addresses to forwards whose guest side is IPv4: libslirp 4.7
// cannot translate between families on its own forwards (it accepts, then
// resets), so [::1]:P is relayed to 127.0.0.1:<internal> → guest:P.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <sys/socket.h>

#include <boost/asio/io_context.hpp>

#include "portfwd/guest_connector.hpp"

namespace causeway::portfwd {

class LoopbackConnector final : public GuestConnector {
 public:
  LoopbackConnector(boost::asio::io_context& io, const sockaddr_storage& target) : io_(io), target_(target) {}
  // `guest_port` is implied by the target (one connector per forward).
  void async_connect(uint16_t guest_port, ConnectHandler handler) override;

 private:
  boost::asio::io_context& io_;
  sockaddr_storage target_;
};

}  // namespace causeway::portfwd
