#include "vmm/devices/net_offload.hpp"

#include <cstring>

#include "vmm/virtio_spec.hpp"

namespace causeway::vmm::net {

size_t header_len(uint64_t features) {
  return (features & (virtio::kFVersion1 | kFMrgRxbuf)) ? kHdrLen : kHdrLenLegacy;
}

NetHdr parse_hdr(std::span<const uint8_t> b, size_t len) {
  NetHdr h;
  h.flags = b[0];
  h.gso_type = b[1];
  std::memcpy(&h.hdr_len, b.data() + 2, 2);
  std::memcpy(&h.gso_size, b.data() + 4, 2);
  std::memcpy(&h.csum_start, b.data() + 6, 2);
  std::memcpy(&h.csum_offset, b.data() + 8, 2);
  if (len >= kHdrLen) std::memcpy(&h.num_buffers, b.data() + 10, 2);
  return h;
}

void write_hdr(std::span<uint8_t> out, const NetHdr& h, size_t len) {
  out[0] = h.flags;
  out[1] = h.gso_type;
  std::memcpy(out.data() + 2, &h.hdr_len, 2);
  std::memcpy(out.data() + 4, &h.gso_size, 2);
  std::memcpy(out.data() + 6, &h.csum_start, 2);
  std::memcpy(out.data() + 8, &h.csum_offset, 2);
  if (len >= kHdrLen) std::memcpy(out.data() + 10, &h.num_buffers, 2);
}

uint64_t csum_partial(std::span<const uint8_t> data, uint64_t sum) {
  // RFC 1071 §4.1, 32 bits at a time into a 64-bit accumulator (no carry
  // can be lost: 2^32 words would be needed to overflow). Words are summed
  // in host (little-endian) order; RFC 1071 §2(B) makes the result
  // byte-order independent once stored back the same way.
  const uint8_t* p = data.data();
  size_t n = data.size();
  while (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    sum += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    sum += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) sum += p[0];  // odd trailing byte, padded with zero (little-endian low byte)
  return sum;
}

uint16_t csum_fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

bool complete_checksum(std::span<uint8_t> frame, uint16_t csum_start, uint16_t csum_offset) {
  const size_t field = size_t{csum_start} + csum_offset;
  if (csum_start >= frame.size() || field + 2 > frame.size()) return false;
  // The field holds the pseudo-header sum already; it is part of the data summed.
  uint16_t c = static_cast<uint16_t>(~csum_fold(csum_partial(frame.subspan(csum_start))));
  // RFC 768: a computed UDP checksum of 0 is sent as all ones. For TCP both
  // encodings of one's-complement zero verify, so do it unconditionally.
  if (c == 0) c = 0xffff;
  std::memcpy(frame.data() + field, &c, 2);
  return true;
}

}  // namespace causeway::vmm::net
