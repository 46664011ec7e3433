// TapFramePort: frames between the engine and a tap device (IFF_TAP,
// IFF_NO_PI) living in the guest's network namespace. The engine holds the
// tap's fd; the device itself sits in the other namespace.
//
// Reads are batched: one readiness wake-up drains up to kReadBatch frames.
// Writes go straight to the kernel (a tap write queues the frame on the
// device's receive path and does not block); should it fail with EAGAIN the
// frame is dropped and counted — TCP in the guest recovers, and libslirp is
// told nothing, as on a real wire.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "netstack/frame_port.hpp"

namespace causeway::netstack {

struct TapStats {
  uint64_t frames_read = 0;
  uint64_t frames_written = 0;
  uint64_t write_drops = 0;
};

class TapFramePort final : public FramePort {
 public:
  // Takes ownership of `tap` (made non-blocking here). `on_closed` runs once
  // if the device goes away (its namespace was destroyed) or fails.
  TapFramePort(boost::asio::io_context& io, UniqueFd tap, size_t mtu, std::function<void()> on_closed = {});
  ~TapFramePort() override;

  void start(FrameSink& sink);
  void send_to_guest(std::span<const uint8_t> frame) override;
  [[nodiscard]] const TapStats& stats() const { return stats_; }

 private:
  void wait_readable();
  void drain();

  UniqueFd fd_;
  boost::asio::posix::stream_descriptor desc_;
  FrameSink* sink_ = nullptr;
  std::vector<uint8_t> buf_;
  std::function<void()> on_closed_;
  TapStats stats_;
  RateLimitedLog log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::netstack
