// libFuzzer target: VirtioVsockDevice driven by a hostile guest (hostile_guest.hpp) — packets
// in chains of any shape, spoofed CIDs, credit violations, shutdowns and resets in any order,
// rings rewritten under the device — while the host side listens, connects, writes, shuts
// down, closes and drops streams from inside and outside the device's callbacks.
//
// Input: u64 feature mask, u8 queue sizes (log2 for rx and tx), then a program of ops: the ring
// ops of hostile_guest.hpp, and
//   6 kick: u8 queue   7 listen: u8 port (1024 + n)   8 connect: u8 port (1024 + n)
//   9 stream: u8 index, u8 action (write u16 len bytes / shut down / close / drop / pause /
//     resume)          10 device reset, queues attached again   11 detach + reattach: u8 queue
//   12 the clock advances by u8 × 100 ms and the loop runs (connect timeouts, RST tokens)
// Accepted and connected streams echo what they receive, from inside on_data, so the guest's
// data path and ours run into each other's credit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "tests/fuzz/fuzz_input.hpp"
#include "tests/fuzz/hostile_guest.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/devices/virtio_vsock.hpp"

using namespace causeway;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* io = new boost::asio::io_context;
  static auto* clock = new testing::FakeClock;
  fuzz::FuzzInput in(data, size);
  vmm::VirtioVsockConfig cfg;
  cfg.max_connections = 8;
  cfg.buf_alloc = 16 * 1024;
  cfg.tx_queue_bytes = 16 * 1024;
  std::vector<std::shared_ptr<vmm::VsockStream>> streams;
  {
    vmm::VirtioVsockDevice dev(*io, *clock, cfg);
    const uint64_t features = in.u64() & dev.offered_features();
    const uint8_t qs = in.u8();
    dev.set_acked_features(features);
    fuzz::HostileGuest guest({static_cast<uint16_t>(1u << (qs & 15) % 9), static_cast<uint16_t>(1u << (qs >> 4) % 9)},
                             features);
    auto attach = [&](size_t q) {
      if (guest.started(q)) dev.queue_attached(q, guest.queue(q));
    };
    attach(0);
    attach(1);
    auto adopt = [&](std::shared_ptr<vmm::VsockStream> s) {
      if (!s) return;
      std::weak_ptr<vmm::VsockStream> w = s;
      s->set_on_data([w](std::span<const uint8_t> d) {
        if (auto p = w.lock()) (void)p->write(d);
      });
      s->set_on_eof([w] {
        if (auto p = w.lock()) p->shutdown_write();
      });
      s->set_on_closed([](std::string_view) {});
      s->set_on_writable([] {});
      if (streams.size() < 16) streams.push_back(std::move(s));
    };
    while (!in.empty()) {
      const uint8_t op = in.u8() % 13;
      if (op < fuzz::kRingOps) {
        (void)guest.run_ring_op(op, in);
        continue;
      }
      switch (op) {
        case 6: dev.queue_notified(in.u8() % 3); break;
        case 7: dev.listen(1024 + in.u8(), adopt); break;
        case 8:
          dev.connect(1024 + in.u8(), [&](boost::system::error_code ec, std::shared_ptr<vmm::VsockStream> s) {
            if (!ec) adopt(std::move(s));
          });
          break;
        case 9: {
          const uint8_t idx = in.u8();
          const uint8_t action = in.u8() % 6;
          if (streams.empty()) break;
          auto& s = streams[idx % streams.size()];
          switch (action) {
            case 0: (void)s->write(in.bytes(in.u16())); break;
            case 1: s->shutdown_write(); break;
            case 2: s->close(); break;
            case 3: streams.erase(streams.begin() + static_cast<std::ptrdiff_t>(idx % streams.size())); break;
            case 4: s->set_receive_paused(true); break;
            default: s->set_receive_paused(false); break;
          }
          break;
        }
        case 10:
          dev.queue_detached(0);
          dev.queue_detached(1);
          dev.reset();
          dev.set_acked_features(features);
          attach(0);
          attach(1);
          break;
        case 11: {
          const size_t q = in.u8() % 2;
          dev.queue_detached(q);
          attach(q);
          break;
        }
        default:
          clock->advance(std::chrono::milliseconds(100) * in.u8());
          io->poll();
          io->restart();
          break;
      }
    }
    io->poll();
    io->restart();
    dev.queue_detached(0);
    dev.queue_detached(1);
    dev.reset();
    streams.clear();
    io->poll();
    io->restart();
  }
  io->poll();
  io->restart();
  return 0;
}
