// Refusals (netstack/refusal): which guest packets open something on the
// host, and the RST / ICMP administratively-prohibited answers, both
// families, checksums verified.
#include "netstack/refusal.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/byte_order.hpp"
#include "netstack/packet.hpp"
#include "netstack/tcp_fast_path.hpp"

namespace causeway::netstack {
namespace {

const Mac kGw{0x52, 0x55, 10, 0, 2, 2};
const Mac kGuest{0x02, 0x43, 0x57, 0, 0, 0x0f};

using wire::load_be16;
using wire::store_be16;

// Ethernet + IP (either family, from the addresses' text) + `l4` as protocol `proto`.
std::vector<uint8_t> packet(const char* src, const char* dst, uint8_t proto, std::vector<uint8_t> l4) {
  const bool v4 = std::string(src).find(':') == std::string::npos;
  std::vector<uint8_t> f(kEthHeaderLen, 0);
  std::copy(kGw.begin(), kGw.end(), f.begin());
  std::copy(kGuest.begin(), kGuest.end(), f.begin() + 6);
  store_be16(f.data() + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  std::vector<uint8_t> ip(v4 ? 20 : 40, 0);
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip.data() + 2, static_cast<uint16_t>(20 + l4.size()));
    ip[8] = 64;
    ip[9] = proto;
    inet_pton(AF_INET, src, ip.data() + 12);
    inet_pton(AF_INET, dst, ip.data() + 16);
  } else {
    ip[0] = 0x60;
    store_be16(ip.data() + 4, static_cast<uint16_t>(l4.size()));
    ip[6] = proto;
    ip[7] = 64;
    inet_pton(AF_INET6, src, ip.data() + 8);
    inet_pton(AF_INET6, dst, ip.data() + 24);
  }
  f.insert(f.end(), ip.begin(), ip.end());
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

std::vector<uint8_t> tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t payload = 0) {
  std::vector<uint8_t> t(20 + payload, 0);
  store_be16(t.data(), sport);
  store_be16(t.data() + 2, dport);
  t[4] = 0x01, t[7] = 0x10;  // seq 0x01000010
  t[12] = 5 << 4;
  t[13] = flags;
  return t;
}

std::vector<uint8_t> udp(uint16_t sport, uint16_t dport) {
  std::vector<uint8_t> u(8 + 4, 0x5a);
  store_be16(u.data(), sport);
  store_be16(u.data() + 2, dport);
  store_be16(u.data() + 4, 12);
  return u;
}

TEST(InspectFlowOpen, FindsWhatOpensSomethingOnTheHost) {
  auto syn = inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 6, tcp(40000, 8080, 0x02)));
  ASSERT_TRUE(syn);
  EXPECT_EQ(syn->kind, FlowOpen::Kind::kTcpSyn);
  EXPECT_EQ(syn->sport, 40000);
  EXPECT_EQ(syn->dport, 8080);
  EXPECT_EQ(syn->seq, 0x01000010u);
  EXPECT_EQ(syn->seg_len, 1u);
  EXPECT_EQ(syn->dst.family, AF_INET);
  EXPECT_EQ(syn->dst.bytes[0], 127);

  auto u6 = inspect_flow_open(packet("fd00::15", "::1", 17, udp(5000, 53)));
  ASSERT_TRUE(u6);
  EXPECT_EQ(u6->kind, FlowOpen::Kind::kUdp);
  EXPECT_EQ(u6->dport, 53);
  EXPECT_EQ(u6->dst.family, AF_INET6);

  std::vector<uint8_t> echo(16, 0);
  echo[0] = 8;
  EXPECT_EQ(inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 1, echo))->kind, FlowOpen::Kind::kEcho);
  echo[0] = 128;
  EXPECT_EQ(inspect_flow_open(packet("fd00::15", "::1", 58, echo))->kind, FlowOpen::Kind::kEcho);
}

TEST(InspectFlowOpen, IgnoresSegmentsOfFlowsRepliesAndNeighbourDiscovery) {
  EXPECT_FALSE(inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 6, tcp(1, 2, 0x12))));  // SYN-ACK
  EXPECT_FALSE(inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 6, tcp(1, 2, 0x10))));  // ACK
  EXPECT_FALSE(inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 6, tcp(1, 2, 0x06))));  // SYN+RST
  std::vector<uint8_t> icmp(16, 0);
  EXPECT_FALSE(inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 1, icmp)));  // echo reply
  icmp[0] = 135;
  EXPECT_FALSE(inspect_flow_open(packet("fe80::15", "ff02::1:ff00:2", 58, icmp)));  // neighbour solicitation
  EXPECT_FALSE(inspect_flow_open(packet("10.0.2.15", "127.0.0.1", 2, icmp)));       // IGMP
}

TEST(InspectFlowOpen, FragmentsAreJudgedByAddressAlone) {
  // A SYN split so that the first fragment holds no flags: libslirp would reassemble it.
  auto f = packet("10.0.2.15", "127.0.0.1", 6, std::vector<uint8_t>(8, 0));
  f[kEthHeaderLen + 6] = 0x20;  // more fragments, offset 0
  auto v = inspect_flow_open(f);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->kind, FlowOpen::Kind::kFragment);
  auto v6 = inspect_flow_open(packet("fd00::15", "::1", 44, std::vector<uint8_t>(16, 0)));
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->kind, FlowOpen::Kind::kFragment);
}

TEST(InspectFlowOpen, NeverReadsPastTheFrame) {
  std::mt19937 rng(13);
  const std::vector<std::vector<uint8_t>> seeds = {packet("10.0.2.15", "127.0.0.1", 6, tcp(1, 2, 0x02, 5)),
                                                   packet("fd00::15", "::1", 17, udp(1, 2))};
  for (int i = 0; i < 20000; ++i) {
    auto f = seeds[rng() % seeds.size()];
    if (rng() % 2) f.resize(rng() % f.size());
    for (int k = 0; k < 3 && f.size() > kEthHeaderLen; ++k)
      f[kEthHeaderLen + rng() % (f.size() - kEthHeaderLen)] = static_cast<uint8_t>(rng());
    std::vector<uint8_t> exact(f.begin(), f.end());  // the ASan build catches a read past it
    (void)inspect_flow_open(exact);
  }
}

TEST(Refusal, RstAcknowledgesTheSynFromWhereItWasSent) {
  for (const auto& [src, dst] : {std::pair{"10.0.2.15", "127.0.0.1"}, std::pair{"fd00::15", "::ffff:127.0.0.1"}}) {
    const auto frame = packet(src, dst, 6, tcp(40000, 8080, 0x02, 3));
    const auto syn = inspect_flow_open(frame);
    ASSERT_TRUE(syn);
    const auto rst = build_refusal_rst(*syn, kGw);
    auto s = parse_tcp_segment(rst);
    ASSERT_TRUE(s) << src;
    EXPECT_EQ(s->flags, 0x14) << "RST|ACK";
    EXPECT_EQ(s->ack, 0x01000010u + 3 + 1) << "SEG.SEQ + SEG.LEN (RFC 9293 §3.10.7.1)";
    EXPECT_EQ(s->sport, 8080);
    EXPECT_EQ(s->dport, 40000);
    EXPECT_EQ(s->dst, syn->src.bytes);
    EXPECT_EQ(s->src, syn->dst.bytes);
    EXPECT_TRUE(std::equal(kGuest.begin(), kGuest.end(), rst.begin())) << "to the guest's MAC";
    const bool v4 = syn->dst.family == AF_INET;
    const uint8_t* ip = rst.data() + kEthHeaderLen;
    const size_t iplen = v4 ? 20 : 40;
    uint8_t pseudo[40] = {};
    size_t plen = 12;
    if (v4) {
      EXPECT_EQ(checksum_fold(checksum_add({ip, 20})), 0xffff);
      std::memcpy(pseudo, ip + 12, 8);
      pseudo[9] = 6, pseudo[11] = 20;
    } else {
      std::memcpy(pseudo, ip + 8, 32);
      pseudo[35] = 20, pseudo[39] = 6;
      plen = 40;
    }
    EXPECT_EQ(checksum_fold(checksum_add({ip + iplen, 20}, checksum_add({pseudo, plen}))), 0xffff) << src;
  }
}

TEST(Refusal, AdminProhibitedQuotesTheDatagramAndVerifies) {
  GuestAddr gw4{AF_INET, {10, 0, 2, 2}};
  const auto f4 = packet("10.0.2.15", "127.0.0.1", 17, udp(5000, 7));
  const auto u4 = inspect_flow_open(f4);
  ASSERT_TRUE(u4);
  const auto e4 = build_admin_prohibited(f4, *u4, kGw, gw4);
  ASSERT_EQ(e4.size(), kEthHeaderLen + 20 + 8 + (f4.size() - kEthHeaderLen));
  const uint8_t* ip = e4.data() + kEthHeaderLen;
  EXPECT_EQ(ip[9], 1);
  EXPECT_EQ(ip[20], 3);
  EXPECT_EQ(ip[21], 13) << "communication administratively prohibited (RFC 1812 §5.2.7.1)";
  EXPECT_EQ(checksum_fold(checksum_add({ip, 20})), 0xffff);
  EXPECT_EQ(checksum_fold(checksum_add({ip + 20, e4.size() - kEthHeaderLen - 20})), 0xffff);
  EXPECT_EQ(std::memcmp(ip + 28, f4.data() + kEthHeaderLen, f4.size() - kEthHeaderLen), 0) << "the datagram quoted";
  EXPECT_EQ(std::memcmp(ip + 12, gw4.bytes.data(), 4), 0) << "from the gateway";

  GuestAddr gw6{AF_INET6, {}};
  inet_pton(AF_INET6, "fd00::2", gw6.bytes.data());
  const auto f6 = packet("fd00::15", "::1", 17, udp(5000, 7));
  const auto u6 = inspect_flow_open(f6);
  ASSERT_TRUE(u6);
  const auto e6 = build_admin_prohibited(f6, *u6, kGw, gw6);
  const uint8_t* ip6 = e6.data() + kEthHeaderLen;
  EXPECT_EQ(ip6[6], 58);
  EXPECT_EQ(ip6[40], 1);
  EXPECT_EQ(ip6[41], 1) << "administratively prohibited (RFC 4443 §3.1)";
  const size_t icmplen = load_be16(ip6 + 4);
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, ip6 + 8, 32);
  store_be16(pseudo + 34, static_cast<uint16_t>(icmplen));
  pseudo[39] = 58;
  EXPECT_EQ(checksum_fold(checksum_add({ip6 + 40, icmplen}, checksum_add({pseudo, 40}))), 0xffff);

  // A large datagram is quoted only up to the family's limit.
  auto big = packet("fd00::15", "::1", 17, std::vector<uint8_t>(4000, 1));
  store_be16(big.data() + kEthHeaderLen + 40 + 4, 4000);
  const auto ub = inspect_flow_open(big);
  ASSERT_TRUE(ub);
  EXPECT_EQ(build_admin_prohibited(big, *ub, kGw, gw6).size(), kEthHeaderLen + 1280u);
}

}  // namespace
}  // namespace causeway::netstack
