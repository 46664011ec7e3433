// The relay channel's wire format (vmm/agent/relay.hpp): requests, replies
// and the UDP framing, including what a hostile peer could send.
#include <gtest/gtest.h>

#include "vmm/agent/relay.hpp"

namespace causeway::agent {
namespace {

TEST(RelayCodec, RequestsRoundTrip) {
  for (const RelayRequest r :
       {RelayRequest{IpProto::Tcp, 4, 80}, RelayRequest{IpProto::Udp, 6, 65535}, RelayRequest{IpProto::Tcp, 6, 1}}) {
    const auto b = encode_relay_request(r);
    auto d = decode_relay_request(b);
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, r);
  }
}

TEST(RelayCodec, MalformedRequestsAreRejected) {
  auto good = encode_relay_request(RelayRequest{IpProto::Tcp, 4, 8080});
  for (size_t i : {0u, 1u, 2u, 3u, 4u, 5u}) {
    auto b = good;
    b[i] ^= 0x5a;
    EXPECT_FALSE(decode_relay_request(b)) << "byte " << i;
  }
  auto zero = encode_relay_request(RelayRequest{IpProto::Udp, 4, 0});
  EXPECT_FALSE(decode_relay_request(zero)) << "port 0";
}

TEST(RelayCodec, RepliesCarryTheErrno) {
  auto ok = encode_relay_reply(0);
  EXPECT_EQ(decode_relay_reply(ok), uint16_t{0});
  auto refused = encode_relay_reply(111);
  EXPECT_EQ(decode_relay_reply(refused), uint16_t{111});
  refused[0] = 'X';
  EXPECT_FALSE(decode_relay_reply(refused));
}

TEST(RelayCodec, DatagramsSurviveAnySplitOfTheStream) {
  std::vector<uint8_t> stream;
  const std::vector<std::vector<uint8_t>> dgrams = {
      {}, {1}, std::vector<uint8_t>(1500, 7), std::vector<uint8_t>(kMaxRelayDatagram, 9)};
  for (const auto& d : dgrams) append_relay_datagram(d, stream);
  for (size_t chunk : {1u, 2u, 3u, 1000u, 70000u}) {
    RelayDatagramReader r;
    std::vector<std::vector<uint8_t>> got;
    for (size_t off = 0; off < stream.size(); off += chunk) {
      r.feed(std::span(stream).subspan(off, std::min(chunk, stream.size() - off)));
      while (auto d = r.next()) got.emplace_back(d->begin(), d->end());
    }
    EXPECT_FALSE(r.error());
    EXPECT_EQ(got, dgrams) << "chunk " << chunk;
  }
}

TEST(RelayCodec, AnOversizedFrameIsAnErrorThatSticks) {
  RelayDatagramReader r;
  const uint8_t hdr[] = {0xff, 0xff};  // 65535 > kMaxRelayDatagram
  r.feed(hdr);
  EXPECT_FALSE(r.next());
  EXPECT_TRUE(r.error());
  std::vector<uint8_t> more;
  append_relay_datagram(std::vector<uint8_t>{1, 2, 3}, more);
  r.feed(more);
  EXPECT_FALSE(r.next());
}

}  // namespace
}  // namespace causeway::agent
