// The Internet checksum; see checksum.hpp.
#include "base/checksum.hpp"

#include <bit>
#include <cstring>

namespace causeway::wire {

uint32_t checksum_add(std::span<const uint8_t> data, uint32_t initial) {
  // RFC 1071 §4.1: 32 bits at a time into a 64-bit accumulator (no carry is
  // lost: 2^32 words would be needed to overflow it), in host byte order.
  // §2(B): the folded sum in one byte order is the byte swap of the folded
  // sum in the other, so a little-endian host swaps once at the end.
  uint64_t sum = 0;
  const uint8_t* p = data.data();
  size_t n = data.size();
  for (; n >= 4; p += 4, n -= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    sum += w;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    sum += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    const uint8_t padded[2] = {p[0], 0};  // RFC 1071: pad the odd byte with zero
    uint16_t w;
    std::memcpy(&w, padded, 2);
    sum += w;
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  auto folded = static_cast<uint16_t>(sum);
  if constexpr (std::endian::native == std::endian::little)
    folded = static_cast<uint16_t>((folded << 8) | (folded >> 8));
  return initial + folded;
}

uint16_t checksum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

uint16_t checksum_replace16(uint16_t checksum, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = static_cast<uint16_t>(~checksum);
  sum += static_cast<uint16_t>(~old_word);
  sum += new_word;
  return static_cast<uint16_t>(~checksum_fold(sum));
}

}  // namespace causeway::wire
