// FramePort and FrameSink: the engine's only view of how it is attached to a
// guest. A port carries Ethernet frames; it knows nothing of IP.
//
//   port (tap, QEMU stream socket, vhost-user virtio-net) ──on_guest_frame──► FrameSink (the engine)
//   engine ──send_to_guest──► FramePort
//
// Offloads (a tap with a virtio-net header, vnet_hdr.hpp): a port that
// negotiated them hands frames with checksum or segmentation work left to do
// to on_guest_offload_frame, and accepts the same kind of frames from the
// engine through send_offload_to_guest when offloads_to_guest() says so.
// Plain frames always travel through the plain calls.
//
// Thread safety: both sides are confined to the engine executor.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "netstack/vnet_hdr.hpp"

namespace causeway::netstack {

class FramePort {
 public:
  virtual ~FramePort() = default;
  // Delivers one Ethernet frame to the guest. A port may drop the frame when
  // the guest cannot take it now (counted by the port); the stack above
  // recovers as it would from loss on a wire.
  virtual void send_to_guest(std::span<const uint8_t> frame) = 0;
  // Whether send_offload_to_guest may be used: the guest side takes frames
  // with a partial checksum (NEEDS_CSUM) and TCP super-segments (GSO).
  [[nodiscard]] virtual bool offloads_to_guest() const { return false; }
  // One frame with offload work for the guest's side (`hdr`: NEEDS_CSUM with
  // the pseudo-header sum in the checksum field, optionally TCP GSO). Only
  // called when offloads_to_guest().
  virtual void send_offload_to_guest(std::span<const uint8_t> frame, const VnetHdr& hdr) {
    (void)hdr;
    send_to_guest(frame);  // never reached for ports without offloads
  }
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // One frame the guest sent. The span is valid only during the call.
  virtual void on_guest_frame(std::span<const uint8_t> frame) = 0;
  // One frame with offload work left (hdr is not plain()), from a port with
  // offloads: the sink validates `hdr` (check_vnet_hdr) and finishes what it
  // must. Sinks that never sit behind such a port keep this default, which
  // finishes the offloads in software within the largest MTU and drops what
  // does not validate.
  virtual void on_guest_offload_frame(std::span<const uint8_t> frame, const VnetHdr& hdr) {
    const auto c = check_vnet_hdr(hdr, frame, kMaxMtu);
    if (c.verdict != VnetVerdict::kOk) return;
    std::vector<uint8_t> scratch;
    finish_in_software(frame, c.offload, scratch, [this](std::span<const uint8_t> f) { on_guest_frame(f); });
  }
};

}  // namespace causeway::netstack
