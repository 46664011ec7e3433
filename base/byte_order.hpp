// Byte order on raw frame bytes: network order (big-endian) for protocol
// headers, little-endian for the virtio-net header (virtio 1.x §5.1.6).
//
// Part of the sans-I/O wire toolkit in base/ (with checksum.hpp and
// vnet_hdr.hpp): every layer above — netstack, vmm, dns — uses these instead
// of private copies.
//
// Two forms: a pointer, or a span and a byte offset. Neither checks bounds:
// the caller guarantees the bytes are there (they are used behind a length
// check of the frame). Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace causeway::wire {

constexpr uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
constexpr uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
constexpr void store_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
constexpr void store_be32(uint8_t* p, uint32_t v) {
  store_be16(p, static_cast<uint16_t>(v >> 16));
  store_be16(p + 2, static_cast<uint16_t>(v));
}

constexpr uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
constexpr void store_le16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

constexpr uint16_t load_be16(std::span<const uint8_t> b, size_t off) { return load_be16(b.data() + off); }
constexpr uint32_t load_be32(std::span<const uint8_t> b, size_t off) { return load_be32(b.data() + off); }
constexpr void store_be16(std::span<uint8_t> b, size_t off, uint16_t v) { store_be16(b.data() + off, v); }
constexpr void store_be32(std::span<uint8_t> b, size_t off, uint32_t v) { store_be32(b.data() + off, v); }

}  // namespace causeway::wire
