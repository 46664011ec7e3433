#include "portfwd/listener.hpp"

#include <arpa/inet.h>

namespace causeway::portfwd {

std::string Listener::describe() const {
  char buf[INET6_ADDRSTRLEN] = {};
  std::string out = proto == L4::kTcp ? "tcp " : "udp ";
  if (family == Family::kIpv4) {
    inet_ntop(AF_INET, &address, buf, sizeof buf);
    return out + buf + ":" + std::to_string(port);
  }
  inet_ntop(AF_INET6, &address, buf, sizeof buf);
  return out + "[" + buf + "]:" + std::to_string(port) + (v6only ? " (v6only)" : "");
}

}  // namespace causeway::portfwd
