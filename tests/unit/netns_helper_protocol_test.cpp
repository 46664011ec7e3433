// The namespace helper's request checks (netstack/netns_helper_protocol.hpp):
// what a compromised engine may ask the privileged helper for, on hand-built
// requests and netlink messages.
#include "netstack/netns_helper_protocol.hpp"

#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace causeway::netstack::netns_helper {
namespace {

// A netlink message: header, fixed body, then (type, payload) attributes.
template <typename Body>
std::vector<uint8_t> message(uint16_t type, uint16_t flags, const Body& body,
                             std::vector<std::pair<uint16_t, std::vector<uint8_t>>> attrs = {}) {
  std::vector<uint8_t> out(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof body), 0);
  std::memcpy(out.data() + NLMSG_HDRLEN, &body, sizeof body);
  for (auto& [t, payload] : attrs) {
    rtattr a{};
    a.rta_type = t;
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(payload.size()));
    const size_t at = out.size();
    out.resize(at + RTA_ALIGN(a.rta_len), 0);
    std::memcpy(out.data() + at, &a, sizeof a);
    if (!payload.empty()) std::memcpy(out.data() + at + RTA_LENGTH(0), payload.data(), payload.size());
  }
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(out.size());
  h.nlmsg_type = type;
  h.nlmsg_flags = flags;
  std::memcpy(out.data(), &h, sizeof h);
  return out;
}

ifinfomsg link(int index) {
  ifinfomsg i{};
  i.ifi_family = AF_UNSPEC;
  i.ifi_index = index;
  return i;
}

std::vector<uint8_t> u32(uint32_t v) {
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

TEST(NetnsHelperProtocol, AllowsTheSocketsTheEngineUses) {
  EXPECT_EQ(check_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP), 0);
  EXPECT_EQ(check_socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP), 0);
  EXPECT_EQ(check_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), 0);
  EXPECT_EQ(check_socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG), 0);
}

TEST(NetnsHelperProtocol, RefusesRawPacketAndOtherNetlinkSockets) {
  EXPECT_EQ(check_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), EPERM);
  EXPECT_EQ(check_socket(AF_INET6, SOCK_STREAM, IPPROTO_SCTP), EPERM);
  EXPECT_EQ(check_socket(AF_PACKET, SOCK_RAW, 0), EPERM);
  EXPECT_EQ(check_socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER), EPERM);
  EXPECT_EQ(check_socket(AF_UNIX, SOCK_STREAM, 0), EPERM);
}

TEST(NetnsHelperProtocol, InterfaceNamesCannotWalkPaths) {
  EXPECT_EQ(check_ifname("mir0"), 0);
  EXPECT_EQ(check_ifname(""), EINVAL);
  EXPECT_EQ(check_ifname(".."), EINVAL);
  EXPECT_EQ(check_ifname("a/b"), EINVAL);
  EXPECT_EQ(check_ifname("sixteen-chars-xx"), EINVAL);
}

TEST(NetnsHelperProtocol, SysctlsOnlyFromTheListAndNumeric) {
  EXPECT_EQ(check_sysctl("mir0", "accept_ra", "0"), 0);
  EXPECT_EQ(check_sysctl("mir0", "addr_gen_mode", "1"), 0);
  EXPECT_EQ(check_sysctl("mir0", "forwarding", "1"), EPERM);
  EXPECT_EQ(check_sysctl("../../../kernel", "accept_ra", "0"), EINVAL);
  EXPECT_EQ(check_sysctl("mir0", "accept_ra", "0\n1"), EINVAL);
  EXPECT_EQ(check_sysctl("mir0", "accept_ra", ""), EINVAL);
}

TEST(NetnsHelperProtocol, AllowsLinkChangesOnAnExistingLink) {
  auto m = message(RTM_NEWLINK, NLM_F_REQUEST, link(7), {{IFLA_MTU, u32(1400)}, {IFLA_TXQLEN, u32(1000)}});
  EXPECT_EQ(check_route_message(m), 0);
}

TEST(NetnsHelperProtocol, RefusesLinksThatNameAnotherNamespaceOrAKind) {
  EXPECT_EQ(check_route_message(message(RTM_NEWLINK, NLM_F_REQUEST, link(7), {{IFLA_NET_NS_PID, u32(1)}})), EPERM);
  EXPECT_EQ(check_route_message(message(RTM_NEWLINK, NLM_F_REQUEST, link(7), {{IFLA_NET_NS_FD, u32(3)}})), EPERM);
  EXPECT_EQ(check_route_message(message(RTM_NEWLINK, NLM_F_REQUEST, link(7), {{IFLA_LINKINFO, {}}})), EPERM);
  EXPECT_EQ(check_route_message(message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE, link(7))), EPERM);
  EXPECT_EQ(check_route_message(message(RTM_NEWLINK, NLM_F_REQUEST, link(0))), EPERM);  // by name: no
  EXPECT_EQ(check_route_message(message(RTM_DELLINK, NLM_F_REQUEST, link(7))), EPERM);
}

TEST(NetnsHelperProtocol, AllowsAddressesAndRoutes) {
  ifaddrmsg a{};
  a.ifa_family = AF_INET;
  a.ifa_prefixlen = 24;
  a.ifa_index = 7;
  EXPECT_EQ(check_route_message(message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_CREATE, a, {{IFA_LOCAL, u32(1)}})), 0);
  EXPECT_EQ(check_route_message(message(RTM_DELADDR, NLM_F_REQUEST, a, {{IFA_ADDRESS, u32(1)}})), 0);
  rtmsg r{};
  r.rtm_family = AF_INET;
  EXPECT_EQ(check_route_message(
                message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, r,
                        {{RTA_TABLE, u32(254)}, {RTA_OIF, u32(7)}, {RTA_GATEWAY, u32(1)}, {RTA_PRIORITY, u32(5)}})),
            0);
}

TEST(NetnsHelperProtocol, RefusesOtherMessagesDumpsAndMalformedOnes) {
  rtmsg r{};
  EXPECT_EQ(check_route_message(message(RTM_NEWRULE, NLM_F_REQUEST, r)), EPERM);
  EXPECT_EQ(check_route_message(message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, r)), EPERM);
  EXPECT_EQ(check_route_message(message(RTM_NEWROUTE, NLM_F_REQUEST, r, {{RTA_ENCAP, u32(1)}})), EPERM);
  auto m = message(RTM_NEWLINK, NLM_F_REQUEST, link(7), {{IFLA_MTU, u32(1400)}});
  auto short_len = m;
  short_len.pop_back();  // nlmsg_len no longer matches
  EXPECT_EQ(check_route_message(short_len), EINVAL);
  auto bad_attr = m;
  const uint16_t huge = 200;  // attribute longer than the message
  std::memcpy(bad_attr.data() + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg)), &huge, 2);
  EXPECT_EQ(check_route_message(bad_attr), EINVAL);
  EXPECT_EQ(check_route_message(std::vector<uint8_t>(4)), EINVAL);
}

TEST(NetnsHelperProtocol, FieldsStopAtTheBufferEnd) {
  const char unterminated[4] = {'a', 'b', 'c', 'd'};
  EXPECT_EQ(field(unterminated, sizeof unterminated), "abcd");
  const char terminated[4] = {'a', '\0', 'c', 'd'};
  EXPECT_EQ(field(terminated, sizeof terminated), "a");
}

}  // namespace
}  // namespace causeway::netstack::netns_helper
