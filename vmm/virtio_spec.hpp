// Constants from the virtio 1.x specification (OASIS virtio v1.1/v1.2) that
// more than one file needs. Device-specific constants live with their device.
//
// All multi-byte fields in virtio 1.x structures are little-endian (§2.4 and
// §2.7: "le16/le32/le64"); the hosts we run on are little-endian x86-64 and
// aarch64, which the static_assert below pins down so nobody has to think
// about byte swapping in the data path.
//
// Thread safety: constants only.
#pragma once

#include <bit>
#include <cstdint>

namespace causeway::vmm::virtio {

static_assert(std::endian::native == std::endian::little,
              "virtio 1.x rings are little-endian; a big-endian host needs byte swaps in virtqueue.cpp");

// §5: device IDs.
constexpr uint32_t kDeviceIdNet = 1;
constexpr uint32_t kDeviceIdVsock = 19;

// §6: reserved (transport/ring) feature bits.
constexpr uint64_t kFIndirectDesc = 1ull << 28;    // VIRTIO_F_INDIRECT_DESC (§2.7.5.3)
constexpr uint64_t kFEventIdx = 1ull << 29;        // VIRTIO_F_EVENT_IDX (§2.7.7, §2.7.10)
constexpr uint64_t kFVersion1 = 1ull << 32;        // VIRTIO_F_VERSION_1
constexpr uint64_t kFAccessPlatform = 1ull << 33;  // never offered: no IOMMU
constexpr uint64_t kFRingPacked = 1ull << 34;      // never offered: split rings only

// §2.7.5: split virtqueue descriptor flags.
constexpr uint16_t kDescFNext = 1;
constexpr uint16_t kDescFWrite = 2;
constexpr uint16_t kDescFIndirect = 4;

// §2.7.6 / §2.7.8: ring flags for notification suppression without EVENT_IDX.
constexpr uint16_t kAvailFNoInterrupt = 1;
constexpr uint16_t kUsedFNoNotify = 1;

// §2.7: a split queue holds at most 32768 entries (Queue Size is a power of 2 ≤ 32768).
constexpr uint32_t kMaxQueueSize = 32768;

// §2.7.5: 16-byte descriptor; §2.7.6: avail ring; §2.7.8: used ring.
constexpr uint64_t kDescSize = 16;
constexpr uint64_t desc_table_bytes(uint32_t n) { return kDescSize * n; }
constexpr uint64_t avail_ring_bytes(uint32_t n) { return 6 + 2ull * n; }  // flags, idx, ring[n], used_event
constexpr uint64_t used_ring_bytes(uint32_t n) { return 6 + 8ull * n; }   // flags, idx, ring[n]{id,len}, avail_event

}  // namespace causeway::vmm::virtio
