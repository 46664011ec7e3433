// The local zone: exact answers for host/gateway, NODATA and NXDOMAIN with
// the zone's SOA, nothing for names outside the zone.
#include "dns/local_zone.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "dns/wire.hpp"
#include "tests/support/dns_test_support.hpp"

namespace causeway::dns {
namespace {
using testing::Bytes;
using testing::get16;
using testing::make_query;
using testing::put16;
using testing::put32;
using testing::put_name;

LocalZone nat_zone() { return LocalZone(LocalZoneAddresses::nat_defaults()); }

// Header + the question as asked.
Bytes expected_head(const Bytes& query, uint16_t flags, uint16_t an, uint16_t ns, uint16_t ar) {
  Bytes b;
  put16(b, get16(query, 0));
  put16(b, flags);
  put16(b, 1);
  put16(b, an);
  put16(b, ns);
  put16(b, ar);
  const auto c = validate_query(query);
  b.insert(b.end(), query.begin() + 12, query.begin() + static_cast<ptrdiff_t>(c.question.end));
  return b;
}

Bytes soa_record() {
  Bytes b;
  put_name(b, "causeway.internal");
  put16(b, rrtype::kSoa);
  put16(b, kClassIn);
  put32(b, LocalZone::kNegativeTtl);
  Bytes rdata;
  put_name(rdata, "causeway.internal");
  put_name(rdata, "hostmaster.causeway.internal");
  for (uint32_t v : {1u, 3600u, 600u, 86400u, LocalZone::kNegativeTtl}) put32(rdata, v);
  put16(b, static_cast<uint16_t>(rdata.size()));
  b.insert(b.end(), rdata.begin(), rdata.end());
  return b;
}

TEST(LocalZone, AnswersHostARecordExactly) {
  const Bytes q = make_query("host.causeway.internal", rrtype::kA, {.id = 0x4242});
  const auto a = nat_zone().answer(q);
  ASSERT_TRUE(a);
  Bytes expected = expected_head(q, 0x8580, 1, 0, 0);  // QR AA RD RA, NOERROR
  put16(expected, 0xc00c);
  put16(expected, rrtype::kA);
  put16(expected, kClassIn);
  put32(expected, LocalZone::kTtl);
  put16(expected, 4);
  for (uint8_t b : {10, 0, 2, 2}) expected.push_back(b);
  EXPECT_EQ(*a, expected);
}

TEST(LocalZone, AnswersGatewayAaaaAndKeepsTheGuestsCase) {
  const Bytes q = make_query("GateWay.Causeway.INTERNAL", rrtype::kAaaa, {.flags = 0});
  const auto a = nat_zone().answer(q);
  ASSERT_TRUE(a);
  Bytes expected = expected_head(q, 0x8480, 1, 0, 0);  // RD clear as asked
  put16(expected, 0xc00c);
  put16(expected, rrtype::kAaaa);
  put16(expected, kClassIn);
  put32(expected, LocalZone::kTtl);
  put16(expected, 16);
  expected.push_back(0xfd);
  for (int i = 0; i < 14; ++i) expected.push_back(0);
  expected.push_back(2);
  EXPECT_EQ(*a, expected);
  EXPECT_EQ(std::string(a->begin() + 13, a->begin() + 20), "GateWay");
}

TEST(LocalZone, NoDataForOtherTypesWithSoa) {
  const Bytes q = make_query("host.causeway.internal", rrtype::kMx);
  const auto a = nat_zone().answer(q);
  ASSERT_TRUE(a);
  Bytes expected = expected_head(q, 0x8580, 0, 1, 0);
  const Bytes soa = soa_record();
  expected.insert(expected.end(), soa.begin(), soa.end());
  EXPECT_EQ(*a, expected);
}

TEST(LocalZone, NoDataForAaaaWithoutIpv6) {
  LocalZoneAddresses addr = LocalZoneAddresses::nat_defaults();
  addr.host_v6.reset();
  const auto a = LocalZone(addr).answer(make_query("host.causeway.internal", rrtype::kAaaa));
  ASSERT_TRUE(a);
  EXPECT_EQ(testing::rcode_of(*a), 0);
  EXPECT_EQ(get16(*a, 6), 0);  // ANCOUNT
  EXPECT_EQ(get16(*a, 8), 1);  // the SOA
}

TEST(LocalZone, NxDomainForOtherNamesInTheZone) {
  for (const char* name : {"nope.causeway.internal", "x.host.causeway.internal"}) {
    const Bytes q = make_query(name, rrtype::kA);
    const auto a = nat_zone().answer(q);
    ASSERT_TRUE(a) << name;
    Bytes expected = expected_head(q, 0x8583, 0, 1, 0);
    const Bytes soa = soa_record();
    expected.insert(expected.end(), soa.begin(), soa.end());
    EXPECT_EQ(*a, expected) << name;
  }
}

TEST(LocalZone, ApexAnswersSoa) {
  const Bytes q = make_query("causeway.internal", rrtype::kSoa);
  const auto a = nat_zone().answer(q);
  ASSERT_TRUE(a);
  Bytes expected = expected_head(q, 0x8580, 1, 0, 0);
  const Bytes soa = soa_record();
  expected.insert(expected.end(), soa.begin(), soa.end());
  EXPECT_EQ(*a, expected);
}

TEST(LocalZone, AnyGivesBothAddresses) {
  const auto a = nat_zone().answer(make_query("host.causeway.internal", rrtype::kAny));
  ASSERT_TRUE(a);
  EXPECT_EQ(get16(*a, 6), 2);
}

TEST(LocalZone, EdnsQueryGetsAnOptBack) {
  const Bytes q = make_query("host.causeway.internal", rrtype::kA, {.edns_size = 1232});
  const auto a = nat_zone().answer(q);
  ASSERT_TRUE(a);
  EXPECT_EQ(get16(*a, 10), 1);  // ARCOUNT
  const auto e = find_edns(*a);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->udp_payload_size, LocalZone::kEdnsUdpSize);
  EXPECT_TRUE(validate_query(Bytes(a->begin(), a->end())).verdict == QueryVerdict::kDrop);  // it is a response
}

TEST(LocalZone, OtherClassesAreRefused) {
  const auto a = nat_zone().answer(make_query("host.causeway.internal", rrtype::kA, {.qclass = 3}));
  ASSERT_TRUE(a);
  EXPECT_EQ(testing::rcode_of(*a), 5);
}

TEST(LocalZone, NamesOutsideTheZoneAreNotAnswered) {
  for (const char* name : {"example.test", "internal", "xcauseway.internal", "causeway.internal.example"})
    EXPECT_FALSE(nat_zone().answer(make_query(name, rrtype::kA))) << name;
  EXPECT_FALSE(nat_zone().answer(Bytes(5, 0)));  // malformed: the proxy's business
}

}  // namespace
}  // namespace causeway::dns
