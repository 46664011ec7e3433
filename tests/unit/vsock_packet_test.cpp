// virtio-vsock header codec and the checks on guest packets.
#include "vmm/devices/vsock_packet.hpp"

#include <gtest/gtest.h>

namespace causeway::vmm::vsock {
namespace {

Header good(Op op, uint32_t len = 0) {
  Header h;
  h.src_cid = 3;
  h.dst_cid = kHostCid;
  h.src_port = 1234;
  h.dst_port = 5000;
  h.len = len;
  h.op = static_cast<uint16_t>(op);
  h.buf_alloc = 65536;
  h.fwd_cnt = 7;
  return h;
}

TEST(VsockPacket, HeaderRoundTripsAt44Bytes) {
  Header h = good(Op::kRw, 100);
  h.flags = 0;
  std::array<uint8_t, kHdrSize> b{};
  write_header(b, h);
  // §5.10.6: le64 src_cid first, op at offset 30.
  EXPECT_EQ(b[0], 3);
  EXPECT_EQ(b[30], static_cast<uint8_t>(Op::kRw));
  auto r = parse_header(b);
  EXPECT_EQ(r.src_port, 1234u);
  EXPECT_EQ(r.dst_port, 5000u);
  EXPECT_EQ(r.len, 100u);
  EXPECT_EQ(r.buf_alloc, 65536u);
  EXPECT_EQ(r.fwd_cnt, 7u);
}

TEST(VsockPacket, AcceptsWellFormedPackets) {
  EXPECT_EQ(check_guest_packet(good(Op::kRequest), kHdrSize, 3), PacketCheck::kOk);
  EXPECT_EQ(check_guest_packet(good(Op::kRw, 10), kHdrSize + 10, 3), PacketCheck::kOk);
  Header s = good(Op::kShutdown);
  s.flags = kShutdownMask;
  EXPECT_EQ(check_guest_packet(s, kHdrSize, 3), PacketCheck::kOk);
}

TEST(VsockPacket, RefusesMalformedOrSpoofedPackets) {
  EXPECT_EQ(check_guest_packet(good(Op::kRequest), kHdrSize - 1, 3), PacketCheck::kShort);
  EXPECT_EQ(check_guest_packet(good(Op::kRequest), kHdrSize, 4), PacketCheck::kWrongSource);
  Header d = good(Op::kRequest);
  d.dst_cid = 7;
  EXPECT_EQ(check_guest_packet(d, kHdrSize, 3), PacketCheck::kWrongDest);
  Header t = good(Op::kRequest);
  t.type = kTypeSeqpacket;
  EXPECT_EQ(check_guest_packet(t, kHdrSize, 3), PacketCheck::kBadType);
  Header o = good(Op::kRequest);
  o.op = 0;
  EXPECT_EQ(check_guest_packet(o, kHdrSize, 3), PacketCheck::kBadOp);
  o.op = 8;
  EXPECT_EQ(check_guest_packet(o, kHdrSize, 3), PacketCheck::kBadOp);
  EXPECT_EQ(check_guest_packet(good(Op::kRw, 11), kHdrSize + 10, 3), PacketCheck::kBadLength);
  EXPECT_EQ(check_guest_packet(good(Op::kRw, kMaxPayload + 1), kHdrSize + kMaxPayload + 1, 3), PacketCheck::kBadLength);
  EXPECT_EQ(check_guest_packet(good(Op::kRw, 0xffffffffu), kHdrSize, 3), PacketCheck::kBadLength);
  EXPECT_EQ(check_guest_packet(good(Op::kRequest, 4), kHdrSize + 4, 3), PacketCheck::kBadLength);
  Header s = good(Op::kShutdown);
  s.flags = 4;
  EXPECT_EQ(check_guest_packet(s, kHdrSize, 3), PacketCheck::kBadFlags);
}

}  // namespace
}  // namespace causeway::vmm::vsock
