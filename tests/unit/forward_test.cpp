// --publish specs: what users type, and what they get wrong.
#include "netstack/forward.hpp"

#include <gtest/gtest.h>

namespace causeway::netstack {
namespace {

TEST(PublishSpec, BarePortsPublishOnBothLoopbacksOverTcp) {
  auto r = parse_publish_spec("8080:80");
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].host_endpoint(), "127.0.0.1:8080");
  EXPECT_EQ((*r)[1].host_endpoint(), "[::1]:8080");
  EXPECT_EQ((*r)[0].proto, Proto::kTcp);
  EXPECT_EQ((*r)[0].guest_port, 80);
}

TEST(PublishSpec, ExplicitIpv4AndUdp) {
  auto r = parse_publish_spec("0.0.0.0:5353:53/udp");
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].host_endpoint(), "0.0.0.0:5353");
  EXPECT_EQ((*r)[0].proto, Proto::kUdp);
  EXPECT_EQ((*r)[0].describe(), "udp 0.0.0.0:5353 -> guest:53");
}

TEST(PublishSpec, BracketedIpv6) {
  auto r = parse_publish_spec("[::1]:2222:22/tcp");
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].host.ss_family, AF_INET6);
  EXPECT_EQ((*r)[0].host_port(), 2222);
}

class BadPublishSpec : public ::testing::TestWithParam<const char*> {};

TEST_P(BadPublishSpec, IsRefusedWithAReason) {
  auto r = parse_publish_spec(GetParam());
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().find(GetParam()), std::string::npos) << "the message quotes the spec: " << r.error();
}

INSTANTIATE_TEST_SUITE_P(Specs, BadPublishSpec,
                         ::testing::Values("", "8080", "8080:", ":80", "0:80", "8080:65536", "8080:80/sctp",
                                           "host:8080:80", "[::1:8080:80", "1.2.3.4:1:2:3", "80:80/", "-1:80",
                                           "8080:80x", "999999999999:80"));

TEST(MakeForward, ValidatesEachPart) {
  EXPECT_TRUE(make_forward("tcp", "127.0.0.1", 1, 65535).has_value());
  EXPECT_TRUE(make_forward("icmp", "127.0.0.1", 1, 1).has_error());
  EXPECT_TRUE(make_forward("tcp", "localhost", 1, 1).has_error());
  EXPECT_TRUE(make_forward("udp", "::1", 0, 1).has_error());
  EXPECT_TRUE(make_forward("udp", "::1", 1, 70000).has_error());
}

TEST(PortForward, EqualityIgnoresNothingThatMatters) {
  auto a = *make_forward("tcp", "127.0.0.1", 8080, 80);
  auto b = *make_forward("tcp", "127.0.0.1", 8080, 80);
  EXPECT_EQ(a, b);
  EXPECT_FALSE(a == *make_forward("udp", "127.0.0.1", 8080, 80));
  EXPECT_FALSE(a == *make_forward("tcp", "::1", 8080, 80));
  EXPECT_FALSE(a == *make_forward("tcp", "127.0.0.1", 8080, 81));
}

}  // namespace
}  // namespace causeway::netstack
