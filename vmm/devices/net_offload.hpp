// virtio-net features and header length for the device (virtio 1.x §5.1.3,
// §5.1.6). The header itself — codec, validation, checksum completion — is
// the wire toolkit's (base/vnet_hdr.hpp), shared with the tap in netstack, so
// the device refuses exactly what the tap refuses.
//
// Transmit checksum offload (VIRTIO_NET_F_CSUM): a driver may send a frame
// with NEEDS_CSUM set, the checksum field at csum_start + csum_offset holding
// only the pseudo-header sum (Linux's CHECKSUM_PARTIAL); §5.1.6.2.1 asks the
// device to finish it (wire::complete_checksum). libslirp verifies TCP/UDP
// checksums, so the device completes them before the engine sees the frame.
//
// Receive (VIRTIO_NET_F_GUEST_CSUM): frames from the engine carry full
// checksums computed by libslirp, so the device may set DATA_VALID and spare
// the guest (an emulated CPU under TCG) from verifying them again.
//
// Segmentation offloads (HOST_TSO4/6, UFO) are not offered: the device
// would have to segment correctly (IP IDs, TCP sequence and flags per
// segment), and with our 65520-byte MTU the guest already sends 64 KiB
// segments without them. A frame that claims GSO anyway is malformed.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/vnet_hdr.hpp"

namespace causeway::vmm::net {

// §5.1.3: feature bits.
constexpr uint64_t kFCsum = 1ull << 0;
constexpr uint64_t kFGuestCsum = 1ull << 1;
constexpr uint64_t kFMtu = 1ull << 3;
constexpr uint64_t kFMac = 1ull << 5;
constexpr uint64_t kFMrgRxbuf = 1ull << 15;
constexpr uint64_t kFStatus = 1ull << 16;

constexpr size_t kHdrLenLegacy = wire::kVnetHdrLenLegacy;  // no num_buffers: legacy without MRG_RXBUF
constexpr size_t kHdrLen = wire::kVnetHdrLen;              // virtio_net_hdr_v1 / virtio_net_hdr_mrg_rxbuf

// Header length for the negotiated features (§5.1.6: 12 bytes with
// VERSION_1 or MRG_RXBUF, else 10).
size_t header_len(uint64_t features);

}  // namespace causeway::vmm::net
