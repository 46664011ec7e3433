// virtio-net header checks and software offload completion (the wire
// toolkit's base/vnet_hdr, which the tap and the vhost-user device share).
// Suite named vnet_hdr so `ctest -R vnet` selects it.
#include "base/vnet_hdr.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "base/byte_order.hpp"
#include "base/checksum.hpp"

namespace causeway::wire {
namespace {

constexpr size_t kMtu = 1500;

// Ethernet + IPv4/IPv6 + TCP (20-byte header) + `payload` bytes of a pattern, with the TCP
// checksum field holding the pseudo-header sum (CHECKSUM_PARTIAL), flags `tcp_flags`.
std::vector<uint8_t> tcp_frame(bool v6, size_t payload, uint8_t tcp_flags = 0x18) {
  const size_t iplen = v6 ? 40 : 20;
  std::vector<uint8_t> f(kEthHeaderLen + iplen + 20 + payload, 0);
  store_be16(f.data() + 12, v6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
  uint8_t* ip = f.data() + kEthHeaderLen;
  const size_t tcplen = 20 + payload;
  uint32_t pseudo;
  if (!v6) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(20 + tcplen));
    store_be16(ip + 4, 0x1234);
    store_be16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    const uint8_t a[8] = {10, 0, 2, 15, 10, 0, 2, 2};
    std::memcpy(ip + 12, a, 8);
    store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));  // not offloaded, ever
    pseudo = checksum_add({ip + 12, 8}) + 6 + static_cast<uint32_t>(tcplen);
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<uint16_t>(tcplen));
    ip[6] = 6;
    ip[7] = 64;
    ip[8] = 0xfd;
    ip[23] = 0x0f;
    ip[24] = 0xfd;
    ip[39] = 0x02;
    pseudo = checksum_add({ip + 8, 32}) + 6 + static_cast<uint32_t>(tcplen);
  }
  uint8_t* t = ip + iplen;
  store_be16(t, 40000);
  store_be16(t + 2, 5201);
  t[4] = 0x10;  // seq 0x10000000
  t[12] = 5 << 4;
  t[13] = tcp_flags;
  store_be16(t + 14, 512);
  for (size_t i = 0; i < payload; ++i) t[20 + i] = static_cast<uint8_t>(i * 7 + 3);
  store_be16(t + 16, checksum_fold(pseudo));
  return f;
}

VnetHdr csum_hdr(bool v6) {
  VnetHdr h;
  h.flags = kVnetFNeedsCsum;
  h.csum_start = static_cast<uint16_t>(kEthHeaderLen + (v6 ? 40 : 20));
  h.csum_offset = 16;
  return h;
}

VnetHdr gso_hdr(bool v6, uint16_t gso_size) {
  VnetHdr h = csum_hdr(v6);
  h.gso_type = v6 ? kVnetGsoTcp6 : kVnetGsoTcp4;
  h.gso_size = gso_size;
  h.hdr_len = static_cast<uint16_t>(kEthHeaderLen + (v6 ? 40 : 20) + 20);
  return h;
}

// A TCP segment whose checksum (and IPv4 header checksum) verify.
bool tcp_checksum_ok(std::span<const uint8_t> f) {
  const bool v6 = load_be16(f.data() + 12) == kEtherTypeIpv6;
  const uint8_t* ip = f.data() + kEthHeaderLen;
  size_t iplen = v6 ? 40 : 20, tcplen;
  uint32_t pseudo;
  if (!v6) {
    if (checksum_fold(checksum_add({ip, 20})) != 0xffff) return false;
    tcplen = load_be16(ip + 2) - 20u;
    pseudo = checksum_add({ip + 12, 8}) + 6 + static_cast<uint32_t>(tcplen);
  } else {
    tcplen = load_be16(ip + 4);
    pseudo = checksum_add({ip + 8, 32}) + 6 + static_cast<uint32_t>(tcplen);
  }
  if (kEthHeaderLen + iplen + tcplen != f.size()) return false;
  return checksum_fold(checksum_add({ip + iplen, tcplen}, pseudo)) == 0xffff;
}

TEST(vnet_hdr, RoundTripsLittleEndian) {
  VnetHdr h{kVnetFNeedsCsum, kVnetGsoTcp4, 54, 1448, 34, 16, 1};
  std::array<uint8_t, kVnetHdrLen> b{};
  write_vnet_hdr(b, h);
  EXPECT_EQ(b[4], 1448 & 0xff);  // le16 gso_size
  EXPECT_EQ(b[5], 1448 >> 8);
  const auto r = read_vnet_hdr(b);
  EXPECT_EQ(r.flags, h.flags);
  EXPECT_EQ(r.gso_type, h.gso_type);
  EXPECT_EQ(r.hdr_len, 54);
  EXPECT_EQ(r.gso_size, 1448);
  EXPECT_EQ(r.csum_start, 34);
  EXPECT_EQ(r.csum_offset, 16);
  EXPECT_EQ(r.num_buffers, 1);
  EXPECT_FALSE(r.plain());
  const VnetHdr valid_only{kVnetFDataValid, 0, 0, 0, 0, 0, 0};
  EXPECT_TRUE(valid_only.plain());
}

class VnetFamily : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(vnet_hdr, VnetFamily, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "v6" : "v4"; });

TEST_P(VnetFamily, CompletesAPartialChecksum) {
  auto f = tcp_frame(GetParam(), 333);
  ASSERT_FALSE(tcp_checksum_ok(f));
  const auto c = check_vnet_hdr(csum_hdr(GetParam()), f, kMtu);
  ASSERT_EQ(c.verdict, VnetVerdict::kOk);
  std::vector<uint8_t> scratch;
  int n = 0;
  finish_in_software(f, c.offload, scratch, [&](std::span<const uint8_t> out) {
    ++n;
    EXPECT_EQ(out.size(), f.size());
    EXPECT_TRUE(tcp_checksum_ok(out));
  });
  EXPECT_EQ(n, 1);
}

TEST_P(VnetFamily, CutsASuperSegmentIntoVerifiedMssSegments) {
  const bool v6 = GetParam();
  const size_t payload = 10 * 1000 + 123;
  auto f = tcp_frame(v6, payload, 0x19 | 0x80);  // FIN|PSH|ACK|CWR
  const auto c = check_vnet_hdr(gso_hdr(v6, 1000), f, kMtu);
  ASSERT_EQ(c.verdict, VnetVerdict::kOk);
  ASSERT_TRUE(c.offload.gso);
  std::vector<uint8_t> scratch, joined;
  size_t n = 0;
  const size_t hl = kEthHeaderLen + (v6 ? 40 : 20) + 20;
  finish_in_software(f, c.offload, scratch, [&](std::span<const uint8_t> s) {
    EXPECT_TRUE(tcp_checksum_ok(s)) << "segment " << n;
    EXPECT_LE(s.size() - kEthHeaderLen, kMtu);
    const uint8_t* t = s.data() + hl - 20;
    EXPECT_EQ(load_be32(t + 4), 0x10000000u + joined.size()) << "segment " << n;
    const bool last = joined.size() + (s.size() - hl) == payload;
    EXPECT_EQ((t[13] & 0x09) != 0, last) << "FIN/PSH only on the last segment";
    EXPECT_EQ((t[13] & 0x80) != 0, n == 0) << "CWR only on the first";
    if (!v6) {
      EXPECT_EQ(load_be16(s.data() + kEthHeaderLen + 4), 0x1234 + n);  // IP ID advances
    }
    joined.insert(joined.end(), s.begin() + static_cast<std::ptrdiff_t>(hl), s.end());
    ++n;
  });
  EXPECT_EQ(n, 11u);
  ASSERT_EQ(joined.size(), payload);
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(), f.begin() + static_cast<std::ptrdiff_t>(hl)));
}

TEST_P(VnetFamily, ASuperSegmentOfOneMssIsOneSegment) {
  auto f = tcp_frame(GetParam(), 500);
  const auto c = check_vnet_hdr(gso_hdr(GetParam(), 1000), f, kMtu);
  ASSERT_EQ(c.verdict, VnetVerdict::kOk);
  std::vector<uint8_t> scratch;
  int n = 0;
  finish_in_software(f, c.offload, scratch, [&](std::span<const uint8_t> s) {
    ++n;
    EXPECT_TRUE(tcp_checksum_ok(s));
  });
  EXPECT_EQ(n, 1);
}

// Hostile headers: each is refused, whatever the frame.
TEST(vnet_hdr, RefusesUnknownFlagsAndGsoTypes) {
  auto f = tcp_frame(false, 100);
  VnetHdr h = csum_hdr(false);
  h.flags |= 4;  // RSC_INFO: not ours to receive
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadFlags);
  h = gso_hdr(false, 100);
  h.gso_type = 3;  // UDP (UFO): never offered
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadGsoType);
  h.gso_type = 5;  // UDP_L4
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadGsoType);
  h = csum_hdr(false);
  h.gso_type = kVnetGsoEcn;  // ECN without GSO
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadGsoType);
  h = gso_hdr(false, 100);
  h.gso_type = kVnetGsoTcp4 | kVnetGsoEcn;  // TSO with ECN: fine
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kOk);
}

TEST(vnet_hdr, RefusesChecksumFieldsOutsideTheFrame) {
  auto f = tcp_frame(false, 10);
  VnetHdr h = csum_hdr(false);
  h.csum_start = static_cast<uint16_t>(f.size() - 1);
  h.csum_offset = 0;
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadCsum);  // field would straddle the end
  h.csum_start = static_cast<uint16_t>(f.size() - 2);
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kOk);  // the last two bytes: fits
  h.csum_start = 0xffff;
  h.csum_offset = 0xffff;
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadCsum);
  h.csum_start = 4;  // inside the Ethernet header
  h.csum_offset = 0;
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadCsum);
  h = csum_hdr(false);
  h.hdr_len = 0xffff;
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kBadHdrLen);
  EXPECT_EQ(check_vnet_hdr(csum_hdr(false), std::span<const uint8_t>(), kMtu).verdict, VnetVerdict::kBadCsum);
}

TEST(vnet_hdr, RefusesGsoOnAnythingButPlainTcpOfItsFamily) {
  auto f = tcp_frame(false, 3000);
  VnetHdr h = gso_hdr(false, 1000);
  h.flags = 0;
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kGsoNoCsum);
  EXPECT_EQ(check_vnet_hdr(gso_hdr(true, 1000), f, kMtu).verdict, VnetVerdict::kGsoNotTcp);  // family mismatch
  auto udp = f;
  udp[kEthHeaderLen + 9] = 17;
  EXPECT_EQ(check_vnet_hdr(gso_hdr(false, 1000), udp, kMtu).verdict, VnetVerdict::kGsoNotTcp);
  auto frag = f;
  frag[kEthHeaderLen + 6] = 0x20;  // MF
  EXPECT_EQ(check_vnet_hdr(gso_hdr(false, 1000), frag, kMtu).verdict, VnetVerdict::kGsoNotTcp);
  auto longer = f;
  store_be16(longer.data() + kEthHeaderLen + 2, static_cast<uint16_t>(f.size()));  // total length beyond the frame
  EXPECT_EQ(check_vnet_hdr(gso_hdr(false, 1000), longer, kMtu).verdict, VnetVerdict::kGsoNotTcp);
  auto doff = f;
  doff[kEthHeaderLen + 20 + 12] = 0x40;  // a 16-byte TCP header
  EXPECT_EQ(check_vnet_hdr(gso_hdr(false, 1000), doff, kMtu).verdict, VnetVerdict::kGsoNotTcp);
  h = gso_hdr(false, 1000);
  h.csum_offset = 6;  // not the TCP checksum
  EXPECT_EQ(check_vnet_hdr(h, f, kMtu).verdict, VnetVerdict::kGsoNotTcp);
  std::vector<uint8_t> tiny(kEthHeaderLen + 10, 0);
  store_be16(tiny.data() + 12, kEtherTypeIpv4);
  h = gso_hdr(false, 1000);
  h.csum_start = kEthHeaderLen;
  h.csum_offset = 0;
  h.hdr_len = 0;
  EXPECT_EQ(check_vnet_hdr(h, tiny, kMtu).verdict, VnetVerdict::kGsoNotTcp);
}

TEST(vnet_hdr, RefusesGsoSizesThatDoNotFitTheMtu) {
  auto f = tcp_frame(true, 5000);
  EXPECT_EQ(check_vnet_hdr(gso_hdr(true, 0), f, kMtu).verdict, VnetVerdict::kGsoBadSize);
  EXPECT_EQ(check_vnet_hdr(gso_hdr(true, 1441), f, kMtu).verdict, VnetVerdict::kGsoBadSize);  // 40+20+1441 > 1500
  EXPECT_EQ(check_vnet_hdr(gso_hdr(true, 1440), f, kMtu).verdict, VnetVerdict::kOk);
}

// Every header on every truncation of a frame: never a crash, never an out-of-bounds read
// (run under ASan), and whatever validates can be finished.
TEST(vnet_hdr, SurvivesHostileHeadersOnTruncatedFrames) {
  const auto full = tcp_frame(false, 2000);
  std::vector<uint8_t> scratch;
  uint32_t rng = 12345;
  auto next = [&] { return rng = rng * 1103515245u + 12345u; };
  for (size_t len = 0; len <= full.size(); len += 37) {
    std::vector<uint8_t> f(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    for (int i = 0; i < 200; ++i) {
      VnetHdr h;
      h.flags = static_cast<uint8_t>(next() & 3);
      h.gso_type = static_cast<uint8_t>(std::array<uint8_t, 4>{0, 1, 4, 0x81}[next() & 3]);
      h.gso_size = static_cast<uint16_t>(next() % 2000);
      h.csum_start = static_cast<uint16_t>(next() % (len + 40));
      h.csum_offset = static_cast<uint16_t>(next() % 40);
      h.hdr_len = static_cast<uint16_t>(next() % 100);
      const auto c = check_vnet_hdr(h, f, kMtu);
      if (c.verdict != VnetVerdict::kOk) continue;
      finish_in_software(f, c.offload, scratch, [&](std::span<const uint8_t> s) {
        EXPECT_LE(s.size(), std::max<size_t>(f.size(), kMtu + kEthHeaderLen));
      });
    }
  }
}

}  // namespace
}  // namespace causeway::wire
