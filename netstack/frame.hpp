// Guest frame checks: the bounds-checked gate every Ethernet frame from a
// guest passes before any parser of ours or libslirp's sees it.
//
// Sans-I/O: bytes in, a verdict out. libslirp has a long history of bugs on
// malformed input, so the engine refuses here anything whose headers do not
// fit the frame: Ethernet (IEEE 802.3 §3.1), ARP (RFC 826), IPv4 (RFC 791
// §3.1) and IPv6 (RFC 8200 §3). Payload contents (TCP, UDP, ICMP) are left
// to the stack, which checks its own lengths against these.
//
// Not handled, on purpose: 802.1Q tags (no guest of ours sends them; they are
// refused as an unsupported EtherType) and IPv6 jumbograms (payload length 0,
// RFC 2675: our MTU stops at 65520).
//
// Thread safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/ethernet.hpp"

namespace causeway::netstack {

using Mac = std::array<uint8_t, 6>;

using wire::kEtherTypeArp;
using wire::kEtherTypeIpv4;
using wire::kEtherTypeIpv6;
using wire::kEthHeaderLen;
constexpr size_t kMaxMtu = 65520;  // libslirp's IF_MTU_MAX is 65521; keep a round, even value
constexpr size_t kMinMtu = 1280;   // RFC 8200 §5: IPv6's minimum link MTU

enum class FrameVerdict {
  kAccept,
  kTooShort,              // shorter than an Ethernet header
  kTooLong,               // larger than MTU + Ethernet header
  kWrongMac,              // unicast to a MAC that is not the engine's
  kUnsupportedEtherType,  // not IPv4, IPv6 or ARP
  kMalformedArp,
  kMalformedIpv4,
  kMalformedIpv6,
  kBadOffload,  // a virtio-net header that does not fit its frame (vnet_hdr.hpp)
  // Well formed, but it asks the host to open a socket toward an address the
  // destination policy refuses (dest_policy.hpp): answered (RST, ICMP) or dropped.
  kForbiddenDestination,
};
constexpr size_t kFrameVerdictCount = 10;
std::string_view to_string(FrameVerdict v);

// True for MACs the engine answers on: libslirp gives every virtual IPv4
// address a MAC 52:55:<address> (gateway 52:55:0a:00:02:02, DNS ...:03) and
// its IPv6 router 52:56:00:00:00:02.
bool is_engine_mac(const Mac& mac);

// Checks one guest frame. `mtu` is the link MTU (IP packet size).
FrameVerdict check_guest_frame(std::span<const uint8_t> frame, size_t mtu);

// Reads the EtherType of a frame already accepted by check_guest_frame.
uint16_t ether_type(std::span<const uint8_t> frame);

std::string format_mac(const Mac& mac);
// Parses "aa:bb:cc:dd:ee:ff"; returns false on anything else.
bool parse_mac(std::string_view text, Mac& out);

}  // namespace causeway::netstack
