// Test doubles for the guest side of virtio: guest RAM in a memfd and the
// driver's half of a split virtqueue, written the way a guest driver writes
// them (virtio 1.x §2.7.13). Tests use them to drive device models and the
// vhost-user server exactly as a guest (and QEMU) would, and to build hostile
// rings by hand.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "base/unique_fd.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/virtio_spec.hpp"
#include "vmm/virtqueue.hpp"

namespace causeway::testing {

// Guest RAM: one memfd-backed region at guest-physical `base`, mapped here
// (this process plays QEMU: the mapping's address is the "user address").
class FakeGuestRam {
 public:
  explicit FakeGuestRam(size_t bytes = 4u << 20, uint64_t base = 0x10000000) : size_(bytes), base_(base), next_(base) {
    fd_.reset(::memfd_create("fake-guest-ram", MFD_CLOEXEC));
    if (!fd_ || ::ftruncate(fd_.get(), static_cast<off_t>(bytes)) != 0) throw std::runtime_error("memfd");
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    host_ = static_cast<uint8_t*>(p);
  }
  ~FakeGuestRam() { ::munmap(host_, size_); }
  FakeGuestRam(const FakeGuestRam&) = delete;
  FakeGuestRam& operator=(const FakeGuestRam&) = delete;

  // Registers this RAM with a GuestMemory directly (no vhost-user).
  void attach(vmm::GuestMemory& mem) { (void)mem.add_buffer_region(base_, {host_, size_}, uva()); }
  [[nodiscard]] vmm::MemoryRegionSpec spec() const { return {base_, size_, uva(), 0}; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] uint64_t uva() const { return reinterpret_cast<uint64_t>(host_); }
  [[nodiscard]] uint64_t base() const { return base_; }
  [[nodiscard]] uint64_t end() const { return base_ + size_; }

  uint8_t* at(uint64_t gpa) { return host_ + (gpa - base_); }
  uint64_t alloc(size_t len, size_t align = 16) {
    next_ = (next_ + align - 1) & ~(uint64_t{align} - 1);
    const uint64_t g = next_;
    next_ += len;
    if (next_ > end()) throw std::runtime_error("fake guest RAM exhausted");
    std::memset(at(g), 0, len);
    return g;
  }
  void write(uint64_t gpa, std::span<const uint8_t> d) { std::memcpy(at(gpa), d.data(), d.size()); }
  std::vector<uint8_t> read(uint64_t gpa, size_t len) { return {at(gpa), at(gpa) + len}; }

 private:
  UniqueFd fd_;
  size_t size_;
  uint64_t base_;
  uint64_t next_;
  uint8_t* host_ = nullptr;
};

struct Buf {
  uint64_t gpa;
  uint32_t len;
  bool writable;
};
struct UsedElem {
  uint32_t id;
  uint32_t len;
};

// The driver's side of one split queue.
class FakeDriverQueue {
 public:
  FakeDriverQueue(FakeGuestRam& ram, uint16_t size) : ram_(ram), size_(size) {
    desc_ = ram.alloc(vmm::virtio::desc_table_bytes(size), 16);
    avail_ = ram.alloc(vmm::virtio::avail_ring_bytes(size), 2);
    used_ = ram.alloc(vmm::virtio::used_ring_bytes(size), 4);
    for (uint16_t i = 0; i < size; ++i) free_.push_back(static_cast<uint16_t>(size - 1 - i));
  }
  [[nodiscard]] vmm::VirtqueueLayout layout() const { return {size_, desc_, avail_, used_}; }
  [[nodiscard]] uint16_t size() const { return size_; }
  [[nodiscard]] uint64_t desc_gpa() const { return desc_; }
  [[nodiscard]] uint64_t avail_gpa() const { return avail_; }
  [[nodiscard]] uint64_t used_gpa() const { return used_; }

  // Writes a descriptor by hand (hostile tests).
  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    write_desc(ram_, desc_, i, addr, len, flags, next);
  }
  static void write_desc(FakeGuestRam& ram, uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
                         uint16_t next) {
    uint8_t* d = ram.at(table + 16ull * i);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  // Puts `head` on the available ring and publishes it (release).
  void publish(uint16_t head) {
    const uint16_t idx = avail_idx_;
    std::memcpy(ram_.at(avail_ + 4 + 2ull * (idx % size_)), &head, 2);
    set_avail_idx(static_cast<uint16_t>(idx + 1));
  }
  void set_avail_idx(uint16_t v) {
    avail_idx_ = v;
    std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(ram_.at(avail_ + 2))).store(v, std::memory_order_release);
  }
  [[nodiscard]] uint16_t avail_idx() const { return avail_idx_; }

  // Builds a chain from free descriptors and publishes it; returns the head.
  uint16_t add_chain(const std::vector<Buf>& bufs) {
    if (bufs.empty() || bufs.size() > free_.size()) throw std::runtime_error("no free descriptors");
    std::vector<uint16_t> ids;
    for (size_t i = 0; i < bufs.size(); ++i) {
      ids.push_back(free_.back());
      free_.pop_back();
    }
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t flags = bufs[i].writable ? vmm::virtio::kDescFWrite : 0;
      uint16_t next = 0;
      if (i + 1 < bufs.size()) {
        flags |= vmm::virtio::kDescFNext;
        next = ids[i + 1];
      }
      set_desc(ids[i], bufs[i].gpa, bufs[i].len, flags, next);
    }
    chains_[ids[0]] = ids;
    publish(ids[0]);
    return ids[0];
  }
  // Builds an indirect chain: one descriptor in the ring pointing at a table.
  uint16_t add_indirect(const std::vector<Buf>& bufs) {
    const uint64_t table = ram_.alloc(16 * bufs.size(), 16);
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t flags = bufs[i].writable ? vmm::virtio::kDescFWrite : 0;
      if (i + 1 < bufs.size()) flags |= vmm::virtio::kDescFNext;
      write_desc(ram_, table, static_cast<uint32_t>(i), bufs[i].gpa, bufs[i].len, flags, static_cast<uint16_t>(i + 1));
    }
    const uint16_t id = free_.back();
    free_.pop_back();
    set_desc(id, table, static_cast<uint32_t>(16 * bufs.size()), vmm::virtio::kDescFIndirect, 0);
    chains_[id] = {id};
    publish(id);
    return id;
  }

  [[nodiscard]] uint16_t used_idx() const {
    return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(ram_.at(used_ + 2))).load(std::memory_order_acquire);
  }
  // Takes the next used element (as the driver's interrupt handler would)
  // and frees its descriptors.
  std::optional<UsedElem> take_used() {
    if (used_idx() == last_used_) return std::nullopt;
    UsedElem e;
    const uint8_t* p = ram_.at(used_ + 4 + 8ull * (last_used_ % size_));
    std::memcpy(&e.id, p, 4);
    std::memcpy(&e.len, p + 4, 4);
    ++last_used_;
    if (auto it = chains_.find(static_cast<uint16_t>(e.id)); it != chains_.end()) {
      for (auto id : it->second) free_.push_back(id);
      chains_.erase(it);
    }
    return e;
  }
  // Notification suppression, driver side.
  void set_used_event(uint16_t v) { std::memcpy(ram_.at(avail_ + 4 + 2ull * size_), &v, 2); }
  void set_avail_flags(uint16_t f) { std::memcpy(ram_.at(avail_), &f, 2); }
  [[nodiscard]] uint16_t avail_event() const {
    uint16_t v;
    std::memcpy(&v, ram_.at(used_ + 4 + 8ull * size_), 2);
    return v;
  }
  [[nodiscard]] uint16_t used_flags() const {
    uint16_t v;
    std::memcpy(&v, ram_.at(used_), 2);
    return v;
  }
  [[nodiscard]] size_t free_descriptors() const { return free_.size(); }

 private:
  FakeGuestRam& ram_;
  uint16_t size_;
  uint64_t desc_, avail_, used_;
  uint16_t avail_idx_ = 0;
  uint16_t last_used_ = 0;
  std::vector<uint16_t> free_;
  std::map<uint16_t, std::vector<uint16_t>> chains_;
};

}  // namespace causeway::testing
