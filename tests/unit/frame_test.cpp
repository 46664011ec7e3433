// Guest frame checks: every malformed shape is refused with its own verdict.
#include "netstack/frame.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace causeway::netstack {
namespace {

constexpr size_t kMtu = 1500;

std::vector<uint8_t> eth(uint16_t type, std::vector<uint8_t> payload, Mac dst = {0x52, 0x55, 10, 0, 2, 2}) {
  // Byte by byte: GCC 12 misreports insert() of a std::array range (-Warray-bounds).
  std::vector<uint8_t> f;
  for (uint8_t b : dst) f.push_back(b);
  for (uint8_t b : Mac{0x02, 0, 0, 0, 0, 1}) f.push_back(b);
  f.push_back(static_cast<uint8_t>(type >> 8));
  f.push_back(static_cast<uint8_t>(type));
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

std::vector<uint8_t> ipv4(size_t total, uint8_t ihl_words = 5) {
  std::vector<uint8_t> p(std::max<size_t>(total, 20), 0);
  p[0] = static_cast<uint8_t>(0x40 | ihl_words);
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  return p;
}

std::vector<uint8_t> arp() {
  std::vector<uint8_t> p(28, 0);
  p[1] = 1;
  p[2] = 0x08;
  p[4] = 6;
  p[5] = 4;
  p[7] = 1;
  return p;
}

TEST(FrameCheck, AcceptsWellFormedIpv4ToGateway) {
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, ipv4(40)), kMtu), FrameVerdict::kAccept);
}

TEST(FrameCheck, AcceptsEthernetPaddingAfterShortDatagram) {
  auto p = ipv4(28);
  p.resize(46, 0);  // minimum Ethernet payload, padded
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, p), kMtu), FrameVerdict::kAccept);
}

TEST(FrameCheck, AcceptsBroadcastArp) {
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeArp, arp(), {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), kMtu),
            FrameVerdict::kAccept);
}

TEST(FrameCheck, AcceptsIpv6MulticastAndRouterMac) {
  std::vector<uint8_t> v6(40, 0);
  v6[0] = 0x60;
  v6[6] = 59;  // no next header
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv6, v6, {0x33, 0x33, 0, 0, 0, 2}), kMtu), FrameVerdict::kAccept);
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv6, v6, {0x52, 0x56, 0, 0, 0, 2}), kMtu), FrameVerdict::kAccept);
}

TEST(FrameCheck, RefusesRunt) {
  const std::vector<uint8_t> f(13, 0);
  EXPECT_EQ(check_guest_frame(f, kMtu), FrameVerdict::kTooShort);
  EXPECT_EQ(check_guest_frame({}, kMtu), FrameVerdict::kTooShort);
}

TEST(FrameCheck, RefusesFrameOverMtu) {
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, ipv4(kMtu + 1)), kMtu), FrameVerdict::kTooLong);
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, ipv4(kMtu)), kMtu), FrameVerdict::kAccept);
}

TEST(FrameCheck, RefusesUnicastToForeignMac) {
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, ipv4(40), {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}), kMtu),
            FrameVerdict::kWrongMac);
}

TEST(FrameCheck, RefusesVlanAndUnknownEtherTypes) {
  EXPECT_EQ(check_guest_frame(eth(0x8100, ipv4(40)), kMtu), FrameVerdict::kUnsupportedEtherType);
  EXPECT_EQ(check_guest_frame(eth(0x88cc, ipv4(40)), kMtu), FrameVerdict::kUnsupportedEtherType);
}

TEST(FrameCheck, RefusesTruncatedOrInconsistentIpv4) {
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, std::vector<uint8_t>(19, 0x45)), kMtu), FrameVerdict::kMalformedIpv4);
  auto claims_more = ipv4(40);
  claims_more.resize(30);  // total length says 40, 30 arrived
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, claims_more), kMtu), FrameVerdict::kMalformedIpv4);
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, ipv4(40, 4)), kMtu), FrameVerdict::kMalformedIpv4);  // IHL < 5
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, ipv4(24, 7)), kMtu), FrameVerdict::kMalformedIpv4);  // IHL > total
  auto v6_in_v4 = ipv4(40);
  v6_in_v4[0] = 0x65;
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv4, v6_in_v4), kMtu), FrameVerdict::kMalformedIpv4);
}

TEST(FrameCheck, RefusesTruncatedIpv6AndJumbograms) {
  std::vector<uint8_t> v6(40, 0);
  v6[0] = 0x60;
  v6[5] = 8;  // payload 8, none present
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv6, v6), kMtu), FrameVerdict::kMalformedIpv6);
  std::vector<uint8_t> jumbo(48, 0);
  jumbo[0] = 0x60;  // payload length 0 with hop-by-hop next header
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv6, jumbo), kMtu), FrameVerdict::kMalformedIpv6);
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeIpv6, std::vector<uint8_t>(39, 0x60)), kMtu), FrameVerdict::kMalformedIpv6);
}

TEST(FrameCheck, RefusesArpForOtherHardware) {
  auto a = arp();
  a[1] = 6;  // IEEE 802 htype
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeArp, a), kMtu), FrameVerdict::kMalformedArp);
  EXPECT_EQ(check_guest_frame(eth(kEtherTypeArp, std::vector<uint8_t>(27, 0)), kMtu), FrameVerdict::kMalformedArp);
}

TEST(Mac, ParsesAndFormatsRoundTrip) {
  Mac m{};
  ASSERT_TRUE(parse_mac("02:43:57:AB:cd:0f", m));
  EXPECT_EQ(format_mac(m), "02:43:57:ab:cd:0f");
  EXPECT_FALSE(parse_mac("02:43:57:ab:cd", m));
  EXPECT_FALSE(parse_mac("02-43-57-ab-cd-0f", m));
  EXPECT_FALSE(parse_mac("02:43:57:ab:cd:0g", m));
}

}  // namespace
}  // namespace causeway::netstack
