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
