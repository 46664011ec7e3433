// The virtio-net header: its codec, the validation of one that came from an
// untrusted sender, and finishing its offloads in software. Shared by both
// places a virtio-net header arrives: a tap with IFF_VNET_HDR
// (netstack/tap_port.hpp) and the vhost-user virtio-net device
// (vmm/devices/virtio_net.hpp), so both refuse the same things.
//
// Sans-I/O: bytes in, decisions and bytes out; no sockets, no clock.
//
// Format (virtio 1.x §5.1.6, struct virtio_net_hdr_v1; little-endian: the
// tap is given TUNSETVNETLE, and VERSION_1 makes it so on a device — a legacy
// device uses the guest's order, which is little-endian on every host we run):
//
//   u8 flags      NEEDS_CSUM (1): the checksum at csum_start + csum_offset
//                 holds only the pseudo-header sum (Linux CHECKSUM_PARTIAL);
//                 the receiver completes it over [csum_start, end of frame)
//                 (§5.1.6.2). DATA_VALID (2): the checksum was verified.
//   u8 gso_type   NONE, TCPV4 (1), TCPV6 (4), optionally | ECN (0x80): the
//                 frame is one TCP "super-segment" whose payload is cut into
//                 gso_size pieces on the wire (TSO).
//   le16 hdr_len  Linux puts the length of the skb's linear part here, not
//                 the header length, so it is only bounds-checked.
//   le16 gso_size, csum_start, csum_offset,
//   le16 num_buffers  only in the 12-byte form (VERSION_1 or MRG_RXBUF; a tap
//                 is given TUNSETVNETHDRSZ 12); the legacy form is 10 bytes.
//
// Validation (check_vnet_hdr) is for an untrusted sender: unknown flags or
// GSO types (UDP/USO are never offered), a checksum field outside the frame
// or inside its Ethernet header, hdr_len beyond the frame, GSO without
// NEEDS_CSUM, GSO on anything but a plain IPv4/IPv6 TCP packet (no
// fragments, no IPv6 extension headers) whose headers the frame holds, a
// checksum position other than the TCP checksum, or a gso_size whose
// segments would not fit the link MTU — all refused; the caller drops the
// frame and counts it.
//
// Software completion (finish_in_software) mirrors what a NIC does: the
// checksum completed as §5.1.6.2 says (0 sent as 0xffff, as Linux's
// skb_checksum_help); a super-segment cut into gso_size pieces with the
// IPv4 total length, ID (+1 per segment) and header checksum, the IPv6
// payload length, the TCP sequence number and a full TCP checksum per
// segment; FIN and PSH only on the last segment, CWR only on the first
// (RFC 3168 §6.1.2).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "base/ethernet.hpp"

namespace causeway::wire {

constexpr size_t kVnetHdrLen = 12;        // struct virtio_net_hdr_v1 / virtio_net_hdr_mrg_rxbuf
constexpr size_t kVnetHdrLenLegacy = 10;  // struct virtio_net_hdr: no num_buffers
constexpr uint8_t kVnetFNeedsCsum = 1;
constexpr uint8_t kVnetFDataValid = 2;
constexpr uint8_t kVnetGsoNone = 0;
constexpr uint8_t kVnetGsoTcp4 = 1;
constexpr uint8_t kVnetGsoTcp6 = 4;
constexpr uint8_t kVnetGsoEcn = 0x80;
// The largest frame a GSO super-segment can be: Ethernet + IPv6 header +
// a 16-bit payload length (IPv4's 16-bit total length is smaller).
constexpr size_t kMaxGsoFrame = kEthHeaderLen + 40 + 65535;

struct VnetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = kVnetGsoNone;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  uint16_t num_buffers = 0;  // 0 when read from the 10-byte form

  // Nothing for the receiver to do (DATA_VALID alone is only a hint).
  [[nodiscard]] bool plain() const { return (flags & kVnetFNeedsCsum) == 0 && gso_type == kVnetGsoNone; }
};

// Reads a header of `len` bytes (kVnetHdrLen or kVnetHdrLenLegacy); `bytes`
// must hold at least that many.
VnetHdr read_vnet_hdr(std::span<const uint8_t> bytes, size_t len = kVnetHdrLen);
// Writes `len` bytes of `h` into `out`, which must hold them.
void write_vnet_hdr(std::span<uint8_t> out, const VnetHdr& h, size_t len = kVnetHdrLen);

// A header that passed check_vnet_hdr, with what the checks learned.
struct GuestOffload {
  bool needs_csum = false;
  uint16_t csum_start = 0, csum_offset = 0;
  bool gso = false;   // a TCP super-segment (then needs_csum too)
  bool ipv6 = false;  // the GSO packet's family
  uint16_t gso_size = 0;
  size_t l4_off = 0;       // GSO: offset of the TCP header in the frame
  size_t headers_len = 0;  // GSO: Ethernet + IP + TCP header bytes
  size_t packet_end = 0;   // GSO: end of the IP packet (trailing bytes are not payload)
};

enum class VnetVerdict {
  kOk,
  kBadFlags,    // flags other than NEEDS_CSUM / DATA_VALID
  kBadGsoType,  // UDP, USO or unknown
  kBadCsum,     // checksum field outside the frame (or inside its Ethernet header)
  kGsoNoCsum,   // TSO without NEEDS_CSUM
  kGsoNotTcp,   // GSO on something that is not a plain TCP packet of that family
  kGsoBadSize,  // gso_size 0, or segments over the MTU
  kBadHdrLen,   // hdr_len beyond the frame
};
std::string_view to_string(VnetVerdict v);

struct VnetCheck {
  VnetVerdict verdict = VnetVerdict::kOk;
  GuestOffload offload;
};

// Validates `h` against the frame it came with. `mtu` is the link MTU: each
// segment of a super-segment must fit it.
VnetCheck check_vnet_hdr(const VnetHdr& h, std::span<const uint8_t> frame, size_t mtu);

// §5.1.6.2: completes a partial checksum in place — the Internet checksum
// over [csum_start, end of frame), complemented, stored at csum_start +
// csum_offset (0 stored as 0xffff). Returns false, leaving the frame
// untouched, when the field does not fit the frame.
bool complete_checksum(std::span<uint8_t> frame, uint16_t csum_start, uint16_t csum_offset);

// Finishes the offloads of a checked frame in software: calls `emit` once per
// resulting frame (one for a checksum-only frame, one per segment for GSO),
// built in `scratch`; each span is valid only during its call.
void finish_in_software(std::span<const uint8_t> frame, const GuestOffload& o, std::vector<uint8_t>& scratch,
                        const std::function<void(std::span<const uint8_t>)>& emit);

}  // namespace causeway::wire
