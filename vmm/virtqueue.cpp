#include "vmm/virtqueue.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "vmm/virtio_spec.hpp"

namespace causeway::vmm {

namespace {

// §2.7.5: struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }.
struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == virtio::kDescSize);

Desc read_desc(const uint8_t* table, uint32_t i) {
  Desc d;
  // SAFETY: callers pass a table resolved by GuestMemory::slice for at least
  // (i + 1) * 16 bytes. The copy is taken once and only the copy is checked,
  // so a guest rewriting the descriptor meanwhile cannot change what we validated.
  std::memcpy(&d, table + static_cast<size_t>(i) * sizeof(Desc), sizeof(Desc));
  return d;
}

// Ring indices and flags are 16-bit fields the guest reads or writes
// concurrently; access them atomically.
uint16_t load16(const uint8_t* p, std::memory_order order) {
  // SAFETY: p lies inside a ring resolved by GuestMemory::slice and is 2-byte
  // aligned (set_layout checks the GPA alignment, start() the host address).
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(p))).load(order);
}
void store16(uint8_t* p, uint16_t v, std::memory_order order) {
  // SAFETY: as load16.
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, order);
}

bool is_pow2(uint32_t n) { return n != 0 && (n & (n - 1)) == 0; }

}  // namespace

std::string_view to_string(ChainError e) {
  switch (e) {
    case ChainError::kNone: return "none";
    case ChainError::kIndexOutOfRange: return "descriptor index out of range";
    case ChainError::kTooLong: return "chain longer than the queue (loop?)";
    case ChainError::kOutsideRam: return "buffer outside guest RAM";
    case ChainError::kNestedIndirect: return "indirect descriptor inside an indirect table";
    case ChainError::kIndirectWithNext: return "indirect descriptor with NEXT set";
    case ChainError::kIndirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
    case ChainError::kBadIndirectTable: return "bad indirect table length";
    case ChainError::kReadableAfterWritable: return "device-readable descriptor after a writable one";
  }
  return "?";
}

void DescriptorChain::clear() {
  head = 0;
  error = ChainError::kNone;
  readable.clear();
  writable.clear();
  readable_bytes = 0;
  writable_bytes = 0;
}

boost::system::result<void, std::string> Virtqueue::set_layout(const VirtqueueLayout& l) {
  if (!is_pow2(l.size) || l.size > virtio::kMaxQueueSize)
    return fmt::format("queue size {} is not a power of two in 1..{}", l.size, virtio::kMaxQueueSize);
  // §2.7: alignment of the descriptor table (16), available ring (2), used ring (4).
  if (l.desc % 16 != 0 || l.avail % 2 != 0 || l.used % 4 != 0)
    return fmt::format("misaligned ring (desc {:#x}, avail {:#x}, used {:#x})", l.desc, l.avail, l.used);
  layout_ = l;
  layout_set_ = true;
  mapped_generation_ = ~0ull;
  return {};
}

void Virtqueue::set_features(uint64_t features) {
  event_idx_ = (features & virtio::kFEventIdx) != 0;
  indirect_ = (features & virtio::kFIndirectDesc) != 0;
}

bool Virtqueue::resolve() {
  const uint32_t n = layout_.size;
  auto d = mem_.slice(layout_.desc, virtio::desc_table_bytes(n));
  auto a = mem_.slice(layout_.avail, virtio::avail_ring_bytes(n));
  auto u = mem_.slice(layout_.used, virtio::used_ring_bytes(n));
  if (!d || !a || !u) return false;
  // The host mapping keeps the GPA's alignment modulo the page size; check
  // anyway, since atomic_ref needs it (a caller-owned test buffer might not).
  if (reinterpret_cast<uintptr_t>(a->data()) % 2 != 0 || reinterpret_cast<uintptr_t>(u->data()) % 4 != 0) return false;
  desc_ = d->data();
  avail_ = a->data();
  used_ = u->data();
  mapped_generation_ = mem_.generation();
  return true;
}

bool Virtqueue::ensure_mapped() {
  if (mapped_generation_ == mem_.generation()) return true;
  if (resolve()) return true;
  mark_broken("a ring is outside guest RAM after the memory table changed");
  return false;
}

boost::system::result<void, std::string> Virtqueue::start() {
  if (!layout_set_) return std::string("queue layout not set");
  if (!resolve())
    return fmt::format("ring outside guest RAM (size {}, desc {:#x}, avail {:#x}, used {:#x})", layout_.size,
                       layout_.desc, layout_.avail, layout_.used);
  // Continue from where the used ring stands (a fresh driver zeroes it; after
  // a back-end reconnect it holds what the previous back-end published).
  used_idx_ = load16(used_ + 2, std::memory_order_acquire);
  published_used_ = used_idx_;
  signalled_valid_ = false;
  broken_ = false;
  started_ = true;
  return {};
}

void Virtqueue::mark_broken(std::string_view why) {
  if (broken_) return;
  broken_ = true;
  ++stats_.broken;
  if (on_broken_) on_broken_(why);
}

uint16_t Virtqueue::load_avail_idx() const { return load16(avail_ + 2, std::memory_order_acquire); }

uint16_t Virtqueue::pending() {
  if (!started_ || broken_ || !ensure_mapped()) return 0;
  return static_cast<uint16_t>(load_avail_idx() - next_avail_);
}

Virtqueue::Pop Virtqueue::pop(DescriptorChain& out) {
  out.clear();
  if (broken_) return Pop::kBroken;
  if (!started_) return Pop::kEmpty;
  if (!ensure_mapped()) return Pop::kBroken;
  const uint32_t n = layout_.size;
  // §2.7.13.3: the driver writes ring entries before idx (release); our
  // acquire load makes those entries visible before we read them.
  const uint16_t avail_idx = load_avail_idx();
  const uint16_t waiting = static_cast<uint16_t>(avail_idx - next_avail_);
  if (waiting == 0) return Pop::kEmpty;
  if (waiting > n) {
    mark_broken(fmt::format("available index jumped {} entries ahead (queue size {})", waiting, n));
    return Pop::kBroken;
  }
  const uint16_t head = load16(avail_ + 4 + 2 * (next_avail_ % n), std::memory_order_relaxed);
  if (head >= n) {
    mark_broken(fmt::format("available ring names descriptor {} (queue size {})", head, n));
    return Pop::kBroken;
  }
  ++next_avail_;
  ++stats_.chains;
  out.head = head;
  out.error = walk(head, out);
  if (!out.ok()) {
    out.readable.clear();
    out.writable.clear();
    out.readable_bytes = out.writable_bytes = 0;
    ++stats_.bad_chains;
    ++stats_.bad_by_reason[static_cast<size_t>(out.error)];
  }
  return Pop::kChain;
}

ChainError Virtqueue::walk(uint16_t head, DescriptorChain& out) const {
  const uint8_t* table = desc_;
  uint32_t table_len = layout_.size;
  uint32_t idx = head;
  uint32_t count = 0;
  bool in_indirect = false;
  for (;;) {
    // §2.7.5.3.1 / §2.7.4.2: no chain is longer than the queue; anything
    // longer loops. In an indirect table the cap is its own length.
    if (++count > table_len) return ChainError::kTooLong;
    const Desc d = read_desc(table, idx);
    if (d.flags & virtio::kDescFIndirect) {
      if (in_indirect) return ChainError::kNestedIndirect;
      if (!indirect_) return ChainError::kIndirectNotNegotiated;
      if (d.flags & virtio::kDescFNext) return ChainError::kIndirectWithNext;
      if (d.len == 0 || d.len % virtio::kDescSize != 0 || d.len / virtio::kDescSize > layout_.size)
        return ChainError::kBadIndirectTable;
      auto t = mem_.slice(d.addr, d.len);
      if (!t) return ChainError::kOutsideRam;
      table = t->data();
      table_len = static_cast<uint32_t>(d.len / virtio::kDescSize);
      in_indirect = true;
      idx = 0;
      count = 0;
      continue;
    }
    if (d.len > 0) {
      auto buf = mem_.slice(d.addr, d.len);
      if (!buf) return ChainError::kOutsideRam;
      if (d.flags & virtio::kDescFWrite) {
        out.writable.push_back(*buf);
        out.writable_bytes += d.len;
      } else {
        if (!out.writable.empty()) return ChainError::kReadableAfterWritable;
        out.readable.emplace_back(buf->data(), buf->size());
        out.readable_bytes += d.len;
      }
    } else if (!(d.flags & virtio::kDescFWrite) && !out.writable.empty()) {
      return ChainError::kReadableAfterWritable;
    }
    if (!(d.flags & virtio::kDescFNext)) return ChainError::kNone;
    idx = d.next;
    if (idx >= table_len) return ChainError::kIndexOutOfRange;
  }
}

void Virtqueue::undo_pop(uint16_t n) { next_avail_ = static_cast<uint16_t>(next_avail_ - n); }

void Virtqueue::push_used(uint16_t head, uint32_t len) {
  add_used(head, len);
  publish_used();
}

void Virtqueue::publish_used() {
  if (!started_ || broken_ || !ensure_mapped() || published_used_ == used_idx_) return;
  // §2.7.13.3 (device side): the elements must be visible before the index.
  store16(used_ + 2, used_idx_, std::memory_order_release);
  published_used_ = used_idx_;
  ++stats_.used_publishes;
}

void Virtqueue::add_used(uint16_t head, uint32_t len) {
  if (!started_ || broken_ || !ensure_mapped()) return;
  // Our own invariant: heads come from pop(), which checked them.
  if (head >= layout_.size) std::abort();
  const uint32_t n = layout_.size;
  uint8_t* elem = used_ + 4 + 8 * static_cast<size_t>(used_idx_ % n);
  const uint32_t id = head;
  // SAFETY: elem is one of the n 8-byte used-ring elements inside the used
  // ring resolved by GuestMemory::slice (used_ring_bytes(n) bytes).
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &len, 4);
  ++used_idx_;
  ++stats_.used;
}

void Virtqueue::notify() {
  publish_used();  // never interrupt for entries the driver cannot see yet
  if (!started_ || broken_ || !ensure_mapped()) return;
  const uint32_t n = layout_.size;
  // Order our used.idx store before reading the driver's suppression state,
  // pairing with the driver's barrier between its flag/event write and its
  // re-read of used.idx (§2.7.7.2, §2.7.10).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool need;
  if (event_idx_) {
    const uint16_t used_event = load16(avail_ + 4 + 2 * n, std::memory_order_relaxed);
    const uint16_t old = signalled_used_;
    const bool valid = signalled_valid_;
    if (valid && old == used_idx_) return;  // nothing new since the last interrupt decision
    // vring_need_event(): interrupt if used_event lies in (old, new].
    need = !valid || static_cast<uint16_t>(used_idx_ - used_event - 1) < static_cast<uint16_t>(used_idx_ - old);
  } else {
    if (signalled_valid_ && signalled_used_ == used_idx_) return;
    need = (load16(avail_, std::memory_order_relaxed) & virtio::kAvailFNoInterrupt) == 0;
  }
  signalled_used_ = used_idx_;
  signalled_valid_ = true;
  if (need) {
    ++stats_.interrupts;
    if (on_interrupt_) on_interrupt_();
  } else {
    ++stats_.interrupts_suppressed;
  }
}

bool Virtqueue::enable_notifications() {
  if (!started_ || broken_ || !ensure_mapped()) return false;
  const uint32_t n = layout_.size;
  if (event_idx_) {
    // §2.7.10: kick me once avail.idx moves past next_avail.
    store16(used_ + 4 + 8 * static_cast<size_t>(n), next_avail_, std::memory_order_relaxed);
  } else {
    store16(used_, 0, std::memory_order_relaxed);
  }
  // The driver may have added buffers before it saw our request: look again.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return load_avail_idx() != next_avail_;
}

bool Virtqueue::request_notification_on_new_buffers() {
  if (!started_ || broken_ || !ensure_mapped()) return false;
  const uint32_t n = layout_.size;
  const uint16_t seen = load_avail_idx();
  if (event_idx_) {
    // vring_need_event() on the driver side kicks when avail_event lies in
    // [old idx, new idx): asking for `seen` means "on the next addition".
    store16(used_ + 4 + 8 * static_cast<size_t>(n), seen, std::memory_order_relaxed);
  } else {
    store16(used_, 0, std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return load_avail_idx() != seen;
}

void Virtqueue::disable_notifications() {
  if (!started_ || broken_ || !ensure_mapped()) return;
  // With EVENT_IDX there is no "off" switch: leaving avail_event behind is
  // what suppresses kicks (the driver kicks only when it crosses it).
  if (!event_idx_) store16(used_, virtio::kUsedFNoNotify, std::memory_order_relaxed);
}

}  // namespace causeway::vmm
