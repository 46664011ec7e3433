#include "portfwd/loopback_connector.hpp"

#include <netinet/in.h>

#include <memory>

namespace causeway::portfwd {

void LoopbackConnector::async_connect(const GuestTarget&, ConnectHandler handler) {
  const socklen_t len = target_.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const boost::asio::generic::stream_protocol::endpoint ep(&target_, len, IPPROTO_TCP);
  auto sock = std::make_shared<StreamSocket>(io_);
  sock->async_connect(
      ep, [sock, handler = std::move(handler)](boost::system::error_code ec) { handler(ec, std::move(*sock)); });
}

}  // namespace causeway::portfwd
