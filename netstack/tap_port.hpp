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
// Offloads. A tap created with IFF_VNET_HDR (netns.hpp, TapConfig::vnet_hdr)
// prefixes every frame, both ways, with a 12-byte virtio-net header
// (vnet_hdr.hpp; TUNSETVNETHDRSZ 12, TUNSETVNETLE). The port finds out with
// TUNGETIFF, so it works with either kind of tap. With `offload` it also
// asks for TUNSETOFFLOAD TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6: the
// namespace's kernel then sends frames with partial checksums and TCP
// super-segments up to 64 KiB (delivered through on_guest_offload_frame),
// and the engine may send the same (send_offload_to_guest, one writev of
// header + frame). A kernel that refuses is logged once and the port carries
// plain frames (headers of zeros). Without `offload` a vnet-header tap gets
// TUNSETOFFLOAD 0 and only plain frames pass.
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
  uint64_t read_drops = 0;              // shorter than the virtio-net header
  uint64_t offload_frames_read = 0;     // came with NEEDS_CSUM or GSO
  uint64_t offload_frames_written = 0;  // sent with NEEDS_CSUM or GSO
  bool vnet_hdr = false;                // the tap carries virtio-net headers
  bool offload = false;                 // TUNSETOFFLOAD took CSUM + TSO4/6
};

class TapFramePort final : public FramePort {
 public:
  // Takes ownership of `tap` (made non-blocking here). `on_closed` runs once
  // if the device goes away (its namespace was destroyed) or fails.
  // `offload`: negotiate checksum and TCP segmentation offloads when the tap
  // has a virtio-net header (see above).
  TapFramePort(boost::asio::io_context& io, UniqueFd tap, size_t mtu, std::function<void()> on_closed = {},
               bool offload = false);
  ~TapFramePort() override;

  void start(FrameSink& sink);
  void send_to_guest(std::span<const uint8_t> frame) override;
  [[nodiscard]] bool offloads_to_guest() const override { return stats_.offload; }
  void send_offload_to_guest(std::span<const uint8_t> frame, const VnetHdr& hdr) override;
  [[nodiscard]] const TapStats& stats() const { return stats_; }

 private:
  void wait_readable();
  void drain();
  void write_frame(std::span<const uint8_t> frame, const VnetHdr* hdr);

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
