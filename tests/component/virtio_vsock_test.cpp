// VirtioVsockDevice driven the way Linux's virtio vsock transport drives it:
// receive buffers of a 44-byte header descriptor plus a 4 KiB payload
// descriptor, packets sent as header + payload descriptors, kicks; asserting
// on packets, stream callbacks and counters.
#include "vmm/devices/virtio_vsock.hpp"

#include <gtest/gtest.h>

#include <boost/asio/error.hpp>
#include <map>
#include <string>

#include "tests/support/fake_guest.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/virtio_spec.hpp"

namespace causeway::vmm {
namespace {

using testing::FakeDriverQueue;
using testing::FakeGuestRam;
using vsock::Header;
using vsock::Op;

constexpr uint64_t kGuestCid = 3;

struct Packet {
  Header h;
  std::string payload;
  [[nodiscard]] Op op() const { return static_cast<Op>(h.op); }
};

// The guest's side of the device.
class FakeVsockGuest {
 public:
  FakeVsockGuest(FakeGuestRam& ram, FakeDriverQueue& rx, FakeDriverQueue& tx) : ram_(ram), rx_(rx), tx_(tx) {}

  void post_rx(int n, uint32_t payload = 4096) {
    for (int i = 0; i < n; ++i) {
      const uint64_t h = ram_.alloc(vsock::kHdrSize), b = ram_.alloc(payload);
      const uint16_t head = rx_.add_chain({{h, vsock::kHdrSize, true}, {b, payload, true}});
      bufs_[head] = {h, b};
    }
  }
  std::vector<Packet> received() {
    std::vector<Packet> out;
    while (auto u = rx_.take_used()) {
      auto [h, b] = bufs_.at(static_cast<uint16_t>(u->id));
      bufs_.erase(static_cast<uint16_t>(u->id));
      if (u->len < vsock::kHdrSize) continue;
      Packet p;
      p.h = vsock::parse_header(std::span<const uint8_t>(ram_.at(h), vsock::kHdrSize));
      const auto body = ram_.read(b, u->len - vsock::kHdrSize);
      p.payload.assign(body.begin(), body.end());
      out.push_back(p);
    }
    return out;
  }
  Header hdr(Op op, uint32_t src_port, uint32_t dst_port, uint32_t len = 0) {
    Header h;
    h.src_cid = kGuestCid;
    h.dst_cid = vsock::kHostCid;
    h.src_port = src_port;
    h.dst_port = dst_port;
    h.len = len;
    h.op = static_cast<uint16_t>(op);
    h.buf_alloc = buf_alloc;
    h.fwd_cnt = fwd_cnt;
    return h;
  }
  void send(const Header& h, std::string_view payload = {}) {
    const uint64_t g = ram_.alloc(vsock::kHdrSize);
    vsock::write_header(std::span<uint8_t>(ram_.at(g), vsock::kHdrSize), h);
    if (payload.empty()) {
      tx_.add_chain({{g, vsock::kHdrSize, false}});
    } else {
      const uint64_t p = ram_.alloc(payload.size());
      ram_.write(p, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
      tx_.add_chain({{g, vsock::kHdrSize, false}, {p, static_cast<uint32_t>(payload.size()), false}});
    }
  }
  uint32_t buf_alloc = 64 * 1024;
  uint32_t fwd_cnt = 0;

 private:
  FakeGuestRam& ram_;
  FakeDriverQueue& rx_;
  FakeDriverQueue& tx_;
  std::map<uint16_t, std::pair<uint64_t, uint64_t>> bufs_;
};

class VirtioVsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ram.attach(mem);
    for (auto [q, d] : {std::pair{&rxq, &rx}, std::pair{&txq, &tx}}) {
      q->set_features(virtio::kFVersion1);
      ASSERT_TRUE(q->set_layout(d->layout()).has_value());
      ASSERT_TRUE(q->start().has_value());
    }
    dev.set_acked_features(virtio::kFVersion1);
    dev.queue_attached(VirtioVsockDevice::kRxQueue, rxq);
    dev.queue_attached(VirtioVsockDevice::kTxQueue, txq);
    guest.post_rx(64);
  }
  void kick() {
    dev.queue_notified(VirtioVsockDevice::kTxQueue);
    pump();
    while (tx.take_used()) {}
  }
  void pump() {
    for (int i = 0; i < 10; ++i) {
      io.restart();
      io.poll();
    }
  }
  // Guest connects from `gport` to host port `hport`; returns the accepted stream.
  std::shared_ptr<VsockStream> guest_connects(uint32_t gport, uint32_t hport) {
    std::shared_ptr<VsockStream> accepted;
    dev.listen(hport, [&](std::shared_ptr<VsockStream> s) { accepted = std::move(s); });
    guest.send(guest.hdr(Op::kRequest, gport, hport));
    kick();
    auto pk = guest.received();
    EXPECT_EQ(pk.size(), 1u);
    if (!pk.empty()) {
      EXPECT_EQ(pk[0].op(), Op::kResponse);
      EXPECT_EQ(pk[0].h.dst_port, gport);
      EXPECT_EQ(pk[0].h.src_port, hport);
      EXPECT_EQ(pk[0].h.dst_cid, kGuestCid);
      EXPECT_EQ(pk[0].h.buf_alloc, cfg.buf_alloc);
    }
    return accepted;
  }

  boost::asio::io_context io;
  causeway::testing::FakeClock clock;
  FakeGuestRam ram{16u << 20};
  GuestMemory mem;
  FakeDriverQueue rx{ram, 256};
  FakeDriverQueue tx{ram, 256};
  Virtqueue rxq{mem};
  Virtqueue txq{mem};
  VirtioVsockConfig cfg = [] {
    VirtioVsockConfig c;
    c.guest_cid = kGuestCid;
    c.buf_alloc = 64 * 1024;
    c.tx_queue_bytes = 32 * 1024;
    c.max_connections = 8;
    c.connect_timeout = std::chrono::milliseconds(50);
    return c;
  }();
  VirtioVsockDevice dev{io, clock, cfg};
  FakeVsockGuest guest{ram, rx, tx};
};

TEST_F(VirtioVsockTest, ConfigSpaceHoldsTheGuestCid) {
  std::array<uint8_t, 8> c{};
  ASSERT_TRUE(dev.read_config(0, c));
  EXPECT_EQ(c[0], kGuestCid);
  EXPECT_FALSE(dev.read_config(4, c));
}

TEST_F(VirtioVsockTest, GuestConnectIsAcceptedAndDataFlowsBothWays) {
  auto s = guest_connects(1025, 9000);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->guest_port(), 1025u);
  std::string got;
  s->set_on_data([&](std::span<const uint8_t> d) { got.append(d.begin(), d.end()); });
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 5), "hello");
  kick();
  EXPECT_EQ(got, "hello");

  const std::string reply = "world!";
  EXPECT_EQ(s->write(std::span(reinterpret_cast<const uint8_t*>(reply.data()), reply.size())), reply.size());
  pump();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kRw);
  EXPECT_EQ(pk[0].payload, reply);
  EXPECT_EQ(pk[0].h.fwd_cnt, 5u);  // our credit rides on every packet
  EXPECT_EQ(dev.stats().accepted, 1u);
  EXPECT_EQ(dev.stats().tx_bytes, 5u);
  EXPECT_EQ(dev.stats().rx_bytes, reply.size());
}

TEST_F(VirtioVsockTest, DataBeforeOnDataIsKeptAndHandedOverLater) {
  auto s = guest_connects(1025, 9000);
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 3), "abc");
  kick();
  std::string got;
  s->set_on_data([&](std::span<const uint8_t> d) { got.append(d.begin(), d.end()); });
  EXPECT_EQ(got, "");  // not inside set_on_data
  pump();
  EXPECT_EQ(got, "abc");
}

TEST_F(VirtioVsockTest, PausedReceiveHoldsDataAndWithholdsCredit) {
  auto s = guest_connects(1025, 9000);
  std::string got;
  s->set_on_data([&](std::span<const uint8_t> d) { got.append(d.begin(), d.end()); });
  s->set_receive_paused(true);
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 3), "abc");
  kick();
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 3), "def");
  kick();
  EXPECT_EQ(got, "");
  // No credit was returned for held bytes: a paused stream stops the guest's sender.
  for (const auto& pk : guest.received()) EXPECT_EQ(pk.h.fwd_cnt, 0u);
  s->set_receive_paused(false);
  pump();
  EXPECT_EQ(got, "abcdef");
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 1), "g");
  kick();
  EXPECT_EQ(got, "abcdefg");  // in order, and straight through again
}

TEST_F(VirtioVsockTest, GuestCloseWhilePausedDeliversTheDataBeforeTheEnd) {
  auto s = guest_connects(1025, 9000);
  std::string got;
  std::vector<std::string> events;
  s->set_on_data([&](std::span<const uint8_t> d) {
    got.append(d.begin(), d.end());
    events.emplace_back("data");
  });
  s->set_on_eof([&] { events.emplace_back("eof"); });
  s->set_on_closed([&](std::string_view) { events.emplace_back("closed"); });
  s->set_receive_paused(true);
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 4), "tail");
  kick();
  auto sh = guest.hdr(Op::kShutdown, 1025, 9000);
  sh.flags = vsock::kShutdownMask;  // Linux's close(): both directions
  guest.send(sh);
  kick();
  EXPECT_TRUE(events.empty()) << "nothing may end the stream before its held bytes are delivered";
  s->set_receive_paused(false);
  pump();
  EXPECT_EQ(got, "tail");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], "data");
  EXPECT_EQ(events[1], "eof");
  EXPECT_EQ(events[2], "closed");
}

TEST_F(VirtioVsockTest, HostToGuestRespectsTheGuestsCredit) {
  guest.buf_alloc = 1000;
  auto s = guest_connects(1025, 9000);
  std::string big(5000, 'x');
  EXPECT_EQ(s->write(std::span(reinterpret_cast<const uint8_t*>(big.data()), big.size())), 5000u);
  pump();
  auto pk = guest.received();
  size_t data = 0;
  bool asked = false;
  for (auto& p : pk) {
    if (p.op() == Op::kRw) data += p.payload.size();
    if (p.op() == Op::kCreditRequest) asked = true;
  }
  EXPECT_EQ(data, 1000u);  // exactly the credit
  EXPECT_TRUE(asked);
  // The guest consumes and says so.
  guest.fwd_cnt = 1000;
  guest.buf_alloc = 100000;
  guest.send(guest.hdr(Op::kCreditUpdate, 1025, 9000));
  kick();
  data = 0;
  for (auto& p : guest.received())
    if (p.op() == Op::kRw) data += p.payload.size();
  EXPECT_EQ(data, 4000u);
}

TEST_F(VirtioVsockTest, WriteIsBoundedAndOnWritableFollows) {
  auto s = guest_connects(1025, 9000);
  int writable = 0;
  s->set_on_writable([&] { ++writable; });
  std::string chunk(20 * 1024, 'y');
  const auto span = std::span(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
  EXPECT_EQ(s->write(span), chunk.size());
  EXPECT_EQ(s->write(span), 12u * 1024);  // the 32 KiB queue is full
  EXPECT_EQ(s->write(span), 0u);
  pump();  // 64 rx buffers of 4 KiB drain it
  EXPECT_EQ(writable, 1);
}

TEST_F(VirtioVsockTest, GuestSendsBeyondItsCreditAndIsReset) {
  auto s = guest_connects(1025, 9000);  // no on_data: nothing is consumed
  std::string closed;
  s->set_on_closed([&](std::string_view why) { closed = why; });
  std::string chunk(60000, 'z');
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 60000), chunk);
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 60000), chunk);  // 120000 > 64 KiB advertised
  kick();
  EXPECT_EQ(dev.stats().credit_violations, 1u);
  EXPECT_EQ(closed, "credit exceeded");
  auto pk = guest.received();
  ASSERT_FALSE(pk.empty());
  EXPECT_EQ(pk.back().op(), Op::kRst);
}

TEST_F(VirtioVsockTest, CreditUpdateIsSentAsTheHostConsumes) {
  auto s = guest_connects(1025, 9000);
  s->set_on_data([](std::span<const uint8_t>) {});
  std::string chunk(20000, 'q');
  guest.send(guest.hdr(Op::kRw, 1025, 9000, 20000), chunk);
  kick();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kCreditUpdate);
  EXPECT_EQ(pk[0].h.fwd_cnt, 20000u);
  guest.send(guest.hdr(Op::kCreditRequest, 1025, 9000));
  kick();
  pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kCreditUpdate);
}

TEST_F(VirtioVsockTest, GuestShutdownGivesEofThenFullCloseGetsAnRst) {
  auto s = guest_connects(1025, 9000);
  int eof = 0;
  std::string closed;
  s->set_on_eof([&] { ++eof; });
  s->set_on_closed([&](std::string_view why) { closed = why; });
  auto sh = guest.hdr(Op::kShutdown, 1025, 9000);
  sh.flags = vsock::kShutdownSend;
  guest.send(sh);
  kick();
  EXPECT_EQ(eof, 1);
  EXPECT_TRUE(closed.empty());
  sh.flags = vsock::kShutdownMask;
  guest.send(sh);
  kick();
  EXPECT_EQ(eof, 1);
  EXPECT_EQ(closed, "closed by guest");
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kRst);
  EXPECT_EQ(dev.stats().connections, 0u);
}

TEST_F(VirtioVsockTest, HostShutdownWriteAfterDataThenCloseResets) {
  auto s = guest_connects(1025, 9000);
  const std::string d = "bye";
  s->write(std::span(reinterpret_cast<const uint8_t*>(d.data()), d.size()));
  s->shutdown_write();
  pump();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 2u);
  EXPECT_EQ(pk[0].op(), Op::kRw);
  EXPECT_EQ(pk[1].op(), Op::kShutdown);
  EXPECT_EQ(pk[1].h.flags, vsock::kShutdownSend);
  std::string closed;
  s->set_on_closed([&](std::string_view why) { closed = why; });
  s->close();
  EXPECT_TRUE(closed.empty());  // callbacks never run inside close()
  pump();
  EXPECT_EQ(closed, "closed by host");
  pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kRst);
}

TEST_F(VirtioVsockTest, DroppingTheLastReferenceResetsTheStream) {
  auto s = guest_connects(1025, 9000);
  s.reset();
  pump();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kRst);
  EXPECT_EQ(dev.stats().connections, 0u);
}

TEST_F(VirtioVsockTest, RequestToAPortNobodyListensOnGetsAnRst) {
  guest.send(guest.hdr(Op::kRequest, 1025, 7777));
  kick();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kRst);
  EXPECT_EQ(pk[0].h.dst_port, 1025u);
  EXPECT_EQ(pk[0].h.src_port, 7777u);
  EXPECT_EQ(dev.stats().refused, 1u);
}

TEST_F(VirtioVsockTest, RstIsNeverAnsweredWithAnRst) {
  guest.send(guest.hdr(Op::kRst, 1025, 7777));
  kick();
  EXPECT_TRUE(guest.received().empty());
}

TEST_F(VirtioVsockTest, FloodOfUnknownConnectionsIsRateLimitedAndBounded) {
  int sent = 0;
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 100; ++i) {
      guest.send(guest.hdr(Op::kRw, 2000 + static_cast<uint32_t>(i), 7777, 1), "x");
      ++sent;
    }
    kick();
    const auto got = guest.received();
    if (!got.empty()) guest.post_rx(static_cast<int>(got.size()));
  }
  const auto st = dev.stats();
  EXPECT_EQ(st.unknown_connection, static_cast<uint64_t>(sent));
  EXPECT_LE(st.rst_sent, static_cast<uint64_t>(VirtioVsockDevice::kRstBurst));  // the clock did not move
  EXPECT_EQ(st.rst_sent + st.rst_suppressed, static_cast<uint64_t>(sent));
  EXPECT_EQ(st.connections, 0u);
  // Time passes: the bucket refills.
  clock.advance(std::chrono::seconds(1));
  guest.send(guest.hdr(Op::kRw, 1, 7777, 1), "x");
  kick();
  EXPECT_EQ(dev.stats().rst_sent, st.rst_sent + 1);
}

TEST_F(VirtioVsockTest, ConnectionTableIsBounded) {
  std::vector<std::shared_ptr<VsockStream>> keep;
  dev.listen(9000, [&](std::shared_ptr<VsockStream> s) { keep.push_back(std::move(s)); });
  for (uint32_t p = 0; p < 10; ++p) guest.send(guest.hdr(Op::kRequest, 3000 + p, 9000));
  kick();
  EXPECT_EQ(keep.size(), 8u);
  EXPECT_EQ(dev.stats().table_full, 2u);
  int rsts = 0;
  for (auto& p : guest.received()) rsts += p.op() == Op::kRst;
  EXPECT_EQ(rsts, 2);
}

TEST_F(VirtioVsockTest, HostConnectsToTheGuest) {
  boost::system::error_code result = boost::asio::error::would_block;
  std::shared_ptr<VsockStream> stream;
  dev.connect(52, [&](boost::system::error_code ec, std::shared_ptr<VsockStream> s) {
    result = ec;
    stream = std::move(s);
  });
  pump();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].op(), Op::kRequest);
  EXPECT_EQ(pk[0].h.dst_port, 52u);
  const uint32_t host_port = pk[0].h.src_port;
  guest.send(guest.hdr(Op::kResponse, 52, host_port));
  kick();
  EXPECT_FALSE(result);
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->guest_port(), 52u);
}

TEST_F(VirtioVsockTest, HostConnectRefusedByTheGuest) {
  boost::system::error_code result;
  dev.connect(52, [&](boost::system::error_code ec, std::shared_ptr<VsockStream>) { result = ec; });
  pump();
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 1u);
  guest.send(guest.hdr(Op::kRst, 52, pk[0].h.src_port));
  kick();
  EXPECT_EQ(result, boost::asio::error::connection_refused);
}

TEST_F(VirtioVsockTest, HostConnectTimesOut) {
  boost::system::error_code result;
  bool done = false;
  dev.connect(52, [&](boost::system::error_code ec, std::shared_ptr<VsockStream>) {
    result = ec;
    done = true;
  });
  ASSERT_TRUE(causeway::testing::run_until(
      io, [&] { return done; }, std::chrono::seconds(2)));
  pump();
  EXPECT_EQ(result, boost::asio::error::timed_out);
  auto pk = guest.received();
  ASSERT_EQ(pk.size(), 2u);
  EXPECT_EQ(pk[1].op(), Op::kRst);
}

TEST_F(VirtioVsockTest, ConnectBeforeTheDriverIsUpFails) {
  dev.queue_detached(VirtioVsockDevice::kRxQueue);
  boost::system::error_code result;
  dev.connect(52, [&](boost::system::error_code ec, std::shared_ptr<VsockStream>) { result = ec; });
  pump();
  EXPECT_EQ(result, boost::asio::error::not_connected);
}

TEST_F(VirtioVsockTest, MalformedPacketsAreCountedAndReturned) {
  auto h = guest.hdr(Op::kRequest, 1025, 9000);
  h.src_cid = 99;  // spoofed
  guest.send(h);
  auto bad_op = guest.hdr(Op::kRequest, 1025, 9000);
  bad_op.op = 42;
  guest.send(bad_op);
  const uint64_t g = ram.alloc(10);
  tx.add_chain({{g, 10, false}});  // short
  dev.queue_notified(VirtioVsockDevice::kTxQueue);
  const auto st = dev.stats();
  EXPECT_EQ(st.malformed, 3u);
  EXPECT_EQ(st.bad_packets[static_cast<size_t>(vsock::PacketCheck::kWrongSource)], 1u);
  EXPECT_EQ(st.bad_packets[static_cast<size_t>(vsock::PacketCheck::kBadOp)], 1u);
  EXPECT_EQ(st.bad_packets[static_cast<size_t>(vsock::PacketCheck::kShort)], 1u);
  int returned = 0;
  while (tx.take_used()) ++returned;
  EXPECT_EQ(returned, 3);
}

TEST_F(VirtioVsockTest, NoReceiveBuffersMeansWaitingNotLosing) {
  guest.buf_alloc = 1u << 30;
  auto s = guest_connects(1025, 9000);  // uses 1 of the 64 posted buffers
  const std::string chunk(32 * 1024, 'w');
  const auto span = std::span(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
  size_t written = 0;
  for (int i = 0; i < 9; ++i) {  // 9 × 8 packets > 63 buffers
    written += s->write(span);
    pump();
  }
  EXPECT_GT(dev.stats().rx_stalls, 0u);
  size_t got = 0;
  for (auto& p : guest.received()) got += p.payload.size();
  EXPECT_LT(got, written);
  guest.post_rx(64);
  dev.queue_notified(VirtioVsockDevice::kRxQueue);
  pump();
  for (auto& p : guest.received()) got += p.payload.size();
  EXPECT_EQ(got, written);
}

TEST_F(VirtioVsockTest, DeviceResetEndsStreamsAndPendingConnects) {
  auto s = guest_connects(1025, 9000);
  std::string closed;
  s->set_on_closed([&](std::string_view why) { closed = why; });
  boost::system::error_code result;
  dev.connect(52, [&](boost::system::error_code ec, std::shared_ptr<VsockStream>) { result = ec; });
  dev.reset();
  EXPECT_EQ(closed, "device reset");
  EXPECT_EQ(result, boost::asio::error::connection_reset);
  EXPECT_EQ(s->write(std::span<const uint8_t>()), 0u);
  EXPECT_EQ(dev.stats().connections, 0u);
}

TEST_F(VirtioVsockTest, GuestStoppingBothQueuesEndsItsStreams) {
  auto s = guest_connects(1025, 9000);
  std::string closed;
  s->set_on_closed([&](std::string_view why) { closed = why; });
  dev.queue_detached(VirtioVsockDevice::kRxQueue);
  EXPECT_TRUE(closed.empty());  // one queue stopping is not a reset
  dev.queue_detached(VirtioVsockDevice::kTxQueue);
  EXPECT_EQ(closed, "guest stopped the device");
  EXPECT_EQ(dev.stats().connections, 0u);
}

}  // namespace
}  // namespace causeway::vmm
