#include "vmm/guest_memory.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace causeway::vmm {

namespace {

bool add_overflows(uint64_t a, uint64_t b) { return a + b < a; }

// [a, a+alen) and [b, b+blen) intersect (lengths are non-zero, no wrap).
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

}  // namespace

GuestMemory::~GuestMemory() { unmap(regions_); }

void GuestMemory::unmap(std::vector<Region>& regions) {
  for (auto& r : regions)
    if (r.map_base != nullptr) ::munmap(r.map_base, r.map_len);
  regions.clear();
}

void GuestMemory::clear() {
  unmap(regions_);
  ++generation_;
}

uint64_t GuestMemory::total_bytes() const {
  uint64_t n = 0;
  for (auto& r : regions_) n += r.size;
  return n;
}

boost::system::result<void, std::string> GuestMemory::validate(const std::vector<Region>& regions) {
  if (regions.size() > kMaxRegions) return fmt::format("{} memory regions (at most {})", regions.size(), kMaxRegions);
  for (size_t i = 0; i < regions.size(); ++i) {
    const Region& r = regions[i];
    if (r.size == 0) return fmt::format("region {} is empty", i);
    if (r.size > kMaxRegionSize) return fmt::format("region {} is {} bytes (at most {})", i, r.size, kMaxRegionSize);
    if (add_overflows(r.gpa, r.size - 1) || add_overflows(r.uva, r.size - 1))
      return fmt::format("region {} wraps the address space (gpa {:#x}, uva {:#x}, size {:#x})", i, r.gpa, r.uva,
                         r.size);
    for (size_t j = 0; j < i; ++j) {
      const Region& o = regions[j];
      if (overlaps(r.gpa, r.size, o.gpa, o.size))
        return fmt::format("regions {} and {} overlap in guest-physical space", j, i);
      if (overlaps(r.uva, r.size, o.uva, o.size))
        return fmt::format("regions {} and {} overlap in front-end address space", j, i);
    }
  }
  return {};
}

boost::system::result<void, std::string> GuestMemory::validate_specs(std::span<const MemoryRegionSpec> specs) {
  std::vector<Region> regions;
  for (const auto& s : specs) regions.push_back(Region{s.guest_phys_addr, s.size, s.user_addr, nullptr, nullptr, 0});
  return validate(regions);
}

std::optional<uint64_t> GuestMemory::uva_to_gpa(std::span<const MemoryRegionSpec> specs, uint64_t uva, uint64_t len) {
  for (const auto& r : specs) {
    if (uva < r.user_addr || uva - r.user_addr >= r.size) continue;
    const uint64_t off = uva - r.user_addr;
    if (len > r.size - off) return std::nullopt;
    return r.guest_phys_addr + off;
  }
  return std::nullopt;
}

boost::system::result<void, std::string> GuestMemory::map_regions(std::span<const MemoryRegionSpec> specs,
                                                                  std::span<const UniqueFd> fds) {
  if (specs.size() != fds.size())
    return fmt::format("{} memory regions but {} file descriptors", specs.size(), fds.size());
  std::vector<Region> fresh;
  fresh.reserve(specs.size());
  for (const auto& s : specs) fresh.push_back(Region{s.guest_phys_addr, s.size, s.user_addr, nullptr, nullptr, 0});
  if (auto v = validate(fresh); v.has_error()) return v.error();

  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& s = specs[i];
    struct stat st {};
    if (!fds[i].valid() || ::fstat(fds[i].get(), &st) != 0) {
      unmap(fresh);
      return fmt::format("region {}: bad file descriptor", i);
    }
    if (add_overflows(s.mmap_offset, s.size)) {
      unmap(fresh);
      return fmt::format("region {}: mmap offset {:#x} + size wraps", i, s.mmap_offset);
    }
    // Mapping past the end of a regular file (memfd included) would turn a
    // later access into SIGBUS. Other kinds (hugetlbfs reports its size too;
    // device files do not) are taken on trust.
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < s.mmap_offset + s.size) {
      unmap(fresh);
      return fmt::format("region {}: file is {} bytes, region ends at {}", i, st.st_size, s.mmap_offset + s.size);
    }
    const uint64_t aligned_off = s.mmap_offset & ~(page - 1);
    const uint64_t lead = s.mmap_offset - aligned_off;
    const size_t len = static_cast<size_t>(s.size + lead);
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fds[i].get(),
                     static_cast<off_t>(aligned_off));
    if (p == MAP_FAILED) {
      const int err = errno;
      unmap(fresh);
      return fmt::format("region {}: mmap of {} bytes failed: {}", i, len, std::strerror(err));
    }
    fresh[i].map_base = p;
    fresh[i].map_len = len;
    fresh[i].host = static_cast<uint8_t*>(p) + lead;
  }
  std::sort(fresh.begin(), fresh.end(), [](const Region& a, const Region& b) { return a.gpa < b.gpa; });
  unmap(regions_);
  regions_ = std::move(fresh);
  ++generation_;
  return {};
}

boost::system::result<void, std::string> GuestMemory::add_buffer_region(uint64_t gpa, std::span<uint8_t> host,
                                                                        uint64_t user_addr) {
  std::vector<Region> next;
  next.reserve(regions_.size() + 1);
  for (auto& r : regions_) next.push_back(r);
  next.push_back(Region{gpa, host.size(), user_addr, host.data(), nullptr, 0});
  if (auto v = validate(next); v.has_error()) return v.error();
  regions_.push_back(next.back());
  std::sort(regions_.begin(), regions_.end(), [](const Region& a, const Region& b) { return a.gpa < b.gpa; });
  ++generation_;
  return {};
}

std::optional<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    if (gpa < r.gpa || gpa - r.gpa >= r.size) continue;
    const uint64_t off = gpa - r.gpa;
    if (len > r.size - off) return std::nullopt;  // runs off the end of its region
    // SAFETY: [off, off+len) lies inside the region (checked just above) and
    // the region is mapped for as long as this table is current.
    return std::span<uint8_t>(r.host + off, static_cast<size_t>(len));
  }
  return std::nullopt;
}

std::optional<uint64_t> GuestMemory::uva_to_gpa(uint64_t uva, uint64_t len) const {
  for (const auto& r : regions_) {
    if (uva < r.uva || uva - r.uva >= r.size) continue;
    const uint64_t off = uva - r.uva;
    if (len > r.size - off) return std::nullopt;
    return r.gpa + off;
  }
  return std::nullopt;
}

}  // namespace causeway::vmm
