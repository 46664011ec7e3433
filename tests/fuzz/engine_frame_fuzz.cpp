// libFuzzer target: Engine::on_guest_frame and on_guest_offload_frame — the frame checks, the
// destination policy, ARP/DHCP, the DNS and UDP-flow shortcuts, the TCP fast path's
// classifier, and libslirp behind them — with a DNS proxy attached (a resolver that answers
// at once, so queries reach the proxy's parser and their answers the guest) and one UDP
// forward flow open (so guest replies on flow ports are taken).
//
// Input: a program of frames, each `u8 kind, u16 length, bytes`:
//   kind & 1   an offload frame: a 12-byte virtio-net header precedes the frame bytes
//   kind & 2   the fake clock advances by (kind >> 2) × 100 ms and the engine runs a turn
// A fresh engine per input. Frames libslirp or the fast path send out really leave through host
// sockets, so the target runs inside a network namespace with only loopback up
// (run_in_netns.sh; scripts/fuzz.sh does the same).
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/vnet_hdr.hpp"
#include "dns/local_zone.hpp"
#include "dns/proxy.hpp"
#include "dns/resolver.hpp"
#include "netstack/engine.hpp"
#include "tests/fuzz/fuzz_input.hpp"
#include "tests/support/fakes.hpp"

using namespace causeway;

namespace {

// Answers every query at once with the query itself turned into an empty NOERROR answer.
class EchoResolver final : public dns::Resolver {
 public:
  void send(std::span<const uint8_t> query, dns::Transport, Completion done) override {
    std::vector<uint8_t> a(query.begin(), query.end());
    if (a.size() >= 3) a[2] |= 0x80;
    done(Answer(std::move(a)));
  }
};

struct World {
  boost::asio::io_context io;
  testing::FakeClock clock;
  EchoResolver resolver;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World;  // the harness's loop and clock, kept between inputs
  fuzz::FuzzInput in(data, size);
  testing::FakeFramePort port;
  {
    dns::Proxy proxy(w->io, w->clock, w->resolver, dns::LocalZone{});
    netstack::Engine engine(w->io, w->clock, netstack::NatConfig{}, port);
    (void)engine.attach_dns(proxy, "/nonexistent/causeway-fuzz-dns.sock");
    std::vector<uint8_t> replies;
    (void)engine.open_flow(5353, [&](std::span<const uint8_t> p) { replies.assign(p.begin(), p.end()); });
    while (!in.empty()) {
      const uint8_t kind = in.u8();
      const uint16_t len = in.u16();
      if (kind & 1) {
        std::array<uint8_t, wire::kVnetHdrLen> raw{};
        const auto h = in.bytes(raw.size());
        std::copy(h.begin(), h.end(), raw.begin());
        const auto hdr = wire::read_vnet_hdr(raw);
        engine.on_guest_offload_frame(in.bytes(len), hdr);
      } else {
        engine.on_guest_frame(in.bytes(len));
      }
      if (kind & 2) {
        w->clock.advance(std::chrono::milliseconds(100) * (kind >> 2));
        engine.pump();
        w->io.poll();
        w->io.restart();
      }
      if (port.frames.size() > 4096) port.frames.clear();
    }
    engine.pump();
    w->io.poll();
    w->io.restart();
  }
  w->io.poll();
  w->io.restart();
  return 0;
}
