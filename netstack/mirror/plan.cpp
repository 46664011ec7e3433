#include "netstack/mirror/plan.hpp"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <tuple>

namespace causeway::netstack::mirror {
namespace {

// Flags that make an address not (yet, or no longer) preferred.
constexpr uint32_t kNotPreferred = IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_OPTIMISTIC | IFA_F_DADFAILED;
// Next-hop flags that are configuration; the rest (dead, linkdown, offload) are kernel status.
constexpr uint32_t kNexthopConfigFlags = RTNH_F_ONLINK;
// IPv6 routes added with metric 0 get this one from the kernel (IP6_RT_PRIO_USER).
constexpr uint32_t kIpv6DefaultMetric = 1024;

std::vector<NextHop> normalized(std::vector<NextHop> nhs) {
  for (auto& nh : nhs) nh.flags &= kNexthopConfigFlags;
  std::sort(nhs.begin(), nhs.end());
  return nhs;
}

// Identities compared by diff (kept in ordered sets: thousands of routes stay n log n).
auto route_key(const HostRoute& r) {
  return std::make_tuple(r.family, r.table, r.type, r.dst, r.dst_len, r.tos, r.priority, r.scope, r.protocol,
                         r.pref_src, r.mtu, normalized(r.nexthops));
}
using RouteKey = decltype(route_key(HostRoute{}));
auto address_key(const HostAddress& a) {
  return std::make_tuple(a.link, a.local, a.peer, a.prefix_len, (a.flags & IFA_F_NOPREFIXROUTE) != 0);
}
using AddressKey = decltype(address_key(HostAddress{}));

// Sort key for routes: what survives a cap first — the main table, then
// on-link routes (gateway routes need them: without 192.0.2.0/24 the kernel
// refuses "via 192.0.2.1"), then the least specific (default routes), then
// the lowest metric.
auto route_order(const HostRoute& r) {
  return std::make_tuple(r.table != kTableMain, r.has_gateway(), r.dst_len, r.priority, r.family, r.dst, r.nexthops);
}

auto address_order(const HostAddress& a) {
  // IPv4 first, global scope (0) before link scope (253), then by address.
  return std::make_tuple(a.local.family, a.scope, a.local, a.prefix_len);
}

std::string guest_name_for(const HostLink& l, const PlanOptions& o, const std::set<std::string>& taken) {
  if (!o.reserved_names.count(l.name) && !taken.count(l.name)) return l.name;
  for (int i = 0;; ++i) {
    std::string n =
        i == 0 ? "mir" + std::to_string(l.ifindex) : "mir" + std::to_string(l.ifindex) + "-" + std::to_string(i);
    if (n.size() >= IFNAMSIZ) n.resize(IFNAMSIZ - 1);
    if (!o.reserved_names.count(n) && !taken.count(n)) return n;
  }
}

// True when `gw` is on-link on `link` in the desired guest state: an address
// prefix on that link covers it (the kernel makes the prefix route), or a
// gateway-less route on that link does.
bool gateway_on_link(const IpAddress& gw, const std::string& link, uint32_t table,
                     const std::vector<HostAddress>& addrs, const std::vector<HostRoute>& routes) {
  for (const auto& a : addrs) {
    if (a.link != link || a.local.family != gw.family || (a.flags & IFA_F_NOPREFIXROUTE)) continue;
    const IpAddress& base = a.peer ? *a.peer : a.local;
    if (a.prefix_len < gw.max_prefix() && base.prefix_contains(a.prefix_len, gw)) return true;
  }
  for (const auto& r : routes) {
    if (r.family != gw.family || (r.table != table && r.table != kTableMain)) continue;
    for (const auto& nh : r.nexthops)
      if (nh.link == link && !nh.gateway && r.dst.prefix_contains(r.dst_len, gw)) return true;
  }
  return false;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  const std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family != AF_INET && family != AF_INET6) return "?";
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

bool IpAddress::prefix_contains(uint8_t len, const IpAddress& other) const {
  if (family != other.family) return false;
  len = std::min(len, max_prefix());
  const size_t whole = len / 8;
  if (std::memcmp(bytes.data(), other.bytes.data(), whole) != 0) return false;
  if (len % 8 == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - len % 8));
  return (bytes[whole] & mask) == (other.bytes[whole] & mask);
}

bool HostLink::up() const { return flags & IFF_UP; }
bool HostLink::loopback() const { return flags & IFF_LOOPBACK; }

bool HostAddress::same_as(const HostAddress& o) const { return address_key(*this) == address_key(o); }

std::string HostAddress::describe() const {
  std::string s = local.to_string() + "/" + std::to_string(prefix_len);
  if (peer) s += " peer " + peer->to_string();
  return s + " dev " + link;
}

bool HostRoute::has_gateway() const {
  return std::any_of(nexthops.begin(), nexthops.end(), [](const NextHop& nh) { return nh.gateway.has_value(); });
}

bool HostRoute::same_as(const HostRoute& o) const { return route_key(*this) == route_key(o); }

std::string HostRoute::describe() const {
  std::string s = dst_len == 0 ? std::string("default") : dst.to_string() + "/" + std::to_string(dst_len);
  if (family == AF_INET6 && dst_len == 0) s = "default (v6)";
  for (const auto& nh : nexthops) {
    if (nh.gateway) s += " via " + nh.gateway->to_string();
    s += " dev " + nh.link;
    if (nh.flags & RTNH_F_ONLINK) s += " onlink";
  }
  if (table != kTableMain) s += " table " + std::to_string(table);
  s += " metric " + std::to_string(priority);
  if (pref_src) s += " src " + pref_src->to_string();
  if (mtu) s += " mtu " + std::to_string(mtu);
  return s;
}

const HostLink* NetState::find_link(std::string_view name) const {
  for (const auto& l : links)
    if (l.name == name) return &l;
  return nullptr;
}

Plan plan(const NetState& host, const PlanOptions& o) {
  Plan p;
  auto& c = p.counters;

  // Links, in ifindex order so the cap keeps the oldest ones.
  std::vector<const HostLink*> links;
  for (const auto& l : host.links) links.push_back(&l);
  std::sort(links.begin(), links.end(), [](auto* a, auto* b) { return a->ifindex < b->ifindex; });
  std::set<std::string> taken;
  for (const HostLink* l : links) {
    if (l->loopback()) {
      ++c.links_loopback;
      continue;
    }
    if (!l->up()) {
      ++c.links_down;
      continue;
    }
    const bool own_mac = l->mac && std::equal(o.own_mac_prefix.begin(), o.own_mac_prefix.end(), l->mac->begin());
    if (own_mac || o.exclude.count(l->name)) {
      ++c.links_own;
      continue;
    }
    if (p.desired.links.size() >= o.max_links) {
      ++c.links_over_cap;
      continue;
    }
    HostLink g;
    g.name = guest_name_for(*l, o, taken);
    if (g.name != l->name) ++c.links_renamed;
    taken.insert(g.name);
    if (o.copy_mac && l->mac) {
      g.mac = l->mac;
    } else {
      // A stable locally administered MAC: causeway's prefix, 'M', the host ifindex.
      const auto ix = static_cast<uint32_t>(l->ifindex);
      g.mac = MacAddress{o.own_mac_prefix[0],           o.own_mac_prefix[1],     o.own_mac_prefix[2], 0x4d,
                         static_cast<uint8_t>(ix >> 8), static_cast<uint8_t>(ix)};
    }
    g.mtu = l->mtu;
    if (o.max_link_mtu != 0 && g.mtu > o.max_link_mtu) {
      g.mtu = o.max_link_mtu;
      ++c.links_mtu_clamped;
    }
    g.flags = IFF_UP;
    g.kind = "tap";
    p.link_names[l->name] = g.name;
    p.desired.links.push_back(std::move(g));
  }

  // Addresses: preferred only, per link, capped per link.
  std::map<std::string, std::vector<HostAddress>> per_link;
  for (const auto& a : host.addresses) {
    auto it = p.link_names.find(a.link);
    if (it == p.link_names.end()) {
      ++c.addresses_unmirrored_link;
      continue;
    }
    if (a.scope == RT_SCOPE_HOST || a.scope == RT_SCOPE_NOWHERE) {
      ++c.addresses_host_scope;
      continue;
    }
    if ((a.flags & kNotPreferred) || a.preferred_lifetime == 0) {
      ++c.addresses_not_preferred;
      continue;
    }
    HostAddress g = a;
    g.link = it->second;
    g.flags = IFA_F_NODAD | (a.flags & IFA_F_NOPREFIXROUTE);  // the guest never runs DAD on them
    g.preferred_lifetime = UINT32_MAX;
    per_link[g.link].push_back(std::move(g));
  }
  for (auto& [name, list] : per_link) {
    std::sort(list.begin(), list.end(), [](auto& x, auto& y) { return address_order(x) < address_order(y); });
    if (list.size() > o.max_addresses_per_link) {
      c.addresses_over_cap += list.size() - o.max_addresses_per_link;
      list.resize(o.max_addresses_per_link);
    }
    for (auto& a : list) p.desired.addresses.push_back(std::move(a));
  }
  std::set<IpAddress> locals;
  for (const auto& a : p.desired.addresses) locals.insert(a.local);
  auto local_address = [&](const IpAddress& ip) { return locals.count(ip) > 0; };

  // Routes: unicast, not the local table, next hops on mirrored links.
  std::vector<HostRoute> candidates;
  for (const auto& r : host.routes) {
    if (r.table == kTableLocal) {
      ++c.routes_local_table;
      continue;
    }
    if (r.type != RTN_UNICAST || (r.flags & RTM_F_CLONED)) {
      ++c.routes_not_unicast;
      continue;
    }
    HostRoute g = r;
    g.nexthops.clear();
    bool other_family = false;
    for (const auto& nh : r.nexthops) {
      auto it = p.link_names.find(nh.link);
      if (it == p.link_names.end()) continue;
      if (nh.gateway && nh.gateway->family != r.family) {
        other_family = true;
        continue;
      }
      g.nexthops.push_back(NextHop{it->second, nh.gateway, nh.flags & kNexthopConfigFlags});
    }
    if (g.nexthops.empty()) {
      ++(other_family ? c.routes_via_other_family : c.routes_unmirrored_link);
      continue;
    }
    std::sort(g.nexthops.begin(), g.nexthops.end());
    // A preferred source the guest will not have would make the kernel refuse the route.
    if (g.pref_src && !local_address(*g.pref_src)) g.pref_src.reset();
    g.flags = 0;
    candidates.push_back(std::move(g));
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const HostRoute& x, const HostRoute& y) { return route_order(x) < route_order(y); });

  // Keep within the cap, each gateway route together with the on-link route it needs.
  std::vector<HostRoute> onlink;
  auto have_onlink = [&](const HostRoute& r) {
    return std::any_of(onlink.begin(), onlink.end(), [&](const HostRoute& x) { return x.same_as(r); });
  };
  // Thousands of routes usually share a handful of gateways: remember the answers.
  std::map<std::tuple<IpAddress, std::string, uint32_t>, bool> on_link_memo;
  auto on_link = [&](const IpAddress& gw, const std::string& link, uint32_t table) {
    auto key = std::make_tuple(gw, link, table);
    auto it = on_link_memo.find(key);
    if (it == on_link_memo.end())
      it = on_link_memo.emplace(key, gateway_on_link(gw, link, table, p.desired.addresses, candidates)).first;
    return it->second;
  };
  for (auto& r : candidates) {
    std::vector<HostRoute> needed;
    for (const auto& nh : r.nexthops) {
      if (!nh.gateway || on_link(*nh.gateway, nh.link, r.table)) continue;
      HostRoute h;
      h.family = r.family;
      h.table = r.table;
      h.type = RTN_UNICAST;
      h.dst = *nh.gateway;
      h.dst_len = nh.gateway->max_prefix();
      h.scope = r.family == AF_INET ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;  // IPv6 routes carry no scope
      h.protocol = kProtoStatic;
      h.priority = r.family == AF_INET6 ? kIpv6DefaultMetric : 0;
      h.nexthops.push_back(NextHop{nh.link, std::nullopt, 0});
      if (!have_onlink(h) && std::none_of(needed.begin(), needed.end(), [&](auto& x) { return x.same_as(h); }))
        needed.push_back(std::move(h));
    }
    if (p.desired.routes.size() + onlink.size() + needed.size() + 1 > o.max_routes) {
      ++c.routes_over_cap;
      continue;
    }
    c.onlink_routes_added += needed.size();
    for (auto& h : needed) onlink.push_back(std::move(h));
    p.desired.routes.push_back(std::move(r));
  }
  p.desired.routes.insert(p.desired.routes.begin(), std::make_move_iterator(onlink.begin()),
                          std::make_move_iterator(onlink.end()));
  return p;
}

std::string_view to_string(OpKind k) {
  switch (k) {
    case OpKind::kRemoveRoute: return "remove-route";
    case OpKind::kRemoveAddress: return "remove-address";
    case OpKind::kRemoveLink: return "remove-link";
    case OpKind::kAddLink: return "add-link";
    case OpKind::kSetLink: return "set-link";
    case OpKind::kAddAddress: return "add-address";
    case OpKind::kAddRoute: return "add-route";
  }
  return "?";
}

std::string Op::describe() const {
  switch (kind) {
    case OpKind::kRemoveRoute:
    case OpKind::kAddRoute: return std::string(to_string(kind)) + " " + route.describe();
    case OpKind::kRemoveAddress:
    case OpKind::kAddAddress: return std::string(to_string(kind)) + " " + address.describe();
    case OpKind::kRemoveLink:
    case OpKind::kAddLink:
    case OpKind::kSetLink: return std::string(to_string(kind)) + " " + link.name + " mtu " + std::to_string(link.mtu);
  }
  return "?";
}

std::vector<Op> diff(const NetState& desired, const NetState& actual) {
  std::vector<Op> ops;
  std::set<std::string> removed_links;
  for (const auto& l : actual.links)
    if (!desired.find_link(l.name)) removed_links.insert(l.name);
  auto on_removed_link = [&](const HostRoute& r) {
    return std::all_of(r.nexthops.begin(), r.nexthops.end(),
                       [&](const NextHop& nh) { return removed_links.count(nh.link) > 0; });
  };
  std::set<RouteKey> desired_routes, actual_routes;
  for (const auto& r : desired.routes) desired_routes.insert(route_key(r));
  for (const auto& r : actual.routes) actual_routes.insert(route_key(r));
  std::set<AddressKey> desired_addresses, actual_addresses;
  for (const auto& a : desired.addresses) desired_addresses.insert(address_key(a));
  for (const auto& a : actual.addresses) actual_addresses.insert(address_key(a));
  auto route_in = [](const HostRoute& r, const std::set<RouteKey>& set) { return set.count(route_key(r)) > 0; };
  auto address_in = [](const HostAddress& a, const std::set<AddressKey>& set) { return set.count(address_key(a)) > 0; };

  // 1. Stale routes: those through a gateway first (they may depend on an on-link one).
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& r : actual.routes) {
      if (r.has_gateway() != (pass == 0) || on_removed_link(r) || route_in(r, desired_routes)) continue;
      ops.push_back(Op{OpKind::kRemoveRoute, {}, {}, r});
    }
  }
  // 2. Stale addresses.
  for (const auto& a : actual.addresses) {
    if (removed_links.count(a.link) || address_in(a, desired_addresses)) continue;
    ops.push_back(Op{OpKind::kRemoveAddress, {}, a, {}});
  }
  // 3. Stale links.
  for (const auto& l : actual.links)
    if (removed_links.count(l.name)) ops.push_back(Op{OpKind::kRemoveLink, l, {}, {}});
  // 4. New links; 5. existing links whose MTU, MAC or state differ.
  for (const auto& l : desired.links)
    if (!actual.find_link(l.name)) ops.push_back(Op{OpKind::kAddLink, l, {}, {}});
  for (const auto& l : desired.links) {
    const HostLink* a = actual.find_link(l.name);
    if (!a) continue;
    if (a->mtu != l.mtu || (l.mac && a->mac != l.mac) || (l.up() && !a->up()))
      ops.push_back(Op{OpKind::kSetLink, l, {}, {}});
  }
  // 6. Addresses (before routes: a preferred source or a prefix route needs them).
  for (const auto& a : desired.addresses)
    if (!address_in(a, actual_addresses)) ops.push_back(Op{OpKind::kAddAddress, {}, a, {}});
  // 7. Routes: on-link ones before those whose gateway they make reachable.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& r : desired.routes) {
      if (r.has_gateway() != (pass == 1) || route_in(r, actual_routes)) continue;
      ops.push_back(Op{OpKind::kAddRoute, {}, {}, r});
    }
  }
  return ops;
}

}  // namespace causeway::netstack::mirror
