// vhost-user messages: framing and payloads, sans-I/O.
//
// Wire format (QEMU docs/interop/vhost-user.rst, "Message Specification";
// native byte order, no padding):
//
//   header  := u32 request, u32 flags, u32 size
//              flags: bits 0-1 version (must be 1), bit 2 REPLY, bit 3 NEED_REPLY
//   payload := `size` bytes, laid out per request (below)
//   fds     := SCM_RIGHTS ancillary data sent with the message
//
// MessageAssembler turns a byte stream plus the descriptors that arrived with
// it into whole messages. It tells the I/O shell how many bytes to read next
// (never past the current message, so descriptors stay with their message)
// and refuses, before allocating, a bad version, a payload over
// kMaxPayloadSize or more than kMaxFds descriptors: the connection is then
// closed by the caller. The parse_* functions check a payload's exact size
// and shape for one request type; encode_* build replies.
//
// Thread safety: plain values; no shared state.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

#include "base/unique_fd.hpp"
#include "vmm/guest_memory.hpp"

namespace causeway::vmm::vhost_user {

enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSendRarp = 19,
  kNetSetMtu = 20,
  kSetSlaveReqFd = 21,
  kIotlbMsg = 22,
  kSetVringEndian = 23,
  kGetConfig = 24,
  kSetConfig = 25,
  kResetDevice = 34,
  kGetMaxMemSlots = 36,
  kAddMemReg = 37,
  kRemMemReg = 38,
  kSetStatus = 39,
  kGetStatus = 40,
};
std::string_view to_string(Request r);

constexpr uint32_t kVersion = 1;
constexpr uint32_t kVersionMask = 0x3;
constexpr uint32_t kFlagReply = 1u << 2;
constexpr uint32_t kFlagNeedReply = 1u << 3;

constexpr size_t kHeaderSize = 12;
// The largest payload we accept. The biggest legitimate ones are a full
// memory table (8 + 8 × 32 = 264 bytes) and a config access (12 + 256).
constexpr size_t kMaxPayloadSize = 1024;
constexpr size_t kMaxFds = 8;  // one per memory region at most

// Feature bit 30 of GET/SET_FEATURES: protocol features are negotiated.
constexpr uint64_t kFProtocolFeatures = 1ull << 30;

// Protocol feature bits (vhost-user.rst, "Protocol features").
constexpr uint64_t kPfMq = 1ull << 0;
constexpr uint64_t kPfLogShmfd = 1ull << 1;
constexpr uint64_t kPfRarp = 1ull << 2;
constexpr uint64_t kPfReplyAck = 1ull << 3;
constexpr uint64_t kPfNetMtu = 1ull << 4;
constexpr uint64_t kPfSlaveReq = 1ull << 5;
constexpr uint64_t kPfConfig = 1ull << 9;

// Low byte of SET_VRING_KICK/CALL/ERR's u64: the ring; bit 8: no fd (poll).
constexpr uint64_t kVringIndexMask = 0xff;
constexpr uint64_t kVringNoFdFlag = 1ull << 8;

constexpr uint32_t kMaxConfigSize = 256;  // VHOST_USER_MAX_CONFIG_SIZE

struct Message {
  uint32_t request = 0;
  uint32_t flags = 0;
  std::vector<uint8_t> payload;
  std::vector<UniqueFd> fds;
  [[nodiscard]] bool need_reply() const { return (flags & kFlagNeedReply) != 0; }
};

enum class FrameError {
  kBadVersion,       // flags' version bits are not 1
  kReplyFlag,        // a request with the REPLY bit: the peer is confused
  kPayloadTooLarge,  // size > kMaxPayloadSize
  kTooManyFds,       // more than kMaxFds descriptors on one message
};
std::string_view to_string(FrameError e);

class MessageAssembler {
 public:
  // How many bytes to read next (> 0): the rest of the header, then the
  // rest of the payload.
  [[nodiscard]] size_t wanted() const;
  // Takes bytes (at most wanted()) and the descriptors received with them.
  // Returns an error for a malformed frame; the assembler is then unusable
  // and the connection should be closed.
  std::optional<FrameError> feed(std::span<const uint8_t> data, std::vector<UniqueFd> fds);
  // A complete message, if one is ready (at most one at a time).
  std::optional<Message> take();

 private:
  std::array<uint8_t, kHeaderSize> header_{};
  size_t header_have_ = 0;
  Message msg_;
  size_t payload_size_ = 0;
  size_t payload_have_ = 0;
  bool ready_ = false;
};

// ---- payloads ----
struct VringState {
  uint32_t index = 0;
  uint32_t num = 0;
};
struct VringAddr {  // struct vhost_vring_addr
  uint32_t index = 0;
  uint32_t flags = 0;  // bit 0: VHOST_VRING_F_LOG
  uint64_t desc_user_addr = 0;
  uint64_t used_user_addr = 0;
  uint64_t avail_user_addr = 0;
  uint64_t log_guest_addr = 0;
};
struct VringFile {
  uint32_t index = 0;
  bool no_fd = false;  // bit 8 set: polling requested, no descriptor sent
};
struct ConfigAccess {
  uint32_t offset = 0;
  uint32_t size = 0;
  uint32_t flags = 0;
  std::span<const uint8_t> data;  // SET_CONFIG only
};

boost::system::result<uint64_t, std::string> parse_u64(const Message& m);
boost::system::result<VringState, std::string> parse_vring_state(const Message& m);
boost::system::result<VringAddr, std::string> parse_vring_addr(const Message& m);
// Also checks that exactly one descriptor arrived unless no_fd is set.
boost::system::result<VringFile, std::string> parse_vring_file(const Message& m);
// Checks nregions ≤ 8, the exact payload size and one descriptor per region.
boost::system::result<std::vector<MemoryRegionSpec>, std::string> parse_mem_table(const Message& m);
boost::system::result<ConfigAccess, std::string> parse_config(const Message& m);

// ---- replies ----
std::vector<uint8_t> encode_reply(uint32_t request, std::span<const uint8_t> payload);
std::vector<uint8_t> encode_u64_reply(uint32_t request, uint64_t value);
std::vector<uint8_t> encode_vring_state_reply(uint32_t request, VringState s);
// A front-end request (for tests and for a future front-end).
std::vector<uint8_t> encode_request(Request r, std::span<const uint8_t> payload, uint32_t extra_flags = 0);

}  // namespace causeway::vmm::vhost_user
