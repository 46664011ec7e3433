// Ethernet framing constants the wire toolkit and everything above it share
// (IEEE 802.3 §3.1; EtherTypes from the IEEE registry).
//
// Thread safety: constants only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace causeway::wire {

constexpr size_t kEthHeaderLen = 14;  // destination MAC, source MAC, EtherType; no 802.1Q tag
constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;

}  // namespace causeway::wire
