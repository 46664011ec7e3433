// HostileGuest: the driver's half of up to three split virtqueues in a small guest RAM, run by
// a fuzz program — the fuzz targets of VirtioNetDevice and VirtioVsockDevice drive the device
// models through it exactly as a guest would, except that every descriptor field, index and
// ring byte may be hostile.
//
// RAM: kRamSize bytes at guest-physical kRamBase. Queue q's rings sit at q × 16 KiB
// (descriptor table, avail ring at +4 KiB, used ring at +8 KiB); buffers are carved from the
// data area above 64 KiB, round robin. Descriptors are taken round robin too, so a long
// program overwrites chains the device has not returned yet — a hostile guest may.
//
// Ops the targets share (the first byte of each op, handled by run_ring_op):
//   kOpChain      u8 queue, u8 count, then per descriptor: u8 mode, u16 len, [u64 addr]
//                 [u16 flags, u16 next], bytes — a chain of up to 8 descriptors; mode bit 0
//                 writable, bit 1 a raw address, bit 2 raw flags/next, bit 3 an indirect
//                 table (the descriptors go in a table one ring descriptor points at)
//   kOpBuffer     u8 queue, u16 len, bytes — one readable buffer (a transmit frame or packet)
//   kOpPost       u8 queue, u8 count, u16 len — that many writable buffers (receive side)
//   kOpRaw        u32 offset, u16 len, bytes — written anywhere in RAM (rings included)
//   kOpAvailIdx   u8 queue, u16 idx — avail.idx set directly
//   kOpUsed       u8 queue — the driver consumes the used ring (its last_used catches up)
//
// Thread safety: one per fuzz input, single-threaded.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "tests/fuzz/fuzz_input.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/virtio_spec.hpp"
#include "vmm/virtqueue.hpp"

namespace causeway::fuzz {

enum : uint8_t { kOpChain = 0, kOpBuffer, kOpPost, kOpRaw, kOpAvailIdx, kOpUsed, kRingOps };

class HostileGuest {
 public:
  static constexpr uint64_t kRamBase = 0x100000;
  static constexpr size_t kRamSize = 512 * 1024;
  static constexpr size_t kDataStart = 64 * 1024;
  static constexpr uint64_t kQueueStride = 16 * 1024;

  // `sizes`: each queue's size (a power of two ≤ 256).
  HostileGuest(std::vector<uint16_t> sizes, uint64_t features) : sizes_(std::move(sizes)) {
    // One RAM for the process (fresh pages on every input cost more than the input), zeroed.
    static uint8_t* ram = static_cast<uint8_t*>(std::aligned_alloc(4096, kRamSize));
    ram_ = ram;
    std::memset(ram_, 0, kRamSize);
    (void)mem_.add_buffer_region(kRamBase, {ram_, kRamSize});
    for (size_t q = 0; q < sizes_.size(); ++q) {
      auto vq = std::make_unique<vmm::Virtqueue>(mem_);
      vq->set_features(features);
      (void)vq->set_layout(layout(q));
      started_.push_back(vq->start().has_value());
      queues_.push_back(std::move(vq));
      state_.push_back({});
    }
  }
  ~HostileGuest() = default;
  HostileGuest(const HostileGuest&) = delete;
  HostileGuest& operator=(const HostileGuest&) = delete;

  [[nodiscard]] vmm::VirtqueueLayout layout(size_t q) const {
    const uint64_t b = kRamBase + q * kQueueStride;
    return {sizes_[q], b, b + 4096, b + 8192};
  }
  vmm::Virtqueue& queue(size_t q) { return *queues_[q]; }
  [[nodiscard]] bool started(size_t q) const { return started_[q]; }
  [[nodiscard]] size_t queue_count() const { return queues_.size(); }

  // Runs one ring op (`op` < kRingOps); returns the queue it touched.
  size_t run_ring_op(uint8_t op, FuzzInput& in) {
    switch (op) {
      case kOpChain: {
        const size_t q = in.u8() % queues_.size();
        chain(q, in);
        return q;
      }
      case kOpBuffer: {
        const size_t q = in.u8() % queues_.size();
        const auto b = in.bytes(in.u16());
        const uint64_t g = alloc(b.size());
        std::memcpy(at(g), b.data(), b.size());
        const uint16_t d = next_desc(q);
        write_desc(desc_table(q), d, g, static_cast<uint32_t>(b.size()), 0, 0);
        publish(q, d);
        return q;
      }
      case kOpPost: {
        const size_t q = in.u8() % queues_.size();
        const unsigned n = in.u8() % 65;
        const uint16_t len = in.u16();
        for (unsigned i = 0; i < n; ++i) {
          const uint64_t g = alloc(len);
          const uint16_t d = next_desc(q);
          write_desc(desc_table(q), d, g, len, vmm::virtio::kDescFWrite, 0);
          publish(q, d);
        }
        return q;
      }
      case kOpRaw: {
        const uint32_t off = in.u32() % kRamSize;
        const auto b = in.bytes(in.u16());
        std::memcpy(ram_ + off, b.data(), std::min(b.size(), kRamSize - off));
        return 0;
      }
      case kOpAvailIdx: {
        const size_t q = in.u8() % queues_.size();
        state_[q].avail_idx = in.u16();
        store16(layout(q).avail + 2, state_[q].avail_idx);
        return q;
      }
      default: {
        const size_t q = in.u8() % queues_.size();
        state_[q].last_used = load16(layout(q).used + 2);
        return q;
      }
    }
  }

 private:
  struct QueueState {
    uint16_t next_desc = 0;
    uint16_t avail_idx = 0;
    uint16_t last_used = 0;
  };

  uint8_t* at(uint64_t gpa) { return ram_ + (gpa - kRamBase); }
  [[nodiscard]] bool in_ram(uint64_t gpa, uint64_t len) const {
    return gpa >= kRamBase && len <= kRamSize && gpa - kRamBase <= kRamSize - len;
  }
  uint64_t alloc(size_t len) {
    len = std::min(len, kRamSize - kDataStart);
    if (next_data_ + len > kRamSize) next_data_ = kDataStart;
    const uint64_t g = kRamBase + next_data_;
    next_data_ = (next_data_ + len + 15) & ~size_t{15};
    return g;
  }
  uint64_t desc_table(size_t q) const { return layout(q).desc; }
  uint16_t next_desc(size_t q) {
    const uint16_t d = state_[q].next_desc;
    state_[q].next_desc = static_cast<uint16_t>((d + 1) % sizes_[q]);
    return d;
  }
  void write_desc(uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    if (!in_ram(table + 16ull * i, 16)) return;
    uint8_t* d = at(table + 16ull * i);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  void store16(uint64_t gpa, uint16_t v) { std::memcpy(at(gpa), &v, 2); }
  uint16_t load16(uint64_t gpa) {
    uint16_t v;
    std::memcpy(&v, at(gpa), 2);
    return v;
  }
  void publish(size_t q, uint16_t head) {
    const auto l = layout(q);
    store16(l.avail + 4 + 2ull * (state_[q].avail_idx % sizes_[q]), head);
    ++state_[q].avail_idx;
    store16(l.avail + 2, state_[q].avail_idx);
  }
  void chain(size_t q, FuzzInput& in) {
    const unsigned n = 1 + in.u8() % 8;
    struct D {
      uint64_t addr;
      uint32_t len;
      uint16_t flags, next;
      bool raw_links;
    };
    std::vector<D> ds;
    bool indirect = false;
    for (unsigned i = 0; i < n; ++i) {
      const uint8_t mode = in.u8();
      D d{};
      d.len = in.u16();
      indirect |= (mode & 8) != 0;
      if (mode & 2) {
        d.addr = in.u64();
        d.len = in.u32();
      } else {
        d.addr = alloc(d.len);
      }
      d.raw_links = (mode & 4) != 0;
      if (d.raw_links) {
        d.flags = in.u16();
        d.next = in.u16();
      } else {
        d.flags = (mode & 1) ? vmm::virtio::kDescFWrite : 0;
      }
      if (!(mode & 1) && !(mode & 2)) {
        const auto b = in.bytes(d.len);
        std::memcpy(at(d.addr), b.data(), b.size());
      }
      ds.push_back(d);
    }
    if (indirect) {
      const uint64_t table = alloc(16 * ds.size());
      for (size_t i = 0; i < ds.size(); ++i) {
        auto& d = ds[i];
        if (!d.raw_links) {
          if (i + 1 < ds.size()) d.flags |= vmm::virtio::kDescFNext;
          d.next = static_cast<uint16_t>(i + 1);
        }
        write_desc(table, static_cast<uint32_t>(i), d.addr, d.len, d.flags, d.next);
      }
      const uint16_t id = next_desc(q);
      write_desc(desc_table(q), id, table, static_cast<uint32_t>(16 * ds.size()), vmm::virtio::kDescFIndirect, 0);
      publish(q, id);
      return;
    }
    std::vector<uint16_t> ids;
    for (size_t i = 0; i < ds.size(); ++i) ids.push_back(next_desc(q));
    for (size_t i = 0; i < ds.size(); ++i) {
      auto& d = ds[i];
      if (!d.raw_links) {
        if (i + 1 < ds.size()) {
          d.flags |= vmm::virtio::kDescFNext;
          d.next = ids[i + 1];
        }
      }
      write_desc(desc_table(q), ids[i], d.addr, d.len, d.flags, d.next);
    }
    publish(q, ids[0]);
  }

  std::vector<uint16_t> sizes_;
  uint8_t* ram_ = nullptr;
  vmm::GuestMemory mem_;
  std::vector<std::unique_ptr<vmm::Virtqueue>> queues_;
  std::vector<bool> started_;
  std::vector<QueueState> state_;
  size_t next_data_ = kDataStart;
};

}  // namespace causeway::fuzz
