// VirtioNetDevice: the virtio-net device model (virtio 1.x §5.1), attached to
// the engine as its FramePort.
//
// Theory of operation
// -------------------
// Two queues: 0 = receiveq (device → guest), 1 = transmitq (guest → device).
// No control queue and no multiqueue: QEMU emulates the control queue itself
// for vhost-user back-ends, and one queue pair is what the engine's single
// thread can use.
//
// Transmit (guest kick on queue 1, on the engine thread):
//   pop chain → copy the header out → checks → frame to FrameSink::on_guest_frame
//   → push_used(head, 0) → after the batch, notify()
// The frame is handed over in place, straight out of guest memory, when it
// sits in one descriptor after the header (Linux puts header and linear skb
// data in one buffer for most frames); otherwise it is gathered into a
// scratch buffer. A NEEDS_CSUM frame is always gathered, because completing
// its checksum writes to it and the guest's buffer is device-readable only.
// Caveat, stated where it matters: a frame handed over in place can be
// changed by a hostile guest while the engine reads it (between the
// engine's frame check and libslirp's own copy). The engine treats frames
// as untrusted bytes either way; set tx_zero_copy=false to trade the copy
// for a stable snapshot.
// Work per kick is bounded (kTxBudget chains); the rest is posted, so a
// guest that keeps the queue full cannot starve the engine's other sockets.
//
// Receive (engine → send_to_guest, synchronous):
//   header + frame are written straight into the guest's receive buffers.
//   With VIRTIO_NET_F_MRG_RXBUF one frame may take several chains (the
//   header's num_buffers says how many; §5.1.6.4); without it one chain must
//   hold it all. A merged frame's chains are published to the used ring
//   together (one used.idx store): Linux reads the other num_buffers - 1
//   entries right after the first and drops the frame if they are not there
//   yet — publishing one by one lost frames under load (seen end to end as
//   duplicate ACKs and 1.7 s retransmission stalls). When the guest has not posted enough buffers the chains
//   taken so far are put back and the frame waits in a small bounded backlog
//   (kRxBacklogFrames / kRxBacklogBytes), flushed on the guest's next receive
//   kick; past the bound it is dropped and counted — TCP recovers as from
//   loss on a wire.
//
// Features offered: VERSION_1, MAC, MTU, MRG_RXBUF, CSUM, GUEST_CSUM,
// STATUS, INDIRECT_DESC, EVENT_IDX. Not offered: TSO/UFO (see
// net_offload.hpp), CTRL_VQ (QEMU's), MQ. Config space (mac, status, mtu) is
// answered for transports that ask; over vhost-user QEMU serves config
// space itself from `-device virtio-net-pci,mac=…,host_mtu=…` and tells us
// the MTU through NET_SET_MTU, which is checked against ours.
//
// Bad guest data (malformed chain, short header, GSO frame, oversized frame,
// or a header the tap would refuse too: unknown flags, hdr_len or checksum
// offsets outside the frame — wire::check_vnet_hdr, base/vnet_hdr.hpp) is
// dropped with a counter and the chain is still returned. A broken queue stops the device's use of it until
// the transport restarts it.
//
// Thread safety: confined to the engine executor (the io_context given).
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "base/vnet_hdr.hpp"
#include "netstack/frame.hpp"
#include "netstack/frame_port.hpp"
#include "vmm/virtio_device.hpp"
#include "vmm/virtqueue.hpp"

namespace causeway::vmm {

struct VirtioNetConfig {
  netstack::Mac mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};  // QEMU's default guest MAC
  uint16_t mtu = static_cast<uint16_t>(netstack::kMaxMtu);
  // Largest ring accepted. vhost-user front-ends choose the size without
  // asking (QEMU: 256 for virtio-net-pci, up to 1024 with rx_queue_size); the
  // rings live in guest memory, so accepting the spec maximum costs nothing.
  uint32_t max_queue_size = 32768;
  bool tx_zero_copy = true;        // see the caveat above
  bool rx_mark_data_valid = true;  // set DATA_VALID when GUEST_CSUM is negotiated
};

struct VirtioNetStats {
  uint64_t tx_frames = 0;  // guest → engine
  uint64_t tx_bytes = 0;
  uint64_t tx_zero_copy = 0;  // handed over in place
  uint64_t tx_csum_completed = 0;
  uint64_t tx_malformed = 0;  // bad chain, short header, GSO, a header check_vnet_hdr refuses
  uint64_t tx_oversized = 0;  // frame larger than MTU + Ethernet header
  uint64_t tx_no_sink = 0;    // frames before start(sink)
  uint64_t rx_frames = 0;     // engine → guest
  uint64_t rx_bytes = 0;
  uint64_t rx_buffers = 0;           // chains used (> rx_frames when merging)
  uint64_t rx_backlogged = 0;        // frames that waited for buffers
  uint64_t rx_drops_no_buffers = 0;  // backlog full
  uint64_t rx_drops_not_ready = 0;   // no receive queue (driver not up)
  uint64_t rx_drops_too_big = 0;     // frame larger than one chain (no MRG_RXBUF) or MTU
  uint64_t rx_malformed = 0;         // bad receive chains (returned empty)
  uint64_t broken_queue = 0;         // pops refused because the queue is broken
  uint64_t link_mtu_refused = 0;
};

class VirtioNetDevice final : public VirtioDevice, public netstack::FramePort {
 public:
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;
  static constexpr int kTxBudget = 256;  // chains per turn
  static constexpr size_t kRxBacklogFrames = 512;
  static constexpr size_t kRxBacklogBytes = 2u << 20;

  VirtioNetDevice(boost::asio::io_context& io, const Clock& clock, VirtioNetConfig cfg);
  ~VirtioNetDevice() override;
  VirtioNetDevice(const VirtioNetDevice&) = delete;
  VirtioNetDevice& operator=(const VirtioNetDevice&) = delete;

  // Where guest frames go (the engine). Frames the guest sends before this
  // is called are returned to it unread and counted (tx_no_sink).
  void start(netstack::FrameSink& sink) { sink_ = &sink; }

  // FramePort
  void send_to_guest(std::span<const uint8_t> frame) override;

  // VirtioDevice
  [[nodiscard]] uint32_t device_id() const override;
  [[nodiscard]] uint64_t offered_features() const override;
  [[nodiscard]] size_t queue_count() const override { return 2; }
  [[nodiscard]] uint32_t max_queue_size() const override { return cfg_.max_queue_size; }
  [[nodiscard]] size_t config_size() const override { return 12; }
  bool read_config(uint32_t offset, std::span<uint8_t> out) const override;
  bool set_link_mtu(uint32_t mtu) override;
  void set_acked_features(uint64_t features) override;
  void queue_attached(size_t index, Virtqueue& queue) override;
  void queue_detached(size_t index) override;
  void queue_notified(size_t index) override;
  void reset() override;

  [[nodiscard]] const VirtioNetStats& stats() const { return stats_; }
  [[nodiscard]] uint64_t acked_features() const { return acked_; }
  [[nodiscard]] bool rx_ready() const { return rx_ != nullptr; }
  [[nodiscard]] size_t rx_backlog_frames() const { return backlog_.size(); }

 private:
  void process_tx();
  void handle_tx_chain(const DescriptorChain& chain);
  // The frame of a chain whose header passed the device's own checks: checked
  // against the header, its checksum completed, handed to the sink.
  void hand_over(const DescriptorChain& chain, const wire::VnetHdr& h, size_t frame_len);
  // Writes one frame into receive buffers; false when there are not enough.
  enum class Rx { kDone, kNoBuffers, kDropped };
  Rx deliver(std::span<const uint8_t> frame);
  // Writes header + frame over the writable buffers of the first `chains`
  // chains of rx_chains_ and adds them to the used ring (unpublished).
  void scatter(std::span<const uint8_t> hdr, std::span<const uint8_t> frame, size_t chains);
  void flush_backlog();
  void log_guest(std::string_view what);

  boost::asio::io_context& io_;
  const Clock& clock_;
  VirtioNetConfig cfg_;
  netstack::FrameSink* sink_ = nullptr;
  Virtqueue* rx_ = nullptr;
  Virtqueue* tx_ = nullptr;
  uint64_t acked_ = 0;
  size_t hdr_len_ = 12;
  bool tx_posted_ = false;
  DescriptorChain tx_chain_;
  std::vector<DescriptorChain> rx_chains_;
  std::vector<uint8_t> scratch_;
  std::deque<std::vector<uint8_t>> backlog_;
  size_t backlog_bytes_ = 0;
  VirtioNetStats stats_;
  RateLimitedLog log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::vmm
