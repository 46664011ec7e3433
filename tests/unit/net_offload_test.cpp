// virtio-net header codec and checksum completion (RFC 1071).
#include "vmm/devices/net_offload.hpp"

#include <gtest/gtest.h>

#include "vmm/virtio_spec.hpp"

namespace causeway::vmm::net {
namespace {

TEST(NetOffload, HeaderLengthFollowsFeatures) {
  EXPECT_EQ(header_len(virtio::kFVersion1), 12u);
  EXPECT_EQ(header_len(kFMrgRxbuf), 12u);
  EXPECT_EQ(header_len(0), 10u);
}

TEST(NetOffload, HeaderRoundTrip) {
  NetHdr h{kHdrFNeedsCsum, 0, 54, 0, 34, 16, 3};
  std::array<uint8_t, 12> b{};
  write_hdr(b, h, 12);
  auto r = parse_hdr(b, 12);
  EXPECT_EQ(r.flags, h.flags);
  EXPECT_EQ(r.csum_start, 34);
  EXPECT_EQ(r.csum_offset, 16);
  EXPECT_EQ(r.num_buffers, 3);
  EXPECT_EQ(parse_hdr(b, 10).num_buffers, 0);
}

TEST(NetOffload, ChecksumMatchesRfc1071Example) {
  // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (big-endian words).
  const uint8_t d[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  const uint16_t folded = csum_fold(csum_partial(d));
  // Summed little-endian: the byte-swapped value.
  EXPECT_EQ(folded, 0xf2dd);
}

TEST(NetOffload, OddLengthIsPaddedWithZero) {
  const uint8_t d[] = {0x12, 0x34, 0x56};
  // big-endian: 0x1234 + 0x5600 = 0x6834 -> little-endian view 0x3468
  EXPECT_EQ(csum_fold(csum_partial(d)), 0x3468);
}

TEST(NetOffload, CompletedChecksumVerifies) {
  std::vector<uint8_t> f(101);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i * 31 + 7);
  f[20] = f[21] = 0;  // checksum field at start 10 + offset 10
  ASSERT_TRUE(complete_checksum(f, 10, 10));
  EXPECT_EQ(csum_fold(csum_partial(std::span(f).subspan(10))), 0xffff);
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
