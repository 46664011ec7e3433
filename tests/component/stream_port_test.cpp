// The QEMU stream port over a real socketpair: frames in both directions,
// and a hostile peer (bogus length, disconnect mid-frame) ends only its own connection.
#include "netstack/stream_port.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tests/support/fakes.hpp"

namespace causeway::netstack {
namespace {
namespace asio = boost::asio;
using causeway::testing::run_until;

class CollectingSink final : public FrameSink {
 public:
  void on_guest_frame(std::span<const uint8_t> f) override { frames.emplace_back(f.begin(), f.end()); }
  std::vector<std::string> frames;
};

class StreamPortTest : public ::testing::Test {
 protected:
  StreamPortTest() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer = sv[1];
    asio::local::stream_protocol::socket s(io);
    s.assign(asio::local::stream_protocol(), sv[0]);
    port = std::make_unique<StreamFramePort>(std::move(s), 1514, [this](const std::string& why) { closed = why; });
    port->start(sink);
  }
  ~StreamPortTest() override { ::close(peer); }

  void peer_send(const std::string& bytes) {
    ASSERT_EQ(::write(peer, bytes.data(), bytes.size()), (ssize_t)bytes.size());
  }
  static std::string framed(const std::string& f) {
    auto h = encode_stream_header(static_cast<uint32_t>(f.size()));
    return std::string(h.begin(), h.end()) + f;
  }

  asio::io_context io;
  int peer = -1;
  CollectingSink sink;
  std::unique_ptr<StreamFramePort> port;
  std::string closed;
};

TEST_F(StreamPortTest, DeliversFramesBothWays) {
  peer_send(framed("frame one") + framed("frame two"));
  ASSERT_TRUE(run_until(io, [&] { return sink.frames.size() == 2; }));
  EXPECT_EQ(sink.frames[1], "frame two");
  const std::string out = "to the guest";
  port->send_to_guest(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  run_until(
      io, [] { return false; }, std::chrono::milliseconds(50));
  char buf[64];
  const ssize_t n = ::read(peer, buf, sizeof buf);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), framed(out));
}

TEST_F(StreamPortTest, BogusLengthEndsTheConnectionAndIsCounted) {
  peer_send(framed("ok") + std::string("\x7f\xff\xff\xff", 4) + "garbage");
  ASSERT_TRUE(run_until(io, [&] { return !closed.empty(); }));
  EXPECT_EQ(sink.frames.size(), 1u);
  EXPECT_EQ(port->stats().bad_length, 1u);
  EXPECT_NE(closed.find("length"), std::string::npos) << closed;
}

TEST_F(StreamPortTest, DisconnectMidFrameIsCounted) {
  const std::string f = framed("a frame that will be cut");
  peer_send(f.substr(0, 10));
  ::close(peer);
  peer = -1;
  ASSERT_TRUE(run_until(io, [&] { return !closed.empty(); }));
  EXPECT_EQ(port->stats().truncated_close, 1u);
  EXPECT_TRUE(sink.frames.empty());
}

TEST_F(StreamPortTest, StopsQueueingWhenThePeerDoesNotRead) {
  // The peer never reads: the socket buffer fills, then our queue cap applies.
  std::string big(1500, 'x');
  const std::span<const uint8_t> f(reinterpret_cast<const uint8_t*>(big.data()), big.size());
  for (int i = 0; i < 20000; ++i) {
    port->send_to_guest(f);
    if (i % 100 == 0) io.poll();
  }
  EXPECT_GT(port->stats().queue_drops, 0u);
  EXPECT_LT(port->stats().frames_written * (1500 + 4), 2 * StreamFramePort::kMaxQueuedBytes + (8u << 20));
}

}  // namespace
}  // namespace causeway::netstack
