// Proxy ARP and neighbour advertisements for a mirrored link; see neighbor_responder.hpp.
#include "netstack/mirror/neighbor_responder.hpp"

#include <algorithm>
#include <cstring>

#include "base/byte_order.hpp"
#include "base/checksum.hpp"

namespace causeway::netstack::mirror {

using wire::load_be16;
using wire::store_be16;

// RFC 826: every IPv4 address the guest asks for is behind our MAC.
NeighborResponder::Answer NeighborResponder::answer_arp(std::span<const uint8_t> frame,
                                                        std::vector<uint8_t>& reply) const {
  if (frame.size() < kEthHeaderLen + 28) return Answer::kMalformed;
  const uint8_t* a = frame.data() + kEthHeaderLen;
  if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) return Answer::kMalformed;
  if (load_be16(a + 6) != 1) return Answer::kNone;  // a reply or anything else: nothing to answer
  const uint8_t* sha = a + 8;
  const uint8_t* spa = a + 14;
  const uint8_t* tpa = a + 24;
  // Probes (sender 0.0.0.0, RFC 5227 §2.1.1) and announcements (sender = target) ask whether the
  // guest's own address is taken: it is the guest's, never answered.
  if (std::all_of(spa, spa + 4, [](uint8_t b) { return b == 0; }) || std::memcmp(spa, tpa, 4) == 0)
    return Answer::kNone;
  reply.assign(kEthHeaderLen + 28, 0);
  uint8_t* p = reply.data();
  std::memcpy(p, sha, 6);
  std::copy(our_mac_.begin(), our_mac_.end(), p + 6);
  store_be16(p + 12, kEtherTypeArp);
  uint8_t* r = p + kEthHeaderLen;
  store_be16(r, 1);
  store_be16(r + 2, kEtherTypeIpv4);
  r[4] = 6;
  r[5] = 4;
  store_be16(r + 6, 2);
  std::copy(our_mac_.begin(), our_mac_.end(), r + 8);
  std::memcpy(r + 14, tpa, 4);
  std::memcpy(r + 18, sha, 6);
  std::memcpy(r + 24, spa, 4);
  return Answer::kReply;
}

// RFC 4861 §7.2.4: answer with a Neighbor Advertisement carrying our MAC as
// the target link-layer address; Router flag set (we are the way out).
NeighborResponder::Answer NeighborResponder::answer_neighbor_solicit(std::span<const uint8_t> frame,
                                                                     std::span<const uint8_t> icmp,
                                                                     std::vector<uint8_t>& reply) const {
  const uint8_t* ip = frame.data() + kEthHeaderLen;
  const uint8_t* src = ip + 8;
  const uint8_t* target = icmp.data() + 8;
  if (std::all_of(src, src + 16, [](uint8_t b) { return b == 0; })) return Answer::kNone;  // DAD (§7.2.2)
  if (target[0] == 0xff) return Answer::kMalformed;
  constexpr size_t kNaLen = 24 + 8;
  reply.assign(kEthHeaderLen + 40 + kNaLen, 0);
  uint8_t* p = reply.data();
  std::copy_n(frame.begin() + 6, 6, p);  // to the soliciting MAC
  std::copy(our_mac_.begin(), our_mac_.end(), p + 6);
  store_be16(p + 12, kEtherTypeIpv6);
  uint8_t* o = p + kEthHeaderLen;
  o[0] = 0x60;
  store_be16(o + 4, kNaLen);
  o[6] = 58;
  o[7] = 255;
  std::memcpy(o + 8, target, 16);
  std::memcpy(o + 24, src, 16);
  uint8_t* na = o + 40;
  na[0] = 136;
  na[4] = 0xe0;  // Router, Solicited, Override
  std::memcpy(na + 8, target, 16);
  na[24] = 2;  // target link-layer address option, 1 × 8 bytes
  na[25] = 1;
  std::copy(our_mac_.begin(), our_mac_.end(), na + 26);
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, o + 8, 32);
  pseudo[35] = kNaLen;
  pseudo[39] = 58;
  store_be16(na + 2, static_cast<uint16_t>(
                         ~wire::checksum_fold(wire::checksum_add({na, kNaLen}, wire::checksum_add({pseudo, 40})))));
  return Answer::kReply;
}

}  // namespace causeway::netstack::mirror
