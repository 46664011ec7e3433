// QEMU stream framing: frames split anywhere decode the same; bogus lengths break the stream.
#include "netstack/stream_codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace causeway::netstack {
namespace {

std::vector<uint8_t> encode(const std::vector<std::string>& frames) {
  std::vector<uint8_t> out;
  for (auto& f : frames) {
    auto h = encode_stream_header(static_cast<uint32_t>(f.size()));
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

std::vector<std::string> decode_in_chunks(const std::vector<uint8_t>& wire, size_t chunk, bool* ok = nullptr) {
  StreamDecoder d(1514);
  std::vector<std::string> got;
  bool good = true;
  for (size_t off = 0; off < wire.size(); off += chunk) {
    const size_t n = std::min(chunk, wire.size() - off);
    good = d.feed(std::span<const uint8_t>(wire.data() + off, n), [&](std::span<const uint8_t> f) {
      got.emplace_back(f.begin(), f.end());
    }) && good;
  }
  if (ok) *ok = good;
  return got;
}

TEST(StreamCodec, HeaderIsBigEndianLength) {
  const auto h = encode_stream_header(0x01020304);
  EXPECT_EQ(h[0], 1);
  EXPECT_EQ(h[3], 4);
}

TEST(StreamCodec, DecodesFramesSplitAtEveryBoundary) {
  const std::vector<std::string> frames{"first frame", std::string(1514, 'x'), "a", "last"};
  const auto wire = encode(frames);
  for (size_t chunk : {1u, 2u, 3u, 4u, 5u, 7u, 64u, 1000u, 100000u}) {
    EXPECT_EQ(decode_in_chunks(wire, chunk), frames) << "chunk " << chunk;
  }
}

TEST(StreamCodec, KeepsPartialFrameUntilRestArrives) {
  const auto wire = encode({"hello"});
  StreamDecoder d(100);
  int frames = 0;
  d.feed(std::span<const uint8_t>(wire.data(), 6), [&](auto) { ++frames; });
  EXPECT_EQ(frames, 0);
  EXPECT_EQ(d.buffered(), 6u);
  d.feed(std::span<const uint8_t>(wire.data() + 6, wire.size() - 6), [&](auto) { ++frames; });
  EXPECT_EQ(frames, 1);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(StreamCodec, ZeroLengthBreaksTheStream) {
  std::vector<uint8_t> wire{0, 0, 0, 0, 'x'};
  bool ok = true;
  EXPECT_TRUE(decode_in_chunks(wire, 100, &ok).empty());
  EXPECT_FALSE(ok);
}

TEST(StreamCodec, OversizedLengthBreaksTheStreamAndStaysBroken) {
  auto wire = encode({"good"});
  const auto big = encode_stream_header(1515);
  wire.insert(wire.end(), big.begin(), big.end());
  const auto after = encode({"never"});
  wire.insert(wire.end(), after.begin(), after.end());
  bool ok = true;
  const auto got = decode_in_chunks(wire, 3, &ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(got, std::vector<std::string>{"good"});
}

}  // namespace
}  // namespace causeway::netstack
