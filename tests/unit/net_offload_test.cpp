// The device's header length, and the wire toolkit's virtio-net header codec
// and checksum completion (base/vnet_hdr.hpp, RFC 1071) as the device uses them.
#include "vmm/devices/net_offload.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "base/checksum.hpp"
#include "base/vnet_hdr.hpp"
#include "vmm/virtio_spec.hpp"

namespace causeway::vmm::net {
namespace {

using wire::checksum_add;
using wire::checksum_fold;
using wire::complete_checksum;

TEST(NetOffload, HeaderLengthFollowsFeatures) {
  EXPECT_EQ(header_len(virtio::kFVersion1), 12u);
  EXPECT_EQ(header_len(kFMrgRxbuf), 12u);
  EXPECT_EQ(header_len(0), 10u);
}

TEST(NetOffload, HeaderRoundTrip) {
  wire::VnetHdr h{wire::kVnetFNeedsCsum, 0, 54, 0, 34, 16, 3};
  std::array<uint8_t, 12> b{};
  wire::write_vnet_hdr(b, h, 12);
  auto r = wire::read_vnet_hdr(b, 12);
  EXPECT_EQ(r.flags, h.flags);
  EXPECT_EQ(r.csum_start, 34);
  EXPECT_EQ(r.csum_offset, 16);
  EXPECT_EQ(r.num_buffers, 3);
  EXPECT_EQ(wire::read_vnet_hdr(b, 10).num_buffers, 0);
}

TEST(NetOffload, ChecksumMatchesRfc1071Example) {
  // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (big-endian words).
  const uint8_t d[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(checksum_fold(checksum_add(d)), 0xddf2);
}

TEST(NetOffload, OddLengthIsPaddedWithZero) {
  const uint8_t d[] = {0x12, 0x34, 0x56};
  // big-endian: 0x1234 + 0x5600 = 0x6834
  EXPECT_EQ(checksum_fold(checksum_add(d)), 0x6834);
}

TEST(NetOffload, CompletedChecksumVerifies) {
  std::vector<uint8_t> f(101);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i * 31 + 7);
  f[20] = f[21] = 0;  // checksum field at start 10 + offset 10
  ASSERT_TRUE(complete_checksum(f, 10, 10));
  EXPECT_EQ(checksum_fold(checksum_add(std::span(f).subspan(10))), 0xffff);
}

TEST(NetOffload, OffsetsOutsideTheFrameAreRefused) {
  std::vector<uint8_t> f(40, 0);
  EXPECT_FALSE(complete_checksum(f, 40, 0));
  EXPECT_FALSE(complete_checksum(f, 30, 9));  // field would be 39..41
  EXPECT_FALSE(complete_checksum(f, 0xffff, 0xffff));
  EXPECT_TRUE(complete_checksum(f, 30, 8));
}

}  // namespace
}  // namespace causeway::vmm::net
