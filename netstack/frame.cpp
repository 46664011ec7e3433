#include "netstack/frame.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "base/byte_order.hpp"

namespace causeway::netstack {
namespace {

using wire::load_be16;

FrameVerdict check_arp(std::span<const uint8_t> p) {
  // RFC 826: Ethernet/IPv4 ARP is 28 bytes: htype 1, ptype 0x0800, hlen 6, plen 4.
  if (p.size() < 28) return FrameVerdict::kMalformedArp;
  if (load_be16(p, 0) != 1 || load_be16(p, 2) != kEtherTypeIpv4 || p[4] != 6 || p[5] != 4)
    return FrameVerdict::kMalformedArp;
  return FrameVerdict::kAccept;
}

FrameVerdict check_ipv4(std::span<const uint8_t> p) {
  // RFC 791 §3.1: version 4, IHL >= 5 words, IHL <= total length <= what arrived.
  // Frames may carry Ethernet padding after the datagram, so only `<=`.
  if (p.size() < 20) return FrameVerdict::kMalformedIpv4;
  const unsigned version = p[0] >> 4;
  const size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
  const size_t total = load_be16(p, 2);
  if (version != 4 || ihl < 20 || total < ihl || total > p.size()) return FrameVerdict::kMalformedIpv4;
  return FrameVerdict::kAccept;
}

FrameVerdict check_ipv6(std::span<const uint8_t> p) {
  // RFC 8200 §3: fixed 40-byte header; payload length counts what follows it.
  if (p.size() < 40) return FrameVerdict::kMalformedIpv6;
  if ((p[0] >> 4) != 6) return FrameVerdict::kMalformedIpv6;
  const size_t payload = load_be16(p, 4);
  if (payload == 0 && p[6] == 0) return FrameVerdict::kMalformedIpv6;  // jumbogram (hop-by-hop), refused
  if (40 + payload > p.size()) return FrameVerdict::kMalformedIpv6;
  return FrameVerdict::kAccept;
}

}  // namespace

std::string_view to_string(FrameVerdict v) {
  switch (v) {
    case FrameVerdict::kAccept: return "accept";
    case FrameVerdict::kTooShort: return "too_short";
    case FrameVerdict::kTooLong: return "too_long";
    case FrameVerdict::kWrongMac: return "wrong_mac";
    case FrameVerdict::kUnsupportedEtherType: return "unsupported_ethertype";
    case FrameVerdict::kMalformedArp: return "malformed_arp";
    case FrameVerdict::kMalformedIpv4: return "malformed_ipv4";
    case FrameVerdict::kMalformedIpv6: return "malformed_ipv6";
    case FrameVerdict::kBadOffload: return "bad_offload";
    case FrameVerdict::kForbiddenDestination: return "forbidden_destination";
  }
  return "unknown";
}

bool is_engine_mac(const Mac& mac) {
  // 52:55:<IPv4> for IPv4 addresses (ARP replies); 52:56:00:00:00:02 is the
  // source of libslirp's IPv6 router advertisements.
  return mac[0] == 0x52 && (mac[1] == 0x55 || mac[1] == 0x56);
}

FrameVerdict check_guest_frame(std::span<const uint8_t> frame, size_t mtu) {
  if (frame.size() < kEthHeaderLen) return FrameVerdict::kTooShort;
  if (frame.size() > mtu + kEthHeaderLen) return FrameVerdict::kTooLong;
  Mac dst{};
  std::copy_n(frame.begin(), 6, dst.begin());
  const bool group = (dst[0] & 0x01) != 0;  // broadcast and multicast (IEEE 802.3 I/G bit)
  if (!group && !is_engine_mac(dst)) return FrameVerdict::kWrongMac;
  const auto payload = frame.subspan(kEthHeaderLen);
  switch (load_be16(frame, 12)) {
    case kEtherTypeArp: return check_arp(payload);
    case kEtherTypeIpv4: return check_ipv4(payload);
    case kEtherTypeIpv6: return check_ipv6(payload);
    default: return FrameVerdict::kUnsupportedEtherType;
  }
}

uint16_t ether_type(std::span<const uint8_t> frame) { return load_be16(frame, 12); }

std::string format_mac(const Mac& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

bool parse_mac(std::string_view text, Mac& out) {
  if (text.size() != 17) return false;
  Mac m{};
  for (size_t i = 0; i < 6; ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = hex(text[i * 3]);
    const int lo = hex(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return false;
    if (i < 5 && text[i * 3 + 2] != ':') return false;
    m[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  out = m;
  return true;
}

}  // namespace causeway::netstack
