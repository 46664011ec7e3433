// Refusing guest packets; see refusal.hpp.
#include "netstack/refusal.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "base/byte_order.hpp"
#include "netstack/packet.hpp"

namespace causeway::netstack {
namespace {

using wire::load_be16, wire::load_be32, wire::store_be16, wire::store_be32;

constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;
constexpr size_t kIcmp4ErrorMax = 576;   // RFC 1812 §4.3.2.3: the whole error datagram
constexpr size_t kIcmp6ErrorMax = 1280;  // RFC 4443 §2.4(c): the IPv6 minimum MTU

// Fills the L4 fields of `f` from `l4` (the bytes after the IP header, bounded by the IP length).
bool inspect_l4(uint8_t proto, std::span<const uint8_t> l4, FlowOpen& f) {
  switch (proto) {
    case 6: {
      if (l4.size() < 20) return false;
      if ((l4[13] & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn) return false;
      const size_t doff = static_cast<size_t>(l4[12] >> 4) * 4;
      if (doff < 20 || doff > l4.size()) return false;
      f.kind = FlowOpen::Kind::kTcpSyn;
      f.sport = load_be16(l4.data());
      f.dport = load_be16(l4.data() + 2);
      f.seq = load_be32(l4.data() + 4);
      f.seg_len = static_cast<uint32_t>(l4.size() - doff) + 1 + ((l4[13] & kTcpFin) ? 1 : 0);
      return true;
    }
    case 17:
      if (l4.size() < 8) return false;
      f.kind = FlowOpen::Kind::kUdp;
      f.sport = load_be16(l4.data());
      f.dport = load_be16(l4.data() + 2);
      return true;
    case 1:   // ICMP: echo request (RFC 792)
    case 58:  // ICMPv6: echo request (RFC 4443 §4.1)
      if (l4.size() < 8 || l4[0] != (proto == 1 ? 8 : 128)) return false;
      f.kind = FlowOpen::Kind::kEcho;
      return true;
    default: return false;
  }
}

}  // namespace

std::optional<FlowOpen> inspect_flow_open(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeaderLen) return std::nullopt;
  FlowOpen f;
  std::copy_n(frame.begin(), 6, f.dst_mac.begin());
  std::copy_n(frame.begin() + 6, 6, f.src_mac.begin());
  const auto ip = frame.subspan(kEthHeaderLen);
  const uint16_t type = load_be16(frame.data() + 12);
  if (type == kEtherTypeIpv4) {
    if (ip.size() < 20 || (ip[0] >> 4) != 4) return std::nullopt;
    const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
    const size_t total = load_be16(ip.data() + 2);
    if (ihl < 20 || total < ihl || total > ip.size()) return std::nullopt;
    f.src.family = f.dst.family = AF_INET;
    std::copy_n(ip.begin() + 12, 4, f.src.bytes.begin());
    std::copy_n(ip.begin() + 16, 4, f.dst.bytes.begin());
    f.ip_len = total;
    const uint8_t proto = ip[9];
    if (proto != 6 && proto != 17 && proto != 1) return std::nullopt;
    if ((load_be16(ip.data() + 6) & 0x3fff) != 0) {
      // More fragments or an offset: libslirp reassembles what we let through, so a SYN split
      // across fragments must meet the policy here, by its destination alone.
      f.kind = FlowOpen::Kind::kFragment;
      return f;
    }
    if (!inspect_l4(proto, ip.subspan(ihl, total - ihl), f)) return std::nullopt;
    return f;
  }
  if (type == kEtherTypeIpv6) {
    if (ip.size() < 40 || (ip[0] >> 4) != 6) return std::nullopt;
    const size_t plen = load_be16(ip.data() + 4);
    if (40 + plen > ip.size()) return std::nullopt;
    f.src.family = f.dst.family = AF_INET6;
    std::copy_n(ip.begin() + 8, 16, f.src.bytes.begin());
    std::copy_n(ip.begin() + 24, 16, f.dst.bytes.begin());
    f.ip_len = 40 + plen;
    if (ip[6] == 44) {  // a fragment header (RFC 8200 §4.5): not carried by anyone, refused by address
      f.kind = FlowOpen::Kind::kFragment;
      return f;
    }
    // Other extension headers: neither libslirp 4.7 nor the fast path carries them.
    if (!inspect_l4(ip[6], ip.subspan(40, plen), f)) return std::nullopt;
    return f;
  }
  return std::nullopt;
}

std::vector<uint8_t> build_refusal_rst(const FlowOpen& syn, const Mac& our_mac) {
  const bool v4 = syn.dst.family == AF_INET;
  const size_t iplen = v4 ? 20 : 40;
  std::vector<uint8_t> out(kEthHeaderLen + iplen + 20, 0);
  uint8_t* p = out.data();
  std::copy(syn.src_mac.begin(), syn.src_mac.end(), p);
  std::copy(our_mac.begin(), our_mac.end(), p + 6);
  store_be16(p + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = p + kEthHeaderLen;
  uint8_t* t = ip + iplen;
  store_be16(t, syn.dport);
  store_be16(t + 2, syn.sport);
  // RFC 9293 §3.10.7.1 (no ACK on the SYN): <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
  store_be32(t + 8, syn.seq + syn.seg_len);
  t[12] = 5 << 4;
  t[13] = kTcpRst | kTcpAck;
  uint8_t pseudo[40] = {};
  size_t pseudo_len = 0;
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(iplen + 20));
    ip[8] = 64;
    ip[9] = 6;
    std::memcpy(ip + 12, syn.dst.bytes.data(), 4);
    std::memcpy(ip + 16, syn.src.bytes.data(), 4);
    store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[9] = 6;
    pseudo[11] = 20;
    pseudo_len = 12;
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, 20);
    ip[6] = 6;
    ip[7] = 64;
    std::memcpy(ip + 8, syn.dst.bytes.data(), 16);
    std::memcpy(ip + 24, syn.src.bytes.data(), 16);
    std::memcpy(pseudo, ip + 8, 32);
    pseudo[35] = 20;
    pseudo[39] = 6;
    pseudo_len = 40;
  }
  store_be16(t + 16, static_cast<uint16_t>(~checksum_fold(checksum_add({t, 20}, checksum_add({pseudo, pseudo_len})))));
  return out;
}

std::vector<uint8_t> build_admin_prohibited(std::span<const uint8_t> frame, const FlowOpen& f, const Mac& our_mac,
                                            const GuestAddr& router) {
  const bool v4 = f.dst.family == AF_INET;
  const size_t iplen = v4 ? 20 : 40;
  const size_t avail = std::min(f.ip_len, frame.size() > kEthHeaderLen ? frame.size() - kEthHeaderLen : 0);
  const size_t quote = std::min(avail, (v4 ? kIcmp4ErrorMax : kIcmp6ErrorMax) - iplen - 8);
  const size_t icmplen = 8 + quote;
  std::vector<uint8_t> out(kEthHeaderLen + iplen + icmplen, 0);
  uint8_t* p = out.data();
  std::copy(f.src_mac.begin(), f.src_mac.end(), p);
  std::copy(our_mac.begin(), our_mac.end(), p + 6);
  store_be16(p + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = p + kEthHeaderLen;
  uint8_t* icmp = ip + iplen;
  std::memcpy(icmp + 8, frame.data() + kEthHeaderLen, quote);
  if (v4) {
    icmp[0] = 3;   // destination unreachable
    icmp[1] = 13;  // communication administratively prohibited (RFC 1812 §5.2.7.1)
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(iplen + icmplen));
    ip[8] = 64;
    ip[9] = 1;
    std::memcpy(ip + 12, router.bytes.data(), 4);
    std::memcpy(ip + 16, f.src.bytes.data(), 4);
    store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
    store_be16(icmp + 2, static_cast<uint16_t>(~checksum_fold(checksum_add({icmp, icmplen}))));
  } else {
    icmp[0] = 1;  // destination unreachable
    icmp[1] = 1;  // communication with destination administratively prohibited (RFC 4443 §3.1)
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<uint16_t>(icmplen));
    ip[6] = 58;
    ip[7] = 64;
    std::memcpy(ip + 8, router.bytes.data(), 16);
    std::memcpy(ip + 24, f.src.bytes.data(), 16);
    uint8_t pseudo[40] = {};
    std::memcpy(pseudo, ip + 8, 32);
    store_be16(pseudo + 34, static_cast<uint16_t>(icmplen));
    pseudo[39] = 58;
    store_be16(icmp + 2,
               static_cast<uint16_t>(~checksum_fold(checksum_add({icmp, icmplen}, checksum_add({pseudo, 40})))));
  }
  return out;
}

}  // namespace causeway::netstack
