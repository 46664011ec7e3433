// libFuzzer target: VirtioNetDevice driven by a hostile guest (hostile_guest.hpp): transmit
// chains of any shape (split headers, indirect tables, loops, addresses outside RAM, bad
// virtio-net headers, NEEDS_CSUM offsets), receive buffers of any size, rings rewritten under
// the device, queues detached and reset mid-stream — while the engine side sends frames to
// the guest (merged receive buffers, the backlog).
//
// Input: u64 feature mask (ANDed with what the device offers), u8 queue sizes (log2, 0..8 each
// for rx and tx), then a program of ops: the ring ops of hostile_guest.hpp, and
//   6 kick: u8 queue          7 to guest: u16 len, bytes   8 detach + reattach: u8 queue
//   9 device reset, all queues attached again   10 set_link_mtu: u32   11 read_config: u8, u8
//   12 run the loop (posted transmit work)
// Oracle: every frame handed to the sink is readable to its last byte and no longer than the
// MTU plus the Ethernet header; chains always come back (ASan/UBSan do the rest).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "tests/fuzz/fuzz_input.hpp"
#include "tests/fuzz/hostile_guest.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/devices/virtio_net.hpp"

using namespace causeway;

namespace {

class CheckingSink final : public netstack::FrameSink {
 public:
  explicit CheckingSink(size_t max) : max_(max) {}
  void on_guest_frame(std::span<const uint8_t> f) override {
    if (f.size() > max_) std::abort();
    unsigned sum = 0;
    for (uint8_t b : f) sum += b;
    sink_ += sum;
  }
  unsigned sink_ = 0;

 private:
  size_t max_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* io = new boost::asio::io_context;
  static auto* clock = new testing::FakeClock;
  fuzz::FuzzInput in(data, size);
  vmm::VirtioNetConfig cfg;
  vmm::VirtioNetDevice dev(*io, *clock, cfg);
  const uint64_t features = in.u64() & dev.offered_features();
  const uint8_t qs = in.u8();
  dev.set_acked_features(features);
  fuzz::HostileGuest guest({static_cast<uint16_t>(1u << (qs & 15) % 9), static_cast<uint16_t>(1u << (qs >> 4) % 9)},
                           features);
  CheckingSink sink(cfg.mtu + netstack::kEthHeaderLen);
  dev.start(sink);
  auto attach = [&](size_t q) {
    if (guest.started(q)) dev.queue_attached(q, guest.queue(q));
  };
  attach(0);
  attach(1);
  while (!in.empty()) {
    const uint8_t op = in.u8() % 13;
    if (op < fuzz::kRingOps) {
      (void)guest.run_ring_op(op, in);
      continue;
    }
    switch (op) {
      case 6: dev.queue_notified(in.u8() % 2); break;
      case 7: dev.send_to_guest(in.bytes(in.u16())); break;
      case 8: {
        const size_t q = in.u8() % 2;
        dev.queue_detached(q);
        attach(q);
        break;
      }
      case 9:
        dev.queue_detached(0);
        dev.queue_detached(1);
        dev.reset();
        dev.set_acked_features(features);
        attach(0);
        attach(1);
        break;
      case 10: (void)dev.set_link_mtu(in.u32()); break;
      case 11: {
        uint8_t buf[256];
        const uint8_t off = in.u8();
        (void)dev.read_config(off, {buf, in.u8()});
        break;
      }
      default:
        clock->advance(std::chrono::milliseconds(10));
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
  io->poll();
  io->restart();
  return 0;
}
