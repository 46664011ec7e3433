// VirtioDevice: what a virtio device model offers a transport, and the only
// thing a transport knows about it.
//
// A transport — the vhost-user server today, a native virtio-pci/MMIO
// transport on a KVM host later — negotiates features, owns the queues'
// configuration and notification plumbing (eventfds, interrupts), and hands
// each queue to the device once it is usable. The device model owns the data
// path: it pops chains, fills or reads buffers, pushes them back and calls
// Virtqueue::notify(). Neither side includes the other's headers.
//
// Life cycle, as the transport drives it:
//   set_acked_features(f)            the driver's accepted subset (before queues start)
//   queue_attached(i, q) ...         queue i is started and enabled; q stays valid until
//   queue_notified(i) ...            the driver kicked queue i
//   queue_detached(i)                the transport stops the queue (the device must forget q)
//   reset()                          front-end gone or device reset: all queues already
//                                    detached; back to the state after construction
//
// Thread safety: all calls on the engine executor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace causeway::vmm {

class Virtqueue;

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  [[nodiscard]] virtual uint32_t device_id() const = 0;         // virtio §5 device ID
  [[nodiscard]] virtual uint64_t offered_features() const = 0;  // device + ring feature bits
  [[nodiscard]] virtual size_t queue_count() const = 0;
  [[nodiscard]] virtual uint32_t max_queue_size() const = 0;

  // Device configuration space (§4.1.4.3 and the device's own section).
  // Returns false when [offset, offset + out.size()) is outside it.
  [[nodiscard]] virtual size_t config_size() const = 0;
  virtual bool read_config(uint32_t offset, std::span<uint8_t> out) const = 0;

  // A transport that learns the link MTU from its front-end instead of
  // exposing config space (vhost-user's NET_SET_MTU) reports it here; false
  // when the device cannot honour it. Only network devices accept one.
  virtual bool set_link_mtu(uint32_t /*mtu*/) { return false; }

  virtual void set_acked_features(uint64_t features) = 0;
  virtual void queue_attached(size_t index, Virtqueue& queue) = 0;
  virtual void queue_detached(size_t index) = 0;
  virtual void queue_notified(size_t index) = 0;
  virtual void reset() = 0;
};

}  // namespace causeway::vmm
