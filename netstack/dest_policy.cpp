// Destination policy; theory of operation in dest_policy.hpp.
#include "netstack/dest_policy.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace causeway::netstack {
namespace {

uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

uint32_t mask_of(uint8_t prefix_len) {
  return prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - std::min<uint8_t>(prefix_len, 32));
}

// RFC 919/922: the all-ones host part is the network's broadcast; the all-zeros host part was
// the broadcast of 4.2BSD and names no host either. /31 (RFC 3021) and /32 have neither.
bool directed_broadcast(uint32_t a, const Ipv4Net& net) {
  if (net.prefix_len > 30) return false;
  const uint32_t m = mask_of(net.prefix_len);
  if ((a & m) != (load_be32(net.addr.data()) & m)) return false;
  return (a & ~m) == ~m || (a & ~m) == 0;
}

DestClass classify_v4(const uint8_t* b, const DestPolicy& p) {
  const uint32_t a = load_be32(b);
  if ((a >> 24) == 0) return DestClass::kUnspecified;  // 0.0.0.0/8: "this host on this network"
  if ((a >> 24) == 127) return DestClass::kLoopback;
  if (a == 0xffffffff) return DestClass::kBroadcast;  // limited broadcast (RFC 919 §7)
  if ((a >> 28) == 14) return DestClass::kMulticast;
  if ((a >> 28) == 15) return DestClass::kReserved;
  if ((a >> 16) == 0xa9fe && !p.link_local_peers) return DestClass::kLinkLocal;  // 169.254/16
  for (const auto& n : p.ipv4_nets)
    if (directed_broadcast(a, n)) return DestClass::kBroadcast;
  return DestClass::kAllowed;
}

bool zero(const uint8_t* b, size_t n) {
  return std::all_of(b, b + n, [](uint8_t x) { return x == 0; });
}

DestClass classify_v6(const uint8_t* b, const DestPolicy& p) {
  if (zero(b, 15) && b[15] <= 1) return b[15] == 0 ? DestClass::kUnspecified : DestClass::kLoopback;
  const bool mapped = zero(b, 10) && b[10] == 0xff && b[11] == 0xff;
  const bool compat = zero(b, 12);
  if (mapped || compat) {
    // Report the embedded address's class when it is refused in its own right (::ffff:127.0.0.1
    // is loopback to the kernel); the form itself is refused either way.
    const DestClass inner = classify_v4(b + 12, DestPolicy{});
    if (inner != DestClass::kAllowed && inner != DestClass::kLinkLocal) return inner;
    return mapped ? DestClass::kIpv4Mapped : DestClass::kIpv4Compatible;
  }
  if (b[0] == 0xff) return DestClass::kMulticast;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80 && !p.link_local_peers) return DestClass::kLinkLocal;
  return DestClass::kAllowed;
}

}  // namespace

std::string_view to_string(DestClass c) {
  switch (c) {
    case DestClass::kAllowed: return "allowed";
    case DestClass::kLoopback: return "loopback";
    case DestClass::kUnspecified: return "unspecified";
    case DestClass::kMulticast: return "multicast";
    case DestClass::kBroadcast: return "broadcast";
    case DestClass::kReserved: return "reserved";
    case DestClass::kLinkLocal: return "link_local";
    case DestClass::kIpv4Mapped: return "ipv4_mapped";
    case DestClass::kIpv4Compatible: return "ipv4_compatible";
    case DestClass::kHostAddress: return "host_address";
    case DestClass::kHostLoopbackOff: return "host_loopback_off";
  }
  return "unknown";
}

DestClass classify_destination(const GuestAddr& dst, const DestPolicy& policy) {
  DestClass c = DestClass::kAllowed;
  if (dst.family == AF_INET)
    c = classify_v4(dst.bytes.data(), policy);
  else if (dst.family == AF_INET6)
    c = classify_v6(dst.bytes.data(), policy);
  else
    return DestClass::kReserved;  // no such family: nothing to connect to
  if (c != DestClass::kAllowed) return c;
  const size_t n = dst.family == AF_INET ? 4 : 16;
  for (const auto& h : policy.host_addresses)
    if (h.family == dst.family && std::memcmp(h.bytes.data(), dst.bytes.data(), n) == 0) return DestClass::kHostAddress;
  return DestClass::kAllowed;
}

DestClass nat_destination(const NatConfig& cfg, const GuestAddr& dst, bool echo, uint16_t dport) {
  constexpr uint16_t kDnsPort = 53;
  // Whatever libslirp would hand to the host (see the header): the gateway rule.
  const DestClass via_host = cfg.host_loopback ? DestClass::kAllowed : DestClass::kHostLoopbackOff;
  if (dst.family == AF_INET) {
    in_addr d{};
    std::memcpy(&d.s_addr, dst.bytes.data(), 4);
    if ((d.s_addr & cfg.netmask.s_addr) == (cfg.network.s_addr & cfg.netmask.s_addr)) {
      const uint32_t host = ntohl(d.s_addr & ~cfg.netmask.s_addr);
      if (host == 0 || host == ntohl(~cfg.netmask.s_addr)) return DestClass::kBroadcast;
      const bool dns = d.s_addr == cfg.dns.s_addr;
      if (echo) return dns || d.s_addr == cfg.gateway.s_addr ? DestClass::kAllowed : via_host;
      if ((dns || d.s_addr == dns_tcp_shadow(cfg).s_addr) && dport == kDnsPort) return DestClass::kAllowed;
      return via_host;
    }
    DestPolicy p;
    Ipv4Net net;
    std::memcpy(net.addr.data(), &cfg.network.s_addr, 4);
    net.prefix_len = static_cast<uint8_t>(__builtin_popcount(cfg.netmask.s_addr));
    p.ipv4_nets.push_back(net);
    return classify_destination(dst, p);
  }
  if (dst.family == AF_INET6 && cfg.ipv6) {
    const uint8_t* b = dst.bytes.data();
    const size_t plen = std::min<size_t>(cfg.prefix6_len, 128);
    auto in_prefix = [&] {
      const size_t full = plen / 8;
      if (std::memcmp(b, cfg.prefix6.s6_addr, full) != 0) return false;
      if (plen % 8 == 0) return true;
      const auto m = static_cast<uint8_t>(0xff << (8 - plen % 8));
      return (b[full] & m) == (cfg.prefix6.s6_addr[full] & m);
    };
    const bool gateway_iid = std::memcmp(b + 8, cfg.gateway6.s6_addr + 8, 8) == 0;
    const bool dns_iid = std::memcmp(b + 8, cfg.dns6.s6_addr + 8, 8) == 0;
    if (in_prefix()) {
      const bool dns = std::memcmp(b, cfg.dns6.s6_addr, 16) == 0;
      if (echo) return dns || std::memcmp(b, cfg.gateway6.s6_addr, 16) == 0 ? DestClass::kAllowed : via_host;
      if (dns && dport == kDnsPort) return DestClass::kAllowed;
      return via_host;
    }
    if (b[0] == 0xfe && b[1] == 0x80 && zero(b + 2, 6) && echo && (gateway_iid || dns_iid))
      return DestClass::kAllowed;  // the virtual router's and DNS's link-local twins answer echo
  }
  return classify_destination(dst, DestPolicy{});
}

}  // namespace causeway::netstack
