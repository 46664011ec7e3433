// ForwardPolicy: which host ports to open for the listeners a guest has.
// Sans-I/O: listeners and settings in, desired host forwards out.
//
// Mapping (guest listener → host side → where relayed connections go):
//   0.0.0.0:P                → 127.0.0.1:P      → guest 127.0.0.1:P
//   127.0.0.1:P              → 127.0.0.1:P      → guest 127.0.0.1:P
//   127.x.y.z:P (other 127/8)→ 127.0.0.1:P      → guest 127.x.y.z:P    (tcp_any_v4_loopback)
//   [::]:P (dual stack)      → 127.0.0.1:P      → guest 127.0.0.1:P
//                              and [::1]:P      → guest [::1]:P
//   [::]:P (IPV6_V6ONLY)     → [::1]:P          → guest [::1]:P
//   [::1]:P                  → [::1]:P          → guest [::1]:P
//   [::ffff:a.b.c.d]:P       → as the IPv4 listener a.b.c.d:P (a v6 socket
//                              bound to a v4-mapped address takes IPv4 only)
//   any other address        → nothing (documented: only wildcard and loopback listeners are forwarded)
// A listener on a loopback address other than 127.0.0.1 is relayed to that
// address — relaying it to 127.0.0.1, where nothing listens, would only get
// the user resets. Only connectors that can name the address do that (a
// socket made in the namespace can; the VM relay protocol carries a port
// only, and UDP channels take a port only): without tcp_any_v4_loopback, and
// always for UDP, such listeners are not forwarded. (IPv6 has one loopback
// address, ::1.) When several listeners claim one host endpoint, a wildcard
// host side beats a loopback one, and a forward to guest 127.0.0.1 beats one
// to another 127/8 address (a 0.0.0.0:P listener also takes 127.0.0.1).
// Not forwarded: disabled entirely; ports in `ignored`; a (protocol, host
// address, port) that a manual forward already holds (manual wins); ports
// below 1024 when we cannot bind them (unprivileged), reported as conflicts
// by the caller when bind fails, never silently dropped. UDP listeners are
// sockets bound but not connected (a DNS client's ephemeral socket is
// connected and so never shows up). UDP sockets on ports in the guest's
// ephemeral range (udp_ephemeral, Linux's default 32768-60999) are client
// sockets far more often than servers and are not forwarded; TCP listeners
// are forwarded whatever their port.
//
// Thread safety: pure functions.
#pragma once

#include "portfwd/listener.hpp"

#include <netinet/in.h>

#include <array>
#include <compare>
#include <cstring>
#include <tuple>
#include <utility>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace causeway::portfwd {

// One host-side forward the policy wants open.
struct HostForward {
  L4 proto = L4::kTcp;
  Family host_family = Family::kIpv4;   // 127.0.0.1 or [::1]
  uint16_t port = 0;                    // same port on both sides
  Family guest_family = Family::kIpv4;  // guest 127.0.0.1 or [::1]
  bool wildcard = false;                // host side 0.0.0.0 / [::] instead of loopback
  // The guest's IPv4 loopback address to relay to (network order), when
  // guest_family is kIpv4: 127.0.0.1 unless the listener is on another 127/8 address.
  std::array<uint8_t, 4> guest_v4 = {127, 0, 0, 1};
  auto operator<=>(const HostForward&) const = default;
  [[nodiscard]] std::string host_endpoint() const;   // "127.0.0.1:8000" ("0.0.0.0:8000" when wildcard)
  [[nodiscard]] std::string guest_endpoint() const;  // "[::1]:8000", "127.0.0.2:8000"
};

struct PolicySettings {
  bool enabled = true;
  std::set<uint16_t> ignored;
  // (proto, host family, port) held by manual forwards.
  std::set<std::tuple<L4, Family, uint16_t>> manual;
  std::pair<uint16_t, uint16_t> udp_ephemeral{32768, 60999};  // net.ipv4.ip_local_port_range default
  bool host_wildcard = false;  // mirrored mode: wildcard guest listeners → host wildcard
  // The TCP connectors reach any guest 127/8 address (namespaces), not only
  // 127.0.0.1 (the VM relay): listeners on other loopback addresses are forwarded.
  bool tcp_any_v4_loopback = false;
};

// What the user can do when the host side of `f` cannot be bound with errno
// `err`; "" when we have nothing better than the error itself. EACCES (and
// EPERM) on a loopback bind means a port below the host's
// net.ipv4.ip_unprivileged_port_start (1024 by default; the sysctl covers
// IPv6 too) while we lack CAP_NET_BIND_SERVICE.
[[nodiscard]] std::string host_bind_hint(int err, const HostForward& f);

// The forwards to have open for this set of listeners (deduplicated; when a
// dual-stack and an IPv4 listener both ask for 127.0.0.1:P, one forward).
std::set<HostForward> plan_forwards(const std::set<Listener>& listeners, const PolicySettings& s);

}  // namespace causeway::portfwd
