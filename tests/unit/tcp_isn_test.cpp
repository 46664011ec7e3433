// TcpIsnGenerator (netstack/tcp_isn.hpp): RFC 6528 initial sequence numbers.
#include "netstack/tcp_isn.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <set>

namespace causeway::netstack {
namespace {

// The SipHash paper's key (00 01 … 0f) and its test vectors (Aumasson & Bernstein, 2012,
// appendix A): SipHash-2-4 of the empty message is 0x726fdb47dd0e0e31, of 00 01 … 0e
// 0xa129ca6149be45e5. F is the low 32 bits of that (little-endian output), M is 0 at time 0.
constexpr TcpIsnGenerator::SecretKey kPaperKey{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

TEST(TcpIsn, FIsSipHash24OfTheTuple) {
  const TcpIsnGenerator g(kPaperKey);
  EXPECT_EQ(g.isn({}, 0), 0xdd0e0e31u);
  const std::array<uint8_t, 15> msg{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  EXPECT_EQ(g.isn(msg, 0), 0x49be45e5u);
}

TEST(TcpIsn, MTicksEveryFourMicroseconds) {
  const TcpIsnGenerator g(kPaperKey);
  const std::array<uint8_t, 4> t{10, 0, 2, 15};
  const uint32_t base = g.isn(t, 0);
  EXPECT_EQ(g.isn(t, 3999), base) << "within one tick";
  EXPECT_EQ(g.isn(t, 4000), base + 1);
  EXPECT_EQ(g.isn(t, 1'000'000'000), base + 250'000u) << "250,000 per second";
}

TEST(TcpIsn, OneTupleOnlyMovesForwardWhileOthersAreUnrelated) {
  const TcpIsnGenerator g;  // a random key, as in the engine
  std::array<uint8_t, 6> t{10, 0, 2, 2, 0x80, 0x00};
  uint32_t prev = g.isn(t, 0);
  for (int64_t ns = 1'000'000; ns < 60'000'000'000; ns += 997'000'000) {  // a minute of TIME-WAIT
    const uint32_t now = g.isn(t, ns);
    EXPECT_GT(static_cast<int32_t>(now - prev), 0) << "at " << ns << " ns";
    prev = now;
  }
  std::set<uint32_t> offsets;  // F for 256 neighbouring ports at the same instant
  for (int port = 0; port < 256; ++port) {
    t[5] = static_cast<uint8_t>(port);
    offsets.insert(g.isn(t, 0));
  }
  EXPECT_GT(offsets.size(), 250u) << "neighbouring tuples must not share sequence spaces";
}

TEST(TcpIsn, KeysDiffer) {
  const TcpIsnGenerator a, b;
  const std::array<uint8_t, 4> t{1, 2, 3, 4};
  EXPECT_NE(a.isn(t, 0), b.isn(t, 0)) << "two generators drew the same key (or F ignores it)";
}

}  // namespace
}  // namespace causeway::netstack
