// FramePort and FrameSink: the engine's only view of how it is attached to a
// guest. A port carries Ethernet frames; it knows nothing of IP.
//
//   port (tap, QEMU stream socket, vhost-user virtio-net) ──on_guest_frame──► FrameSink (the engine)
//   engine ──send_to_guest──► FramePort
//
// Thread safety: both sides are confined to the engine executor.
#pragma once

#include <cstdint>
#include <span>

namespace causeway::netstack {

class FramePort {
 public:
  virtual ~FramePort() = default;
  // Delivers one Ethernet frame to the guest. A port may drop the frame when
  // the guest cannot take it now (counted by the port); the stack above
  // recovers as it would from loss on a wire.
  virtual void send_to_guest(std::span<const uint8_t> frame) = 0;
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // One frame the guest sent. The span is valid only during the call.
  virtual void on_guest_frame(std::span<const uint8_t> frame) = 0;
};

}  // namespace causeway::netstack
