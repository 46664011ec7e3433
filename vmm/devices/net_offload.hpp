// virtio-net header and checksum offload, sans-I/O (virtio 1.x §5.1.6).
//
// Every frame on a virtio-net queue is preceded by struct virtio_net_hdr:
//
//   u8 flags (NEEDS_CSUM=1, DATA_VALID=2), u8 gso_type (NONE=0, TCPV4=1, UDP=3, TCPV6=4, ECN=0x80),
//   le16 hdr_len, le16 gso_size, le16 csum_start, le16 csum_offset,
//   le16 num_buffers       (present with VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF)
//
// Transmit checksum offload (VIRTIO_NET_F_CSUM): a driver may send a frame
// with NEEDS_CSUM set, the checksum field at csum_start + csum_offset holding
// only the pseudo-header sum (Linux's CHECKSUM_PARTIAL); §5.1.6.2.1 asks the
// device to finish it: the Internet checksum (RFC 1071) over
// [csum_start, end of frame), complemented, stored at csum_start +
// csum_offset. libslirp verifies TCP/UDP checksums, so the device completes
// them before the engine sees the frame.
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
#include <span>

namespace causeway::vmm::net {

// §5.1.3: feature bits.
constexpr uint64_t kFCsum = 1ull << 0;
constexpr uint64_t kFGuestCsum = 1ull << 1;
constexpr uint64_t kFMtu = 1ull << 3;
constexpr uint64_t kFMac = 1ull << 5;
constexpr uint64_t kFMrgRxbuf = 1ull << 15;
constexpr uint64_t kFStatus = 1ull << 16;

constexpr uint8_t kHdrFNeedsCsum = 1;
constexpr uint8_t kHdrFDataValid = 2;
constexpr uint8_t kGsoNone = 0;

constexpr size_t kHdrLenLegacy = 10;  // no num_buffers: legacy without MRG_RXBUF
constexpr size_t kHdrLen = 12;        // virtio_net_hdr_v1 / virtio_net_hdr_mrg_rxbuf

struct NetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  uint16_t num_buffers = 0;
};

// Header length for the negotiated features (§5.1.6: 12 bytes with
// VERSION_1 or MRG_RXBUF, else 10).
size_t header_len(uint64_t features);

// Reads a header of `len` (10 or 12) bytes from `bytes` (which must hold them).
NetHdr parse_hdr(std::span<const uint8_t> bytes, size_t len);
// Writes one into `out` (len bytes).
void write_hdr(std::span<uint8_t> out, const NetHdr& h, size_t len);

// RFC 1071 one's-complement sum of `data`, added to `initial` (not folded,
// not complemented).
uint64_t csum_partial(std::span<const uint8_t> data, uint64_t initial = 0);
uint16_t csum_fold(uint64_t sum);

// Completes a partial checksum in `frame` (§5.1.6.2.1). Returns false,
// leaving the frame untouched, when the offsets do not fit the frame.
bool complete_checksum(std::span<uint8_t> frame, uint16_t csum_start, uint16_t csum_offset);

}  // namespace causeway::vmm::net
