// Socket addresses for a mirrored link's host sockets, built from the raw
// addresses in a guest's frames. Shared by the TCP policy (mirror_link.cpp)
// and the datagram flows (datagram_flow_table.cpp).
//
// Thread safety: pure functions.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>

namespace causeway::netstack::mirror {

// fe80::/10 (RFC 4291 §2.5.6): meaningful only with the link's scope.
inline bool v6_link_local(const uint8_t* a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }

// A socket address for `addr` (4 or 16 bytes by family) and `port`; link-local
// IPv6 addresses get `scope` (the host link's ifindex).
inline socklen_t make_sockaddr(int family, const uint8_t* addr, uint16_t port, int scope, sockaddr_storage& ss) {
  ss = {};
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);  // SAFETY: sockaddr_storage fits any sockaddr
    a->sin_family = AF_INET;
    std::memcpy(&a->sin_addr, addr, 4);
    a->sin_port = htons(port);
    return sizeof *a;
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);  // SAFETY: as above
  a->sin6_family = AF_INET6;
  std::memcpy(&a->sin6_addr, addr, 16);
  a->sin6_port = htons(port);
  if (v6_link_local(addr)) a->sin6_scope_id = static_cast<uint32_t>(scope);
  return sizeof *a;
}

}  // namespace causeway::netstack::mirror
