// Mirrored mode's plan and diff (netstack/mirror/plan.hpp), fed with host
// states recorded the way host_view reads them: a laptop on a LAN (eth0,
// IPv4 + IPv6, DHCP/RA routes), a WireGuard-like VPN (wg0: an L3 link, a /32
// address and a gateway that nothing makes on-link), a bridge that is down,
// loopback, and one of causeway's own taps.
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <algorithm>
#include <gtest/gtest.h>
#include <string>
#include <vector>

#include "netstack/mirror/plan.hpp"

namespace causeway::netstack::mirror {
namespace {

IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

HostLink link(int ifindex, std::string name, uint32_t flags, std::optional<MacAddress> mac, uint32_t mtu = 1500) {
  HostLink l;
  l.ifindex = ifindex;
  l.name = std::move(name);
  l.flags = flags;
  l.mac = mac;
  l.mtu = mtu;
  return l;
}

HostAddress addr(std::string link_name, const char* local, uint8_t len, uint32_t flags = IFA_F_PERMANENT,
                 uint8_t scope = RT_SCOPE_UNIVERSE) {
  HostAddress a;
  a.link = std::move(link_name);
  a.local = ip(local);
  a.prefix_len = len;
  a.flags = flags;
  a.scope = scope;
  return a;
}

HostRoute route(const char* dst, uint8_t len, std::string dev, const char* gw = nullptr, uint32_t metric = 0,
                uint32_t table = kTableMain, uint8_t type = RTN_UNICAST) {
  HostRoute r;
  r.dst = ip(dst);
  r.family = r.dst.family;
  r.dst_len = len;
  r.table = table;
  r.type = type;
  r.priority = metric;
  r.protocol = RTPROT_BOOT;
  r.scope = (r.family == AF_INET && !gw && type == RTN_UNICAST) ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  NextHop nh;
  nh.link = std::move(dev);
  if (gw) nh.gateway = ip(gw);
  r.nexthops.push_back(nh);
  return r;
}

constexpr uint32_t kUp = IFF_UP | IFF_RUNNING;
const MacAddress kEthMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

// The recorded laptop.
NetState laptop() {
  NetState s;
  s.links.push_back(link(1, "lo", kUp | IFF_LOOPBACK, MacAddress{}, 65536));
  s.links.push_back(link(2, "eth0", kUp, kEthMac, 1500));
  s.links.push_back(link(3, "docker0", IFF_BROADCAST, MacAddress{0x02, 0x42, 0, 0, 0, 1}));  // down
  s.links.push_back(link(4, "wg0", kUp | IFF_POINTOPOINT | IFF_NOARP, std::nullopt, 1420));
  s.links.push_back(link(5, "tap9", kUp, MacAddress{0x02, 0x43, 0x57, 0, 0, 0x0f}));  // causeway's own

  s.addresses.push_back(addr("lo", "127.0.0.1", 8, IFA_F_PERMANENT, RT_SCOPE_HOST));
  s.addresses.push_back(addr("lo", "::1", 128, IFA_F_PERMANENT, RT_SCOPE_HOST));
  auto v4 = addr("eth0", "192.168.1.10", 24, 0);
  v4.broadcast = ip("192.168.1.255");
  v4.preferred_lifetime = 3600;  // DHCP lease: preferred, with a lifetime
  s.addresses.push_back(v4);
  s.addresses.push_back(addr("eth0", "2001:db8:1::10", 64, IFA_F_MANAGETEMPADDR));
  s.addresses.push_back(addr("eth0", "fe80::5054:ff:fe12:3456", 64, IFA_F_PERMANENT, RT_SCOPE_LINK));
  auto deprecated = addr("eth0", "2001:db8:1::99", 64, IFA_F_DEPRECATED);
  deprecated.preferred_lifetime = 0;
  s.addresses.push_back(deprecated);
  s.addresses.push_back(addr("eth0", "2001:db8:1::98", 64, IFA_F_TENTATIVE));
  s.addresses.push_back(addr("eth0", "2001:db8:1::97", 64, IFA_F_DADFAILED | IFA_F_TENTATIVE));
  s.addresses.push_back(addr("eth0", "2001:db8:1::96", 64, IFA_F_OPTIMISTIC | IFA_F_TENTATIVE));
  auto stale_v4 = addr("eth0", "192.168.1.11", 24, 0);
  stale_v4.preferred_lifetime = 0;  // IPv4 deprecated by lifetime
  s.addresses.push_back(stale_v4);
  s.addresses.push_back(addr("docker0", "172.17.0.1", 16));
  s.addresses.push_back(addr("wg0", "10.8.0.2", 32));
  s.addresses.push_back(addr("tap9", "10.0.2.15", 24));

  auto dflt = route("0.0.0.0", 0, "eth0", "192.168.1.1", 100);
  dflt.protocol = RTPROT_DHCP;
  s.routes.push_back(dflt);
  auto subnet = route("192.168.1.0", 24, "eth0", nullptr, 100);
  subnet.protocol = RTPROT_KERNEL;
  subnet.pref_src = ip("192.168.1.10");
  s.routes.push_back(subnet);
  auto dflt6 = route("::", 0, "eth0", "fe80::1", 100);
  dflt6.protocol = RTPROT_RA;
  s.routes.push_back(dflt6);
  auto prefix6 = route("2001:db8:1::", 64, "eth0", nullptr, 256);
  prefix6.protocol = RTPROT_KERNEL;
  s.routes.push_back(prefix6);
  s.routes.push_back(route("fe80::", 64, "eth0", nullptr, 256));
  // The VPN: a subnet through a gateway that only `onlink` reaches, and policy-routing table 51820.
  auto vpn = route("10.8.0.0", 24, "wg0", "10.8.0.1", 0);
  vpn.nexthops[0].flags = RTNH_F_ONLINK;
  s.routes.push_back(vpn);
  s.routes.push_back(route("0.0.0.0", 0, "wg0", nullptr, 0, 51820));
  // The kernel's own: local table, broadcast, multicast, and routes on unmirrored links.
  s.routes.push_back(route("192.168.1.10", 32, "eth0", nullptr, 0, kTableLocal, RTN_LOCAL));
  s.routes.push_back(route("192.168.1.255", 32, "eth0", nullptr, 0, kTableLocal, RTN_BROADCAST));
  s.routes.push_back(route("ff00::", 8, "eth0", nullptr, 256, kTableLocal, RTN_MULTICAST));
  s.routes.push_back(route("224.0.0.0", 4, "eth0", nullptr, 0, kTableMain, RTN_MULTICAST));
  s.routes.push_back(route("127.0.0.0", 8, "lo", nullptr, 0));
  s.routes.push_back(route("172.17.0.0", 16, "docker0", nullptr, 0));
  s.routes.push_back(route("10.0.2.0", 24, "tap9", nullptr, 0));
  return s;
}

std::vector<std::string> names(const NetState& s) {
  std::vector<std::string> out;
  for (auto& l : s.links) out.push_back(l.name);
  return out;
}

bool has_address(const NetState& s, const char* local) {
  return std::any_of(s.addresses.begin(), s.addresses.end(), [&](auto& a) { return a.local == ip(local); });
}

const HostRoute* find_route(const NetState& s, const char* dst, uint8_t len, uint32_t table = kTableMain) {
  for (auto& r : s.routes)
    if (r.dst == ip(dst) && r.dst_len == len && r.table == table) return &r;
  return nullptr;
}

TEST(MirrorPlan, LoopbackDownAndOwnLinksAreNotMirrored) {
  const Plan p = plan(laptop(), PlanOptions{});
  EXPECT_EQ(names(p.desired), (std::vector<std::string>{"eth0", "wg0"}));
  EXPECT_EQ(p.counters.links_loopback, 1u);
  EXPECT_EQ(p.counters.links_down, 1u);
  EXPECT_EQ(p.counters.links_own, 1u);
}

TEST(MirrorPlan, GuestLinkKeepsNameMacAndMtu) {
  const Plan p = plan(laptop(), PlanOptions{});
  const HostLink* eth = p.desired.find_link("eth0");
  ASSERT_NE(eth, nullptr);
  EXPECT_EQ(eth->mac, kEthMac);
  EXPECT_EQ(eth->mtu, 1500u);
  EXPECT_TRUE(eth->up());
  const HostLink* wg = p.desired.find_link("wg0");
  ASSERT_NE(wg, nullptr);
  EXPECT_EQ(wg->mtu, 1420u);
  ASSERT_TRUE(wg->mac.has_value()) << "an L3 host link still needs a MAC on the guest's tap";
  EXPECT_EQ((*wg->mac)[0] & 0x03, 0x02) << "locally administered, unicast";
}

TEST(MirrorPlan, WithoutCopyMacGuestLinksGetStableLocalMacs) {
  PlanOptions o;
  o.copy_mac = false;
  const Plan a = plan(laptop(), o);
  const Plan b = plan(laptop(), o);
  ASSERT_NE(a.desired.find_link("eth0"), nullptr);
  EXPECT_NE(a.desired.find_link("eth0")->mac, kEthMac);
  EXPECT_EQ(a.desired.find_link("eth0")->mac, b.desired.find_link("eth0")->mac);
}

// A VM's mirrored links sit on its virtio-net: a host link with a larger MTU is mirrored
// with the NIC's, and its addresses and routes with it.
TEST(MirrorPlan, MtuOverTheGuestNicsIsClampedNotDropped) {
  PlanOptions o;
  o.max_link_mtu = 1450;
  const Plan p = plan(laptop(), o);
  ASSERT_NE(p.desired.find_link("eth0"), nullptr);
  EXPECT_EQ(p.desired.find_link("eth0")->mtu, 1450u);
  EXPECT_EQ(p.desired.find_link("wg0")->mtu, 1420u) << "under the bound: unchanged";
  EXPECT_EQ(p.counters.links_mtu_clamped, 1u);
  EXPECT_NE(find_route(p.desired, "0.0.0.0", 0), nullptr) << "the clamped link's routes stay";
  EXPECT_EQ(plan(laptop(), PlanOptions{}).counters.links_mtu_clamped, 0u);
}

TEST(MirrorPlan, ReservedGuestNameIsReplaced) {
  PlanOptions o;
  o.reserved_names = {"lo", "eth0"};
  const Plan p = plan(laptop(), o);
  EXPECT_EQ(p.link_names.at("eth0"), "mir2");
  EXPECT_EQ(p.counters.links_renamed, 1u);
  ASSERT_NE(find_route(p.desired, "0.0.0.0", 0), nullptr);
  EXPECT_EQ(find_route(p.desired, "0.0.0.0", 0)->nexthops[0].link, "mir2");
}

TEST(MirrorPlan, OnlyPreferredAddressesAreMirrored) {
  const Plan p = plan(laptop(), PlanOptions{});
  EXPECT_TRUE(has_address(p.desired, "192.168.1.10"));
  EXPECT_TRUE(has_address(p.desired, "2001:db8:1::10"));
  EXPECT_TRUE(has_address(p.desired, "fe80::5054:ff:fe12:3456"));
  EXPECT_TRUE(has_address(p.desired, "10.8.0.2"));
  for (const char* skipped : {"2001:db8:1::99", "2001:db8:1::98", "2001:db8:1::97", "2001:db8:1::96", "192.168.1.11"})
    EXPECT_FALSE(has_address(p.desired, skipped)) << skipped;
  EXPECT_EQ(p.counters.addresses_not_preferred, 5u);
  EXPECT_FALSE(has_address(p.desired, "127.0.0.1"));
  EXPECT_FALSE(has_address(p.desired, "172.17.0.1"));
  EXPECT_FALSE(has_address(p.desired, "10.0.2.15"));
}

TEST(MirrorPlan, AddressesAreAddedWithoutDadAndKeepNoPrefixRoute) {
  NetState h = laptop();
  h.addresses.push_back(addr("eth0", "192.168.7.5", 24, IFA_F_NOPREFIXROUTE | IFA_F_PERMANENT));
  const Plan p = plan(h, PlanOptions{});
  for (const auto& a : p.desired.addresses) {
    EXPECT_TRUE(a.flags & IFA_F_NODAD) << a.describe();
    EXPECT_FALSE(a.flags & IFA_F_MANAGETEMPADDR) << "no temporary addresses in the guest: " << a.describe();
    EXPECT_EQ(a.preferred_lifetime, UINT32_MAX);
    EXPECT_EQ(bool(a.flags & IFA_F_NOPREFIXROUTE), a.local == ip("192.168.7.5")) << a.describe();
  }
}

TEST(MirrorPlan, RoutesKeepGatewaysMetricsAndTables) {
  const Plan p = plan(laptop(), PlanOptions{});
  const HostRoute* d4 = find_route(p.desired, "0.0.0.0", 0);
  ASSERT_NE(d4, nullptr);
  EXPECT_EQ(d4->priority, 100u);
  EXPECT_EQ(d4->protocol, RTPROT_DHCP);
  EXPECT_EQ(d4->nexthops.at(0).gateway, ip("192.168.1.1"));
  const HostRoute* d6 = find_route(p.desired, "::", 0);
  ASSERT_NE(d6, nullptr);
  EXPECT_EQ(d6->priority, 100u);
  EXPECT_EQ(d6->nexthops.at(0).gateway, ip("fe80::1"));
  const HostRoute* prefix6 = find_route(p.desired, "2001:db8:1::", 64);
  ASSERT_NE(prefix6, nullptr);
  EXPECT_EQ(prefix6->priority, 256u);
  const HostRoute* subnet = find_route(p.desired, "192.168.1.0", 24);
  ASSERT_NE(subnet, nullptr);
  EXPECT_EQ(subnet->pref_src, ip("192.168.1.10"));
  EXPECT_NE(find_route(p.desired, "0.0.0.0", 0, 51820), nullptr) << "other tables the host uses are kept";
}

TEST(MirrorPlan, LocalBroadcastAndMulticastRoutesAreDropped) {
  const Plan p = plan(laptop(), PlanOptions{});
  for (const auto& r : p.desired.routes) {
    EXPECT_NE(r.table, kTableLocal) << r.describe();
    EXPECT_EQ(r.type, RTN_UNICAST) << r.describe();
  }
  EXPECT_EQ(p.counters.routes_local_table, 3u);
  EXPECT_EQ(p.counters.routes_not_unicast, 1u);
  EXPECT_EQ(p.counters.routes_unmirrored_link, 3u);  // lo, docker0, tap9
  EXPECT_EQ(find_route(p.desired, "224.0.0.0", 4), nullptr);
}

TEST(MirrorPlan, OffLinkGatewayGetsAnOnLinkHostRoute) {
  const Plan p = plan(laptop(), PlanOptions{});
  const HostRoute* onlink = find_route(p.desired, "10.8.0.1", 32);
  ASSERT_NE(onlink, nullptr) << "VPN gateway 10.8.0.1 is not covered by wg0's 10.8.0.2/32";
  EXPECT_EQ(onlink->scope, RT_SCOPE_LINK);
  ASSERT_EQ(onlink->nexthops.size(), 1u);
  EXPECT_EQ(onlink->nexthops[0].link, "wg0");
  EXPECT_FALSE(onlink->nexthops[0].gateway.has_value());
  const HostRoute* vpn = find_route(p.desired, "10.8.0.0", 24);
  ASSERT_NE(vpn, nullptr);
  EXPECT_EQ(vpn->nexthops.at(0).gateway, ip("10.8.0.1")) << "the gateway route keeps its gateway";
  EXPECT_EQ(p.counters.onlink_routes_added, 1u);
}

TEST(MirrorPlan, OnLinkGatewaysNeedNoExtraRoute) {
  const Plan p = plan(laptop(), PlanOptions{});
  EXPECT_EQ(find_route(p.desired, "192.168.1.1", 32), nullptr) << "192.168.1.0/24 already makes it on-link";
  EXPECT_EQ(find_route(p.desired, "fe80::1", 128), nullptr) << "fe80::/64 on eth0 already makes it on-link";
}

TEST(MirrorPlan, NoPrefixRouteAddressDoesNotMakeItsGatewayOnLink) {
  NetState h;
  h.links.push_back(link(2, "eth0", kUp, kEthMac));
  h.addresses.push_back(addr("eth0", "192.168.5.2", 24, IFA_F_NOPREFIXROUTE));
  h.routes.push_back(route("0.0.0.0", 0, "eth0", "192.168.5.1", 600));
  const Plan p = plan(h, PlanOptions{});
  EXPECT_NE(find_route(p.desired, "192.168.5.1", 32), nullptr);
}

TEST(MirrorPlan, LinksOverTheCapAreCounted) {
  NetState h;
  for (int i = 0; i < 100; ++i) h.links.push_back(link(10 + i, "veth" + std::to_string(i), kUp, kEthMac));
  const Plan p = plan(h, PlanOptions{});
  EXPECT_EQ(p.desired.links.size(), kMaxLinks);
  EXPECT_EQ(p.counters.links_over_cap, 100 - kMaxLinks);
  EXPECT_EQ(p.desired.links.front().name, "veth0") << "the oldest links are kept";
}

TEST(MirrorPlan, AddressesOverTheCapAreCounted) {
  NetState h;
  h.links.push_back(link(2, "eth0", kUp, kEthMac));
  for (int i = 0; i < 300; ++i)
    h.addresses.push_back(
        addr("eth0", ("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)).c_str(), 16));
  const Plan p = plan(h, PlanOptions{});
  EXPECT_EQ(p.desired.addresses.size(), kMaxAddressesPerLink);
  EXPECT_EQ(p.counters.addresses_over_cap, 300 - kMaxAddressesPerLink);
}

TEST(MirrorPlan, RoutesOverTheCapAreCountedAndDefaultsSurvive) {
  NetState h;
  h.links.push_back(link(2, "eth0", kUp, kEthMac));
  h.addresses.push_back(addr("eth0", "10.0.0.2", 8));
  for (int i = 0; i < 5000; ++i) {
    const std::string dst = "10." + std::to_string(i / 256 + 1) + "." + std::to_string(i % 256) + ".0";
    h.routes.push_back(route(dst.c_str(), 24, "eth0", "10.0.0.1", 10));
  }
  h.routes.push_back(route("0.0.0.0", 0, "eth0", "10.0.0.1", 100));
  const Plan p = plan(h, PlanOptions{});
  EXPECT_EQ(p.desired.routes.size(), kMaxRoutes);
  EXPECT_EQ(p.counters.routes_over_cap, 5001 - kMaxRoutes);
  EXPECT_NE(find_route(p.desired, "0.0.0.0", 0), nullptr) << "the least specific routes are kept first";
}

TEST(MirrorPlan, OnLinkRoutesSurviveTheCapBeforeTheGatewayRoutesThatNeedThem) {
  NetState h;
  h.links.push_back(link(2, "eth0", kUp, kEthMac));
  h.addresses.push_back(addr("eth0", "192.0.2.10", 24));
  for (int i = 0; i < 5000; ++i) {
    const std::string dst = "10." + std::to_string(i / 256 + 1) + "." + std::to_string(i % 256) + ".0";
    h.routes.push_back(route(dst.c_str(), 24, "eth0", "192.0.2.1", 0));
  }
  h.routes.push_back(route("192.0.2.0", 24, "eth0", nullptr, 0));  // sorts after 10.x by address
  const Plan p = plan(h, PlanOptions{});
  EXPECT_NE(find_route(p.desired, "192.0.2.0", 24), nullptr) << "the gateway 192.0.2.1 needs it";
  EXPECT_EQ(p.counters.routes_over_cap, 5001 - kMaxRoutes);
}

// ---- diff ----

std::vector<OpKind> kinds(const std::vector<Op>& ops) {
  std::vector<OpKind> out;
  for (auto& o : ops) out.push_back(o.kind);
  return out;
}

TEST(MirrorDiff, EmptyGuestGetsLinksThenAddressesThenOnLinkThenGatewayRoutes) {
  const Plan p = plan(laptop(), PlanOptions{});
  const auto ops = diff(p.desired, NetState{});
  ASSERT_FALSE(ops.empty());
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end(), [](const Op& a, const Op& b) { return a.kind < b.kind; }))
      << "operations grouped in the documented order";
  const auto k = kinds(ops);
  EXPECT_EQ(std::count(k.begin(), k.end(), OpKind::kAddLink), 2);
  EXPECT_EQ(std::count(k.begin(), k.end(), OpKind::kAddAddress), static_cast<long>(p.desired.addresses.size()));
  EXPECT_EQ(std::count(k.begin(), k.end(), OpKind::kAddRoute), static_cast<long>(p.desired.routes.size()));
  // Among the routes, every gateway-less one comes before any gateway route.
  bool seen_gateway = false;
  size_t onlink_pos = 0, vpn_pos = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind != OpKind::kAddRoute) continue;
    if (ops[i].route.has_gateway()) {
      seen_gateway = true;
    } else {
      EXPECT_FALSE(seen_gateway) << ops[i].describe();
    }
    if (ops[i].route.dst == ip("10.8.0.1")) onlink_pos = i;
    if (ops[i].route.dst == ip("10.8.0.0")) vpn_pos = i;
  }
  EXPECT_LT(onlink_pos, vpn_pos) << "the on-link route precedes the route that uses its gateway";
}

TEST(MirrorDiff, GuestEqualToPlanNeedsNothing) {
  const Plan p = plan(laptop(), PlanOptions{});
  EXPECT_TRUE(diff(p.desired, p.desired).empty());
}

TEST(MirrorDiff, ReadBackDifferencesThatDoNotMatterAreIgnored) {
  const Plan p = plan(laptop(), PlanOptions{});
  NetState actual = p.desired;
  for (auto& l : actual.links) l.ifindex += 100;  // the guest's own ifindexes
  for (auto& a : actual.addresses) a.flags |= IFA_F_PERMANENT;
  for (auto& r : actual.routes) {
    for (auto& nh : r.nexthops) nh.flags |= RTNH_F_LINKDOWN;  // kernel status
    std::reverse(r.nexthops.begin(), r.nexthops.end());
  }
  EXPECT_TRUE(diff(p.desired, actual).empty());
}

TEST(MirrorDiff, StaleStateIsRemovedRoutesFirstAndRoutesOfRemovedLinksAreLeftToTheKernel) {
  const Plan before = plan(laptop(), PlanOptions{});
  NetState h = laptop();
  // The VPN goes away; the LAN's IPv6 address changes; the MTU of eth0 drops.
  std::erase_if(h.links, [](auto& l) { return l.name == "wg0"; });
  std::erase_if(h.addresses, [](auto& a) { return a.local == ip("2001:db8:1::10"); });
  h.addresses.push_back(addr("eth0", "2001:db8:1::20", 64));
  for (auto& l : h.links)
    if (l.name == "eth0") l.mtu = 1400;
  const Plan after = plan(h, PlanOptions{});
  const auto ops = diff(after.desired, before.desired);
  const auto k = kinds(ops);
  EXPECT_TRUE(std::is_sorted(k.begin(), k.end()));
  auto count = [&](OpKind kind) { return std::count(k.begin(), k.end(), kind); };
  EXPECT_EQ(count(OpKind::kRemoveLink), 1);
  EXPECT_EQ(count(OpKind::kRemoveRoute), 0) << "wg0's routes go with wg0";
  EXPECT_EQ(count(OpKind::kRemoveAddress), 1);
  EXPECT_EQ(count(OpKind::kSetLink), 1);
  EXPECT_EQ(count(OpKind::kAddAddress), 1);
  for (auto& o : ops) {
    if (o.kind == OpKind::kSetLink) {
      EXPECT_EQ(o.link.mtu, 1400u);
    }
    if (o.kind == OpKind::kRemoveAddress) {
      EXPECT_EQ(o.address.local, ip("2001:db8:1::10"));
    }
  }
}

TEST(MirrorDiff, ChangedRouteIsReplacedAndKernelExtraRouteRemoved) {
  const Plan p = plan(laptop(), PlanOptions{});
  NetState actual = p.desired;
  for (auto& r : actual.routes)
    if (r.dst_len == 0 && r.family == AF_INET && r.table == kTableMain) r.priority = 50;
  auto extra = route("192.168.9.0", 24, "eth0", nullptr, 0);  // e.g. the kernel's prefix route
  actual.routes.push_back(extra);
  const auto ops = diff(p.desired, actual);
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0].kind, OpKind::kRemoveRoute);
  EXPECT_EQ(ops[0].route.priority, 50u) << "gateway routes are removed before on-link ones";
  EXPECT_EQ(ops[1].kind, OpKind::kRemoveRoute);
  EXPECT_EQ(ops[1].route.dst, ip("192.168.9.0"));
  EXPECT_EQ(ops[2].kind, OpKind::kAddRoute);
  EXPECT_EQ(ops[2].route.priority, 100u);
}

TEST(MirrorIpAddress, ParsePrintAndPrefix) {
  EXPECT_EQ(ip("10.8.0.1").to_string(), "10.8.0.1");
  EXPECT_EQ(ip("2001:db8::1").to_string(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::parse("10.8.0").has_value());
  EXPECT_TRUE(ip("10.8.0.0").prefix_contains(24, ip("10.8.0.200")));
  EXPECT_FALSE(ip("10.8.0.0").prefix_contains(25, ip("10.8.0.200")));
  EXPECT_TRUE(ip("0.0.0.0").prefix_contains(0, ip("1.2.3.4")));
  EXPECT_FALSE(ip("0.0.0.0").prefix_contains(0, ip("::1"))) << "families never match";
  EXPECT_TRUE(ip("fe80::").prefix_contains(64, ip("fe80::1")));
}

}  // namespace
}  // namespace causeway::netstack::mirror
