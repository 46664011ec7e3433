#include "dns/tcp_framing.hpp"

#include <algorithm>

#include "dns/wire.hpp"

namespace causeway::dns {

bool TcpFrameDecoder::feed(std::span<const uint8_t> bytes, std::vector<std::vector<uint8_t>>& out) {
  while (!failed_ && !bytes.empty()) {
    // The prefix first, then the body it announces; never more than that.
    size_t want = 2;
    if (buf_.size() >= 2) want = 2 + ((size_t{buf_[0]} << 8) | buf_[1]);
    const size_t take = std::min(want - buf_.size(), bytes.size());
    buf_.insert(buf_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    if (buf_.size() == 2) {
      const size_t length = (size_t{buf_[0]} << 8) | buf_[1];
      if (length < kHeaderSize || length > max_message_) {
        failed_ = true;
        buf_.clear();
        break;
      }
      continue;
    }
    if (buf_.size() >= 2 && buf_.size() == want) {
      out.emplace_back(buf_.begin() + 2, buf_.end());
      buf_.clear();
    }
  }
  return !failed_;
}

std::vector<uint8_t> encode_tcp_frame(std::span<const uint8_t> message) {
  if (message.size() > kMaxMessageSize) return {};
  std::vector<uint8_t> out;
  out.reserve(message.size() + 2);
  append_u16(out, static_cast<uint16_t>(message.size()));
  out.insert(out.end(), message.begin(), message.end());
  return out;
}

}  // namespace causeway::dns
