#include "vmm/devices/vsock_packet.hpp"

#include <cstring>

namespace causeway::vmm::vsock {

namespace {
template <typename T>
T get(std::span<const uint8_t> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}
template <typename T>
void put(std::span<uint8_t> b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof(T));
}
}  // namespace

std::string_view to_string(Op op) {
  switch (op) {
    case Op::kInvalid: return "INVALID";
    case Op::kRequest: return "REQUEST";
    case Op::kResponse: return "RESPONSE";
    case Op::kRst: return "RST";
    case Op::kShutdown: return "SHUTDOWN";
    case Op::kRw: return "RW";
    case Op::kCreditUpdate: return "CREDIT_UPDATE";
    case Op::kCreditRequest: return "CREDIT_REQUEST";
  }
  return "?";
}

std::string_view to_string(PacketCheck c) {
  switch (c) {
    case PacketCheck::kOk: return "ok";
    case PacketCheck::kShort: return "short header";
    case PacketCheck::kWrongSource: return "source CID is not the guest's";
    case PacketCheck::kWrongDest: return "destination CID is not the host";
    case PacketCheck::kBadType: return "socket type not STREAM";
    case PacketCheck::kBadOp: return "unknown op";
    case PacketCheck::kBadLength: return "bad payload length";
    case PacketCheck::kBadFlags: return "bad flags";
  }
  return "?";
}

Header parse_header(std::span<const uint8_t> b) {
  Header h;
  h.src_cid = get<uint64_t>(b, 0);
  h.dst_cid = get<uint64_t>(b, 8);
  h.src_port = get<uint32_t>(b, 16);
  h.dst_port = get<uint32_t>(b, 20);
  h.len = get<uint32_t>(b, 24);
  h.type = get<uint16_t>(b, 28);
  h.op = get<uint16_t>(b, 30);
  h.flags = get<uint32_t>(b, 32);
  h.buf_alloc = get<uint32_t>(b, 36);
  h.fwd_cnt = get<uint32_t>(b, 40);
  return h;
}

void write_header(std::span<uint8_t> b, const Header& h) {
  put(b, 0, h.src_cid);
  put(b, 8, h.dst_cid);
  put(b, 16, h.src_port);
  put(b, 20, h.dst_port);
  put(b, 24, h.len);
  put(b, 28, h.type);
  put(b, 30, h.op);
  put(b, 32, h.flags);
  put(b, 36, h.buf_alloc);
  put(b, 40, h.fwd_cnt);
}

PacketCheck check_guest_packet(const Header& h, uint64_t total, uint64_t guest_cid) {
  if (total < kHdrSize) return PacketCheck::kShort;
  // §5.10.6.1: the device drops packets whose source is not the guest; we
  // are the only destination there is.
  if (h.src_cid != guest_cid) return PacketCheck::kWrongSource;
  if (h.dst_cid != kHostCid) return PacketCheck::kWrongDest;
  if (h.type != kTypeStream) return PacketCheck::kBadType;
  if (h.op < static_cast<uint16_t>(Op::kRequest) || h.op > static_cast<uint16_t>(Op::kCreditRequest))
    return PacketCheck::kBadOp;
  if (h.len > kMaxPayload || h.len > total - kHdrSize) return PacketCheck::kBadLength;
  const auto op = static_cast<Op>(h.op);
  if (op != Op::kRw && h.len != 0) return PacketCheck::kBadLength;
  // Flags mean something only on SHUTDOWN (and on SEQPACKET, not offered);
  // elsewhere they are ignored rather than refused.
  if (op == Op::kShutdown && (h.flags & ~kShutdownMask) != 0) return PacketCheck::kBadFlags;
  return PacketCheck::kOk;
}

}  // namespace causeway::vmm::vsock
