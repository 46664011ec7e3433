// libFuzzer target for the TCP fast path (netstack/tcp_fast_path) and mirrored
// mode's link (netstack/mirror/mirror_link): arbitrary sequences of guest
// segments, host-side writes, closes and forwarded connections, against real
// loopback sockets. Run it only in a network namespace of its own (the ctest
// entry does: `unshare --net`), since the fast path connects wherever a SYN says.
//
// Input: a byte program. Each step is an opcode byte and its operands:
//   0  guest TCP segment: flags, seq/ack offsets (relative to the flow's last
//      seen values, so the fuzzer reaches established states), window, a
//      payload length and its bytes
//   1  the host end writes N bytes      2  the host end closes (or resets)
//   3  a forwarded host connection is opened toward the guest
//   4  run the event loop a little      5  a raw frame to MirrorLink
//   6  a guest TCP segment (as 0) behind a fuzzed virtio-net header (a tap
//      with offloads, vnet_hdr.hpp): checked as the engine checks it; if it
//      passes, the whole frame goes to the fast path (as the engine hands it
//      super-segments) and the software-finished frames to MirrorLink
//   7  a raw frame (up to a GSO frame's size) behind a fuzzed virtio-net
//      header to MirrorLink::on_guest_offload_frame (a mirrored tap with
//      offloads): it validates and routes it itself
// Invariants: no crash, no sanitizer report, the flow table stays within its cap.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include "base/unique_fd.hpp"
#include "netstack/mirror/mirror_link.hpp"
#include "netstack/packet.hpp"
#include "netstack/tcp_fast_path.hpp"
#include "netstack/vnet_hdr.hpp"

namespace cn = causeway::netstack;

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t u8() { return n ? (--n, *p++) : 0; }
  uint16_t u16() { return static_cast<uint16_t>((u8() << 8) | u8()); }
  uint32_t u32() { return (uint32_t{u16()} << 16) | u16(); }
  std::vector<uint8_t> bytes(size_t len) {
    len = std::min(len, n);
    std::vector<uint8_t> v(p, p + len);
    p += len, n -= len;
    return v;
  }
};

struct Sink : cn::FramePort {
  void send_to_guest(std::span<const uint8_t> f) override {
    if (auto s = cn::parse_tcp_segment(f)) {
      last_seq = s->seq;
      last_ack = s->ack;
    }
    ++frames;
  }
  uint32_t last_seq = 0, last_ack = 0;
  size_t frames = 0;
};

struct World {
  World() {
    listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listener.get(), 64);
    socklen_t l = sizeof a;
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &l);
    port = ntohs(a.sin_port);
    cfg.mtu = 1500;
  }
  boost::asio::io_context io;
  causeway::UniqueFd listener;
  uint16_t port = 0;
  cn::NatConfig cfg;
};

std::vector<uint8_t> segment(const cn::NatConfig& cfg, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                             uint8_t flags, uint16_t window, const std::vector<uint8_t>& payload, bool opts) {
  const size_t optlen = opts ? 8 : 0;
  std::vector<uint8_t> f(14 + 20 + 20 + optlen + payload.size(), 0);
  f[12] = 0x08;
  f[6] = 0x52, f[7] = 0x54;
  uint8_t* ip = f.data() + 14;
  const size_t total = 20 + 20 + optlen + payload.size();
  ip[0] = 0x45, ip[2] = static_cast<uint8_t>(total >> 8), ip[3] = static_cast<uint8_t>(total), ip[8] = 64, ip[9] = 6;
  std::memcpy(ip + 12, &cfg.guest, 4);
  std::memcpy(ip + 16, &cfg.gateway, 4);
  uint8_t* t = ip + 20;
  t[0] = static_cast<uint8_t>(sport >> 8), t[1] = static_cast<uint8_t>(sport);
  t[2] = static_cast<uint8_t>(dport >> 8), t[3] = static_cast<uint8_t>(dport);
  for (int i = 0; i < 4; ++i)
    t[4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i)), t[8 + i] = static_cast<uint8_t>(ack >> (24 - 8 * i));
  t[12] = static_cast<uint8_t>(((20 + optlen) / 4) << 4);
  t[13] = flags;
  t[14] = static_cast<uint8_t>(window >> 8), t[15] = static_cast<uint8_t>(window);
  if (opts) {
    const uint8_t o[8] = {2, 4, 0x05, 0xb4, 1, 3, 3, static_cast<uint8_t>(window & 15)};
    std::memcpy(t + 20, o, 8);
  }
  if (!payload.empty()) std::memcpy(t + 20 + optlen, payload.data(), payload.size());
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World;  // one listener for the process; flows are per input
  Sink sink;
  constexpr size_t kCap = 16;
  auto fast_path = std::make_unique<cn::TcpFastPath>(
      w->io, w->cfg, [&](std::span<const uint8_t> f) { sink.send_to_guest(f); }, kCap, 2);
  cn::mirror::MirrorLinkConfig mc;
  mc.name = "fuzz0";
  mc.max_udp_flows = 4;
  mc.max_ping_flows = 4;
  mc.max_tcp_flows = 4;
  auto link = std::make_unique<cn::mirror::MirrorLink>(w->io, sink, mc);
  std::vector<causeway::UniqueFd> host_ends;
  Reader r{data, size};
  uint32_t seq = 1000;
  for (int step = 0; step < 64 && r.n > 0; ++step) {
    switch (r.u8() % 8) {
      case 0: {
        const uint8_t flags = r.u8();
        const uint16_t sport = static_cast<uint16_t>(40000 + (r.u8() & 3));
        const bool to_listener = r.u8() & 1;
        seq += static_cast<uint32_t>(static_cast<int8_t>(r.u8())) * 97u;
        const uint32_t ack = sink.last_seq + static_cast<uint32_t>(static_cast<int8_t>(r.u8()));
        const uint16_t window = r.u16();
        const auto payload = r.bytes(r.u8());
        const auto f = segment(w->cfg, sport, to_listener ? w->port : 9, seq, ack, flags, window, payload, flags & 2);
        if (!fast_path->on_guest_frame(f)) (void)fast_path->reject(f);
        seq += static_cast<uint32_t>(payload.size());
        break;
      }
      case 1: {
        causeway::UniqueFd c(::accept4(w->listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (c) host_ends.push_back(std::move(c));
        if (!host_ends.empty()) {
          const auto bytes = r.bytes(r.u16() % 4096);
          (void)!::write(host_ends[r.u8() % host_ends.size()].get(), bytes.data(), bytes.size());
        }
        break;
      }
      case 2:
        if (!host_ends.empty()) {
          auto& fd = host_ends[r.u8() % host_ends.size()];
          if (r.u8() & 1) {
            const linger l{1, 0};
            ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
          }
          fd.reset();
        }
        break;
      case 3: {
        // A loopback TCP pair stands for a connection a forward accepted.
        causeway::UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(w->port);
        if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) break;
        causeway::UniqueFd acc(::accept4(w->listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        cn::TcpFastPath::Key key{
            AF_INET, {}, {}, static_cast<uint16_t>(8000 + (r.u8() & 3)), static_cast<uint16_t>(33000 + (r.u8() & 3))};
        std::memcpy(key.gaddr.data(), &w->cfg.guest, 4);
        std::memcpy(key.daddr.data(), &w->cfg.gateway, 4);
        (void)fast_path->open_to_guest(std::move(acc), key, cn::Mac{0x52, 0x54, 0, 0, 0, 1});
        host_ends.push_back(std::move(client));
        break;
      }
      case 4:
        for (int i = 0; i < 8; ++i) w->io.poll();
        w->io.restart();
        break;
      case 5: {
        auto frame = r.bytes(r.u16() % 1600);
        if (frame.size() >= 6)
          std::copy(cn::mirror::kMirrorRouterMac.begin(), cn::mirror::kMirrorRouterMac.end(), frame.begin());
        link->on_guest_frame(frame);
        break;
      }
      case 6: {
        std::array<uint8_t, cn::kVnetHdrLen> hb{};
        for (auto& b : hb) b = r.u8();
        const uint8_t flags = r.u8();
        const uint16_t sport = static_cast<uint16_t>(40000 + (r.u8() & 3));
        const uint32_t ack = sink.last_seq + static_cast<uint32_t>(static_cast<int8_t>(r.u8()));
        const auto payload = r.bytes(r.u16() % 8192);
        auto f = segment(w->cfg, sport, w->port, seq, ack, flags, 65535, payload, false);
        if (r.u8() & 1) f.resize(f.size() - std::min<size_t>(f.size(), r.u8()));  // truncated
        const auto c = cn::check_vnet_hdr(cn::read_vnet_hdr(hb), f, 1500);
        if (c.verdict != cn::VnetVerdict::kOk) break;
        (void)fast_path->on_guest_frame(f);
        std::vector<uint8_t> scratch;
        cn::finish_in_software(f, c.offload, scratch, [&](std::span<const uint8_t> s) {
          if (s.size() > 1500 + cn::kEthHeaderLen && !c.offload.gso) return;  // the engine checks the MTU
          if (s.size() > 1500 + cn::kEthHeaderLen) __builtin_trap();          // a segment over the MTU
          std::vector<uint8_t> copy(s.begin(), s.end());
          if (copy.size() >= 6)
            std::copy(cn::mirror::kMirrorRouterMac.begin(), cn::mirror::kMirrorRouterMac.end(), copy.begin());
          link->on_guest_frame(copy);
        });
        seq += static_cast<uint32_t>(payload.size());
        break;
      }
      case 7: {
        std::array<uint8_t, cn::kVnetHdrLen> hb{};
        for (auto& b : hb) b = r.u8();
        auto frame = r.bytes(r.u16() % (cn::kMaxGsoFrame + 64));
        if (frame.size() >= 6)
          std::copy(cn::mirror::kMirrorRouterMac.begin(), cn::mirror::kMirrorRouterMac.end(), frame.begin());
        link->on_guest_offload_frame(frame, cn::read_vnet_hdr(hb));
        break;
      }
    }
    if (fast_path->stats().flows > kCap) __builtin_trap();
  }
  w->io.poll();
  w->io.restart();
  link.reset();
  fast_path.reset();
  host_ends.clear();
  // Connections the fast path made to the listener and nobody took: accept and drop them.
  while (true) {
    causeway::UniqueFd c(::accept4(w->listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) break;
  }
  w->io.poll();
  w->io.restart();
  return 0;
}
