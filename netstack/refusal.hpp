// Refusing a guest packet: find out whether it asks the host to open
// something (a TCP SYN, a UDP datagram, an ICMP echo), and build the answer
// a refused one gets. Sans-I/O: bytes in, a view or bytes out. The callers
// (Engine in NAT mode, MirrorLink in mirrored mode) decide with
// dest_policy.hpp and count.
//
// Answers:
//   TCP SYN      RST|ACK acknowledging the SYN (RFC 9293 §3.10.7.1): the
//                guest's connect() fails at once with ECONNREFUSED.
//   UDP          ICMP destination unreachable, "communication administratively
//                prohibited" (ICMPv4 type 3 code 13, RFC 1812 §5.2.7.1;
//                ICMPv6 type 1 code 1, RFC 4443 §3.1) from a router address
//                of ours. Never for a multicast or broadcast destination
//                (RFC 1122 §3.2.2, RFC 4443 §2.4(e)): the caller drops those.
//   echo         nothing (the caller drops and counts).
//   fragments    nothing: the policy still applies (every fragment carries
//                the destination), but a fragment is not answered.
//
// Every access is bounds-checked against the frame: MirrorLink calls this
// before any other check of its own.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "netstack/dest_policy.hpp"
#include "netstack/frame.hpp"

namespace causeway::netstack {

struct FlowOpen {
  enum class Kind : uint8_t { kTcpSyn, kUdp, kEcho, kFragment };
  Kind kind = Kind::kUdp;
  Mac src_mac{}, dst_mac{};
  GuestAddr src, dst;
  uint16_t sport = 0, dport = 0;  // TCP/UDP
  uint32_t seq = 0;               // TCP: the SYN's sequence number
  uint32_t seg_len = 0;           // TCP: SEG.LEN (payload + SYN + FIN)
  size_t ip_len = 0;              // the IP packet (header and payload) as its header says
};

// Returns nothing for frames that do not open anything on the host: ARP,
// TCP other than a bare SYN (segments of a flow are its owner's), ICMP other
// than echo requests (neighbour discovery, errors), other protocols, and
// anything malformed.
std::optional<FlowOpen> inspect_flow_open(std::span<const uint8_t> frame);

// RST|ACK for a refused SYN, from the address and port it was sent to.
std::vector<uint8_t> build_refusal_rst(const FlowOpen& syn, const Mac& our_mac);

// ICMP(v6) administratively prohibited from `router` (same family as the
// packet), quoting the start of the refused packet: as much as keeps the
// error within 576 bytes for IPv4 (RFC 1812 §4.3.2.3) and 1280 for IPv6
// (RFC 4443 §2.4(c)). `frame` is the frame `f` was inspected from.
std::vector<uint8_t> build_admin_prohibited(std::span<const uint8_t> frame, const FlowOpen& f, const Mac& our_mac,
                                            const GuestAddr& router);

}  // namespace causeway::netstack
