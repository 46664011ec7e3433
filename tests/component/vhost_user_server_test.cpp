// The vhost-user server with a real VirtioNetDevice behind it, driven by a
// fake front-end over a socketpair (QEMU's start-up sequence, descriptors
// over SCM_RIGHTS, guest RAM in a memfd) and a fake guest driver on that RAM.
#include "vmm/vhost_user/server.hpp"

#include <gtest/gtest.h>

#include "tests/support/fake_frontend.hpp"
#include "tests/support/fake_guest.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/devices/net_offload.hpp"
#include "vmm/devices/virtio_net.hpp"
#include "vmm/devices/virtio_vsock.hpp"
#include "vmm/virtio_spec.hpp"

namespace causeway::vmm::vhost_user {
namespace {

using testing::FakeDriverQueue;
using testing::FakeFrontend;
using testing::FakeGuestRam;

class CollectingSink final : public netstack::FrameSink {
 public:
  void on_guest_frame(std::span<const uint8_t> f) override { frames.emplace_back(f.begin(), f.end()); }
  std::vector<std::vector<uint8_t>> frames;
};

class VhostUserServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dev.start(sink);
    server.serve(fe.server_end());
  }

  // QEMU's sequence for a vhost-user net device, up to a running device.
  void negotiate(uint64_t features) {
    auto offered = fe.get_u64(Request::kGetFeatures);
    ASSERT_TRUE(offered.has_value());
    ASSERT_TRUE(*offered & kFProtocolFeatures);
    auto pf = fe.get_u64(Request::kGetProtocolFeatures);
    ASSERT_TRUE(pf.has_value());
    ASSERT_TRUE(*pf & kPfReplyAck);
    ASSERT_TRUE(fe.request(Request::kSetProtocolFeatures, FakeFrontend::u64(kPfReplyAck | kPfNetMtu)));
    ASSERT_EQ(fe.acked(Request::kSetOwner, {}), 0u);
    ASSERT_EQ(fe.acked(Request::kSetFeatures, FakeFrontend::u64(features | kFProtocolFeatures)), 0u);
    ASSERT_EQ(fe.acked(Request::kSetMemTable, FakeFrontend::mem_table({ram.spec()}), {ram.fd()}), 0u);
  }
  void bring_up() {
    negotiate(virtio::kFVersion1 | net::kFMrgRxbuf | virtio::kFEventIdx);
    ASSERT_TRUE(fe.setup_ring(0, ram, rx, rx_fds, true));
    ASSERT_TRUE(fe.setup_ring(1, ram, tx, tx_fds, true));
    ASSERT_TRUE(dev.rx_ready());
  }
  void send_frame(const std::vector<uint8_t>& frame) {
    const uint64_t g = ram.alloc(net::kHdrLen + frame.size());
    ram.write(g + net::kHdrLen, frame);
    tx.add_chain({{g, static_cast<uint32_t>(net::kHdrLen + frame.size()), false}});
    tx_fds.kick_now();
  }

  boost::asio::io_context io;
  causeway::testing::FakeClock clock;
  FakeGuestRam ram{4u << 20};
  FakeDriverQueue rx{ram, 256};
  FakeDriverQueue tx{ram, 256};
  FakeFrontend::RingFds rx_fds, tx_fds;
  VirtioNetDevice dev{io, clock, VirtioNetConfig{}};
  CollectingSink sink;
  Server server{io, clock, dev, "test net"};
  FakeFrontend fe{io};
};

TEST_F(VhostUserServerTest, FramesFlowBothWaysThroughSharedMemoryAndEventfds) {
  bring_up();
  std::vector<uint8_t> frame(200, 0x5a);
  send_frame(frame);
  ASSERT_TRUE(causeway::testing::run_until(io, [&] { return !sink.frames.empty(); }));
  EXPECT_EQ(sink.frames[0], frame);
  EXPECT_TRUE(tx.take_used().has_value());
  EXPECT_GE(tx_fds.interrupts(), 1u);

  const uint64_t buf = ram.alloc(2048);
  rx.add_chain({{buf, 2048, true}});
  dev.send_to_guest(frame);
  auto u = rx.take_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->len, net::kHdrLen + 200);
  EXPECT_EQ(ram.read(buf + net::kHdrLen, 200), frame);
  EXPECT_GE(rx_fds.interrupts(), 1u);
  EXPECT_GE(server.stats().session.kicks, 1u);
}

TEST_F(VhostUserServerTest, GetVringBaseStopsTheRingAndReportsTheIndex) {
  bring_up();
  send_frame(std::vector<uint8_t>(60, 1));
  send_frame(std::vector<uint8_t>(60, 2));
  ASSERT_TRUE(causeway::testing::run_until(io, [&] { return sink.frames.size() == 2; }));
  auto reply = fe.request(Request::kGetVringBase, FakeFrontend::state(1, 0), {}, true);
  ASSERT_TRUE(reply && reply->size() == 8);
  uint32_t idx, num;
  std::memcpy(&idx, reply->data(), 4);
  std::memcpy(&num, reply->data() + 4, 4);
  EXPECT_EQ(idx, 1u);
  EXPECT_EQ(num, 2u);
  send_frame(std::vector<uint8_t>(60, 3));  // the ring is stopped: ignored
  fe.pump();
  EXPECT_EQ(sink.frames.size(), 2u);
}

TEST_F(VhostUserServerTest, RingsWaitForEnableWhenProtocolFeaturesAreNegotiated) {
  negotiate(virtio::kFVersion1);
  ASSERT_TRUE(fe.setup_ring(0, ram, rx, rx_fds, false));
  ASSERT_TRUE(fe.setup_ring(1, ram, tx, tx_fds, false));
  EXPECT_FALSE(dev.rx_ready());
  send_frame(std::vector<uint8_t>(60, 1));
  fe.pump();
  EXPECT_TRUE(sink.frames.empty());
  ASSERT_EQ(fe.acked(Request::kSetVringEnable, FakeFrontend::state(1, 1)), 0u);
  EXPECT_EQ(sink.frames.size(), 1u);  // the kick that came while disabled is honoured
}

TEST_F(VhostUserServerTest, VringOutsideRamIsRefused) {
  negotiate(virtio::kFVersion1);
  ASSERT_EQ(fe.acked(Request::kSetVringNum, FakeFrontend::state(0, 256)), 0u);
  const uint64_t outside = ram.uva() + (8u << 20);
  EXPECT_EQ(fe.acked(Request::kSetVringAddr, FakeFrontend::addr(0, outside, ram.uva(), ram.uva() + 8192)), 1u);
  // Straddling the end of RAM is refused too.
  const uint64_t tail = ram.uva() + (4u << 20) - 64;
  EXPECT_EQ(fe.acked(Request::kSetVringAddr, FakeFrontend::addr(0, tail, ram.uva(), ram.uva() + 8192)), 1u);
  EXPECT_TRUE(server.connected());
  EXPECT_GE(server.stats().session.rejected, 2u);
}

TEST_F(VhostUserServerTest, MemTableThatStrandsARingIsRefused) {
  bring_up();
  auto spec = ram.spec();
  spec.user_addr += 1ull << 32;  // same RAM, but QEMU's addresses moved: rings no longer inside
  EXPECT_EQ(fe.acked(Request::kSetMemTable, FakeFrontend::mem_table({spec}), {ram.fd()}), 1u);
  // The old table is still in force: traffic continues.
  send_frame(std::vector<uint8_t>(60, 7));
  ASSERT_TRUE(causeway::testing::run_until(io, [&] { return sink.frames.size() == 1; }));
}

TEST_F(VhostUserServerTest, BadMemTableIsRefused) {
  negotiate(virtio::kFVersion1);
  auto spec = ram.spec();
  spec.size = 64u << 20;  // larger than the memfd
  EXPECT_EQ(fe.acked(Request::kSetMemTable, FakeFrontend::mem_table({spec}), {ram.fd()}), 1u);
}

TEST_F(VhostUserServerTest, MalformedFrameClosesTheConnectionAndResetsTheDevice) {
  bring_up();
  std::vector<uint8_t> junk = encode_request(Request::kSetOwner, {});
  const uint32_t bad_flags = 0;
  std::memcpy(junk.data() + 4, &bad_flags, 4);
  fe.send_raw(junk);
  EXPECT_TRUE(fe.closed_by_server());
  EXPECT_FALSE(server.connected());
  EXPECT_FALSE(dev.rx_ready());
  EXPECT_EQ(server.stats().frame_errors, 1u);
}

TEST_F(VhostUserServerTest, WrongPayloadSizeClosesTheConnection) {
  negotiate(virtio::kFVersion1);
  fe.send_raw(encode_request(Request::kSetVringNum, std::vector<uint8_t>(3)));
  EXPECT_TRUE(fe.closed_by_server());
  EXPECT_EQ(server.stats().protocol_errors, 1u);
}

TEST_F(VhostUserServerTest, UnknownRequestGetsAnErrorReplyOrACloseWithoutOne) {
  negotiate(virtio::kFVersion1);
  auto p = fe.request(static_cast<Request>(999), {}, {}, true, kFlagNeedReply);
  ASSERT_TRUE(p && p->size() == 8);
  EXPECT_NE((*p)[0], 0);
  EXPECT_TRUE(server.connected());
  EXPECT_EQ(server.stats().session.unsupported, 1u);
  fe.send_raw(encode_request(Request::kSetLogBase, FakeFrontend::u64(0)));
  EXPECT_TRUE(fe.closed_by_server());
}

TEST_F(VhostUserServerTest, UnofferedFeaturesAreRefused) {
  ASSERT_TRUE(fe.request(Request::kSetProtocolFeatures, FakeFrontend::u64(kPfReplyAck)));
  EXPECT_EQ(fe.acked(Request::kSetFeatures, FakeFrontend::u64(virtio::kFRingPacked)), 1u);
  EXPECT_EQ(fe.acked(Request::kSetProtocolFeatures, FakeFrontend::u64(kPfMq)), 1u);
}

TEST_F(VhostUserServerTest, TooManyFdsClosesTheConnection) {
  std::vector<UniqueFd> owned;
  std::vector<int> fds;
  for (int i = 0; i < 12; ++i) {
    owned.emplace_back(::eventfd(0, EFD_CLOEXEC));
    fds.push_back(owned.back().get());
  }
  fe.send_raw(encode_request(Request::kSetOwner, {}), fds);
  EXPECT_TRUE(fe.closed_by_server());
}

TEST_F(VhostUserServerTest, ReconnectStartsFromScratch) {
  bring_up();
  fe.close();
  ASSERT_TRUE(causeway::testing::run_until(io, [&] { return !server.connected(); }));
  EXPECT_FALSE(dev.rx_ready());
  EXPECT_EQ(dev.acked_features(), 0u);
  // QEMU reconnects (reconnect=1) and replays the set-up.
  FakeFrontend again(io);
  server.serve(again.server_end());
  ASSERT_TRUE(again.get_u64(Request::kGetFeatures).has_value());
  ASSERT_TRUE(again.request(Request::kSetProtocolFeatures, FakeFrontend::u64(kPfReplyAck)));
  ASSERT_EQ(again.acked(Request::kSetFeatures, FakeFrontend::u64(virtio::kFVersion1)), 0u);
  ASSERT_EQ(again.acked(Request::kSetMemTable, FakeFrontend::mem_table({ram.spec()}), {ram.fd()}), 0u);
  FakeFrontend::RingFds t2;
  ASSERT_TRUE(again.setup_ring(1, ram, tx, t2, false));
  EXPECT_EQ(server.stats().connections, 2u);
  EXPECT_EQ(server.stats().disconnects, 1u);
}

TEST_F(VhostUserServerTest, NewConnectionReplacesTheOldOne) {
  bring_up();
  FakeFrontend second(io);
  server.serve(second.server_end());
  EXPECT_TRUE(fe.closed_by_server());
  EXPECT_EQ(server.stats().replaced, 1u);
  EXPECT_FALSE(dev.rx_ready());
}

TEST_F(VhostUserServerTest, NetMtuIsCheckedAgainstTheEngine) {
  negotiate(virtio::kFVersion1 | net::kFMtu);
  EXPECT_EQ(fe.acked(Request::kNetSetMtu, FakeFrontend::u64(65520)), 0u);
  EXPECT_EQ(fe.acked(Request::kNetSetMtu, FakeFrontend::u64(70000)), 1u);
}

TEST_F(VhostUserServerTest, GuestThatBreaksAQueueSignalsTheErrorFd) {
  bring_up();
  FakeFrontend::RingFds errfd;  // use its call fd as the error eventfd
  ASSERT_EQ(fe.acked(Request::kSetVringErr, FakeFrontend::u64(1), {errfd.call.get()}), 0u);
  tx.set_avail_idx(4000);
  tx_fds.kick_now();
  ASSERT_TRUE(causeway::testing::run_until(io, [&] { return server.stats().session.broken_queues == 1; }));
  EXPECT_EQ(errfd.interrupts(), 1u);
  EXPECT_EQ(dev.stats().broken_queue, 1u);
}

TEST(VhostUserServerListen, ListensReplacesStaleSocketsAndRefusesLiveOnes) {
  boost::asio::io_context io;
  causeway::testing::FakeClock clock;
  VirtioNetDevice dev{io, clock, VirtioNetConfig{}};
  char dir[] = "/tmp/cw-vu-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/net.sock";
  {
    Server a(io, clock, dev, "a");
    ASSERT_TRUE(a.listen(path).has_value());
    Server b(io, clock, dev, "b");
    EXPECT_TRUE(b.listen(path).has_error());  // live
    boost::asio::local::stream_protocol::socket c(io);
    c.connect(boost::asio::local::stream_protocol::endpoint(path));
    ASSERT_TRUE(causeway::testing::run_until(io, [&] { return a.connected(); }));
  }
  // A leftover socket file from a crashed process.
  { boost::asio::local::stream_protocol::acceptor stale(io, boost::asio::local::stream_protocol::endpoint(path)); }
  Server d(io, clock, dev, "d");
  EXPECT_TRUE(d.listen(path).has_value());
  d.close();
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
  ::rmdir(dir);
}

}  // namespace
}  // namespace causeway::vmm::vhost_user

namespace causeway::vmm::vhost_user {
namespace {

TEST(VhostUserVsock, GuestCidIsServedThroughGetConfig) {
  boost::asio::io_context io;
  causeway::testing::FakeClock clock;
  VirtioVsockConfig cfg;
  cfg.guest_cid = 42;
  VirtioVsockDevice dev(io, clock, cfg);
  Server server(io, clock, dev, "test vsock");
  FakeFrontend fe(io);
  server.serve(fe.server_end());
  auto pf = fe.get_u64(Request::kGetProtocolFeatures);
  ASSERT_TRUE(pf.has_value());
  EXPECT_TRUE(*pf & kPfConfig);
  EXPECT_FALSE(*pf & kPfNetMtu);
  ASSERT_TRUE(fe.request(Request::kSetProtocolFeatures, FakeFrontend::u64(kPfReplyAck | kPfConfig)));
  std::vector<uint8_t> req(12 + 8);
  const uint32_t size = 8;
  std::memcpy(req.data() + 4, &size, 4);
  auto reply = fe.request(Request::kGetConfig, req, {}, true);
  ASSERT_TRUE(reply && reply->size() == 20);
  uint64_t cid;
  std::memcpy(&cid, reply->data() + 12, 8);
  EXPECT_EQ(cid, 42u);
  // Past the 8-byte config space: an empty reply says "failed".
  const uint32_t off = 4;
  std::memcpy(req.data(), &off, 4);
  reply = fe.request(Request::kGetConfig, req, {}, true);
  ASSERT_TRUE(reply.has_value());
  EXPECT_TRUE(reply->empty());
  EXPECT_TRUE(server.connected());
}

}  // namespace
}  // namespace causeway::vmm::vhost_user
