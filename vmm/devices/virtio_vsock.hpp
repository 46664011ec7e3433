// VirtioVsockDevice: the virtio-vsock device model (virtio 1.x §5.10), the
// host end of every guest vsock stream, offered to the rest of causeway as a
// VsockHost (vmm/vsock.hpp).
//
// Theory of operation
// -------------------
// Queues: 0 = rx (device → guest), 1 = tx (guest → device), 2 = event.
// Over vhost-user QEMU keeps the event queue for itself (it only ever
// carries TRANSPORT_RESET after migration), so the back-end sees 0 and 1;
// a native transport may attach 2 and we never put anything on it.
// Config space: le64 guest_cid (QEMU's vhost-user-vsock reads it with
// GET_CONFIG when it realizes the device).
//
// Connections are keyed by (guest port, host port) — the guest's CID is
// fixed — and live in a table of at most `max_connections`.
//
//   guest REQUEST → host port with a listener, table not full → RESPONSE,
//                   on_accept(stream)        otherwise → RST (counted)
//   connect(guest_port) → REQUEST from an ephemeral host port; RESPONSE
//                   completes it, RST → ECONNREFUSED, no answer within
//                   connect_timeout → ETIMEDOUT (and RST)
//   RW            → payload to on_data (straight out of guest memory); data
//                   arriving before on_data is set waits in the stream's
//                   buffer, which the credit we advertise bounds
//   SHUTDOWN      → SEND: on_eof; RCV: we stop sending; both: RST, closed
//   RST           → closed ("reset by peer")
//   CREDIT_UPDATE / CREDIT_REQUEST → §5.10.6.3 flow control
//
// Flow control, both ways (§5.10.6.3):
//   to the guest: we send at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt)
//     bytes beyond what it has consumed; write() queues up to
//     `tx_queue_bytes` per stream and returns 0 beyond that; on_writable
//     runs once the queue has drained below half. Out of credit with data
//     queued, we send one CREDIT_REQUEST.
//   from the guest: we advertise buf_alloc; fwd_cnt counts bytes handed to
//     on_data. A guest sending beyond its credit is misbehaving: the stream
//     is reset and counted. We send CREDIT_UPDATE when fwd_cnt has moved a
//     quarter of buf_alloc past what the guest last heard (every packet we
//     send carries fwd_cnt too).
//   Note: VsockStream::on_data has no way to push back, so a consumer must
//   take what it is given (the engine's relays buffer it); the bound above
//   is on data not yet handed over.
//
// Receive-queue scheduling: control packets for unknown connections (RSTs)
// first, then connections with something to send, round-robin, one packet
// each per pass. Per connection, what is pending is a set of flags
// (response, request, credit update/request, shutdown, reset) plus its data
// queue, so pending control state is bounded by the table; RSTs for packets
// that match no connection go through a bounded queue (kMaxPendingRsts)
// behind a token bucket (kRstBurst, kRstPerSecond) — a guest flooding
// unknown ports gets some RSTs, counters, and no growth in our memory.
// When the guest has posted no receive buffers, everything waits (bounded as
// above) for its next rx kick.
//
// Bad guest data (malformed chain, short header, wrong CID, unknown op,
// bad length) is dropped with a counter and the chain is returned.
//
// Streams: listen()/connect() hand out std::shared_ptr<VsockStream>.
// Dropping the last reference to an open stream resets it. Callbacks run on
// the engine thread, from inside the device's queue processing; a callback
// may call write(), shutdown_write() or close() on any stream. After the
// device resets (front-end gone), or both rx and tx stop (over vhost-user:
// the guest driver reset, e.g. a reboot), open streams get on_eof/on_closed
// and pending connects fail with ECONNRESET.
//
// Thread safety: confined to the engine executor (the io_context given).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "vmm/devices/vsock_packet.hpp"
#include "vmm/virtio_device.hpp"
#include "vmm/virtqueue.hpp"
#include "vmm/vsock.hpp"

namespace causeway::vmm {

struct VirtioVsockConfig {
  uint64_t guest_cid = 3;  // the first CID free for guests
  // As for virtio-net: QEMU picks the size (128 on virtio-pci, 1024 on
  // virtio-mmio/microvm) and the rings are guest memory.
  uint32_t max_queue_size = 32768;
  size_t max_connections = 256;
  uint32_t buf_alloc = 256 * 1024;     // our receive buffer per stream (advertised credit)
  size_t tx_queue_bytes = 256 * 1024;  // host → guest bytes a stream may queue
  std::chrono::milliseconds connect_timeout{5000};
};

struct VirtioVsockStats {
  uint64_t rx_packets = 0;          // device → guest
  uint64_t rx_bytes = 0;            // payload bytes to the guest
  uint64_t tx_packets = 0;          // guest → device, accepted
  uint64_t tx_bytes = 0;            // payload bytes from the guest
  uint64_t accepted = 0;            // guest connections accepted
  uint64_t refused = 0;             // guest REQUEST to a port nobody listens on
  uint64_t table_full = 0;          // REQUEST refused: connection table at capacity
  uint64_t connects = 0;            // host connect() calls
  uint64_t connect_failures = 0;    // refused, timed out, reset, not ready or table full
  uint64_t unknown_connection = 0;  // packets matching no connection
  uint64_t rst_sent = 0;
  uint64_t rst_received = 0;
  uint64_t rst_suppressed = 0;     // RSTs not sent: rate limit or queue full
  uint64_t credit_violations = 0;  // guest sent beyond our advertised credit
  uint64_t credit_updates_sent = 0;
  uint64_t malformed = 0;  // bad chains and bad packets (by reason below)
  std::array<uint64_t, vsock::kPacketCheckCount> bad_packets{};
  uint64_t rx_stalls = 0;  // times we waited for receive buffers
  uint64_t broken_queue = 0;
  size_t connections = 0;  // current
};

class VirtioVsockDevice final : public VirtioDevice, public VsockHost {
 public:
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;
  static constexpr size_t kEventQueue = 2;
  static constexpr size_t kMaxPendingRsts = 64;
  static constexpr int kRstBurst = 64;
  static constexpr int kRstPerSecond = 256;
  static constexpr int kTxBudget = 256;  // tx chains per turn

  VirtioVsockDevice(boost::asio::io_context& io, const Clock& clock, VirtioVsockConfig cfg);
  ~VirtioVsockDevice() override;
  VirtioVsockDevice(const VirtioVsockDevice&) = delete;
  VirtioVsockDevice& operator=(const VirtioVsockDevice&) = delete;

  // VsockHost
  void listen(uint32_t port, VsockAcceptHandler on_accept) override;
  void connect(uint32_t guest_port, VsockConnectHandler on_connect) override;

  // VirtioDevice
  [[nodiscard]] uint32_t device_id() const override;
  [[nodiscard]] uint64_t offered_features() const override;
  [[nodiscard]] size_t queue_count() const override { return 3; }
  [[nodiscard]] uint32_t max_queue_size() const override { return cfg_.max_queue_size; }
  [[nodiscard]] size_t config_size() const override { return 8; }
  bool read_config(uint32_t offset, std::span<uint8_t> out) const override;
  void set_acked_features(uint64_t features) override { acked_ = features & offered_features(); }
  void queue_attached(size_t index, Virtqueue& queue) override;
  void queue_detached(size_t index) override;
  void queue_notified(size_t index) override;
  void reset() override;

  [[nodiscard]] VirtioVsockStats stats() const;
  [[nodiscard]] bool ready() const { return rx_ != nullptr && tx_ != nullptr; }
  [[nodiscard]] uint64_t guest_cid() const { return cfg_.guest_cid; }

 private:
  class Stream;
  struct Conn;
  friend class Stream;
  using Key = uint64_t;  // host_port << 32 | guest_port
  static Key key_of(uint32_t guest_port, uint32_t host_port) { return (uint64_t{host_port} << 32) | guest_port; }

  // tx (guest → device)
  void process_tx();
  void handle_tx_chain(const DescriptorChain& c);
  void on_packet(const vsock::Header& h, const DescriptorChain& c);
  void deliver(Conn& conn, const DescriptorChain& c, uint32_t len);
  // rx (device → guest)
  void schedule_rx();
  void process_rx();
  bool next_packet(vsock::Header& h, Conn*& data_conn, uint32_t max_payload);
  void mark_ready(Conn& conn);
  // connection life
  Conn* find(Key k);
  void drop_all(const char* reason);
  Conn* find(Key k, uint64_t id);  // only if it is still connection `id`
  void queue_rst(uint32_t guest_port, uint32_t host_port, bool guest_provoked);
  void close_conn(Key k, const char* reason, bool send_rst, boost::system::error_code connect_error = {});
  void credit_from(Conn& conn, const vsock::Header& h);
  void maybe_credit_update(Conn& conn);
  uint32_t allocate_host_port(uint32_t guest_port);
  void log_guest(std::string_view what);
  // Stream API entry points
  // (key, id) names one connection: a key can be reused once its connection ends.
  size_t stream_write(Key k, uint64_t id, std::span<const uint8_t> data);
  void stream_shutdown_write(Key k, uint64_t id);
  void stream_close(Key k, uint64_t id);
  void stream_set_on_data(Key k, uint64_t id);
  void stream_released(Key k, uint64_t id);

  boost::asio::io_context& io_;
  const Clock& clock_;
  VirtioVsockConfig cfg_;
  uint64_t acked_ = 0;
  Virtqueue* rx_ = nullptr;
  Virtqueue* tx_ = nullptr;
  std::unordered_map<Key, std::unique_ptr<Conn>> conns_;
  std::unordered_map<uint32_t, VsockAcceptHandler> listeners_;
  std::deque<Key> ready_;  // connections with something to send (each at most once)
  struct PendingRst {
    uint32_t guest_port;
    uint32_t host_port;
  };
  std::deque<PendingRst> rsts_;
  double rst_tokens_ = kRstBurst;
  int64_t rst_refill_ms_ = -1;
  uint32_t next_host_port_ = 49152;
  uint64_t next_conn_id_ = 0;
  bool rx_posted_ = false;
  bool tx_posted_ = false;
  DescriptorChain chain_;
  std::vector<uint8_t> scratch_;
  VirtioVsockStats stats_;
  RateLimitedLog log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::vmm
