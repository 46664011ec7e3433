// The destination policy (netstack/dest_policy): every address class, both
// families, the IPv4-mapped and -compatible disguises, and NAT mode's gateway
// rule with host loopback on and off.
#include "netstack/dest_policy.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

namespace causeway::netstack {
namespace {

GuestAddr addr(const std::string& text) {
  GuestAddr a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), a.bytes.data()), 1) << text;
    a.family = AF_INET6;
  }
  return a;
}

struct Case {
  const char* address;
  DestClass expected;
};

void expect_all(const std::vector<Case>& cases, const DestPolicy& p) {
  for (const auto& c : cases)
    EXPECT_EQ(classify_destination(addr(c.address), p), c.expected)
        << c.address << " is " << to_string(classify_destination(addr(c.address), p)) << ", expected "
        << to_string(c.expected);
}

TEST(DestPolicy, Ipv4ClassesAreRefusedAndUnicastAllowed) {
  DestPolicy p;
  p.ipv4_nets.push_back({{192, 168, 1, 7}, 24});
  expect_all({{"127.0.0.1", DestClass::kLoopback},
              {"127.255.255.254", DestClass::kLoopback},
              {"0.0.0.0", DestClass::kUnspecified},
              {"0.1.2.3", DestClass::kUnspecified},
              {"224.0.0.251", DestClass::kMulticast},
              {"239.255.255.250", DestClass::kMulticast},
              {"255.255.255.255", DestClass::kBroadcast},
              {"192.168.1.255", DestClass::kBroadcast},  // the network's directed broadcast
              {"192.168.1.0", DestClass::kBroadcast},    // its all-zeros host part
              {"240.0.0.1", DestClass::kReserved},
              {"169.254.169.254", DestClass::kLinkLocal},
              {"192.168.1.1", DestClass::kAllowed},
              {"192.168.2.255", DestClass::kAllowed},  // another network's .255 is a host address
              {"8.8.8.8", DestClass::kAllowed},
              {"10.0.2.2", DestClass::kAllowed}},
             p);
}

TEST(DestPolicy, Ipv6ClassesAndIpv4DisguisesAreRefused) {
  expect_all({{"::1", DestClass::kLoopback},
              {"::", DestClass::kUnspecified},
              {"::ffff:127.0.0.1", DestClass::kLoopback},   // IPv4-mapped loopback
              {"::ffff:0.0.0.0", DestClass::kUnspecified},  // IPv4-mapped unspecified
              {"::127.0.0.1", DestClass::kLoopback},        // IPv4-compatible loopback
              {"::0.0.0.2", DestClass::kUnspecified},       // IPv4-compatible 0/8
              {"::ffff:224.0.0.1", DestClass::kMulticast},
              {"::ffff:8.8.8.8", DestClass::kIpv4Mapped},  // never on the wire, whatever it embeds
              {"::8.8.8.8", DestClass::kIpv4Compatible},
              {"::ffff:169.254.1.1", DestClass::kIpv4Mapped},
              {"ff02::1", DestClass::kMulticast},
              {"ff05::1:3", DestClass::kMulticast},
              {"fe80::1", DestClass::kLinkLocal},
              {"febf::1", DestClass::kLinkLocal},
              {"fec0::1", DestClass::kAllowed},
              {"2001:db8::1", DestClass::kAllowed},
              {"64:ff9b::808:808", DestClass::kAllowed}},  // NAT64 is real unicast
             DestPolicy{});
}

TEST(DestPolicy, LinkLocalPeersAndHostAddressesFollowThePolicy) {
  DestPolicy p;
  p.link_local_peers = true;
  p.host_addresses = {addr("192.0.2.10"), addr("fe80::1234"), addr("2001:db8::10")};
  expect_all({{"169.254.1.1", DestClass::kAllowed},
              {"fe80::1", DestClass::kAllowed},         // a neighbour on the host's link
              {"fe80::1234", DestClass::kHostAddress},  // the host's own link-local address
              {"192.0.2.10", DestClass::kHostAddress},
              {"2001:db8::10", DestClass::kHostAddress},
              {"2001:db8::11", DestClass::kAllowed},
              {"127.0.0.1", DestClass::kLoopback},  // never made allowed by a policy
              {"::ffff:127.0.0.1", DestClass::kLoopback}},
             p);
}

TEST(DestPolicy, PointToPointNetworksHaveNoBroadcast) {
  DestPolicy p;
  p.ipv4_nets = {{{192, 0, 2, 0}, 31}, {{198, 51, 100, 7}, 32}};
  expect_all(
      {{"192.0.2.1", DestClass::kAllowed}, {"192.0.2.0", DestClass::kAllowed}, {"198.51.100.7", DestClass::kAllowed}},
      p);
}

TEST(NatDestination, GatewayIsHostLoopbackOnlyWhileAllowed) {
  NatConfig on;
  NatConfig off;
  off.host_loopback = false;
  for (const char* gw : {"10.0.2.2", "fd00::2"}) {
    EXPECT_EQ(nat_destination(on, addr(gw), false, 8080), DestClass::kAllowed) << gw;
    EXPECT_EQ(nat_destination(off, addr(gw), false, 8080), DestClass::kHostLoopbackOff) << gw;
    EXPECT_EQ(nat_destination(off, addr(gw), /*echo=*/true, 0), DestClass::kAllowed) << gw << ": libslirp answers echo";
  }
  EXPECT_EQ(nat_destination(off, addr("fe80::2"), true, 0), DestClass::kAllowed) << "the router's link-local twin";
  EXPECT_EQ(nat_destination(on, addr("fe80::2"), false, 80), DestClass::kLinkLocal) << "libslirp translates no fe80";
}

// libslirp hands every virtual address to the host one way or another: all but DNS on port 53
// follow the gateway rule.
TEST(NatDestination, OtherVirtualAddressesAreHostLoopbackAliasesToo) {
  NatConfig on;
  NatConfig off;
  off.host_loopback = false;
  for (const char* a : {"10.0.2.77", "10.0.2.15", "fd00::77"}) {
    EXPECT_EQ(nat_destination(on, addr(a), false, 80), DestClass::kAllowed) << a;
    EXPECT_EQ(nat_destination(off, addr(a), false, 80), DestClass::kHostLoopbackOff) << a;
    EXPECT_EQ(nat_destination(off, addr(a), true, 0), DestClass::kHostLoopbackOff) << a << " (echo)";
  }
  for (const char* dns : {"10.0.2.3", "fd00::3"}) {
    EXPECT_EQ(nat_destination(off, addr(dns), false, 53), DestClass::kAllowed) << dns;
    EXPECT_EQ(nat_destination(off, addr(dns), true, 0), DestClass::kAllowed) << dns << " (echo)";
    // To the host's resolver, which may itself be on loopback (127.0.0.53).
    EXPECT_EQ(nat_destination(off, addr(dns), false, 8080), DestClass::kHostLoopbackOff) << dns;
    EXPECT_EQ(nat_destination(on, addr(dns), false, 8080), DestClass::kAllowed) << dns;
  }
  EXPECT_EQ(nat_destination(off, addr("10.0.2.254"), false, 53), DestClass::kAllowed) << "the DNS-over-TCP shadow";
  EXPECT_EQ(nat_destination(off, addr("10.0.2.254"), false, 22), DestClass::kHostLoopbackOff);
}

TEST(NatDestination, DirectLoopbackIsRefusedWhateverHostLoopbackSays) {
  for (bool loopback : {true, false}) {
    NatConfig cfg;
    cfg.host_loopback = loopback;
    for (const char* a : {"127.0.0.1", "127.1.2.3", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1", "::127.0.0.1"}) {
      EXPECT_NE(nat_destination(cfg, addr(a), false, 80), DestClass::kAllowed) << a;
      EXPECT_NE(nat_destination(cfg, addr(a), true, 0), DestClass::kAllowed) << a << " (echo)";
    }
  }
}

TEST(NatDestination, VirtualNetwork) {
  NatConfig cfg;
  EXPECT_EQ(nat_destination(cfg, addr("10.0.2.255"), false, 80), DestClass::kBroadcast);
  EXPECT_EQ(nat_destination(cfg, addr("10.0.2.0"), false, 80), DestClass::kBroadcast);
  EXPECT_EQ(nat_destination(cfg, addr("fe80::1"), false, 80), DestClass::kLinkLocal) << "no virtual host there";
  EXPECT_EQ(nat_destination(cfg, addr("fe80::1"), true, 0), DestClass::kLinkLocal);
  EXPECT_EQ(nat_destination(cfg, addr("fe80::1:2:3:4"), false, 80), DestClass::kLinkLocal);
  EXPECT_EQ(nat_destination(cfg, addr("169.254.169.254"), false, 80), DestClass::kLinkLocal);
  EXPECT_EQ(nat_destination(cfg, addr("93.184.216.34"), false, 80), DestClass::kAllowed);
  EXPECT_EQ(nat_destination(cfg, addr("2606:2800:220:1::1"), false, 80), DestClass::kAllowed);
  EXPECT_EQ(nat_destination(cfg, addr("224.0.0.251"), false, 5353), DestClass::kMulticast);
  EXPECT_EQ(nat_destination(cfg, addr("ff02::fb"), false, 5353), DestClass::kMulticast);
}

TEST(DestPolicy, EveryClassHasAName) {
  for (size_t i = 0; i < kDestClassCount; ++i) EXPECT_NE(to_string(static_cast<DestClass>(i)), "unknown") << i;
}

}  // namespace
}  // namespace causeway::netstack
