#include "vmm/vhost_user/message.hpp"

#include <fmt/format.h>

#include <cstring>

namespace causeway::vmm::vhost_user {

namespace {

template <typename T>
T load(std::span<const uint8_t> p, size_t off) {
  T v;
  std::memcpy(&v, p.data() + off, sizeof(T));
  return v;
}
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* b = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), b, b + sizeof(T));
}

std::string size_error(const Message& m, size_t want) {
  return fmt::format("{}: payload is {} bytes, want {}", to_string(static_cast<Request>(m.request)), m.payload.size(),
                     want);
}

}  // namespace

std::string_view to_string(Request r) {
  switch (r) {
    case Request::kGetFeatures: return "GET_FEATURES";
    case Request::kSetFeatures: return "SET_FEATURES";
    case Request::kSetOwner: return "SET_OWNER";
    case Request::kResetOwner: return "RESET_OWNER";
    case Request::kSetMemTable: return "SET_MEM_TABLE";
    case Request::kSetLogBase: return "SET_LOG_BASE";
    case Request::kSetLogFd: return "SET_LOG_FD";
    case Request::kSetVringNum: return "SET_VRING_NUM";
    case Request::kSetVringAddr: return "SET_VRING_ADDR";
    case Request::kSetVringBase: return "SET_VRING_BASE";
    case Request::kGetVringBase: return "GET_VRING_BASE";
    case Request::kSetVringKick: return "SET_VRING_KICK";
    case Request::kSetVringCall: return "SET_VRING_CALL";
    case Request::kSetVringErr: return "SET_VRING_ERR";
    case Request::kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case Request::kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case Request::kGetQueueNum: return "GET_QUEUE_NUM";
    case Request::kSetVringEnable: return "SET_VRING_ENABLE";
    case Request::kSendRarp: return "SEND_RARP";
    case Request::kNetSetMtu: return "NET_SET_MTU";
    case Request::kSetSlaveReqFd: return "SET_SLAVE_REQ_FD";
    case Request::kIotlbMsg: return "IOTLB_MSG";
    case Request::kSetVringEndian: return "SET_VRING_ENDIAN";
    case Request::kGetConfig: return "GET_CONFIG";
    case Request::kSetConfig: return "SET_CONFIG";
    case Request::kResetDevice: return "RESET_DEVICE";
    case Request::kGetMaxMemSlots: return "GET_MAX_MEM_SLOTS";
    case Request::kAddMemReg: return "ADD_MEM_REG";
    case Request::kRemMemReg: return "REM_MEM_REG";
    case Request::kSetStatus: return "SET_STATUS";
    case Request::kGetStatus: return "GET_STATUS";
  }
  return "UNKNOWN";
}

std::string_view to_string(FrameError e) {
  switch (e) {
    case FrameError::kBadVersion: return "bad protocol version in flags";
    case FrameError::kReplyFlag: return "request carries the REPLY flag";
    case FrameError::kPayloadTooLarge: return "payload too large";
    case FrameError::kTooManyFds: return "too many file descriptors";
  }
  return "?";
}

size_t MessageAssembler::wanted() const {
  if (header_have_ < kHeaderSize) return kHeaderSize - header_have_;
  return payload_size_ - payload_have_;  // > 0 whenever a message is incomplete
}

std::optional<FrameError> MessageAssembler::feed(std::span<const uint8_t> data, std::vector<UniqueFd> fds) {
  if (msg_.fds.size() + fds.size() > kMaxFds) return FrameError::kTooManyFds;
  for (auto& fd : fds) msg_.fds.push_back(std::move(fd));
  while (!data.empty()) {
    if (header_have_ < kHeaderSize) {
      const size_t n = std::min(data.size(), kHeaderSize - header_have_);
      std::memcpy(header_.data() + header_have_, data.data(), n);
      header_have_ += n;
      data = data.subspan(n);
      if (header_have_ < kHeaderSize) break;
      const std::span<const uint8_t> h(header_);
      msg_.request = load<uint32_t>(h, 0);
      msg_.flags = load<uint32_t>(h, 4);
      payload_size_ = load<uint32_t>(h, 8);
      if ((msg_.flags & kVersionMask) != kVersion) return FrameError::kBadVersion;
      if (msg_.flags & kFlagReply) return FrameError::kReplyFlag;
      if (payload_size_ > kMaxPayloadSize) return FrameError::kPayloadTooLarge;
      msg_.payload.resize(payload_size_);
      payload_have_ = 0;
      if (payload_size_ == 0) ready_ = true;
      continue;
    }
    const size_t n = std::min(data.size(), payload_size_ - payload_have_);
    std::memcpy(msg_.payload.data() + payload_have_, data.data(), n);
    payload_have_ += n;
    data = data.subspan(n);
    if (payload_have_ == payload_size_) ready_ = true;
    // Bytes past the message would belong to the next one; the I/O shell
    // never reads more than wanted(), so there are none.
    if (ready_) break;
  }
  return std::nullopt;
}

std::optional<Message> MessageAssembler::take() {
  if (!ready_) return std::nullopt;
  Message out = std::move(msg_);
  msg_ = Message{};
  header_have_ = 0;
  payload_size_ = payload_have_ = 0;
  ready_ = false;
  return out;
}

boost::system::result<uint64_t, std::string> parse_u64(const Message& m) {
  if (m.payload.size() != 8) return size_error(m, 8);
  return load<uint64_t>(m.payload, 0);
}

boost::system::result<VringState, std::string> parse_vring_state(const Message& m) {
  if (m.payload.size() != 8) return size_error(m, 8);
  return VringState{load<uint32_t>(m.payload, 0), load<uint32_t>(m.payload, 4)};
}

boost::system::result<VringAddr, std::string> parse_vring_addr(const Message& m) {
  if (m.payload.size() != 40) return size_error(m, 40);
  const std::span<const uint8_t> p(m.payload);
  VringAddr a;
  a.index = load<uint32_t>(p, 0);
  a.flags = load<uint32_t>(p, 4);
  a.desc_user_addr = load<uint64_t>(p, 8);
  a.used_user_addr = load<uint64_t>(p, 16);
  a.avail_user_addr = load<uint64_t>(p, 24);
  a.log_guest_addr = load<uint64_t>(p, 32);
  return a;
}

boost::system::result<VringFile, std::string> parse_vring_file(const Message& m) {
  auto v = parse_u64(m);
  if (v.has_error()) return v.error();
  if (*v & ~(kVringIndexMask | kVringNoFdFlag))
    return fmt::format("{}: reserved bits set in {:#x}", to_string(static_cast<Request>(m.request)), *v);
  VringFile f;
  f.index = static_cast<uint32_t>(*v & kVringIndexMask);
  f.no_fd = (*v & kVringNoFdFlag) != 0;
  const size_t want = f.no_fd ? 0 : 1;
  if (m.fds.size() != want)
    return fmt::format("{}: {} file descriptors, want {}", to_string(static_cast<Request>(m.request)), m.fds.size(),
                       want);
  return f;
}

boost::system::result<std::vector<MemoryRegionSpec>, std::string> parse_mem_table(const Message& m) {
  if (m.payload.size() < 8) return size_error(m, 8);
  const std::span<const uint8_t> p(m.payload);
  const uint32_t n = load<uint32_t>(p, 0);
  if (n == 0 || n > GuestMemory::kMaxRegions)
    return fmt::format("SET_MEM_TABLE: {} regions (want 1..{})", n, GuestMemory::kMaxRegions);
  // QEMU sends exactly the regions it fills in; tolerate the full 8-slot
  // struct too (other front-ends send sizeof(VhostUserMemory)).
  const size_t exact = 8 + size_t{n} * 32;
  const size_t full = 8 + GuestMemory::kMaxRegions * 32;
  if (m.payload.size() != exact && m.payload.size() != full) return size_error(m, exact);
  if (m.fds.size() != n) return fmt::format("SET_MEM_TABLE: {} regions but {} file descriptors", n, m.fds.size());
  std::vector<MemoryRegionSpec> out(n);
  for (uint32_t i = 0; i < n; ++i) {
    const size_t off = 8 + size_t{i} * 32;
    out[i].guest_phys_addr = load<uint64_t>(p, off);
    out[i].size = load<uint64_t>(p, off + 8);
    out[i].user_addr = load<uint64_t>(p, off + 16);
    out[i].mmap_offset = load<uint64_t>(p, off + 24);
  }
  return out;
}

boost::system::result<ConfigAccess, std::string> parse_config(const Message& m) {
  if (m.payload.size() < 12) return size_error(m, 12);
  const std::span<const uint8_t> p(m.payload);
  ConfigAccess c;
  c.offset = load<uint32_t>(p, 0);
  c.size = load<uint32_t>(p, 4);
  c.flags = load<uint32_t>(p, 8);
  if (c.size > kMaxConfigSize || c.offset > kMaxConfigSize || c.offset + c.size > kMaxConfigSize)
    return fmt::format("config access at {} size {} is outside the {}-byte space", c.offset, c.size, kMaxConfigSize);
  // GET_CONFIG carries a payload buffer of `size` bytes too (QEMU sends it zeroed).
  if (m.payload.size() != 12 + size_t{c.size}) return size_error(m, 12 + size_t{c.size});
  c.data = p.subspan(12, c.size);
  return c;
}

std::vector<uint8_t> encode_reply(uint32_t request, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kHeaderSize + payload.size());
  put<uint32_t>(out, request);
  put<uint32_t>(out, kVersion | kFlagReply);
  put<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> encode_u64_reply(uint32_t request, uint64_t value) {
  std::array<uint8_t, 8> p{};
  std::memcpy(p.data(), &value, 8);
  return encode_reply(request, p);
}

std::vector<uint8_t> encode_vring_state_reply(uint32_t request, VringState s) {
  std::array<uint8_t, 8> p{};
  std::memcpy(p.data(), &s.index, 4);
  std::memcpy(p.data() + 4, &s.num, 4);
  return encode_reply(request, p);
}

std::vector<uint8_t> encode_request(Request r, std::span<const uint8_t> payload, uint32_t extra_flags) {
  std::vector<uint8_t> out;
  put<uint32_t>(out, static_cast<uint32_t>(r));
  put<uint32_t>(out, kVersion | extra_flags);
  put<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

}  // namespace causeway::vmm::vhost_user
