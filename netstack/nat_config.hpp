// NatConfig: the virtual network a NAT-mode guest sees. Defaults follow the
// slirp/QEMU convention so users recognise them.
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "netstack/frame.hpp"

namespace causeway::netstack {

struct NatConfig {
  // IPv4: 10.0.2.0/24; the gateway 10.0.2.2 also stands for the host's
  // loopback (a guest connecting to 10.0.2.2:PORT reaches 127.0.0.1:PORT on
  // the host) unless host_loopback is false.
  in_addr network{htonl(0x0a000200)};
  in_addr netmask{htonl(0xffffff00)};
  in_addr gateway{htonl(0x0a000202)};
  in_addr guest{htonl(0x0a00020f)};  // the first (and usually only) DHCP lease
  in_addr dns{htonl(0x0a000203)};
  bool ipv6 = true;
  in6_addr prefix6{{{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}};
  uint8_t prefix6_len = 64;
  in6_addr gateway6{{{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}}};
  in6_addr dns6{{{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}}};
  size_t mtu = kMaxMtu;
  bool host_loopback = true;
  std::string hostname = "causeway";
  std::vector<std::string> dns_search;
  // libslirp's own DNS forwarding at `dns` (first host server only). Off when
  // the engine has a dns::Proxy (Engine::attach_dns); on in plain mode
  // (dnsTunneling=false).
  bool slirp_dns = true;
  // The TCP fast path (netstack/tcp_fast_path.hpp) for guest-opened TCP
  // connections instead of libslirp's TCP stack. It needs Linux 6.10+; when
  // the kernel lacks it the engine keeps libslirp, and says so at warning
  // level only when the fast path was asked for explicitly (`--tcp-engine fast`).
  bool tcp_fast = true;
  bool tcp_fast_explicit = false;
  // The source ports (on the gateway address) that connections a fast-path
  // TCP forward accepts come from, as the guest sees them; taken round robin.
  // The default is Linux's own ephemeral range.
  uint16_t forward_port_first = 32768;
  uint16_t forward_port_last = 60999;
  // Caps from the process's descriptor budget (netstack/budget.hpp; cli's Runtime sets them
  // from FdBudget::from_process()). The defaults are the budget's ceilings.
  size_t max_tcp_flows = 4096;          // TCP fast-path flows (one host socket each)
  size_t max_slirp_sockets = 1024;      // host sockets libslirp may hold (UDP sources, its TCP, echo)
  size_t max_udp_forward_flows = 4096;  // UDP forward flows (virtual gateway ports)
};

// The gateway's MAC as libslirp derives it (52:55 + the gateway's IPv4 address).
Mac gateway_mac(const NatConfig& cfg);

// Where DNS over TCP to `dns` really goes (Engine::attach_dns): the last host address of the
// guest network (10.0.2.254 by default), far from the DHCP pool at .15.
in_addr dns_tcp_shadow(const NatConfig& cfg);

}  // namespace causeway::netstack
