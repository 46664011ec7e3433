// libFuzzer target: the vhost-user session state machine — SEQUENCES of front-end messages
// (vhost_user::Session over MessageAssembler, as the Server feeds it), with the descriptors a
// front-end passes (memory as a memfd, kick/call/err eventfds), guest RAM the fuzzer writes
// (rings and buffers included) and kicks, in front of a real device model (virtio-net or
// virtio-vsock).
//
// Input: u8 device (bit 0: vsock), then a program of ops (u8 op % 5):
//   0 message: u32 request, u8 flags, u16 payload length, bytes, u8 fd tweak. The harness
//     attaches the descriptors the request wants (SET_MEM_TABLE: one per region, all the same
//     1 MiB memfd; ADD_MEM_REG: one; SET_VRING_KICK/CALL/ERR: an eventfd unless the no-fd bit is
//     set; SET_LOG_FD, SET_SLAVE_REQ_FD: an eventfd); fd tweak bit 0 adds one more, bit 1 drops
//     one. Fed to the assembler in two pieces (split at fd tweak >> 2).
//   1 kick: u8 ring (writes the ring's kick eventfd, runs the loop)
//   2 guest RAM: u32 offset, u16 length, bytes (anywhere in the memfd)
//   3 run the loop        4 the clock advances 100 ms
// A message the session answers with close, or a framing error, ends the input (the Server
// closes the connection there too).
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include <spdlog/spdlog.h>

#include "base/unique_fd.hpp"
#include "tests/fuzz/fuzz_input.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/devices/virtio_net.hpp"
#include "vmm/devices/virtio_vsock.hpp"
#include "vmm/vhost_user/message.hpp"
#include "vmm/vhost_user/session.hpp"

using namespace causeway;
namespace vu = causeway::vmm::vhost_user;

namespace {

constexpr size_t kRam = 1u << 20;

class NullSink final : public netstack::FrameSink {
 public:
  void on_guest_frame(std::span<const uint8_t> f) override {
    for (uint8_t b : f) sum_ += b;
  }
  unsigned sum_ = 0;
};

struct Ram {
  Ram() {
    fd.reset(::memfd_create("fuzz-guest-ram", MFD_CLOEXEC));
    if (!fd || ::ftruncate(fd.get(), kRam) != 0) std::abort();
    p = static_cast<uint8_t*>(::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
    if (p == MAP_FAILED) std::abort();
  }
  UniqueFd fd;
  uint8_t* p = nullptr;
};

UniqueFd event_fd() { return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* io = new boost::asio::io_context;
  static auto* clock = new testing::FakeClock;
  static auto* ram = new Ram;
  std::memset(ram->p, 0, kRam);
  fuzz::FuzzInput in(data, size);
  NullSink sink;
  std::unique_ptr<vmm::VirtioDevice> dev;
  if (in.u8() & 1) {
    vmm::VirtioVsockConfig c;
    c.max_connections = 8;
    dev = std::make_unique<vmm::VirtioVsockDevice>(*io, *clock, c);
  } else {
    auto n = std::make_unique<vmm::VirtioNetDevice>(*io, *clock, vmm::VirtioNetConfig{});
    n->start(sink);
    dev = std::move(n);
  }
  std::map<uint8_t, UniqueFd> kicks;  // the front-end's copies of the kick eventfds, by ring
  {
    vu::Session session(*io, *clock, *dev, "fuzz");
    vu::MessageAssembler assembler;
    bool done = false;
    while (!in.empty() && !done) {
      switch (in.u8() % 5) {
        case 0: {
          const uint32_t request = in.u32();
          const uint8_t flags = in.u8();
          const auto payload = in.bytes(in.u16());
          const uint8_t tweak = in.u8();
          std::vector<uint8_t> frame(vu::kHeaderSize);
          const uint32_t size32 = static_cast<uint32_t>(payload.size());
          const uint32_t flags32 = flags;
          std::memcpy(frame.data(), &request, 4);
          std::memcpy(frame.data() + 4, &flags32, 4);
          std::memcpy(frame.data() + 8, &size32, 4);
          frame.insert(frame.end(), payload.begin(), payload.end());
          std::vector<UniqueFd> fds;
          uint64_t u64 = 0;
          if (payload.size() >= 8) std::memcpy(&u64, payload.data(), 8);
          switch (static_cast<vu::Request>(request)) {
            case vu::Request::kSetMemTable:
              for (uint32_t i = 0; i < std::min<uint32_t>(static_cast<uint32_t>(u64), 8); ++i)
                fds.emplace_back(::dup(ram->fd.get()));
              break;
            case vu::Request::kAddMemReg: fds.emplace_back(::dup(ram->fd.get())); break;
            case vu::Request::kSetVringKick:
            case vu::Request::kSetVringCall:
            case vu::Request::kSetVringErr:
              if (!(u64 & vu::kVringNoFdFlag)) {
                fds.push_back(event_fd());
                if (static_cast<vu::Request>(request) == vu::Request::kSetVringKick)
                  kicks[static_cast<uint8_t>(u64)] = UniqueFd(::dup(fds.back().get()));
              }
              break;
            case vu::Request::kSetLogFd:
            case vu::Request::kSetSlaveReqFd: fds.push_back(event_fd()); break;
            default: break;
          }
          if (tweak & 1) fds.push_back(event_fd());
          if ((tweak & 2) && !fds.empty()) fds.pop_back();
          const size_t cut = std::min<size_t>(tweak >> 2, frame.size());
          // As the Server reads: never more than wanted() at a time, descriptors with the first bytes.
          std::span<const uint8_t> rest(frame);
          bool first = true;
          while (!rest.empty() && !done) {
            const size_t n = std::min({assembler.wanted(), rest.size(), first && cut ? cut : rest.size()});
            if (assembler.feed(rest.first(n), first ? std::move(fds) : std::vector<UniqueFd>{})) {
              done = true;
              break;
            }
            first = false;
            rest = rest.subspan(n);
            if (auto m = assembler.take()) {
              auto out = session.handle(std::move(*m));
              if (out.close) done = true;
            }
          }
          break;
        }
        case 1: {
          auto it = kicks.find(in.u8());
          if (it != kicks.end()) {
            const uint64_t one = 1;
            (void)!::write(it->second.get(), &one, sizeof one);
          }
          io->poll();
          io->restart();
          break;
        }
        case 2: {
          const uint32_t off = in.u32() % kRam;
          const auto b = in.bytes(in.u16());
          std::memcpy(ram->p + off, b.data(), std::min<size_t>(b.size(), kRam - off));
          break;
        }
        case 3:
          io->poll();
          io->restart();
          break;
        default: clock->advance(std::chrono::milliseconds(100)); break;
      }
    }
    io->poll();
    io->restart();
  }
  io->poll();
  io->restart();
  return 0;
}
