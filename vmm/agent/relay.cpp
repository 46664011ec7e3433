#include "vmm/agent/relay.hpp"

namespace causeway::agent {

std::array<uint8_t, kRelayRequestSize> encode_relay_request(const RelayRequest& r) {
  return {'C',
          'W',
          kRelayVersion,
          static_cast<uint8_t>(r.proto),
          r.family,
          0,
          static_cast<uint8_t>(r.port & 0xff),
          static_cast<uint8_t>(r.port >> 8)};
}

std::optional<RelayRequest> decode_relay_request(std::span<const uint8_t, kRelayRequestSize> b) {
  if (b[0] != 'C' || b[1] != 'W' || b[2] != kRelayVersion || b[5] != 0) return std::nullopt;
  RelayRequest r;
  if (b[3] == static_cast<uint8_t>(IpProto::Tcp))
    r.proto = IpProto::Tcp;
  else if (b[3] == static_cast<uint8_t>(IpProto::Udp))
    r.proto = IpProto::Udp;
  else
    return std::nullopt;
  if (b[4] != 4 && b[4] != 6) return std::nullopt;
  r.family = b[4];
  r.port = static_cast<uint16_t>(b[6] | (b[7] << 8));
  if (r.port == 0) return std::nullopt;
  return r;
}

std::array<uint8_t, kRelayReplySize> encode_relay_reply(uint16_t error) {
  return {'C', 'W', static_cast<uint8_t>(error & 0xff), static_cast<uint8_t>(error >> 8)};
}

std::optional<uint16_t> decode_relay_reply(std::span<const uint8_t, kRelayReplySize> b) {
  if (b[0] != 'C' || b[1] != 'W') return std::nullopt;
  return static_cast<uint16_t>(b[2] | (b[3] << 8));
}

void append_relay_datagram(std::span<const uint8_t> payload, std::vector<uint8_t>& out) {
  const size_t n = payload.size();
  out.push_back(static_cast<uint8_t>(n & 0xff));
  out.push_back(static_cast<uint8_t>(n >> 8));
  out.insert(out.end(), payload.begin(), payload.end());
}

void RelayDatagramReader::feed(std::span<const uint8_t> bytes) {
  if (error_) return;
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 64 * 1024) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

std::optional<std::span<const uint8_t>> RelayDatagramReader::next() {
  if (error_ || buf_.size() - pos_ < 2) return std::nullopt;
  const size_t n = buf_[pos_] | (static_cast<size_t>(buf_[pos_ + 1]) << 8);
  if (n > kMaxRelayDatagram) {
    error_ = true;
    return std::nullopt;
  }
  if (buf_.size() - pos_ - 2 < n) return std::nullopt;
  const std::span<const uint8_t> d(buf_.data() + pos_ + 2, n);
  pos_ += 2 + n;
  return d;
}

}  // namespace causeway::agent
