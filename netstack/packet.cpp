#include "netstack/packet.hpp"

#include <algorithm>
#include <cstring>

#include "base/byte_order.hpp"

namespace causeway::netstack {
namespace {
using wire::checksum_replace16;
using wire::load_be16;
using wire::store_be16;
constexpr uint8_t kProtoUdp = 17;
}  // namespace

std::optional<Udp4View> parse_udp4(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeaderLen + 20 + 8 || ether_type(frame) != kEtherTypeIpv4) return std::nullopt;
  const auto ip = frame.subspan(kEthHeaderLen);
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  const size_t total = load_be16(ip, 2);
  if ((ip[0] >> 4) != 4 || ihl < 20 || total > ip.size() || total < ihl + 8) return std::nullopt;
  if (ip[9] != kProtoUdp) return std::nullopt;
  if ((load_be16(ip, 6) & 0x3fff) != 0) return std::nullopt;  // MF set or a fragment offset: not ours
  const auto udp = ip.subspan(ihl, total - ihl);
  const size_t ulen = load_be16(udp, 4);
  if (ulen < 8 || ulen > udp.size()) return std::nullopt;
  Udp4View v;
  std::copy_n(frame.begin() + 6, 6, v.src_mac.begin());
  std::memcpy(&v.src, ip.data() + 12, 4);
  std::memcpy(&v.dst, ip.data() + 16, 4);
  v.src_port = load_be16(udp, 0);
  v.dst_port = load_be16(udp, 2);
  v.payload = udp.subspan(8, ulen - 8);
  return v;
}

std::vector<uint8_t> build_udp4(const Mac& src_mac, const Mac& dst_mac, in_addr src, uint16_t src_port, in_addr dst,
                                uint16_t dst_port, std::span<const uint8_t> payload) {
  const size_t udp_len = 8 + payload.size();
  const size_t ip_len = 20 + udp_len;
  std::vector<uint8_t> f(kEthHeaderLen + ip_len);
  uint8_t* p = f.data();
  std::copy(dst_mac.begin(), dst_mac.end(), p);
  std::copy(src_mac.begin(), src_mac.end(), p + 6);
  store_be16(p + 12, kEtherTypeIpv4);
  uint8_t* ip = p + kEthHeaderLen;
  ip[0] = 0x45;  // version 4, IHL 5
  store_be16(ip + 2, static_cast<uint16_t>(ip_len));
  store_be16(ip + 6, 0x4000);  // DF: the engine never fragments
  ip[8] = 64;                  // TTL
  ip[9] = kProtoUdp;
  std::memcpy(ip + 12, &src, 4);
  std::memcpy(ip + 16, &dst, 4);
  store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
  uint8_t* udp = ip + 20;
  store_be16(udp, src_port);
  store_be16(udp + 2, dst_port);
  store_be16(udp + 4, static_cast<uint16_t>(udp_len));
  std::copy(payload.begin(), payload.end(), udp + 8);
  // RFC 768: checksum over a pseudo-header (addresses, protocol, length) and the datagram.
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, &src, 4);
  std::memcpy(pseudo + 4, &dst, 4);
  pseudo[9] = kProtoUdp;
  store_be16(pseudo + 10, static_cast<uint16_t>(udp_len));
  uint16_t sum = static_cast<uint16_t>(~checksum_fold(checksum_add({udp, udp_len}, checksum_add(pseudo))));
  store_be16(udp + 6, sum == 0 ? 0xffff : sum);  // 0 means "no checksum"; send its one's-complement twin
  return f;
}

bool add_dhcp_mtu_option(std::span<uint8_t> frame, uint16_t mtu) {
  const auto v = parse_udp4(frame);
  if (!v || v->src_port != 67 || v->dst_port != 68) return false;
  // RFC 2131 §2: op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr (28 bytes),
  // chaddr (16), sname (64), file (128) = 236 bytes, then the magic cookie and the options.
  constexpr size_t kOptions = 240;
  const std::span<const uint8_t> bootp = v->payload;
  if (bootp.size() < kOptions + 1 || bootp[0] != 2 || bootp[236] != 99 || bootp[237] != 130 || bootp[238] != 83 ||
      bootp[239] != 99)
    return false;
  size_t i = kOptions;
  while (i < bootp.size() && bootp[i] != 255) {
    if (bootp[i] == 0) {
      ++i;
      continue;
    }
    if (bootp[i] == 26) return false;  // already offered
    if (i + 1 >= bootp.size()) return false;
    i += 2 + bootp[i + 1];
  }
  if (i + 5 > bootp.size()) return false;  // no END, or no room for 26/2/MTU + END
  const size_t at = static_cast<size_t>(bootp.data() - frame.data()) + i;
  frame[at] = 26;
  frame[at + 1] = 2;
  store_be16(frame.data() + at + 2, mtu);
  frame[at + 4] = 255;
  // The UDP checksum, recomputed (RFC 768); the IPv4 header is unchanged.
  const size_t ip = kEthHeaderLen;
  const size_t ihl = (frame[ip] & 0x0f) * 4u;
  uint8_t* udp = frame.data() + ip + ihl;
  const size_t udp_len = 8 + bootp.size();
  udp[6] = udp[7] = 0;
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, &v->src, 4);
  std::memcpy(pseudo + 4, &v->dst, 4);
  pseudo[9] = kProtoUdp;
  store_be16(pseudo + 10, static_cast<uint16_t>(udp_len));
  const uint16_t sum = static_cast<uint16_t>(~checksum_fold(checksum_add({udp, udp_len}, checksum_add(pseudo))));
  store_be16(udp + 6, sum == 0 ? 0xffff : sum);
  return true;
}

std::optional<std::pair<uint16_t, uint16_t>> tcp4_ports(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeaderLen + 20 || ether_type(frame) != kEtherTypeIpv4) return std::nullopt;
  const auto ip = frame.subspan(kEthHeaderLen);
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  if (ip[9] != 6 || ihl < 20 || ip.size() < ihl + 20 || (load_be16(ip, 6) & 0x1fff) != 0) return std::nullopt;
  return std::pair<uint16_t, uint16_t>(load_be16(ip, ihl), load_be16(ip, ihl + 2));
}

bool rewrite_tcp4_address(std::span<uint8_t> frame, bool destination, in_addr to) {
  if (!tcp4_ports(frame)) return false;
  uint8_t* ip = frame.data() + kEthHeaderLen;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  uint8_t* addr = ip + (destination ? 16 : 12);
  uint8_t* tcp = ip + ihl;
  uint8_t newb[4];
  std::memcpy(newb, &to, 4);
  for (int w = 0; w < 2; ++w) {
    // RFC 1624 eqn. 3, one 16-bit word of the address at a time.
    const uint16_t old_word = load_be16(addr + 2 * w);
    const uint16_t new_word = load_be16(newb + 2 * w);
    store_be16(ip + 10, checksum_replace16(load_be16(ip + 10), old_word, new_word));
    // The TCP checksum covers the addresses through its pseudo-header.
    store_be16(tcp + 16, checksum_replace16(load_be16(tcp + 16), old_word, new_word));
  }
  std::memcpy(addr, newb, 4);
  return true;
}

std::optional<Udp6View> parse_udp6(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeaderLen + 40 + 8 || ether_type(frame) != kEtherTypeIpv6) return std::nullopt;
  const auto ip = frame.subspan(kEthHeaderLen);
  if ((ip[0] >> 4) != 6 || ip[6] != kProtoUdp) return std::nullopt;
  const size_t plen = load_be16(ip, 4);
  if (plen < 8 || 40 + plen > ip.size()) return std::nullopt;
  const auto udp = ip.subspan(40, plen);
  const size_t ulen = load_be16(udp, 4);
  if (ulen < 8 || ulen > udp.size()) return std::nullopt;
  Udp6View v;
  std::copy_n(frame.begin() + 6, 6, v.src_mac.begin());
  std::memcpy(&v.src, ip.data() + 8, 16);
  std::memcpy(&v.dst, ip.data() + 24, 16);
  v.src_port = load_be16(udp, 0);
  v.dst_port = load_be16(udp, 2);
  v.payload = udp.subspan(8, ulen - 8);
  return v;
}

std::vector<uint8_t> build_udp6(const Mac& src_mac, const Mac& dst_mac, const in6_addr& src, uint16_t src_port,
                                const in6_addr& dst, uint16_t dst_port, std::span<const uint8_t> payload) {
  const size_t udp_len = 8 + payload.size();
  std::vector<uint8_t> f(kEthHeaderLen + 40 + udp_len);
  uint8_t* p = f.data();
  std::copy(dst_mac.begin(), dst_mac.end(), p);
  std::copy(src_mac.begin(), src_mac.end(), p + 6);
  store_be16(p + 12, kEtherTypeIpv6);
  uint8_t* ip = p + kEthHeaderLen;
  ip[0] = 0x60;
  store_be16(ip + 4, static_cast<uint16_t>(udp_len));
  ip[6] = kProtoUdp;
  ip[7] = 64;  // hop limit
  std::memcpy(ip + 8, &src, 16);
  std::memcpy(ip + 24, &dst, 16);
  uint8_t* udp = ip + 40;
  store_be16(udp, src_port);
  store_be16(udp + 2, dst_port);
  store_be16(udp + 4, static_cast<uint16_t>(udp_len));
  std::copy(payload.begin(), payload.end(), udp + 8);
  // RFC 8200 §8.1 pseudo-header: addresses, upper-layer length (32 bits), next header.
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, &src, 16);
  std::memcpy(pseudo + 16, &dst, 16);
  store_be16(pseudo + 34, static_cast<uint16_t>(udp_len));
  pseudo[39] = kProtoUdp;
  uint16_t sum = static_cast<uint16_t>(~checksum_fold(checksum_add({udp, udp_len}, checksum_add(pseudo))));
  store_be16(udp + 6, sum == 0 ? 0xffff : sum);
  return f;
}

std::optional<ArpView> parse_arp(std::span<const uint8_t> frame) {
  if (frame.size() < kArpFrameLen || ether_type(frame) != 0x0806) return std::nullopt;
  const uint8_t* a = frame.data() + kEthHeaderLen;
  // RFC 826: hardware type 1 (Ethernet), protocol 0x0800, lengths 6 and 4.
  if (a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0 || a[4] != 6 || a[5] != 4) return std::nullopt;
  ArpView v;
  v.op = load_be16(a + 6);
  std::copy_n(a + 8, 6, v.sender_mac.begin());
  std::memcpy(&v.sender_ip, a + 14, 4);
  std::memcpy(&v.target_ip, a + 24, 4);
  return v;
}

std::array<uint8_t, kArpFrameLen> build_arp_request(const Mac& sender_mac, in_addr sender_ip, in_addr target) {
  std::array<uint8_t, kArpFrameLen> f{};
  std::fill_n(f.begin(), 6, 0xff);  // broadcast
  std::copy(sender_mac.begin(), sender_mac.end(), f.begin() + 6);
  f[12] = 0x08, f[13] = 0x06;
  uint8_t* a = f.data() + kEthHeaderLen;
  a[1] = 1, a[2] = 0x08, a[4] = 6, a[5] = 4, a[7] = kArpRequest;
  std::copy(sender_mac.begin(), sender_mac.end(), a + 8);
  std::memcpy(a + 14, &sender_ip, 4);
  std::memcpy(a + 24, &target, 4);  // target MAC stays zero: unknown (RFC 826)
  return f;
}

}  // namespace causeway::netstack
