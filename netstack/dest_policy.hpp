// Destination policy: which addresses a guest may make the host open a
// socket toward. One sans-I/O function every data path asks — the TCP fast
// path, the libslirp path, UDP, ICMP echo, NAT and mirrored mode alike — so
// no path can be the one that forgot (issue 13: the fast path connect()ed to
// whatever a crafted SYN named, 127.0.0.1 included).
//
// Theory of operation
// -------------------
// The guest is untrusted and writes its own frames: the address in a packet
// is whatever it chose, not what its routing table would have produced. The
// policy classifies that address; anything but kAllowed is refused by the
// caller (RST for a TCP SYN, ICMP administratively prohibited or a silent drop
// for UDP, a drop for echo) and counted as dropped.forbidden_destination.
//
// Always refused, whatever the configuration:
//   loopback      127.0.0.0/8 (RFC 1122 §3.2.1.3(g)), ::1 (RFC 4291 §2.5.3)
//   unspecified   0.0.0.0/8 (RFC 1122 §3.2.1.3(a)), :: (RFC 4291 §2.5.2);
//                 Linux connects 0.0.0.0 to the host itself
//   multicast     224.0.0.0/4 (RFC 1112 §4), ff00::/8 (RFC 4291 §2.7)
//   broadcast     255.255.255.255 and the directed broadcast (and the
//                 all-zeros host part) of every network in the policy
//                 (RFC 919, RFC 922)
//   reserved      240.0.0.0/4 (RFC 1112 §4, "class E")
//   IPv4-mapped   ::ffff:0:0/96 never appears on the wire (RFC 4291
//                 §2.5.5.2); an AF_INET6 socket would connect ::ffff:127.0.0.1
//                 to the IPv4 loopback. Reported as the embedded address's
//                 class when that is refused too.
//   IPv4-compat.  ::/96 other than :: and ::1 (deprecated, RFC 4291 §2.5.5.1),
//                 reported the same way
//   host address  an address of the host itself (mirrored mode: the planned
//                 addresses of every link): host services reached by another
//                 name than loopback
// Refused unless the policy says the link has link-local peers:
//   link-local    169.254.0.0/16 (RFC 3927), fe80::/10 (RFC 4291 §2.5.6). In
//                 NAT mode such an address names nothing the guest can see
//                 (its link is virtual): a host socket would pick one of the
//                 host's links for it. Mirrored links do have link-local
//                 neighbours (the host link's).
//
// NAT mode adds the virtual network (nat_destination). libslirp
// (sotranslate_out) hands its addresses to the host: the DNS address, port 53
// only, to the host's resolver (which may itself be on loopback: 127.0.0.53);
// the gateway and 255.255.255.255 to 127.0.0.1, every address of the IPv6
// prefix to ::1 — or EPERM when host loopback is off; other IPv4 virtual
// addresses go out untranslated, to whatever the host's own networks hold
// there. So: DNS on port 53 (the proxy; TCP through the shadow, see
// Engine::attach_dns) is allowed; an echo to the gateway or the DNS address is
// answered by libslirp itself and allowed; everything else in the virtual
// network follows the gateway rule — allowed while host loopback is,
// kHostLoopbackOff otherwise. The network's broadcast addresses are refused.
// fe80::/64 is the virtual link's: libslirp answers echo to its router
// (fe80::2) and DNS (fe80::3) itself and translates nothing else there, so the
// rest is kLinkLocal.
//
// Not here: which *source* a mirrored guest may use (mirror_link.hpp checks
// that against the plan), ports (any port of an allowed address is fine).
//
// Thread safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "netstack/nat_config.hpp"

namespace causeway::netstack {

// An address as a guest packet carries it: IPv4 in bytes[0..3], network order.
struct GuestAddr {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};
  bool operator==(const GuestAddr&) const = default;
};

enum class DestClass : uint8_t {
  kAllowed,
  kLoopback,
  kUnspecified,
  kMulticast,
  kBroadcast,
  kReserved,
  kLinkLocal,
  kIpv4Mapped,
  kIpv4Compatible,
  kHostAddress,
  kHostLoopbackOff,  // NAT: the gateway alias for host loopback while --no-host-loopback
};
inline constexpr size_t kDestClassCount = 11;
std::string_view to_string(DestClass c);

struct Ipv4Net {
  std::array<uint8_t, 4> addr{};
  uint8_t prefix_len = 0;
};

struct DestPolicy {
  bool link_local_peers = false;          // the link has real link-local neighbours (mirrored)
  std::vector<Ipv4Net> ipv4_nets;         // networks whose broadcast addresses are refused
  std::vector<GuestAddr> host_addresses;  // the host's own addresses: refused
};

DestClass classify_destination(const GuestAddr& dst, const DestPolicy& policy);

// NAT mode (see the header): `echo` for an ICMP echo request, false for
// anything that makes the host connect or send (TCP, UDP to `dport`).
DestClass nat_destination(const NatConfig& cfg, const GuestAddr& dst, bool echo, uint16_t dport);

}  // namespace causeway::netstack
