// FrameDemux: frames of one guest NIC split by source MAC.
#include "netstack/frame_demux.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace causeway::netstack {
namespace {

struct RecordingSink final : FrameSink {
  void on_guest_frame(std::span<const uint8_t> f) override { frames.emplace_back(f.begin(), f.end()); }
  std::vector<std::vector<uint8_t>> frames;
};

std::vector<uint8_t> frame_from(const Mac& src) {
  std::vector<uint8_t> f(60, 0);
  for (size_t i = 0; i < 6; ++i) f[i] = 0xff;  // broadcast destination
  std::copy(src.begin(), src.end(), f.begin() + 6);
  f[12] = 0x08;
  f[13] = 0x06;  // ARP
  return f;
}

constexpr Mac kEth0{0x52, 0x55, 0x0a, 0x00, 0x02, 0x0f};
constexpr Mac kLan0{0x02, 0x43, 0x57, 0x4d, 0x00, 0x03};
constexpr Mac kVpn0{0x02, 0x43, 0x57, 0x4d, 0x00, 0x09};

TEST(FrameDemux, FramesGoToTheLinkOfTheirSourceMacAndTheRestToTheDefault) {
  FrameDemux d;
  RecordingSink nat, lan, vpn;
  d.set_default(&nat);
  ASSERT_TRUE(d.add(kLan0, lan));
  ASSERT_TRUE(d.add(kVpn0, vpn));
  d.on_guest_frame(frame_from(kEth0));
  d.on_guest_frame(frame_from(kLan0));
  d.on_guest_frame(frame_from(kVpn0));
  d.on_guest_frame(frame_from(kLan0));
  EXPECT_EQ(nat.frames.size(), 1u);
  EXPECT_EQ(lan.frames.size(), 2u);
  EXPECT_EQ(vpn.frames.size(), 1u);
  EXPECT_EQ(lan.frames[0], frame_from(kLan0));  // untouched
  EXPECT_EQ(d.stats().to_links, 3u);
  EXPECT_EQ(d.stats().to_default, 1u);
}

TEST(FrameDemux, ARemovedLinkFallsBackToTheDefault) {
  FrameDemux d;
  RecordingSink nat, lan;
  d.set_default(&nat);
  d.add(kLan0, lan);
  d.remove(kLan0);
  d.on_guest_frame(frame_from(kLan0));
  EXPECT_TRUE(lan.frames.empty());
  EXPECT_EQ(nat.frames.size(), 1u);
}

TEST(FrameDemux, RuntFramesGoToTheDefaultAndNothingIsDeliveredWithoutOne) {
  FrameDemux d;
  RecordingSink lan, nat;
  d.add(kLan0, lan);
  const std::vector<uint8_t> runt{0x02, 0x43, 0x57, 0x4d, 0x00};
  d.on_guest_frame(runt);
  d.on_guest_frame({});
  EXPECT_EQ(d.stats().no_default, 2u);
  d.set_default(&nat);
  d.on_guest_frame(runt);
  EXPECT_EQ(nat.frames.size(), 1u);
  EXPECT_TRUE(lan.frames.empty());
}

TEST(FrameDemux, RegistrationsAreCapped) {
  FrameDemux d;
  RecordingSink s;
  for (size_t i = 0; i < FrameDemux::kMaxEntries; ++i)
    ASSERT_TRUE(d.add(Mac{0x02, 0x43, 0x57, 0x4d, 0x01, static_cast<uint8_t>(i)}, s));
  EXPECT_FALSE(d.add(kLan0, s));
  EXPECT_EQ(d.stats().refused, 1u);
  EXPECT_TRUE(d.add(Mac{0x02, 0x43, 0x57, 0x4d, 0x01, 0x00}, s));  // replacing is not growing
  EXPECT_EQ(d.size(), FrameDemux::kMaxEntries);
}

}  // namespace
}  // namespace causeway::netstack
