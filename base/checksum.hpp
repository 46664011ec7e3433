// The Internet checksum (RFC 1071), the one implementation every layer uses:
// IPv4 headers, TCP/UDP/ICMP with their pseudo-headers, and the virtio-net
// checksum offload (vnet_hdr.hpp).
//
// Sums are values of big-endian 16-bit words, so a caller may add header
// fields to them as plain integers (`checksum_add(addrs) + proto + length`)
// and chain them through `initial`. checksum_fold() reduces a sum to 16 bits
// with end-around carry; the checksum to store is its complement.
//
// checksum_replace16() patches a stored checksum when one 16-bit word of the
// data it covers changes (RFC 1624 eqn. 3), without summing the data again.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>

namespace causeway::wire {

// RFC 1071 one's-complement sum of `data` (an odd trailing byte padded with
// zero), added to `initial`; not folded, not complemented. The result folds
// to the same value as a word-by-word sum; only its unfolded form may differ.
uint32_t checksum_add(std::span<const uint8_t> data, uint32_t initial = 0);
// End-around carry down to 16 bits.
uint16_t checksum_fold(uint32_t sum);
// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit word m → m'.
uint16_t checksum_replace16(uint16_t checksum, uint16_t old_word, uint16_t new_word);

}  // namespace causeway::wire
