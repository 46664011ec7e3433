// VirtioNetDevice driven the way Linux's virtio_net driver drives it: post
// receive buffers, put header + frame on the transmit queue, kick; assert on
// what reaches the FrameSink, what lands in receive buffers, and counters.
#include "vmm/devices/virtio_net.hpp"

#include <gtest/gtest.h>

#include <numeric>

#include "base/byte_order.hpp"
#include "base/checksum.hpp"
#include "base/vnet_hdr.hpp"
#include "tests/support/fakes.hpp"
#include "tests/support/fake_guest.hpp"
#include "vmm/devices/net_offload.hpp"
#include "vmm/virtio_spec.hpp"

namespace causeway::vmm {
namespace {

using testing::Buf;
using testing::FakeDriverQueue;
using testing::FakeGuestRam;

class FakeFrameSink final : public netstack::FrameSink {
 public:
  void on_guest_frame(std::span<const uint8_t> f) override {
    frames.emplace_back(f.begin(), f.end());
    last_data = f.data();
  }
  std::vector<std::vector<uint8_t>> frames;
  const uint8_t* last_data = nullptr;
};

std::vector<uint8_t> make_frame(size_t len, uint8_t seed = 1) {
  std::vector<uint8_t> f(len);
  for (size_t i = 0; i < len; ++i) f[i] = static_cast<uint8_t>(seed + i * 7);
  return f;
}

constexpr uint64_t kDriverFeatures = virtio::kFVersion1 | net::kFMrgRxbuf | net::kFCsum | net::kFGuestCsum |
                                     net::kFMtu | net::kFMac | virtio::kFIndirectDesc | virtio::kFEventIdx;

class VirtioNetTest : public ::testing::Test {
 protected:
  void SetUp() override { bring_up(kDriverFeatures); }

  void bring_up(uint64_t features) {
    ram.attach(mem);
    dev.set_acked_features(features);
    for (auto* q : {&rxq, &txq}) {
      q->set_features(features);
    }
    ASSERT_TRUE(rxq.set_layout(rx.layout()).has_value());
    ASSERT_TRUE(txq.set_layout(tx.layout()).has_value());
    ASSERT_TRUE(rxq.start().has_value());
    ASSERT_TRUE(txq.start().has_value());
    rxq.set_on_interrupt([this] { ++rx_interrupts; });
    txq.set_on_interrupt([this] { ++tx_interrupts; });
    dev.queue_attached(VirtioNetDevice::kRxQueue, rxq);
    dev.queue_attached(VirtioNetDevice::kTxQueue, txq);
    dev.start(sink);
  }

  // Transmit one frame, header and frame in one buffer (Linux's usual layout).
  uint16_t send(const std::vector<uint8_t>& frame, wire::VnetHdr h = {}) {
    const uint64_t g = ram.alloc(net::kHdrLen + frame.size());
    wire::write_vnet_hdr({ram.at(g), net::kHdrLen}, h, net::kHdrLen);
    ram.write(g + net::kHdrLen, frame);
    const uint16_t head = tx.add_chain({{g, static_cast<uint32_t>(net::kHdrLen + frame.size()), false}});
    dev.queue_notified(VirtioNetDevice::kTxQueue);
    return head;
  }
  // Posts a receive buffer (mergeable mode: one writable buffer per chain).
  uint64_t post_rx(uint32_t len) {
    const uint64_t g = ram.alloc(len);
    rx.add_chain({{g, len, true}});
    rx_bufs[g] = len;
    return g;
  }

  boost::asio::io_context io;
  causeway::testing::FakeClock clock;
  FakeGuestRam ram{8u << 20};
  GuestMemory mem;
  FakeDriverQueue rx{ram, 256};
  FakeDriverQueue tx{ram, 512};
  Virtqueue rxq{mem};
  Virtqueue txq{mem};
  VirtioNetDevice dev{io, clock, VirtioNetConfig{}};
  FakeFrameSink sink;
  std::map<uint64_t, uint32_t> rx_bufs;
  int rx_interrupts = 0;
  int tx_interrupts = 0;
};

TEST_F(VirtioNetTest, TransmitFrameReachesTheSinkInPlace) {
  auto frame = make_frame(1514);
  send(frame);
  ASSERT_EQ(sink.frames.size(), 1u);
  EXPECT_EQ(sink.frames[0], frame);
  EXPECT_EQ(dev.stats().tx_frames, 1u);
  EXPECT_EQ(dev.stats().tx_zero_copy, 1u);
  auto u = tx.take_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->len, 0u);
  EXPECT_GE(tx_interrupts, 1);
}

TEST_F(VirtioNetTest, TransmitFrameSplitOverBuffersIsGathered) {
  auto frame = make_frame(3000);
  const uint64_t h = ram.alloc(net::kHdrLen), a = ram.alloc(1000), b = ram.alloc(2000);
  wire::write_vnet_hdr({ram.at(h), net::kHdrLen}, {}, net::kHdrLen);
  ram.write(a, {frame.data(), 1000});
  ram.write(b, {frame.data() + 1000, 2000});
  tx.add_chain({{h, static_cast<uint32_t>(net::kHdrLen), false}, {a, 1000, false}, {b, 2000, false}});
  dev.queue_notified(VirtioNetDevice::kTxQueue);
  ASSERT_EQ(sink.frames.size(), 1u);
  EXPECT_EQ(sink.frames[0], frame);
  EXPECT_EQ(dev.stats().tx_zero_copy, 0u);
}

TEST_F(VirtioNetTest, HeaderInItsOwnBufferStillZeroCopy) {
  auto frame = make_frame(600);
  const uint64_t h = ram.alloc(net::kHdrLen), a = ram.alloc(600);
  ram.write(a, frame);
  tx.add_chain({{h, static_cast<uint32_t>(net::kHdrLen), false}, {a, 600, false}});
  dev.queue_notified(VirtioNetDevice::kTxQueue);
  ASSERT_EQ(sink.frames.size(), 1u);
  EXPECT_EQ(dev.stats().tx_zero_copy, 1u);
}

// An IPv4/UDP frame whose checksum field holds only the pseudo-header sum,
// as Linux sends it with CHECKSUM_PARTIAL.
std::vector<uint8_t> udp_frame_partial_csum(size_t payload, uint16_t& csum_start, uint16_t& csum_offset) {
  std::vector<uint8_t> f(14 + 20 + 8 + payload);
  f[12] = 0x08;  // IPv4
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  const uint16_t tot = static_cast<uint16_t>(20 + 8 + payload);
  ip[2] = static_cast<uint8_t>(tot >> 8);
  ip[3] = static_cast<uint8_t>(tot);
  ip[8] = 64;
  ip[9] = 17;
  const uint8_t src[4] = {10, 0, 2, 15}, dst[4] = {10, 0, 2, 2};
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  uint8_t* udp = ip + 20;
  udp[0] = 0x30, udp[1] = 0x39, udp[2] = 0x00, udp[3] = 0x35;
  const uint16_t ulen = static_cast<uint16_t>(8 + payload);
  udp[4] = static_cast<uint8_t>(ulen >> 8);
  udp[5] = static_cast<uint8_t>(ulen);
  for (size_t i = 0; i < payload; ++i) udp[8 + i] = static_cast<uint8_t>(i * 13 + 5);
  // Pseudo-header sum (src, dst, proto, length), folded, not complemented.
  std::vector<uint8_t> ph(12);
  std::memcpy(ph.data(), src, 4);
  std::memcpy(ph.data() + 4, dst, 4);
  ph[9] = 17;
  ph[10] = udp[4];
  ph[11] = udp[5];
  const uint16_t partial = wire::checksum_fold(wire::checksum_add(ph));
  wire::store_be16(udp + 6, partial);
  csum_start = 14 + 20;
  csum_offset = 6;
  return f;
}

TEST_F(VirtioNetTest, PartialChecksumIsCompletedBeforeTheEngineSeesIt) {
  uint16_t start = 0, off = 0;
  auto frame = udp_frame_partial_csum(333, start, off);
  wire::VnetHdr h;
  h.flags = wire::kVnetFNeedsCsum;
  h.csum_start = start;
  h.csum_offset = off;
  send(frame, h);
  ASSERT_EQ(sink.frames.size(), 1u);
  const auto& out = sink.frames[0];
  // Verify: the sum over pseudo-header + UDP segment folds to 0xffff.
  std::vector<uint8_t> ph(12);
  std::memcpy(ph.data(), out.data() + 14 + 12, 8);
  ph[9] = 17;
  ph[10] = out[14 + 20 + 4];
  ph[11] = out[14 + 20 + 5];
  const uint32_t s = wire::checksum_add(std::span(out).subspan(start), wire::checksum_add(ph));
  EXPECT_EQ(wire::checksum_fold(s), 0xffff);
  EXPECT_EQ(dev.stats().tx_csum_completed, 1u);
  EXPECT_EQ(dev.stats().tx_zero_copy, 0u);
  // The guest's own buffer is device-readable: untouched.
  EXPECT_NE(sink.last_data, nullptr);
}

TEST_F(VirtioNetTest, ChecksumOffsetsOutsideTheFrameAreMalformed) {
  wire::VnetHdr h;
  h.flags = wire::kVnetFNeedsCsum;
  h.csum_start = 60;
  h.csum_offset = 6;  // field at 66..68 > 64-byte frame
  send(make_frame(64), h);
  EXPECT_TRUE(sink.frames.empty());
  EXPECT_EQ(dev.stats().tx_malformed, 1u);
  EXPECT_TRUE(tx.take_used().has_value());  // the buffer still comes back
}

TEST_F(VirtioNetTest, GsoFramesShortHeadersAndBadChainsAreDroppedAndReturned) {
  wire::VnetHdr gso;
  gso.gso_type = 1;  // TCPV4: never offered
  send(make_frame(100), gso);
  const uint64_t g = ram.alloc(4);
  tx.add_chain({{g, 4, false}});       // shorter than the header
  tx.set_desc(200, 0x1000, 64, 0, 0);  // buffer outside RAM
  tx.publish(200);
  dev.queue_notified(VirtioNetDevice::kTxQueue);
  EXPECT_TRUE(sink.frames.empty());
  EXPECT_EQ(dev.stats().tx_malformed, 3u);
  int returned = 0;
  while (tx.take_used()) ++returned;
  EXPECT_EQ(returned, 3);
}

TEST_F(VirtioNetTest, OversizedTransmitFrameIsDropped) {
  send(make_frame(65520 + 14 + 4 + 1));
  EXPECT_TRUE(sink.frames.empty());
  EXPECT_EQ(dev.stats().tx_oversized, 1u);
}

TEST_F(VirtioNetTest, ReceiveFrameLandsWithAHeader) {
  const uint64_t g = post_rx(2048);
  auto frame = make_frame(1000);
  dev.send_to_guest(frame);
  auto u = rx.take_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->len, net::kHdrLen + 1000);
  auto h = wire::read_vnet_hdr({ram.at(g), net::kHdrLen}, net::kHdrLen);
  EXPECT_EQ(h.num_buffers, 1);
  EXPECT_EQ(h.flags, wire::kVnetFDataValid);
  EXPECT_EQ(h.gso_type, wire::kVnetGsoNone);
  EXPECT_EQ(ram.read(g + net::kHdrLen, 1000), frame);
  EXPECT_EQ(dev.stats().rx_frames, 1u);
  EXPECT_GE(rx_interrupts, 1);
}

TEST_F(VirtioNetTest, BigReceiveFrameMergesBuffers) {
  std::vector<uint64_t> bufs;
  for (int i = 0; i < 20; ++i) bufs.push_back(post_rx(4096));
  auto frame = make_frame(65000);
  dev.send_to_guest(frame);
  const size_t total = net::kHdrLen + frame.size();
  const size_t want_bufs = (total + 4095) / 4096;  // 16
  std::vector<uint8_t> got;
  size_t n = 0;
  while (auto u = rx.take_used()) {
    // Buffers are used in the order they were posted.
    const uint64_t g = bufs[n];
    auto bytes = ram.read(g, u->len);
    got.insert(got.end(), bytes.begin(), bytes.end());
    ++n;
  }
  ASSERT_EQ(n, want_bufs);
  auto h = wire::read_vnet_hdr(got, net::kHdrLen);
  EXPECT_EQ(h.num_buffers, want_bufs);
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + net::kHdrLen, got.end()), frame);
  EXPECT_EQ(dev.stats().rx_buffers, want_bufs);
  // All of the frame's buffers became visible to the driver together: the
  // driver reads num_buffers - 1 more entries right after the first.
  EXPECT_EQ(rxq.stats().used_publishes, 1u);
}

TEST_F(VirtioNetTest, NoBuffersBacklogsThenDeliversOnKick) {
  auto frame = make_frame(1500);
  dev.send_to_guest(frame);
  EXPECT_EQ(dev.stats().rx_backlogged, 1u);
  EXPECT_EQ(dev.rx_backlog_frames(), 1u);
  post_rx(2048);
  dev.queue_notified(VirtioNetDevice::kRxQueue);
  EXPECT_EQ(dev.rx_backlog_frames(), 0u);
  auto u = rx.take_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->len, net::kHdrLen + 1500);
}

TEST_F(VirtioNetTest, PartialBuffersArePutBackNotLost) {
  post_rx(1024);  // too small for the frame on its own
  dev.send_to_guest(make_frame(3000));
  EXPECT_FALSE(rx.take_used().has_value());  // nothing half-written
  EXPECT_EQ(dev.rx_backlog_frames(), 1u);
  post_rx(4096);
  dev.queue_notified(VirtioNetDevice::kRxQueue);
  int n = 0;
  while (rx.take_used()) ++n;
  EXPECT_EQ(n, 2);  // merged over the first (put back) and the new buffer
}

TEST_F(VirtioNetTest, BacklogIsBoundedAndDropsAreCounted) {
  for (size_t i = 0; i < VirtioNetDevice::kRxBacklogFrames + 10; ++i) dev.send_to_guest(make_frame(100));
  EXPECT_EQ(dev.rx_backlog_frames(), VirtioNetDevice::kRxBacklogFrames);
  EXPECT_EQ(dev.stats().rx_drops_no_buffers, 10u);
}

TEST_F(VirtioNetTest, BadReceiveChainsAreReturnedEmptyAheadOfTheFrame) {
  const uint64_t ro = ram.alloc(2048);
  rx.add_chain({{ro, 2048, false}});  // a receive buffer the device may not write
  const uint64_t good = post_rx(2048);
  dev.send_to_guest(make_frame(500));
  auto first = rx.take_used();
  auto second = rx.take_used();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->len, 0u);
  EXPECT_EQ(second->len, net::kHdrLen + 500);
  EXPECT_EQ(dev.stats().rx_malformed, 1u);
  EXPECT_EQ(wire::read_vnet_hdr({ram.at(good), 12}, 12).num_buffers, 1);
}

TEST_F(VirtioNetTest, WithoutMergeableBuffersOneChainMustHoldTheFrame) {
  VirtioNetDevice plain(io, clock, VirtioNetConfig{});
  const uint64_t f = virtio::kFVersion1;
  plain.set_acked_features(f);
  FakeDriverQueue rx2(ram, 16);
  Virtqueue q(mem);
  ASSERT_TRUE(q.set_layout(rx2.layout()).has_value());
  ASSERT_TRUE(q.start().has_value());
  plain.queue_attached(VirtioNetDevice::kRxQueue, q);
  const uint64_t a = ram.alloc(1000), b = ram.alloc(1000);
  rx2.add_chain({{a, 1000, true}, {b, 1000, true}});  // "big packets" style chain
  plain.send_to_guest(make_frame(1500));
  auto u = rx2.take_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->len, 12u + 1500);
  EXPECT_EQ(wire::read_vnet_hdr({ram.at(a), 12}, 12).num_buffers, 1);
  EXPECT_EQ(wire::read_vnet_hdr({ram.at(a), 12}, 12).flags, 0);  // GUEST_CSUM not negotiated
  rx2.add_chain({{ram.alloc(100), 100, true}});
  plain.send_to_guest(make_frame(1500));
  EXPECT_EQ(plain.stats().rx_drops_too_big, 1u);
}

TEST_F(VirtioNetTest, BrokenTransmitQueueIsCountedNotFatal) {
  tx.set_avail_idx(1000);
  dev.queue_notified(VirtioNetDevice::kTxQueue);
  EXPECT_TRUE(txq.broken());
  EXPECT_EQ(dev.stats().broken_queue, 1u);
}

TEST_F(VirtioNetTest, ReceiveBeforeTheDriverIsUpIsDropped) {
  dev.queue_detached(VirtioNetDevice::kRxQueue);
  dev.send_to_guest(make_frame(60));
  EXPECT_EQ(dev.stats().rx_drops_not_ready, 1u);
}

TEST_F(VirtioNetTest, TransmitWorkPerTurnIsBounded) {
  // More frames than one turn's budget: the rest is posted to the loop.
  for (int i = 0; i < VirtioNetDevice::kTxBudget + 20; ++i) {
    const uint64_t g = ram.alloc(net::kHdrLen + 60);
    tx.add_chain({{g, static_cast<uint32_t>(net::kHdrLen + 60), false}});
    if (tx.free_descriptors() == 0) break;
  }
  dev.queue_notified(VirtioNetDevice::kTxQueue);
  EXPECT_EQ(sink.frames.size(), static_cast<size_t>(VirtioNetDevice::kTxBudget));
  io.run();
  EXPECT_EQ(sink.frames.size(), static_cast<size_t>(VirtioNetDevice::kTxBudget + 20));
}

TEST_F(VirtioNetTest, ConfigSpaceHasMacStatusAndMtu) {
  std::array<uint8_t, 12> cfg{};
  ASSERT_TRUE(dev.read_config(0, cfg));
  EXPECT_EQ(cfg[0], 0x52);
  EXPECT_EQ(cfg[6], 1);  // LINK_UP
  uint16_t mtu;
  std::memcpy(&mtu, cfg.data() + 10, 2);
  EXPECT_EQ(mtu, 65520);
  std::array<uint8_t, 4> out{};
  EXPECT_FALSE(dev.read_config(10, out));
  EXPECT_TRUE(dev.set_link_mtu(65520));
  EXPECT_FALSE(dev.set_link_mtu(65521));
}

}  // namespace
}  // namespace causeway::vmm
