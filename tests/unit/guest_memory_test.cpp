// GuestMemory: region validation, mapping a memfd, bounds-checked lookups.
#include "vmm/guest_memory.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/support/fake_guest.hpp"

namespace causeway::vmm {
namespace {

std::vector<UniqueFd> fds_for(const testing::FakeGuestRam& ram, size_t n) {
  std::vector<UniqueFd> fds;
  for (size_t i = 0; i < n; ++i) fds.emplace_back(::dup(ram.fd()));
  return fds;
}

TEST(GuestMemory, MapsAMemfdAndSeesTheGuestsStores) {
  testing::FakeGuestRam ram(1 << 20);
  GuestMemory mem;
  auto fds = fds_for(ram, 1);
  const MemoryRegionSpec spec = ram.spec();
  ASSERT_TRUE(mem.map_regions({&spec, 1}, fds).has_value());
  ram.at(ram.base() + 100)[0] = 42;
  auto s = mem.slice(ram.base() + 100, 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ((*s)[0], 42);
  EXPECT_NE(s->data(), ram.at(ram.base() + 100));  // our own mapping, same pages
  EXPECT_EQ(mem.uva_to_gpa(ram.uva() + 100, 8), ram.base() + 100);
}

TEST(GuestMemory, HonoursTheMmapOffset) {
  testing::FakeGuestRam ram(1 << 20);
  GuestMemory mem;
  auto fds = fds_for(ram, 1);
  const MemoryRegionSpec spec{0x0, 0x10000, ram.uva() + 0x20000, 0x20000};
  ASSERT_TRUE(mem.map_regions({&spec, 1}, fds).has_value());
  ram.at(ram.base() + 0x20010)[0] = 7;
  EXPECT_EQ((*mem.slice(0x10, 1))[0], 7);
}

TEST(GuestMemory, LookupsAreBoundsChecked) {
  testing::FakeGuestRam ram(1 << 20);
  GuestMemory mem;
  ram.attach(mem);
  EXPECT_TRUE(mem.slice(ram.base(), 1 << 20).has_value());
  EXPECT_FALSE(mem.slice(ram.base(), (1 << 20) + 1).has_value());
  EXPECT_FALSE(mem.slice(ram.base() - 1, 2).has_value());
  EXPECT_FALSE(mem.slice(ram.end(), 0).has_value());
  EXPECT_FALSE(mem.slice(~0ull, 2).has_value());
  EXPECT_FALSE(mem.uva_to_gpa(ram.uva() - 1, 1).has_value());
}

TEST(GuestMemory, RefusesBadTablesAndKeepsTheOldOne) {
  testing::FakeGuestRam ram(1 << 20);
  GuestMemory mem;
  ram.attach(mem);
  const uint64_t gen = mem.generation();
  const uint64_t M = 1 << 20;
  struct Case {
    const char* what;
    std::vector<MemoryRegionSpec> specs;
  } cases[] = {
      {"empty region", {{0, 0, 0x1000, 0}}},
      {"wraps", {{~0ull - 100, 4096, 0x1000, 0}}},
      {"oversized", {{0, GuestMemory::kMaxRegionSize + 1, 0x1000, 0}}},
      {"gpa overlap", {{0, M / 2, 0x100000, 0}, {M / 4, M / 4, 0x900000, 0}}},
      {"uva overlap", {{0, M / 4, 0x100000, 0}, {M, M / 4, 0x100000 + 4096, 0}}},
      {"past end of file", {{0, 2 * M, 0x100000, 0}}},
      {"offset past end", {{0, M, 0x100000, 4096}}},
  };
  for (auto& c : cases) {
    auto fds = fds_for(ram, c.specs.size());
    EXPECT_TRUE(mem.map_regions(c.specs, fds).has_error()) << c.what;
  }
  std::vector<MemoryRegionSpec> nine(9, ram.spec());
  auto fds9 = fds_for(ram, 9);
  EXPECT_TRUE(mem.map_regions(nine, fds9).has_error());
  auto fds0 = fds_for(ram, 0);
  auto one = ram.spec();
  EXPECT_TRUE(mem.map_regions({&one, 1}, fds0).has_error()) << "fd count mismatch";
  EXPECT_EQ(mem.generation(), gen);
  EXPECT_TRUE(mem.slice(ram.base(), 8).has_value());
}

TEST(GuestMemory, ReplacementUnmapsAndBumpsTheGeneration) {
  testing::FakeGuestRam ram(1 << 20);
  GuestMemory mem;
  auto fds = fds_for(ram, 1);
  auto spec = ram.spec();
  ASSERT_TRUE(mem.map_regions({&spec, 1}, fds).has_value());
  const uint64_t g = mem.generation();
  spec.guest_phys_addr = 0x40000000;
  auto fds2 = fds_for(ram, 1);
  ASSERT_TRUE(mem.map_regions({&spec, 1}, fds2).has_value());
  EXPECT_GT(mem.generation(), g);
  EXPECT_FALSE(mem.slice(ram.base(), 8).has_value());
  EXPECT_TRUE(mem.slice(0x40000000, 8).has_value());
  EXPECT_EQ(mem.region_count(), 1u);
}

}  // namespace
}  // namespace causeway::vmm
