// Views and builders for the frames the engine itself parses, answers or
// originates, bypassing libslirp: UDP over IPv4 and IPv6 (forwarded UDP, DNS
// answers), ARP (learning and asking for the guest's MAC), in-place TCP/IPv4
// address rewrites (DNS over TCP's shadow address) and the DHCP MTU option.
// Sans-I/O: bytes in, bytes or views out. Byte order and checksums come from
// base/ (byte_order.hpp, checksum.hpp).
//
// References: RFC 791 §3.1 (IPv4 header), RFC 768 (UDP), RFC 8200 (IPv6),
// RFC 826 (ARP), RFC 1624 (incremental checksum update), RFC 2132 (DHCP).
//
// Limits: no IP options on output; fragments are not reassembled on input
// (a fragmented datagram is not ours: it goes to libslirp, which does).
//
// Thread safety: pure functions.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "base/checksum.hpp"
#include "netstack/frame.hpp"

namespace causeway::netstack {

struct Udp4View {
  Mac src_mac{};
  in_addr src{};
  in_addr dst{};
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  std::span<const uint8_t> payload;
};

// Parses a frame already accepted by check_guest_frame(). Returns nothing
// unless it is an unfragmented IPv4 UDP datagram whose lengths agree.
std::optional<Udp4View> parse_udp4(std::span<const uint8_t> frame);

struct Udp6View {
  Mac src_mac{};
  in6_addr src{};
  in6_addr dst{};
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  std::span<const uint8_t> payload;
};

// Parses an IPv6 UDP datagram whose next header is UDP directly (no
// extension headers: those go to libslirp) and whose lengths agree.
std::optional<Udp6View> parse_udp6(std::span<const uint8_t> frame);

// Builds Ethernet + IPv6 + UDP (RFC 8200 §8.1: the UDP checksum is mandatory).
std::vector<uint8_t> build_udp6(const Mac& src_mac, const Mac& dst_mac, const in6_addr& src, uint16_t src_port,
                                const in6_addr& dst, uint16_t dst_port, std::span<const uint8_t> payload);

// Builds Ethernet + IPv4 + UDP with valid checksums.
std::vector<uint8_t> build_udp4(const Mac& src_mac, const Mac& dst_mac, in_addr src, uint16_t src_port, in_addr dst,
                                uint16_t dst_port, std::span<const uint8_t> payload);

// ARP for IPv4 over Ethernet (RFC 826).
struct ArpView {
  uint16_t op = 0;  // 1 request, 2 reply
  Mac sender_mac{};
  in_addr sender_ip{};
  in_addr target_ip{};
};
inline constexpr uint16_t kArpRequest = 1, kArpReply = 2;
inline constexpr size_t kArpFrameLen = kEthHeaderLen + 28;
// Nothing unless the frame is ARP for Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4).
std::optional<ArpView> parse_arp(std::span<const uint8_t> frame);
// A broadcast request "who has `target`? tell `sender_ip`" from `sender_mac`.
std::array<uint8_t, kArpFrameLen> build_arp_request(const Mac& sender_mac, in_addr sender_ip, in_addr target);

// Replaces the IPv4 source or destination address of a TCP segment in
// place, patching the IPv4 and TCP checksums incrementally (RFC 1624 eqn. 3).
// Returns false (frame untouched) unless it is an unfragmented IPv4 TCP frame.
bool rewrite_tcp4_address(std::span<uint8_t> frame, bool destination, in_addr to);
// The TCP ports of an IPv4 TCP frame, if it is one.
std::optional<std::pair<uint16_t, uint16_t>> tcp4_ports(std::span<const uint8_t> frame);

// libslirp's DHCP server offers no interface MTU (RFC 2132 §5.1, option 26),
// so a guest that configures itself by DHCP (a plain QEMU guest behind
// `causeway serve`) would stay at 1500. Given a frame libslirp sends — a
// BOOTP reply from port 67 to 68 — this writes option 26 = `mtu` over the
// END option and the padding after it (libslirp sends the whole 312-byte
// vendor area, so there is room) and fixes the UDP checksum. Returns false
// and leaves the frame alone for anything else, or when the option is
// already there or does not fit.
bool add_dhcp_mtu_option(std::span<uint8_t> frame, uint16_t mtu);

// The Internet checksum (RFC 1071), from the wire toolkit (base/checksum.hpp).
using wire::checksum_add;
using wire::checksum_fold;

}  // namespace causeway::netstack
