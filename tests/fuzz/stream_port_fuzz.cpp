// libFuzzer target: the stream decoder of `serve` — StreamFramePort reading QEMU's
// `-netdev stream` framing (4-byte big-endian length + frame, stream_codec.hpp) from a real
// unix socket, in the pieces the fuzzer chooses, while it writes frames back.
//
// Input: byte 0 picks the frame limit (the serve default, MTU 65520 + 18, or a small one);
// then a program of `u8 op, u16 length, bytes`:
//   op & 1 == 0   write the bytes to the peer end of the socket (the VMM's side)
//   op & 1 == 1   the engine sends the bytes to the guest as a frame (send_to_guest)
//   op & 2        half-close the peer's writing side afterwards
// After each op the loop runs until idle. Oracle: a reference decoder (written here, as simply
// as possible) over the same bytes must see the same frames in the same order, and the port
// must close exactly when the reference says the stream broke or ended mid-frame.
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <spdlog/spdlog.h>

#include "netstack/stream_port.hpp"
#include "tests/fuzz/fuzz_input.hpp"

using namespace causeway;

namespace {

struct Reference {
  size_t max_frame;
  std::vector<uint8_t> buf;
  bool broken = false;
  std::vector<std::vector<uint8_t>> frames;
  void feed(std::span<const uint8_t> b) {
    if (broken) return;
    buf.insert(buf.end(), b.begin(), b.end());
    for (;;) {
      if (buf.size() < 4) return;
      const uint32_t len = (uint32_t{buf[0]} << 24) | (uint32_t{buf[1]} << 16) | (uint32_t{buf[2]} << 8) | buf[3];
      if (len == 0 || len > max_frame) {
        broken = true;
        return;
      }
      if (buf.size() < 4 + len) return;
      frames.emplace_back(buf.begin() + 4, buf.begin() + 4 + len);
      buf.erase(buf.begin(), buf.begin() + 4 + len);
    }
  }
};

class Recorder final : public netstack::FrameSink {
 public:
  void on_guest_frame(std::span<const uint8_t> f) override { frames.emplace_back(f.begin(), f.end()); }
  std::vector<std::vector<uint8_t>> frames;
};

void drain(int fd) {
  uint8_t b[65536];
  while (::recv(fd, b, sizeof b, MSG_DONTWAIT) > 0) {}
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* io = new boost::asio::io_context;
  fuzz::FuzzInput in(data, size);
  const size_t max_frame = (in.u8() & 1) ? 64 : 65520 + 18;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  const int peer = sv[1];
  boost::asio::local::stream_protocol::socket sock(*io);
  sock.assign(boost::asio::local::stream_protocol(), sv[0]);
  bool closed = false;
  Recorder sink;
  Reference ref{max_frame, {}, false, {}};
  bool peer_shut = false;
  {
    netstack::StreamFramePort port(std::move(sock), max_frame, [&](const std::string&) { closed = true; });
    port.start(sink);
    while (!in.empty() && !closed) {
      const uint8_t op = in.u8();
      const auto bytes = in.bytes(in.u16());
      if (op & 1) {
        port.send_to_guest(bytes);
      } else if (!peer_shut) {
        size_t off = 0;
        while (off < bytes.size()) {
          const ssize_t n = ::send(peer, bytes.data() + off, bytes.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
          if (n < 0 && errno != EAGAIN) break;  // the port closed its end
          if (n <= 0) {
            io->poll();
            io->restart();
            drain(peer);
            continue;
          }
          off += static_cast<size_t>(n);
        }
        ref.feed(bytes);
      }
      if ((op & 2) && !peer_shut) {
        ::shutdown(peer, SHUT_WR);
        peer_shut = true;
      }
      for (int i = 0; i < 4; ++i) {
        io->poll();
        io->restart();
      }
      drain(peer);
    }
    for (int i = 0; i < 8; ++i) {
      io->poll();
      io->restart();
    }
    // Every frame the reference completed before the stream broke reached the sink, in order.
    if (sink.frames.size() != ref.frames.size() || sink.frames != ref.frames) std::abort();
    const bool should_close = ref.broken || peer_shut;
    if (should_close && !closed) std::abort();
    if (!should_close && closed) std::abort();
    const auto& st = port.stats();
    if (st.frames_read != ref.frames.size()) std::abort();
    if ((st.bad_length != 0) != ref.broken) std::abort();
  }
  io->poll();
  io->restart();
  ::close(peer);
  return 0;
}
