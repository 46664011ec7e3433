#include "netstack/nat_config.hpp"

#include <cstring>

namespace causeway::netstack {

Mac gateway_mac(const NatConfig& cfg) {
  Mac m{0x52, 0x55, 0, 0, 0, 0};
  std::memcpy(&m[2], &cfg.gateway.s_addr, 4);
  return m;
}

in_addr dns_tcp_shadow(const NatConfig& cfg) {
  in_addr a{};
  a.s_addr = (cfg.network.s_addr & cfg.netmask.s_addr) | (~cfg.netmask.s_addr & htonl(0xfffffffe));
  return a;
}

}  // namespace causeway::netstack
