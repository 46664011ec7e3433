// GuestMemory: the guest's RAM as this process sees it, and the only way any
// code in vmm/ touches it.
//
// Theory of operation
// -------------------
// A vhost-user front-end (QEMU) describes guest RAM as up to eight regions
// (VHOST_USER_SET_MEM_TABLE): for each, the guest-physical address (GPA),
// the size, the address QEMU itself mapped it at (its "user address", UVA),
// an offset into a file descriptor (memfd with share=on) and the fd. We map
// each region MAP_SHARED, so guest stores and ours meet in the same pages.
//
//   GPA space            our mapping                 QEMU's mapping
//   [gpa, gpa+size) ──► host + (gpa' - gpa)   and   [uva, uva+size)
//
// Descriptors carry GPAs; vring addresses arrive as UVAs (vhost-user.rst,
// "Memory access"), which uva_to_gpa() turns into GPAs once, when the ring
// is configured.
//
// Every lookup is bounds-checked: a range must lie wholly inside one region
// (a buffer straddling two regions is refused — QEMU merges regions that are
// contiguous in both GPA and UVA, so a legitimate buffer never straddles).
// A table is refused as a whole when any region is empty, wraps the 64-bit
// address space, is larger than kMaxRegionSize, overlaps another region (in
// GPA or UVA space), or reaches past the end of its file (mapping past EOF
// would turn a guest access into SIGBUS). A refused table leaves the
// previous mapping in place.
//
// Replacement: map_regions() unmaps the old table. Anything holding a
// pointer into guest RAM must drop it first; Virtqueue re-resolves its ring
// pointers when generation() changes. Device models hold guest spans only
// for the duration of one handler on the engine thread, so replacement (a
// vhost-user message on the same thread) never races them.
//
// Not handled: VIRTIO_F_ACCESS_PLATFORM (IOTLB) — never offered; memory
// hot-add messages (ADD_MEM_REG) — CONFIGURE_MEM_SLOTS is never offered.
// QEMU's memfd backend seals its file against shrinking (seal=on is the
// default); a front-end that shrinks an unsealed file after we mapped it can
// still make us fault — QEMU is trusted that far.
//
// Thread safety: confined to the engine executor. The guest writes the
// mapped pages concurrently; see Virtqueue for how rings are read.
#pragma once

#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"

namespace causeway::vmm {

struct MemoryRegionSpec {
  uint64_t guest_phys_addr = 0;
  uint64_t size = 0;
  uint64_t user_addr = 0;    // the front-end's own mapping (vhost-user "user address")
  uint64_t mmap_offset = 0;  // where the region starts in the fd
};

class GuestMemory {
 public:
  static constexpr size_t kMaxRegions = 8;                // VHOST_MEMORY_BASELINE_NREGIONS in QEMU
  static constexpr uint64_t kMaxRegionSize = 1ull << 40;  // 1 TiB: far above any guest we boot

  GuestMemory() = default;
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // Validates `specs` (one fd per region, same order) and maps them,
  // replacing the current table. On error nothing changes and the message
  // says which region is wrong and why.
  boost::system::result<void, std::string> map_regions(std::span<const MemoryRegionSpec> specs,
                                                       std::span<const UniqueFd> fds);

  // Adds a region backed by memory the caller owns and keeps alive (tests,
  // or a transport that allocated guest RAM itself). Same validation.
  boost::system::result<void, std::string> add_buffer_region(uint64_t gpa, std::span<uint8_t> host,
                                                             uint64_t user_addr = 0);

  // The checks map_regions() makes before mapping anything, and the UVA
  // lookup over a table not yet mapped (to vet a table before accepting it).
  static boost::system::result<void, std::string> validate_specs(std::span<const MemoryRegionSpec> specs);
  static std::optional<uint64_t> uva_to_gpa(std::span<const MemoryRegionSpec> specs, uint64_t uva, uint64_t len);

  // Unmaps everything.
  void clear();

  // [gpa, gpa+len) as host memory, or nullopt unless it lies wholly inside
  // one region. len 0 yields an empty span when gpa is inside RAM.
  [[nodiscard]] std::optional<std::span<uint8_t>> slice(uint64_t gpa, uint64_t len) const;
  // The same for a range given in the front-end's addresses.
  [[nodiscard]] std::optional<uint64_t> uva_to_gpa(uint64_t uva, uint64_t len) const;

  // Changes whenever the table changes; lets holders of cached pointers
  // notice a replacement.
  [[nodiscard]] uint64_t generation() const { return generation_; }
  [[nodiscard]] size_t region_count() const { return regions_.size(); }
  [[nodiscard]] uint64_t total_bytes() const;
  [[nodiscard]] bool empty() const { return regions_.empty(); }

 private:
  struct Region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint8_t* host;   // first byte of the region
    void* map_base;  // what munmap gets (nullptr for caller-owned buffers)
    size_t map_len;
  };
  static boost::system::result<void, std::string> validate(const std::vector<Region>& regions);
  static void unmap(std::vector<Region>& regions);

  std::vector<Region> regions_;
  uint64_t generation_ = 0;
};

}  // namespace causeway::vmm
