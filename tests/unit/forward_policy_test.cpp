// ForwardPolicy: which host ports a set of guest listeners gets.
#include "portfwd/forward_policy.hpp"
#include "portfwd/listener_set.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace causeway::portfwd {
namespace {

Listener v4(const char* addr, uint16_t port, L4 proto = L4::kTcp) {
  Listener l;
  l.proto = proto;
  l.family = Family::kIpv4;
  inet_pton(AF_INET, addr, &l.address);
  l.port = port;
  return l;
}

Listener v6(const char* addr, uint16_t port, bool v6only = false, L4 proto = L4::kTcp) {
  Listener l;
  l.proto = proto;
  l.family = Family::kIpv6;
  inet_pton(AF_INET6, addr, &l.address);
  l.port = port;
  l.v6only = v6only;
  return l;
}

std::set<std::string> hosts(const std::set<HostForward>& fs) {
  std::set<std::string> out;
  for (auto& f : fs)
    out.insert(std::string(f.proto == L4::kTcp ? "tcp " : "udp ") + f.host_endpoint() + "->" + f.guest_endpoint());
  return out;
}

TEST(ForwardPolicy, Ipv4WildcardGetsHostIpv4Loopback) {
  EXPECT_EQ(hosts(plan_forwards({v4("0.0.0.0", 8000)}, {})),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.1:8000"}));
}

TEST(ForwardPolicy, GuestLoopbackOnlyListenerIsForwardedToo) {
  EXPECT_EQ(hosts(plan_forwards({v4("127.0.0.1", 8000)}, {})),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.1:8000"}));
  EXPECT_EQ(hosts(plan_forwards({v6("::1", 8000)}, {})), (std::set<std::string>{"tcp [::1]:8000->[::1]:8000"}));
}

TEST(ForwardPolicy, DualStackWildcardGetsBothFamilies) {
  EXPECT_EQ(hosts(plan_forwards({v6("::", 8000)}, {})),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.1:8000", "tcp [::1]:8000->[::1]:8000"}));
}

TEST(ForwardPolicy, V6OnlyWildcardGetsIpv6Only) {
  EXPECT_EQ(hosts(plan_forwards({v6("::", 8000, true)}, {})), (std::set<std::string>{"tcp [::1]:8000->[::1]:8000"}));
}

TEST(ForwardPolicy, OtherAddressesAreNotForwarded) {
  EXPECT_TRUE(plan_forwards({v4("10.0.2.15", 8000), v6("fd00::43:57ff:fe00:f", 8001)}, {}).empty());
}

TEST(ForwardPolicy, UdpIsForwardedLikeTcp) {
  EXPECT_EQ(hosts(plan_forwards({v4("0.0.0.0", 5353, L4::kUdp)}, {})),
            (std::set<std::string>{"udp 127.0.0.1:5353->127.0.0.1:5353"}));
}

TEST(ForwardPolicy, UdpSocketsInTheEphemeralRangeAreClientsNotServers) {
  EXPECT_TRUE(plan_forwards({v4("0.0.0.0", 40000, L4::kUdp)}, {}).empty());
  EXPECT_EQ(plan_forwards({v4("0.0.0.0", 40000, L4::kTcp)}, {}).size(), 1u);
  EXPECT_EQ(plan_forwards({v4("0.0.0.0", 61000, L4::kUdp)}, {}).size(), 1u);
}

TEST(ForwardPolicy, IgnoredPortsAndDisabledPolicyForwardNothing) {
  PolicySettings s;
  s.ignored = {22};
  EXPECT_EQ(hosts(plan_forwards({v4("0.0.0.0", 22), v4("0.0.0.0", 80)}, s)),
            (std::set<std::string>{"tcp 127.0.0.1:80->127.0.0.1:80"}));
  s.enabled = false;
  EXPECT_TRUE(plan_forwards({v4("0.0.0.0", 80)}, s).empty());
}

TEST(ForwardPolicy, ManualForwardWinsOnlyForItsFamilyAndProtocol) {
  PolicySettings s;
  s.manual.insert({L4::kTcp, Family::kIpv4, 8000});
  EXPECT_EQ(hosts(plan_forwards({v6("::", 8000), v4("0.0.0.0", 8000, L4::kUdp)}, s)),
            (std::set<std::string>{"tcp [::1]:8000->[::1]:8000", "udp 127.0.0.1:8000->127.0.0.1:8000"}));
}

PolicySettings any_loopback() {
  PolicySettings s;
  s.tcp_any_v4_loopback = true;
  return s;
}

TEST(ForwardPolicy, OtherLoopbackListenerIsRelayedToItsOwnAddress) {
  // Relaying to guest 127.0.0.1, where nothing listens, would only reset.
  EXPECT_EQ(hosts(plan_forwards({v4("127.0.0.2", 8000)}, any_loopback())),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.2:8000"}));
  EXPECT_EQ(hosts(plan_forwards({v6("::ffff:127.0.0.3", 8000)}, any_loopback())),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.3:8000"}));
}

TEST(ForwardPolicy, OtherLoopbackListenerIsNotForwardedWhereTheConnectorCannotNameIt) {
  // The VM relay dials 127.0.0.1 only; UDP channels take a port only.
  EXPECT_TRUE(plan_forwards({v4("127.0.0.2", 8000)}, {}).empty());
  EXPECT_TRUE(plan_forwards({v4("127.0.0.2", 5353, L4::kUdp)}, any_loopback()).empty());
}

TEST(ForwardPolicy, V4MappedListenerIsForwardedLikeItsIpv4Address) {
  EXPECT_EQ(hosts(plan_forwards({v6("::ffff:127.0.0.1", 8000)}, {})),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.1:8000"}));
  EXPECT_EQ(hosts(plan_forwards({v6("::ffff:0.0.0.0", 8000)}, {})),
            (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.1:8000"}));
  EXPECT_TRUE(plan_forwards({v6("::ffff:10.0.2.15", 8000)}, {}).empty());
}

TEST(ForwardPolicy, Guest127001BeatsAnotherLoopbackAddressForOneHostPort) {
  for (auto& ls : {std::set<Listener>{v4("127.0.0.2", 8000), v4("127.0.0.1", 8000)},
                   std::set<Listener>{v4("127.0.0.2", 8000), v4("0.0.0.0", 8000)}}) {
    EXPECT_EQ(hosts(plan_forwards(ls, any_loopback())), (std::set<std::string>{"tcp 127.0.0.1:8000->127.0.0.1:8000"}));
  }
}

TEST(ForwardPolicy, TwoListenersClaimingOneHostEndpointYieldOneForward) {
  // 0.0.0.0:8000 and [::]:8000 (v6only) coexist in a guest; the v4 side is asked for once.
  auto fs = plan_forwards({v4("0.0.0.0", 8000), v6("::", 8000, true), v4("127.0.0.1", 8000)}, {});
  EXPECT_EQ(fs.size(), 2u);
}

TEST(GuestListenerSet, AFloodOfAppearancesIsCappedAndCounted) {
  GuestListenerSet set(100);
  size_t changed = 0;
  for (uint32_t p = 1; p <= 10000; ++p) changed += set.appeared(v4("0.0.0.0", static_cast<uint16_t>(p)));
  EXPECT_EQ(changed, 100u);
  EXPECT_EQ(set.listeners().size(), 100u);
  EXPECT_EQ(set.refused(), 9900u);
  // Repeats of a known listener are no change and no refusal.
  EXPECT_FALSE(set.appeared(v4("0.0.0.0", 1)));
  EXPECT_EQ(set.refused(), 9900u);
  // Room again after a Gone.
  EXPECT_TRUE(set.gone(v4("0.0.0.0", 1)));
  EXPECT_TRUE(set.appeared(v4("0.0.0.0", 20000)));
}

TEST(GuestListenerSet, PortZeroAndUnknownGoneChangeNothing) {
  GuestListenerSet set;
  EXPECT_FALSE(set.appeared(v4("0.0.0.0", 0)));
  EXPECT_EQ(set.refused(), 1u);
  EXPECT_FALSE(set.gone(v6("::", 80)));
  EXPECT_TRUE(set.listeners().empty());
  EXPECT_TRUE(set.appeared(v6("::", 80, true)));
  EXPECT_FALSE(set.gone(v6("::", 80, false)));  // another listener: v6only differs
  EXPECT_EQ(set.listeners().size(), 1u);
}

}  // namespace
}  // namespace causeway::portfwd
