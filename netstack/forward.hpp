// Manual port forwards (`--publish`): a host address and port whose
// connections or datagrams are carried to a guest port.
//
// Spec syntax: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]
//   8080:80            host 127.0.0.1:8080 and [::1]:8080 → guest port 80, TCP
//   0.0.0.0:5353:53/udp
//   [::1]:2222:22
// Without HOSTIP a forward is published on both loopback addresses — the
// guest is reachable from this host only, never from the network, unless
// the user names a wider address.
//
// Thread safety: value types and pure functions.
#pragma once

#include <sys/socket.h>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace causeway::netstack {

enum class Proto { kTcp, kUdp };
std::string_view to_string(Proto p);

struct PortForward {
  Proto proto = Proto::kTcp;
  sockaddr_storage host{};  // AF_INET or AF_INET6 with the port set
  uint16_t guest_port = 0;

  [[nodiscard]] uint16_t host_port() const;
  // "127.0.0.1:8080", "[::1]:8080"
  [[nodiscard]] std::string host_endpoint() const;
  // "tcp 127.0.0.1:8080 -> guest:80"
  [[nodiscard]] std::string describe() const;
  friend bool operator==(const PortForward& a, const PortForward& b);
};

// Parses a --publish spec; the error string says what is wrong with it.
boost::system::result<std::vector<PortForward>, std::string> parse_publish_spec(std::string_view spec);

// Checks that the host address and port can be bound now (bind, then close),
// so a taken port is reported at start even when no guest is attached yet.
boost::system::error_code probe_host_port(const PortForward& f);

// Builds a forward from its parts (as the control API receives them).
boost::system::result<PortForward, std::string> make_forward(std::string_view proto, std::string_view host_ip,
                                                             int host_port, int guest_port);

}  // namespace causeway::netstack
