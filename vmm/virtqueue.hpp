// Virtqueue: the device side of one split virtqueue (virtio 1.x §2.7), over
// GuestMemory.
//
// Theory of operation
// -------------------
// The driver (guest) owns the descriptor table and the available ring; the
// device (us) owns the used ring. A transport (vhost-user here, a native
// virtio-pci later) fills in the layout — queue size and the guest-physical
// addresses of the three areas — and the index to resume from, then start()s
// the queue; the device model then pops descriptor chains, reads or fills
// their buffers in place, and pushes them onto the used ring.
//
//   driver: desc[i] = {addr,len,flags,next}; avail.ring[avail.idx % n] = head; avail.idx++ (release)
//   device: pop(): acquire avail.idx; head = avail.ring[next_avail % n]; walk the chain
//           push_used(head, written): used.ring[used_idx % n] = {head, written}; used.idx++ (release)
//           notify(): interrupt the driver unless it suppressed it (§2.7.7 / §2.7.10)
//
// The guest runs concurrently and is hostile. Ring indices are read and
// written with acquire/release atomics (§2.7.13.3's memory barriers);
// descriptors are copied out once and the copy is what gets validated (no
// double fetch). What a chain may do wrong, and what happens:
//
//   descriptor index ≥ table size, chain longer than the queue size (loops),
//   INDIRECT inside an indirect table, INDIRECT together with NEXT, INDIRECT
//   without VIRTIO_F_INDIRECT_DESC, an indirect table whose length is not a
//   non-zero multiple of 16 or exceeds the queue size, a buffer (or table)
//   not wholly inside guest RAM, a device-readable descriptor after a
//   device-writable one (§2.7.4.2)
//      → pop() returns the chain with `error` set and no buffers; the device
//        counts it and still push_used()s the head (length 0), so the driver
//        gets its buffers back.
//   avail.idx moving more than the queue size ahead of us, a head index
//   ≥ the queue size, a ring outside RAM after a memory-table change
//      → nothing sensible can be returned to the driver: the queue is marked
//        broken (counted; on_broken runs once so the transport can tell the
//        front-end) and pops nothing more until it is reconfigured.
//
// Notifications: with VIRTIO_F_EVENT_IDX the device interrupts only when
// used.idx passes the driver's used_event, and asks for kicks by writing
// avail_event; without it, the avail/used ring flags do the same job.
//
// Limits: chains are at most queue-size descriptors long (§2.7.5.3.1 and
// §2.7.4.2: drivers must not build longer ones), indirect tables included.
// Packed rings (VIRTIO_F_RING_PACKED) are not implemented and never offered.
//
// Thread safety: confined to the engine executor; the guest is the only
// other party and is dealt with through atomics on the ring indices.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

#include "vmm/guest_memory.hpp"

namespace causeway::vmm {

enum class ChainError : uint8_t {
  kNone,
  kIndexOutOfRange,        // `next` (or an indirect entry's next) past the table
  kTooLong,                // more descriptors than the queue size: a loop, most likely
  kOutsideRam,             // a buffer or indirect table not wholly inside guest RAM
  kNestedIndirect,         // INDIRECT inside an indirect table (§2.7.5.3.1)
  kIndirectWithNext,       // INDIRECT and NEXT together (§2.7.5.3.1)
  kIndirectNotNegotiated,  // INDIRECT without VIRTIO_F_INDIRECT_DESC
  kBadIndirectTable,       // length 0, not a multiple of 16, or longer than the queue
  kReadableAfterWritable,  // §2.7.4.2: writable descriptors come last
};
constexpr size_t kChainErrorCount = 9;
std::string_view to_string(ChainError e);

// One descriptor chain, in order: the device-readable buffers, then the
// device-writable ones. The spans point into guest RAM and are valid until
// the memory table changes — in practice, for the current handler only.
struct DescriptorChain {
  uint16_t head = 0;
  ChainError error = ChainError::kNone;
  std::vector<std::span<const uint8_t>> readable;
  std::vector<std::span<uint8_t>> writable;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
  [[nodiscard]] bool ok() const { return error == ChainError::kNone; }
  void clear();
};

// The driver's placement of one queue, in guest-physical addresses.
struct VirtqueueLayout {
  uint32_t size = 0;   // power of two, 1..32768
  uint64_t desc = 0;   // 16-byte aligned (§2.7: Descriptor Table alignment)
  uint64_t avail = 0;  // 2-byte aligned
  uint64_t used = 0;   // 4-byte aligned
};

struct VirtqueueStats {
  uint64_t chains = 0;      // popped, good or bad
  uint64_t bad_chains = 0;  // popped with an error (returned to the driver with length 0)
  std::array<uint64_t, kChainErrorCount> bad_by_reason{};
  uint64_t used = 0;            // chains returned (add_used/push_used)
  uint64_t used_publishes = 0;  // used.idx stores (one per push_used / publish_used)
  uint64_t interrupts = 0;      // on_interrupt calls
  uint64_t interrupts_suppressed = 0;
  uint64_t broken = 0;  // times the queue was marked broken
};

class Virtqueue {
 public:
  enum class Pop { kChain, kEmpty, kBroken };

  explicit Virtqueue(const GuestMemory& mem) : mem_(mem) {}
  Virtqueue(const Virtqueue&) = delete;
  Virtqueue& operator=(const Virtqueue&) = delete;

  // ---- transport side (queue stopped) ----
  // Checks size and alignment; does not touch guest memory yet.
  boost::system::result<void, std::string> set_layout(const VirtqueueLayout& layout);
  void set_features(uint64_t features);  // VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC
  void set_next_avail(uint16_t idx) { next_avail_ = idx; }
  // Resolves the three areas in guest RAM (all of each must be inside one
  // region) and reads used.idx to continue from. Clears `broken`.
  boost::system::result<void, std::string> start();
  void stop() { started_ = false; }
  // Device interrupt (the transport's call eventfd) and failure report (its
  // error eventfd). Either may be empty.
  void set_on_interrupt(std::function<void()> cb) { on_interrupt_ = std::move(cb); }
  void set_on_broken(std::function<void(std::string_view why)> cb) { on_broken_ = std::move(cb); }

  [[nodiscard]] bool started() const { return started_; }
  [[nodiscard]] bool broken() const { return broken_; }
  [[nodiscard]] uint16_t next_avail() const { return next_avail_; }
  [[nodiscard]] uint32_t size() const { return layout_.size; }
  [[nodiscard]] const VirtqueueLayout& layout() const { return layout_; }
  [[nodiscard]] const VirtqueueStats& stats() const { return stats_; }
  [[nodiscard]] bool event_idx() const { return event_idx_; }

  // ---- device side ----
  // Takes the next available chain. kEmpty also when the queue is stopped.
  Pop pop(DescriptorChain& out);
  // Puts back the last `n` chains popped (and not pushed): the device found
  // it cannot use them now (e.g. not enough receive buffers for a frame).
  void undo_pop(uint16_t n);
  // Returns a chain to the driver with `len` bytes written into it, and
  // publishes it (add_used + publish_used).
  void push_used(uint16_t head, uint32_t len);
  // The same in two steps, for chains the driver must see together: a
  // mergeable receive frame spans several chains and the driver reads
  // num_buffers - 1 more used entries right after the first, so none may be
  // visible before all are (Linux counts the frame as an rx error otherwise).
  void add_used(uint16_t head, uint32_t len);
  void publish_used();
  // Interrupts the driver if it asked for one for what was used since the
  // last call (§2.7.7.2 / §2.7.10).
  void notify();
  // Asks the driver to kick on new buffers; returns true if some arrived
  // meanwhile (the caller should keep processing instead of waiting).
  bool enable_notifications();
  // Asks for a kick when the driver adds buffers beyond those already
  // available (used when the available ones are not enough, e.g. for a big
  // receive frame); returns true if some were added meanwhile.
  bool request_notification_on_new_buffers();
  // Tells the driver kicks are not needed while we are busy.
  void disable_notifications();
  // Entries the driver made available that we have not popped (0 if broken).
  [[nodiscard]] uint16_t pending();

  // Marks the queue broken (see above). Public so a device can do the same
  // on device-level nonsense it cannot recover from.
  void mark_broken(std::string_view why);

 private:
  bool ensure_mapped();
  bool resolve();
  uint16_t load_avail_idx() const;
  ChainError walk(uint16_t head, DescriptorChain& out) const;

  const GuestMemory& mem_;
  VirtqueueLayout layout_;
  bool layout_set_ = false;
  bool event_idx_ = false;
  bool indirect_ = false;
  bool started_ = false;
  bool broken_ = false;
  uint16_t next_avail_ = 0;
  uint16_t used_idx_ = 0;  // our shadow of used.idx, ahead of it until published
  uint16_t published_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_valid_ = false;
  uint64_t mapped_generation_ = ~0ull;
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  std::function<void()> on_interrupt_;
  std::function<void(std::string_view)> on_broken_;
  VirtqueueStats stats_;
};

}  // namespace causeway::vmm
