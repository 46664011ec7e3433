// The guest agent's pure parts, on the host: rtnetlink request builders
// (parsed back as the kernel would), resolv.conf rendering, and the kernel
// command line options.
#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <cstring>
#include <map>

#include "vmm/agent/guest/boot.hpp"
#include "vmm/agent/guest/netconfig.hpp"

namespace causeway::agent::guest {
namespace {

// A parsed request: header, fixed body bytes, attributes by type.
struct Parsed {
  nlmsghdr hdr{};
  std::vector<uint8_t> body;
  std::map<uint16_t, std::vector<uint8_t>> attrs;
};

template <class Body>
Parsed parse(const std::vector<uint8_t>& bytes) {
  Parsed p;
  EXPECT_GE(bytes.size(), sizeof(nlmsghdr));
  std::memcpy(&p.hdr, bytes.data(), sizeof p.hdr);
  EXPECT_EQ(p.hdr.nlmsg_len, bytes.size());
  const size_t body_off = NLMSG_HDRLEN;
  p.body.assign(bytes.begin() + body_off, bytes.begin() + body_off + sizeof(Body));
  size_t off = body_off + NLMSG_ALIGN(sizeof(Body));
  while (off + sizeof(rtattr) <= bytes.size()) {
    rtattr a{};
    std::memcpy(&a, bytes.data() + off, sizeof a);
    EXPECT_GE(a.rta_len, sizeof a);
    EXPECT_LE(off + a.rta_len, bytes.size());
    p.attrs[a.rta_type].assign(bytes.begin() + off + RTA_LENGTH(0), bytes.begin() + off + a.rta_len);
    off += RTA_ALIGN(a.rta_len);
  }
  EXPECT_EQ(off, bytes.size());
  return p;
}

template <class Body>
Body body_of(const Parsed& p) {
  Body b{};
  std::memcpy(&b, p.body.data(), sizeof b);
  return b;
}

uint32_t u32_of(const std::vector<uint8_t>& v) {
  uint32_t x = 0;
  EXPECT_EQ(v.size(), 4u);
  std::memcpy(&x, v.data(), sizeof x);
  return x;
}

TEST(GuestNetlink, LinkRequestSetsUpAndMtu) {
  const auto p = parse<ifinfomsg>(build_link_request(7, 2, true, 65520));
  EXPECT_EQ(p.hdr.nlmsg_type, RTM_NEWLINK);
  EXPECT_EQ(p.hdr.nlmsg_seq, 7u);
  EXPECT_TRUE(p.hdr.nlmsg_flags & NLM_F_ACK);
  const auto ifi = body_of<ifinfomsg>(p);
  EXPECT_EQ(ifi.ifi_index, 2);
  EXPECT_EQ(ifi.ifi_flags & IFF_UP, unsigned{IFF_UP});
  EXPECT_EQ(ifi.ifi_change, unsigned{IFF_UP});
  EXPECT_EQ(u32_of(p.attrs.at(IFLA_MTU)), 65520u);
  EXPECT_FALSE(parse<ifinfomsg>(build_link_request(1, 2, true, 0)).attrs.contains(IFLA_MTU));
}

TEST(GuestNetlink, Ipv4AddressRequest) {
  const auto p = parse<ifaddrmsg>(build_address_request(3, 2, {IpAddr::v4(10, 0, 2, 15), 24}));
  EXPECT_EQ(p.hdr.nlmsg_type, RTM_NEWADDR);
  EXPECT_TRUE(p.hdr.nlmsg_flags & NLM_F_REPLACE);
  const auto ifa = body_of<ifaddrmsg>(p);
  EXPECT_EQ(ifa.ifa_family, AF_INET);
  EXPECT_EQ(ifa.ifa_prefixlen, 24);
  EXPECT_EQ(ifa.ifa_index, 2u);
  EXPECT_EQ(ifa.ifa_flags, 0);
  EXPECT_EQ(p.attrs.at(IFA_LOCAL), (std::vector<uint8_t>{10, 0, 2, 15}));
  EXPECT_EQ(p.attrs.at(IFA_ADDRESS), (std::vector<uint8_t>{10, 0, 2, 15}));
}

TEST(GuestNetlink, Ipv6AddressSkipsDuplicateAddressDetection) {
  const auto p = parse<ifaddrmsg>(build_address_request(3, 2, {*IpAddr::parse("fd00::15"), 64}));
  const auto ifa = body_of<ifaddrmsg>(p);
  EXPECT_EQ(ifa.ifa_family, AF_INET6);
  EXPECT_EQ(ifa.ifa_flags & IFA_F_NODAD, IFA_F_NODAD);
  EXPECT_EQ(p.attrs.at(IFA_LOCAL).size(), 16u);
}

TEST(GuestNetlink, DefaultRouteViaGatewayHasNoDestination) {
  const auto p = parse<rtmsg>(build_route_request(4, 2, {IpAddr::v4(0, 0, 0, 0), 0, IpAddr::v4(10, 0, 2, 2), 0}));
  EXPECT_EQ(p.hdr.nlmsg_type, RTM_NEWROUTE);
  const auto rt = body_of<rtmsg>(p);
  EXPECT_EQ(rt.rtm_family, AF_INET);
  EXPECT_EQ(rt.rtm_dst_len, 0);
  EXPECT_EQ(rt.rtm_table, RT_TABLE_MAIN);
  EXPECT_EQ(rt.rtm_scope, RT_SCOPE_UNIVERSE);
  EXPECT_EQ(rt.rtm_type, RTN_UNICAST);
  EXPECT_FALSE(p.attrs.contains(RTA_DST));
  EXPECT_EQ(p.attrs.at(RTA_GATEWAY), (std::vector<uint8_t>{10, 0, 2, 2}));
  EXPECT_EQ(u32_of(p.attrs.at(RTA_OIF)), 2u);
  EXPECT_FALSE(p.attrs.contains(RTA_PRIORITY));
}

TEST(GuestNetlink, OnLinkRouteHasLinkScopeAndMetric) {
  const auto p = parse<rtmsg>(build_route_request(5, 3, {IpAddr::v4(192, 168, 7, 0), 24, IpAddr{}, 100}));
  const auto rt = body_of<rtmsg>(p);
  EXPECT_EQ(rt.rtm_scope, RT_SCOPE_LINK);
  EXPECT_EQ(p.attrs.at(RTA_DST), (std::vector<uint8_t>{192, 168, 7, 0}));
  EXPECT_FALSE(p.attrs.contains(RTA_GATEWAY));
  EXPECT_EQ(u32_of(p.attrs.at(RTA_PRIORITY)), 100u);
}

NetConfig nat() {
  NetConfig c;
  c.mtu = 1500;
  c.addresses = {{IpAddr::v4(10, 0, 2, 15), 24}};
  c.routes = {{IpAddr::v4(0, 0, 0, 0), 0, IpAddr::v4(10, 0, 2, 2), 0}};
  c.dns_servers = {IpAddr::v4(10, 0, 2, 3)};
  return c;
}

TEST(GuestResolvConf, ListsSearchDomainsAndAtMostThreeServers) {
  NetConfig c = nat();
  c.search_domains = {"corp.example", "example.org"};
  c.dns_servers = {IpAddr::v4(1, 1, 1, 1), *IpAddr::parse("fd00::3"), IpAddr::v4(2, 2, 2, 2), IpAddr::v4(3, 3, 3, 3),
                   IpAddr::v4(4, 4, 4, 4)};
  // IPv6 off: the IPv6 server is skipped, then the first three usable ones.
  EXPECT_EQ(render_resolv_conf(c),
            "# written by causeway-agent from the host's network configuration\n"
            "search corp.example example.org\n"
            "nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\n");
  c.ipv6 = true;
  EXPECT_NE(render_resolv_conf(c).find("nameserver fd00::3\n"), std::string::npos);
  EXPECT_EQ(render_resolv_conf(NetConfig{}), "");
}

TEST(GuestNetConfig, DescribeIsOneReadableLine) {
  EXPECT_EQ(describe(nat(), "eth0"), "eth0: 10.0.2.15/24, default via 10.0.2.2, dns 10.0.2.3, mtu 1500, ipv6 off");
  EXPECT_EQ(describe(
                [] {
                  NetConfig c;
                  c.dhcp = true;
                  return c;
                }(),
                "eth0"),
            "eth0: dhcp");
}

TEST(GuestBootOptions, KernelCommandLineSelectsTransportPortAndDebug) {
  auto o = parse_kernel_cmdline(
      "console=ttyS0 panic=-1 rdinit=/sbin/causeway-agent cw.agent.port=2048 "
      "cw.agent.transport=serial cw.agent.debug=1 cw.agent.connect_timeout=5\n");
  EXPECT_EQ(o.transport, BootOptions::Transport::Serial);
  EXPECT_EQ(o.port, 2048u);
  EXPECT_TRUE(o.debug);
  EXPECT_EQ(o.connect_timeout, std::chrono::seconds(5));
  EXPECT_TRUE(o.warnings.empty());

  o = parse_kernel_cmdline("quiet");
  EXPECT_EQ(o.transport, BootOptions::Transport::Vsock);
  EXPECT_EQ(o.port, 0u);
  EXPECT_FALSE(o.debug);
}

TEST(GuestBootOptions, BadValuesAreWarnedAboutAndIgnored) {
  const auto o = parse_kernel_cmdline(
      "cw.agent.port=0 cw.agent.port=abc cw.agent.transport=carrier-pigeon "
      "cw.agent.connect_timeout=99999 cw.agent.colour=blue");
  EXPECT_EQ(o.port, 0u);
  EXPECT_EQ(o.transport, BootOptions::Transport::Vsock);
  EXPECT_EQ(o.connect_timeout, std::chrono::seconds(30));
  EXPECT_EQ(o.warnings.size(), 5u);
}

}  // namespace
}  // namespace causeway::agent::guest
