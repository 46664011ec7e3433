// vhost_user::Session: the back-end state of one front-end connection — the
// request state machine of QEMU's docs/interop/vhost-user.rst. Server owns
// the socket and feeds whole messages in; Session answers them and drives a
// VirtioDevice.
//
// Theory of operation
// -------------------
// Negotiation: GET_FEATURES answers the device's features plus
// VHOST_USER_F_PROTOCOL_FEATURES; GET_PROTOCOL_FEATURES answers REPLY_ACK,
// plus NET_MTU for network devices (QEMU serves virtio-net config space
// itself) or CONFIG for other devices with config space (QEMU's
// vhost-user-vsock reads guest_cid with GET_CONFIG when it realizes the
// device, and refuses a back-end without CONFIG).
// MQ, LOG_SHMFD (migration), SLAVE_REQ, INFLIGHT and friends are not
// offered, so their requests never legitimately arrive.
//
// Rings (vhost-user.rst "Ring states"): each ring is stopped until
// SET_VRING_KICK gives it a kick eventfd — by then QEMU has sent NUM, ADDR
// and BASE; it is then started. It is enabled from the start unless
// VHOST_USER_F_PROTOCOL_FEATURES was negotiated, in which case
// SET_VRING_ENABLE switches it. GET_VRING_BASE stops it and returns the next
// available index (our device models complete every chain they pop before
// returning, so nothing is in flight). The device sees a queue only while it
// is started and enabled: queue_attached() / queue_detached(). A started but
// disabled ring keeps its kicks for later instead of discarding transmit
// buffers as the document suggests — QEMU disables rings only around stop
// and migration, where either choice is invisible.
//
// Memory: SET_MEM_TABLE maps the regions (GuestMemory validates them); a
// table that would leave a configured ring outside RAM is refused, and so is
// a SET_VRING_ADDR whose rings are not inside RAM. Ring addresses arrive as
// front-end user addresses and are translated to guest-physical once.
//
// Errors: a payload of the wrong size or shape is a protocol error — the
// connection is closed. A well-formed request we refuse (ring outside RAM,
// index out of range, unsupported request) gets a failure reply when the
// front-end asked for one (REPLY_ACK + NEED_REPLY); otherwise the connection
// is closed too, since the front-end would go on believing it succeeded.
// Kick eventfds are Asio descriptors on the caller's io_context; call and
// error eventfds are written directly.
//
// Thread safety: confined to the executor of the io_context it was built on.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/vhost_user/message.hpp"
#include "vmm/virtio_device.hpp"
#include "vmm/virtqueue.hpp"

namespace causeway::vmm::vhost_user {

struct SessionStats {
  uint64_t messages = 0;
  uint64_t rejected = 0;       // refused requests (failure reply or close)
  uint64_t unsupported = 0;    // requests for features we never offered
  uint64_t mem_tables = 0;     // accepted SET_MEM_TABLE
  uint64_t kicks = 0;          // kick eventfd wake-ups
  uint64_t interrupts = 0;     // call eventfd writes
  uint64_t broken_queues = 0;  // queues the guest broke
};

class Session {
 public:
  struct Outcome {
    std::optional<std::vector<uint8_t>> reply;
    bool close = false;  // the connection must end (protocol error or refused request without REPLY_ACK)
    std::string error;   // why, when refused or closing
  };

  Session(boost::asio::io_context& io, const Clock& clock, VirtioDevice& device, std::string name);
  // Detaches every queue and resets the device.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Outcome handle(Message msg);

  [[nodiscard]] const SessionStats& stats() const { return stats_; }
  [[nodiscard]] uint64_t acked_features() const { return acked_features_; }
  [[nodiscard]] uint64_t protocol_features() const { return protocol_features_; }
  [[nodiscard]] const GuestMemory& memory() const { return memory_; }
  // Queue statistics for ring `i` (for counters), nullptr when out of range.
  [[nodiscard]] const VirtqueueStats* queue_stats(size_t i) const;

  // Protocol features this back-end offers for `device`.
  static uint64_t offered_protocol_features(const VirtioDevice& device);

 private:
  struct Ring {
    explicit Ring(const GuestMemory& m) : queue(m) {}
    Virtqueue queue;
    uint32_t num = 0;
    std::optional<VringAddr> addr;  // front-end user addresses
    uint16_t base = 0;
    bool started = false;
    bool enabled = false;
    bool attached = false;
    bool kick_pending = false;
    UniqueFd call;
    UniqueFd err;
    std::unique_ptr<boost::asio::posix::stream_descriptor> kick;
  };
  using Result = boost::system::result<std::optional<std::vector<uint8_t>>, std::string>;

  Result dispatch(Message& msg);
  Result on_set_features(const Message& m);
  Result on_set_protocol_features(const Message& m);
  Result on_set_mem_table(Message& m);
  Result on_vring_num(const Message& m);
  Result on_vring_addr(const Message& m);
  Result on_vring_base(const Message& m);
  Result on_get_vring_base(const Message& m);
  Result on_vring_kick(Message& m);
  Result on_vring_call(Message& m, bool error_fd);
  Result on_vring_enable(const Message& m);
  Result on_get_config(const Message& m);
  Result on_net_set_mtu(const Message& m);

  boost::system::result<Ring*, std::string> ring_at(uint32_t index);
  using UvaLookup = std::function<std::optional<uint64_t>(uint64_t uva, uint64_t len)>;
  static boost::system::result<VirtqueueLayout, std::string> layout_for(const Ring& r, const UvaLookup& uva_to_gpa);
  [[nodiscard]] UvaLookup mem_lookup() const;
  boost::system::result<void, std::string> start_ring(size_t i);
  void stop_ring(size_t i);
  void update_attachment(size_t i);
  void arm_kick(size_t i);
  void on_kick(size_t i);
  void signal(const UniqueFd& fd);

  boost::asio::io_context& io_;
  const Clock& clock_;
  VirtioDevice& device_;
  std::string name_;
  GuestMemory memory_;
  std::vector<std::unique_ptr<Ring>> rings_;
  uint64_t acked_features_ = 0;
  bool features_set_ = false;
  uint64_t protocol_features_ = 0;
  bool protocol_features_set_ = false;
  SessionStats stats_;
  RateLimitedLog guest_log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::vmm::vhost_user
