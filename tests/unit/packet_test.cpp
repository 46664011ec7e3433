// UDP/IPv4 builder and view: what we build parses back, and the checksums verify.
#include "netstack/packet.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "netstack/frame.hpp"

namespace causeway::netstack {
namespace {

const Mac kGw{0x52, 0x55, 10, 0, 2, 2};
const Mac kGuest{0x02, 0x43, 0x57, 0, 0, 0x0f};

in_addr ip(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a;
}

TEST(Udp4, BuiltFrameParsesBackAndPassesTheGuestFrameCheck) {
  const std::string payload = "odd-length payload";
  auto f = build_udp4(kGw, kGuest, ip("10.0.2.2"), 61000, ip("10.0.2.15"), 9000,
                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
  // Swap MACs to look like a guest frame to the gateway, then check it.
  std::swap_ranges(f.begin(), f.begin() + 6, f.begin() + 6);
  EXPECT_EQ(check_guest_frame(f, 1500), FrameVerdict::kAccept);
  auto v = parse_udp4(f);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->src.s_addr, ip("10.0.2.2").s_addr);
  EXPECT_EQ(v->dst_port, 9000);
  EXPECT_EQ(std::string(v->payload.begin(), v->payload.end()), payload);
}

TEST(Udp4, ChecksumsVerifyToZero) {
  const std::vector<uint8_t> payload{1, 2, 3};
  auto f = build_udp4(kGw, kGuest, ip("10.0.2.2"), 1, ip("10.0.2.15"), 2, payload);
  const uint8_t* ipb = f.data() + kEthHeaderLen;
  EXPECT_EQ(checksum_fold(checksum_add({ipb, 20})), 0xffff) << "IPv4 header checksum";
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, ipb + 12, 8);
  pseudo[9] = 17;
  pseudo[11] = static_cast<uint8_t>(8 + payload.size());
  EXPECT_EQ(checksum_fold(checksum_add({ipb + 20, 8 + payload.size()}, checksum_add(pseudo))), 0xffff)
      << "UDP checksum with pseudo-header";
}

TEST(Udp4, RejectsFragmentsTruncationAndOtherProtocols) {
  const std::vector<uint8_t> payload(10, 7);
  auto base = build_udp4(kGw, kGuest, ip("10.0.2.2"), 1, ip("10.0.2.15"), 2, payload);
  auto frag = base;
  frag[kEthHeaderLen + 6] |= 0x20;  // more fragments
  EXPECT_FALSE(parse_udp4(frag).has_value());
  auto tcp = base;
  tcp[kEthHeaderLen + 9] = 6;
  EXPECT_FALSE(parse_udp4(tcp).has_value());
  auto lying = base;
  lying[kEthHeaderLen + 20 + 5] = 200;  // UDP length beyond the datagram
  EXPECT_FALSE(parse_udp4(lying).has_value());
  EXPECT_FALSE(parse_udp4(std::span<const uint8_t>(base.data(), 30)).has_value());
}

}  // namespace
}  // namespace causeway::netstack

namespace causeway::netstack {
namespace {

// A DHCP ACK shaped like libslirp's: BOOTP header, cookie, options, END, then padding.
std::vector<uint8_t> dhcp_reply(std::vector<uint8_t> options, size_t padding) {
  std::vector<uint8_t> bootp(236, 0);
  bootp[0] = 2;  // BOOTREPLY
  bootp.insert(bootp.end(), {99, 130, 83, 99});
  bootp.insert(bootp.end(), options.begin(), options.end());
  bootp.push_back(255);
  bootp.insert(bootp.end(), padding, 0);
  return build_udp4(kGw, kGuest, ip("10.0.2.2"), 67, ip("10.0.2.15"), 68, bootp);
}

TEST(DhcpMtu, OptionIsWrittenOverEndAndTheChecksumStaysValid) {
  auto f = dhcp_reply({53, 1, 5, 1, 4, 255, 255, 255, 0}, 60);
  ASSERT_TRUE(add_dhcp_mtu_option(f, 16384));
  auto v = parse_udp4(f);
  ASSERT_TRUE(v);
  const auto& b = v->payload;
  const size_t opt = 240 + 9;  // after our two options
  EXPECT_EQ(b[opt], 26);
  EXPECT_EQ(b[opt + 1], 2);
  EXPECT_EQ((b[opt + 2] << 8) | b[opt + 3], 16384);
  EXPECT_EQ(b[opt + 4], 255);
  const uint8_t* ipb = f.data() + kEthHeaderLen;
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, ipb + 12, 8);
  pseudo[9] = 17;
  const size_t udp_len = 8 + b.size();
  pseudo[10] = static_cast<uint8_t>(udp_len >> 8);
  pseudo[11] = static_cast<uint8_t>(udp_len);
  EXPECT_EQ(checksum_fold(checksum_add({ipb + 20, udp_len}, checksum_add(pseudo))), 0xffff);
}

TEST(DhcpMtu, LeavesEverythingElseAlone) {
  auto with26 = dhcp_reply({26, 2, 5, 220}, 60);
  EXPECT_FALSE(add_dhcp_mtu_option(with26, 16384)) << "the option is already there";
  auto tight = dhcp_reply({53, 1, 5}, 2);
  const auto before = tight;
  EXPECT_FALSE(add_dhcp_mtu_option(tight, 16384)) << "no room after END";
  EXPECT_EQ(tight, before);
  auto request = dhcp_reply({53, 1, 5}, 60);
  request[kEthHeaderLen + 20 + 8] = 1;  // BOOTREQUEST
  EXPECT_FALSE(add_dhcp_mtu_option(request, 16384));
  const std::vector<uint8_t> dns(300, 0);
  auto other = build_udp4(kGw, kGuest, ip("10.0.2.3"), 53, ip("10.0.2.15"), 68, dns);
  EXPECT_FALSE(add_dhcp_mtu_option(other, 16384)) << "not from port 67";
  auto truncated = dhcp_reply({53, 1, 5, 12, 200}, 0);  // an option running past the end
  truncated.resize(truncated.size());
  EXPECT_FALSE(add_dhcp_mtu_option(truncated, 16384));
}

TEST(Udp6, BuiltFrameParsesBackWithAValidChecksum) {
  in6_addr a{}, b{};
  inet_pton(AF_INET6, "fd00::3", &a);
  inet_pton(AF_INET6, "fd00::43:57ff:fe00:f", &b);
  const std::vector<uint8_t> payload{1, 2, 3, 4, 5};
  auto f = build_udp6(kGw, kGuest, a, 53, b, 40000, payload);
  auto v = parse_udp6(f);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->src_port, 53);
  EXPECT_EQ(v->dst_port, 40000);
  EXPECT_EQ(std::vector<uint8_t>(v->payload.begin(), v->payload.end()), payload);
  const uint8_t* ip = f.data() + kEthHeaderLen;
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, ip + 8, 32);
  pseudo[35] = static_cast<uint8_t>(8 + payload.size());
  pseudo[39] = 17;
  EXPECT_EQ(checksum_fold(checksum_add({ip + 40, 8 + payload.size()}, checksum_add(pseudo))), 0xffff);
}

TEST(Tcp4Rewrite, KeepsBothChecksumsValid) {
  // A UDP-built frame turned into a minimal TCP segment with correct checksums.
  const std::vector<uint8_t> body(20, 0);
  auto f =
      build_udp4(kGw, kGuest, ip("10.0.2.15"), 40000, ip("10.0.2.3"), 53, std::span<const uint8_t>(body.data(), 12));
  uint8_t* ipb = f.data() + kEthHeaderLen;
  ipb[9] = 6;
  ipb[10] = ipb[11] = 0;
  const uint16_t hs = static_cast<uint16_t>(~checksum_fold(checksum_add({ipb, 20})));
  ipb[10] = static_cast<uint8_t>(hs >> 8);
  ipb[11] = static_cast<uint8_t>(hs);
  uint8_t* tcp = ipb + 20;
  std::memset(tcp + 4, 0, 16);
  tcp[12] = 0x50;  // data offset 5
  auto tcp_sum = [&] {
    uint8_t pseudo[12] = {};
    std::memcpy(pseudo, ipb + 12, 8);
    pseudo[9] = 6;
    pseudo[11] = 20;
    return checksum_fold(checksum_add({tcp, 20}, checksum_add(pseudo)));
  };
  const uint16_t ts = static_cast<uint16_t>(~tcp_sum());
  tcp[16] = static_cast<uint8_t>(ts >> 8);
  tcp[17] = static_cast<uint8_t>(ts);
  ASSERT_EQ(tcp_sum(), 0xffff);
  auto ports = tcp4_ports(f);
  ASSERT_TRUE(ports.has_value());
  EXPECT_EQ(ports->second, 53);
  ASSERT_TRUE(rewrite_tcp4_address(f, true, ip("10.0.2.254")));
  EXPECT_EQ(ipb[19], 254);
  EXPECT_EQ(checksum_fold(checksum_add({ipb, 20})), 0xffff) << "IPv4 header checksum after rewrite";
  EXPECT_EQ(tcp_sum(), 0xffff) << "TCP checksum after rewrite";
  auto udp = build_udp4(kGw, kGuest, ip("10.0.2.2"), 1, ip("10.0.2.15"), 2, body);
  EXPECT_FALSE(rewrite_tcp4_address(udp, true, ip("10.0.2.254")));
}

}  // namespace
}  // namespace causeway::netstack
