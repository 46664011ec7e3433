// Network byte order (big-endian) loads and stores on raw frame bytes.
//
// The first piece of the shared wire toolkit issue 14 asks for: new code uses
// these; the older private copies (get16/put16/load_be16/…) in netstack, vmm
// and dns move here in that issue.
//
// The caller guarantees the bytes are in bounds (they are used behind a
// length check of the frame). Thread safety: pure functions.
#pragma once

#include <cstdint>

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

}  // namespace causeway::wire
