// NeighborResponder: a mirrored link's answers to address resolution — the
// guest sees one router (one MAC) behind which every address lies.
//
//   ARP request           → reply with our MAC for the asked address (proxy
//                           ARP, RFC 826)
//   ICMPv6 NS             → NA with our MAC as target link-layer address,
//                           Router, Solicited and Override set (RFC 4861
//                           §7.2.4), so the guest's gateways and on-link
//                           peers all resolve to us
//
// The guest's own addresses are never claimed: ARP probes (sender 0.0.0.0,
// RFC 5227 §2.1.1), announcements (sender = target) and DAD (NS from ::,
// RFC 4861 §7.2.2) get no answer.
//
// Sans-I/O: a frame in, a reply frame (or nothing) out; the caller sends it
// and counts. Every header is bounds-checked before use.
//
// Thread safety: const member functions only; safe from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "netstack/frame.hpp"

namespace causeway::netstack::mirror {

class NeighborResponder {
 public:
  enum class Answer {
    kReply,      // `reply` holds the frame to send
    kNone,       // nothing to answer (a reply, a probe, DAD, …)
    kMalformed,  // refused: a header that does not fit or makes no sense
  };

  explicit NeighborResponder(const Mac& our_mac) : our_mac_(our_mac) {}

  // `frame`: an Ethernet frame of EtherType ARP.
  Answer answer_arp(std::span<const uint8_t> frame, std::vector<uint8_t>& reply) const;
  // `frame`: an IPv6 frame whose payload `icmp` (at least 24 bytes) is an
  // ICMPv6 Neighbor Solicitation the caller checked (type 135, code 0, hop
  // limit 255).
  Answer answer_neighbor_solicit(std::span<const uint8_t> frame, std::span<const uint8_t> icmp,
                                 std::vector<uint8_t>& reply) const;

 private:
  Mac our_mac_;
};

}  // namespace causeway::netstack::mirror
