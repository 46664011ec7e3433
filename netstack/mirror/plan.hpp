// Mirrored mode, control plane: the sans-I/O core.
//
// Theory of operation
// -------------------
// Mirrored mode gives the guest the host's network view: one guest link per
// host link that carries traffic, with the host's addresses, routes and MTU
// (what WSL's `networkingMode=mirrored` does). The control plane is three
// pure steps and an I/O shell around them:
//
//   host namespace ──netlink read──► NetState (host)      host_view.{hpp,cpp}
//                                      │ plan(host, options)
//                                      ▼
//                                   NetState (desired guest)
//   guest namespace ─netlink read──► NetState (actual guest)   apply.{hpp,cpp}
//                                      │ diff(desired, actual)
//                                      ▼
//                                   ordered Ops ──netlink──► guest namespace
//
// This file is the middle: data types (the same ones describe the host, the
// desired guest and the actual guest) and the two functions. No sockets, no
// clocks, no libnl: the VM path (the guest agent receives a plan and applies
// it inside the VM) uses the same code, and unit tests feed recorded states.
//
// Links are referenced by *name* everywhere (routes' next hops, addresses):
// desired and actual states live in different namespaces whose ifindexes
// mean nothing to each other; names are what the two sides share.
//
// plan(host) — the WSL-like rules:
//   links      mirrored when up, not loopback, not causeway's own (MAC prefix
//              02:43:57, or named in `exclude`); same name unless the guest
//              already uses it for something else (then "mir<host ifindex>");
//              same MAC when `copy_mac` (netns mode); same MTU.
//   addresses  preferred only: deprecated (preferred lifetime 0), tentative,
//              optimistic and DAD-failed ones are skipped, as are host-scope
//              ones. Added with NODAD (the guest never runs DAD on them) and
//              keeping NOPREFIXROUTE when the host has it.
//   routes     every table but `local` (255), unicast only (local, broadcast,
//              multicast, anycast, blackhole... are dropped: the guest's kernel
//              makes its own local/broadcast routes from its addresses), only
//              next hops on mirrored links (multipath routes keep those),
//              metrics (priority, RTAX_MTU) and gateways kept. A gateway that
//              nothing on its link makes on-link (no address prefix, no
//              gateway-less route covering it) gets an on-link host route
//              (/32, /128) first — what VPN clients install with `onlink`.
//   caps       kMaxLinks links, kMaxAddressesPerLink per link, kMaxRoutes
//              routes; what is over a cap is dropped and counted
//              (PlanCounters), never silently. Kept first: the oldest links;
//              IPv4, then global, addresses; main-table routes, on-link ones
//              before gateway ones (which need them), least specific first.
//
// diff(desired, actual) — ordered operations, each independent enough that a
// failure (reported by the applier) does not stop the rest:
//   1. remove stale routes (gateway routes before on-link routes)
//   2. remove stale addresses      3. remove stale links
//   (routes and addresses on a link about to be removed are left to the
//    kernel, which drops them with the link)
//   4. add links   5. set MTU/MAC/up on existing links
//   6. add addresses   7. add routes (on-link routes before gateway routes)
// A route or an address whose attributes differ is removed and added again.
// `actual` must contain only what mirrored mode manages (the applier reads
// back the links it created); anything else in the guest (lo, the NAT tap)
// is never touched.
//
// Limits: policy rules (`ip rule`) are not mirrored; RTA_VIA next hops (a
// gateway of another family) are dropped and counted; routes that name a
// nexthop object (`nhid`) carry no next hop libnl 3.7 shows us and are
// dropped as "unmirrored link"; IPv6 route preference and address/route
// lifetimes are not carried (the syncer follows the host instead).
//
// Thread safety: pure functions and plain values; safe from any thread.
#pragma once

#include <sys/socket.h>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace causeway::netstack::mirror {

inline constexpr size_t kMaxLinks = 64;              // guest links mirrored
inline constexpr size_t kMaxAddressesPerLink = 256;  // per guest link
inline constexpr size_t kMaxRoutes = 4096;           // guest routes, all tables
inline constexpr uint32_t kTableLocal = 255;         // RT_TABLE_LOCAL: the kernel's own
inline constexpr uint32_t kTableMain = 254;          // RT_TABLE_MAIN
inline constexpr uint8_t kProtoStatic = 4;           // RTPROT_STATIC: our synthesized on-link routes

using MacAddress = std::array<uint8_t, 6>;

// An IPv4 or IPv6 address (family AF_INET or AF_INET6; IPv4 in bytes[0..3]).
struct IpAddress {
  int family = 0;
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> parse(std::string_view text);
  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] size_t size() const { return family == AF_INET6 ? 16 : 4; }
  [[nodiscard]] uint8_t max_prefix() const { return family == AF_INET6 ? 128 : 32; }
  // True when the first `len` bits of `other` equal ours (same family).
  [[nodiscard]] bool prefix_contains(uint8_t len, const IpAddress& other) const;
  auto operator<=>(const IpAddress&) const = default;
};

// A link, in any namespace. `ifindex` is that namespace's and is not compared.
struct HostLink {
  int ifindex = 0;
  std::string name;
  std::optional<MacAddress> mac;  // none for L3 links (tun, wireguard)
  uint32_t mtu = 1500;
  uint32_t flags = 0;  // IFF_*
  std::string kind;    // "veth", "tun", "wireguard", ... ("" when the kernel says nothing)
  [[nodiscard]] bool up() const;
  [[nodiscard]] bool loopback() const;
  bool operator==(const HostLink&) const = default;
};

struct HostAddress {
  std::string link;
  IpAddress local;
  std::optional<IpAddress> peer;  // point-to-point peer (IFA_ADDRESS != IFA_LOCAL)
  uint8_t prefix_len = 0;
  std::optional<IpAddress> broadcast;
  uint32_t flags = 0;  // IFA_F_*
  uint8_t scope = 0;   // RT_SCOPE_*
  // Preferred lifetime in seconds; 0 = deprecated; UINT32_MAX = forever.
  uint32_t preferred_lifetime = UINT32_MAX;
  // Identity for diff: what the kernel keys the address on, plus the one flag we set on purpose.
  [[nodiscard]] bool same_as(const HostAddress& o) const;
  [[nodiscard]] std::string describe() const;
  bool operator==(const HostAddress&) const = default;
};

struct NextHop {
  std::string link;
  std::optional<IpAddress> gateway;
  uint32_t flags = 0;  // RTNH_F_ONLINK kept; the kernel's status flags (dead, linkdown) are not compared
  auto operator<=>(const NextHop&) const = default;
};

struct HostRoute {
  int family = 0;
  uint32_t table = kTableMain;
  uint8_t type = 1;  // RTN_UNICAST
  IpAddress dst;     // all-zero with dst_len 0 for a default route
  uint8_t dst_len = 0;
  uint8_t tos = 0;
  uint32_t priority = 0;  // the metric
  uint8_t scope = 0;
  uint8_t protocol = 0;
  std::optional<IpAddress> pref_src;
  uint32_t mtu = 0;    // RTAX_MTU; 0 = none
  uint32_t flags = 0;  // RTM_F_*
  std::vector<NextHop> nexthops;
  [[nodiscard]] bool has_gateway() const;
  [[nodiscard]] bool same_as(const HostRoute& o) const;
  [[nodiscard]] std::string describe() const;
  bool operator==(const HostRoute&) const = default;
};

struct NetState {
  std::vector<HostLink> links;
  std::vector<HostAddress> addresses;
  std::vector<HostRoute> routes;
  [[nodiscard]] const HostLink* find_link(std::string_view name) const;
  bool operator==(const NetState&) const = default;
};

struct PlanOptions {
  bool copy_mac = true;                                     // netns mode: the guest link has the host link's MAC
  std::set<std::string> reserved_names;                     // guest names mirrored links must not take (lo, tap0)
  std::set<std::string> exclude;                            // host links never mirrored
  std::array<uint8_t, 3> own_mac_prefix{0x02, 0x43, 0x57};  // causeway's taps ("CW")
  size_t max_links = kMaxLinks;
  size_t max_addresses_per_link = kMaxAddressesPerLink;
  size_t max_routes = kMaxRoutes;
  // 0: none. A VM's mirrored links are macvlans on its virtio-net, whose MTU bounds theirs:
  // a host link's larger MTU is mirrored as this one (counted) rather than failing the link,
  // and with it every address and route on it.
  uint32_t max_link_mtu = 0;
};

struct PlanCounters {
  uint64_t links_loopback = 0;
  uint64_t links_down = 0;
  uint64_t links_own = 0;  // causeway's taps or excluded by name
  uint64_t links_over_cap = 0;
  uint64_t links_renamed = 0;            // the host name was reserved in the guest
  uint64_t links_mtu_clamped = 0;        // the host link's MTU is over max_link_mtu
  uint64_t addresses_not_preferred = 0;  // deprecated, tentative, optimistic, DAD failed
  uint64_t addresses_host_scope = 0;
  uint64_t addresses_unmirrored_link = 0;
  uint64_t addresses_over_cap = 0;
  uint64_t routes_local_table = 0;
  uint64_t routes_not_unicast = 0;
  uint64_t routes_unmirrored_link = 0;  // no next hop on a mirrored link
  uint64_t routes_via_other_family = 0;
  uint64_t routes_over_cap = 0;
  uint64_t onlink_routes_added = 0;
};

struct Plan {
  NetState desired;
  PlanCounters counters;
  std::map<std::string, std::string> link_names;  // host link name → guest link name
};

Plan plan(const NetState& host, const PlanOptions& options);

enum class OpKind { kRemoveRoute, kRemoveAddress, kRemoveLink, kAddLink, kSetLink, kAddAddress, kAddRoute };
std::string_view to_string(OpKind k);

// One change to the guest. Only the member that matches `kind` is meaningful.
struct Op {
  OpKind kind;
  HostLink link;        // kRemoveLink, kAddLink, kSetLink
  HostAddress address;  // kRemoveAddress, kAddAddress
  HostRoute route;      // kRemoveRoute, kAddRoute
  [[nodiscard]] std::string describe() const;
};

std::vector<Op> diff(const NetState& desired, const NetState& actual);

}  // namespace causeway::netstack::mirror
