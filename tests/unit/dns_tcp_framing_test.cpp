// DNS over TCP framing: whole messages out of any split of the stream;
// absurd lengths end the stream.
#include "dns/tcp_framing.hpp"

#include <gtest/gtest.h>

#include "tests/support/dns_test_support.hpp"

namespace causeway::dns {
namespace {
using testing::Bytes;
using testing::make_query;

TEST(TcpFraming, EncodeAddsBigEndianLength) {
  const Bytes q = make_query("a.test", 1);
  const Bytes f = encode_tcp_frame(q);
  ASSERT_EQ(f.size(), q.size() + 2);
  EXPECT_EQ(f[0], 0);
  EXPECT_EQ(f[1], q.size());
  EXPECT_TRUE(std::equal(q.begin(), q.end(), f.begin() + 2));
  EXPECT_TRUE(encode_tcp_frame(Bytes(65536, 0)).empty());
  EXPECT_EQ(encode_tcp_frame(Bytes(65535, 0)).size(), 65537u);
}

TEST(TcpFraming, SplitAtEveryByteBoundary) {
  const Bytes q1 = make_query("one.test", 1, {.id = 1});
  const Bytes q2 = make_query("two.example.test", 28, {.id = 2, .edns_size = 1232});
  Bytes stream = encode_tcp_frame(q1);
  const Bytes f2 = encode_tcp_frame(q2);
  stream.insert(stream.end(), f2.begin(), f2.end());
  for (size_t a = 0; a <= stream.size(); ++a) {
    for (size_t b = a; b <= stream.size(); ++b) {
      TcpFrameDecoder d;
      std::vector<Bytes> out;
      const std::span<const uint8_t> s(stream);
      ASSERT_TRUE(d.feed(s.subspan(0, a), out));
      ASSERT_TRUE(d.feed(s.subspan(a, b - a), out));
      ASSERT_TRUE(d.feed(s.subspan(b), out));
      ASSERT_EQ(out.size(), 2u) << a << "," << b;
      EXPECT_EQ(out[0], q1);
      EXPECT_EQ(out[1], q2);
      EXPECT_EQ(d.buffered(), 0u);
    }
  }
}

TEST(TcpFraming, OneByteAtATime) {
  const Bytes q = make_query("a.test", 1);
  const Bytes f = encode_tcp_frame(q);
  TcpFrameDecoder d;
  std::vector<Bytes> out;
  for (size_t i = 0; i < f.size(); ++i) {
    ASSERT_TRUE(d.feed(std::span<const uint8_t>(f).subspan(i, 1), out));
    EXPECT_EQ(out.size(), i + 1 == f.size() ? 1u : 0u);
  }
  EXPECT_EQ(out[0], q);
}

TEST(TcpFraming, RefusesLengthsShorterThanAHeader) {
  for (uint8_t len : {uint8_t{0}, uint8_t{1}, uint8_t{11}}) {
    TcpFrameDecoder d;
    std::vector<Bytes> out;
    const Bytes stream = {0, len, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    EXPECT_FALSE(d.feed(stream, out)) << int{len};
    EXPECT_TRUE(d.failed());
    EXPECT_TRUE(out.empty());
    EXPECT_FALSE(d.feed(encode_tcp_frame(make_query("a.test", 1)), out));  // failed for good
  }
}

TEST(TcpFraming, RefusesLengthsOverTheLimitWithoutBuffering) {
  TcpFrameDecoder d;
  std::vector<Bytes> out;
  const Bytes good = encode_tcp_frame(make_query("a.test", 1));
  Bytes stream = good;
  stream.push_back(0xff);
  stream.push_back(0xff);
  stream.resize(stream.size() + 1000, 0);
  EXPECT_FALSE(d.feed(stream, out));
  ASSERT_EQ(out.size(), 1u);  // what came before the bad prefix still counts
  EXPECT_EQ(d.buffered(), 0u);
  TcpFrameDecoder big(65535);
  std::vector<Bytes> out2;
  EXPECT_TRUE(big.feed(Bytes{0x10, 0x00}, out2));  // 4096 is fine when allowed
  EXPECT_EQ(big.buffered(), 2u);
}

}  // namespace
}  // namespace causeway::dns
