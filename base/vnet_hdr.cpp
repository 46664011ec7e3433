// The virtio-net header: codec, checks and software offload completion; see vnet_hdr.hpp.
#include "base/vnet_hdr.hpp"

#include <algorithm>
#include <cstring>

#include "base/byte_order.hpp"
#include "base/checksum.hpp"

namespace causeway::wire {
namespace {

constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;
constexpr uint8_t kProtoTcp = 6;

// Locates the TCP header of a plain IPv4/IPv6 TCP packet; false if the frame
// is anything else or its headers do not fit.
bool locate_tcp(std::span<const uint8_t> f, bool ipv6, GuestOffload& o) {
  if (f.size() < kEthHeaderLen + 20) return false;
  const uint16_t et = load_be16(f, 12);
  const uint8_t* ip = f.data() + kEthHeaderLen;
  size_t l4 = 0, end = 0;
  if (!ipv6) {
    if (et != kEtherTypeIpv4 || (ip[0] >> 4) != 4) return false;
    const size_t ihl = (ip[0] & 0x0f) * 4u;
    const size_t total = load_be16(ip + 2);
    if (ihl < 20 || ip[9] != kProtoTcp || total < ihl + 20 || kEthHeaderLen + total > f.size()) return false;
    if ((load_be16(ip + 6) & 0x3fff) != 0) return false;  // MF or an offset: a fragment is no super-segment
    l4 = kEthHeaderLen + ihl;
    end = kEthHeaderLen + total;
  } else {
    if (et != kEtherTypeIpv6 || f.size() < kEthHeaderLen + 40 + 20 || (ip[0] >> 4) != 6) return false;
    if (ip[6] != kProtoTcp) return false;  // extension headers: not offered to us by Linux TSO
    const size_t plen = load_be16(ip + 4);
    if (plen < 20 || kEthHeaderLen + 40 + plen > f.size()) return false;
    l4 = kEthHeaderLen + 40;
    end = l4 + plen;
  }
  const size_t doff = (f[l4 + 12] >> 4) * 4u;
  if (doff < 20 || l4 + doff > end) return false;
  o.l4_off = l4;
  o.headers_len = l4 + doff;
  o.packet_end = end;
  return true;
}

// Cuts a checked super-segment into gso_size pieces (see the header).
void segment_in_software(std::span<const uint8_t> frame, const GuestOffload& o, std::vector<uint8_t>& scratch,
                         const std::function<void(std::span<const uint8_t>)>& emit) {
  // SAFETY: check_vnet_hdr proved l4_off + 20 <= headers_len <= packet_end <= frame.size().
  const size_t hl = o.headers_len;
  const size_t l4 = o.l4_off;
  const size_t thl = hl - l4;
  const size_t payload = o.packet_end - hl;
  const uint32_t seq0 = load_be32(frame.data() + l4 + 4);
  const uint8_t flags0 = frame[l4 + 13];
  const uint16_t id0 = o.ipv6 ? 0 : load_be16(frame.data() + kEthHeaderLen + 4);
  size_t off = 0;
  size_t index = 0;
  do {
    const size_t len = std::min<size_t>(o.gso_size, payload - off);
    const bool first = off == 0, last = off + len == payload;
    scratch.resize(hl + len);
    std::memcpy(scratch.data(), frame.data(), hl);
    std::memcpy(scratch.data() + hl, frame.data() + hl + off, len);
    uint8_t* ip = scratch.data() + kEthHeaderLen;
    uint8_t* t = scratch.data() + l4;
    uint32_t pseudo;
    const size_t tcp_len = thl + len;
    if (!o.ipv6) {
      const size_t ihl = l4 - kEthHeaderLen;
      store_be16(ip + 2, static_cast<uint16_t>(ihl + tcp_len));
      store_be16(ip + 4, static_cast<uint16_t>(id0 + index));
      ip[10] = ip[11] = 0;
      store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, ihl}))));
      pseudo = checksum_add({ip + 12, 8}) + kProtoTcp + static_cast<uint32_t>(tcp_len);
    } else {
      store_be16(ip + 4, static_cast<uint16_t>(tcp_len));
      pseudo = checksum_add({ip + 8, 32}) + kProtoTcp + static_cast<uint32_t>(tcp_len);
    }
    store_be32(t + 4, seq0 + static_cast<uint32_t>(off));
    uint8_t fl = flags0;
    if (!last) fl &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (!first) fl &= static_cast<uint8_t>(~kTcpCwr);
    t[13] = fl;
    t[16] = t[17] = 0;
    store_be16(t + 16, static_cast<uint16_t>(~checksum_fold(checksum_add({t, tcp_len}, pseudo))));
    emit(scratch);
    off += len;
    ++index;
  } while (off < payload);
}

}  // namespace

VnetHdr read_vnet_hdr(std::span<const uint8_t> b, size_t len) {
  VnetHdr h;
  h.flags = b[0];
  h.gso_type = b[1];
  h.hdr_len = load_le16(&b[2]);
  h.gso_size = load_le16(&b[4]);
  h.csum_start = load_le16(&b[6]);
  h.csum_offset = load_le16(&b[8]);
  if (len >= kVnetHdrLen) h.num_buffers = load_le16(&b[10]);
  return h;
}

void write_vnet_hdr(std::span<uint8_t> out, const VnetHdr& h, size_t len) {
  out[0] = h.flags;
  out[1] = h.gso_type;
  store_le16(&out[2], h.hdr_len);
  store_le16(&out[4], h.gso_size);
  store_le16(&out[6], h.csum_start);
  store_le16(&out[8], h.csum_offset);
  if (len >= kVnetHdrLen) store_le16(&out[10], h.num_buffers);
}

std::string_view to_string(VnetVerdict v) {
  switch (v) {
    case VnetVerdict::kOk: return "ok";
    case VnetVerdict::kBadFlags: return "unknown flags";
    case VnetVerdict::kBadGsoType: return "unknown GSO type";
    case VnetVerdict::kBadCsum: return "checksum offsets outside the frame";
    case VnetVerdict::kGsoNoCsum: return "GSO without NEEDS_CSUM";
    case VnetVerdict::kGsoNotTcp: return "GSO on something other than plain TCP";
    case VnetVerdict::kGsoBadSize: return "GSO segments that do not fit the MTU";
    case VnetVerdict::kBadHdrLen: return "hdr_len beyond the frame";
  }
  return "unknown";
}

VnetCheck check_vnet_hdr(const VnetHdr& h, std::span<const uint8_t> frame, size_t mtu) {
  VnetCheck r;
  if ((h.flags & ~(kVnetFNeedsCsum | kVnetFDataValid)) != 0) return {VnetVerdict::kBadFlags, {}};
  const uint8_t gso = h.gso_type & static_cast<uint8_t>(~kVnetGsoEcn);
  if (gso != kVnetGsoNone && gso != kVnetGsoTcp4 && gso != kVnetGsoTcp6) return {VnetVerdict::kBadGsoType, {}};
  if (gso == kVnetGsoNone && (h.gso_type & kVnetGsoEcn)) return {VnetVerdict::kBadGsoType, {}};
  if (h.hdr_len > frame.size()) return {VnetVerdict::kBadHdrLen, {}};
  auto& o = r.offload;
  if (h.flags & kVnetFNeedsCsum) {
    // §5.1.6.2: the 16-bit field at csum_start + csum_offset must lie inside the frame.
    if (size_t{h.csum_start} + h.csum_offset + 2 > frame.size() || h.csum_start < kEthHeaderLen)
      return {VnetVerdict::kBadCsum, {}};
    o.needs_csum = true;
    o.csum_start = h.csum_start;
    o.csum_offset = h.csum_offset;
  }
  if (gso == kVnetGsoNone) return r;
  if (!o.needs_csum) return {VnetVerdict::kGsoNoCsum, {}};
  o.ipv6 = gso == kVnetGsoTcp6;
  if (!locate_tcp(frame, o.ipv6, o)) return {VnetVerdict::kGsoNotTcp, {}};
  if (o.csum_start != o.l4_off || o.csum_offset != 16) return {VnetVerdict::kGsoNotTcp, {}};
  // Each segment: IP + TCP headers + gso_size must fit the link MTU.
  if (h.gso_size == 0 || o.headers_len - kEthHeaderLen + h.gso_size > mtu) return {VnetVerdict::kGsoBadSize, {}};
  o.gso = true;
  o.gso_size = h.gso_size;
  return r;
}

bool complete_checksum(std::span<uint8_t> frame, uint16_t csum_start, uint16_t csum_offset) {
  const size_t field = size_t{csum_start} + csum_offset;
  if (csum_start >= frame.size() || field + 2 > frame.size()) return false;
  // The field holds the pseudo-header sum already; it is part of the data summed.
  const auto sum = static_cast<uint16_t>(~checksum_fold(checksum_add(frame.subspan(csum_start))));
  // RFC 768: a computed UDP checksum of 0 is sent as all ones. For TCP both
  // encodings of one's-complement zero verify, so do it unconditionally.
  store_be16(frame.data() + field, sum == 0 ? 0xffff : sum);
  return true;
}

void finish_in_software(std::span<const uint8_t> frame, const GuestOffload& o, std::vector<uint8_t>& scratch,
                        const std::function<void(std::span<const uint8_t>)>& emit) {
  if (o.gso) return segment_in_software(frame, o, scratch, emit);
  scratch.assign(frame.begin(), frame.end());
  // SAFETY: check_vnet_hdr proved csum_start + csum_offset + 2 <= frame.size(), so this cannot fail.
  if (o.needs_csum) complete_checksum(scratch, o.csum_start, o.csum_offset);
  emit(scratch);
}

}  // namespace causeway::wire
