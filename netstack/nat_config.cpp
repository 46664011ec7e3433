#include "netstack/nat_config.hpp"

#include <cstring>

namespace causeway::netstack {

Mac gateway_mac(const NatConfig& cfg) {
  Mac m{0x52, 0x55, 0, 0, 0, 0};
  std::memcpy(&m[2], &cfg.gateway.s_addr, 4);
  return m;
}

}  // namespace causeway::netstack
