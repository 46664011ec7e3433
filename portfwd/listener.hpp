#pragma once
// A guest listener as the probes see it (sock_diag dumps, the bind/listen trap), and the
// vocabulary around it. The forward policy (forward_policy.hpp) plans host forwards from
// sets of these. It depends on libc and the standard library only: the static guest agent
// reports its listeners in these terms.

#include <netinet/in.h>

#include <compare>
#include <cstdint>
#include <cstring>
#include <string>

namespace causeway::portfwd {

enum class L4 : uint8_t { kTcp, kUdp };
enum class Family : uint8_t { kIpv4, kIpv6 };

struct Listener {
  L4 proto = L4::kTcp;
  Family family = Family::kIpv4;
  in6_addr address{};  // IPv4 as the first 4 bytes
  uint16_t port = 0;
  bool v6only = false;
  auto operator<=>(const Listener& o) const {
    if (auto c = proto <=> o.proto; c != 0) return c;
    if (auto c = family <=> o.family; c != 0) return c;
    if (auto c = port <=> o.port; c != 0) return c;
    if (auto c = v6only <=> o.v6only; c != 0) return c;
    const int m = std::memcmp(&address, &o.address, sizeof address);
    return m < 0 ? std::strong_ordering::less : m > 0 ? std::strong_ordering::greater : std::strong_ordering::equal;
  }
  bool operator==(const Listener& o) const { return (*this <=> o) == 0; }
  [[nodiscard]] std::string describe() const;  // "tcp [::]:8000"
};

}  // namespace causeway::portfwd
