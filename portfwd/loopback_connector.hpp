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
  // The guest side is implied by `target` given at construction (one connector
  // per manual forward, always the guest's 10.0.2.15:port): the argument is unused.
  void async_connect(const GuestTarget& guest, ConnectHandler handler) override;

 private:
  boost::asio::io_context& io_;
  sockaddr_storage target_;
};

}  // namespace causeway::portfwd
