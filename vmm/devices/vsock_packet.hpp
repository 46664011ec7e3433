// virtio-vsock packets, sans-I/O (virtio 1.x §5.10.6).
//
// Every packet on the rx/tx queues starts with a 44-byte little-endian
// header, followed by `len` payload bytes (only OP_RW carries payload):
//
//   le64 src_cid, le64 dst_cid, le32 src_port, le32 dst_port, le32 len,
//   le16 type (1 STREAM, 2 SEQPACKET), le16 op, le32 flags,
//   le32 buf_alloc, le32 fwd_cnt
//
// buf_alloc and fwd_cnt are the sender's credit information (§5.10.6.3):
// its receive buffer size and the bytes it has consumed so far. A sender may
// have at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt) bytes in flight.
//
// check_guest_packet() decides whether a packet the guest sent is something
// the device may act on at all; the connection logic lives in
// VirtioVsockDevice.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace causeway::vmm::vsock {

constexpr size_t kHdrSize = 44;
constexpr uint32_t kMaxPayload = 64 * 1024;  // Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE
constexpr uint16_t kTypeStream = 1;
constexpr uint16_t kTypeSeqpacket = 2;  // VIRTIO_VSOCK_F_SEQPACKET: not offered
constexpr uint32_t kShutdownRcv = 1;    // the sender will receive no more
constexpr uint32_t kShutdownSend = 2;   // the sender will send no more
constexpr uint32_t kShutdownMask = kShutdownRcv | kShutdownSend;
constexpr uint64_t kHostCid = 2;  // VMADDR_CID_HOST

enum class Op : uint16_t {
  kInvalid = 0,
  kRequest = 1,
  kResponse = 2,
  kRst = 3,
  kShutdown = 4,
  kRw = 5,
  kCreditUpdate = 6,
  kCreditRequest = 7,
};
std::string_view to_string(Op op);

struct Header {
  uint64_t src_cid = 0;
  uint64_t dst_cid = 0;
  uint32_t src_port = 0;
  uint32_t dst_port = 0;
  uint32_t len = 0;
  uint16_t type = kTypeStream;
  uint16_t op = 0;
  uint32_t flags = 0;
  uint32_t buf_alloc = 0;
  uint32_t fwd_cnt = 0;
};

// `bytes` must hold kHdrSize bytes.
Header parse_header(std::span<const uint8_t> bytes);
void write_header(std::span<uint8_t> out, const Header& h);

enum class PacketCheck {
  kOk,
  kShort,        // fewer than 44 bytes
  kWrongSource,  // src_cid is not the guest's CID (spoofing)
  kWrongDest,    // dst_cid is not the host
  kBadType,      // not STREAM
  kBadOp,        // op 0 or unknown
  kBadLength,    // len > kMaxPayload, more than the buffers hold, or payload on a control op
  kBadFlags,     // SHUTDOWN flags outside RCV|SEND
};
constexpr size_t kPacketCheckCount = 8;
std::string_view to_string(PacketCheck c);

// Checks a guest → host packet whose header was read from `bytes` readable
// bytes in total (header + payload).
PacketCheck check_guest_packet(const Header& h, uint64_t total_bytes, uint64_t guest_cid);

}  // namespace causeway::vmm::vsock
