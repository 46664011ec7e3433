// QEMU `-netdev stream` framing: each Ethernet frame is preceded by its length
// as a 4-byte big-endian integer (QEMU net/stream.c, the same framing as the
// older `-netdev socket`). Sans-I/O decoder and encoder.
//
// A length of 0 or beyond the limit cannot be skipped safely — nothing marks
// where the next frame starts — so the decoder reports the stream as broken
// and the caller closes the connection.
//
// Thread safety: one decoder per connection, not synchronised.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace causeway::netstack {

constexpr size_t kStreamHeaderLen = 4;

inline std::array<uint8_t, kStreamHeaderLen> encode_stream_header(uint32_t len) {
  return {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16), static_cast<uint8_t>(len >> 8),
          static_cast<uint8_t>(len)};
}

class StreamDecoder {
 public:
  explicit StreamDecoder(size_t max_frame) : max_frame_(max_frame) {}

  // Consumes `bytes`, calling on_frame(std::span<const uint8_t>) for every
  // complete frame. Returns false once a bogus length has been seen; after
  // that the decoder stays broken and ignores input.
  template <class OnFrame>
  bool feed(std::span<const uint8_t> bytes, OnFrame&& on_frame) {
    if (broken_) return false;
    // Fast path: nothing buffered, parse straight out of the caller's bytes.
    size_t off = 0;
    if (buf_.empty()) {
      while (bytes.size() - off >= kStreamHeaderLen) {
        const uint32_t len = load(bytes.data() + off);
        if (!valid(len)) return broken_ = true, false;
        if (bytes.size() - off - kStreamHeaderLen < len) break;
        on_frame(bytes.subspan(off + kStreamHeaderLen, len));
        off += kStreamHeaderLen + len;
      }
    }
    buf_.insert(buf_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(off), bytes.end());
    size_t pos = 0;
    while (buf_.size() - pos >= kStreamHeaderLen) {
      const uint32_t len = load(buf_.data() + pos);
      if (!valid(len)) return broken_ = true, false;
      if (buf_.size() - pos - kStreamHeaderLen < len) break;
      on_frame(std::span<const uint8_t>(buf_.data() + pos + kStreamHeaderLen, len));
      pos += kStreamHeaderLen + len;
    }
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos));
    return true;
  }

  [[nodiscard]] bool broken() const { return broken_; }
  // Bytes of a partial frame held (a peer that disconnects mid-frame leaves some).
  [[nodiscard]] size_t buffered() const { return buf_.size(); }

 private:
  static uint32_t load(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
  }
  [[nodiscard]] bool valid(uint32_t len) const { return len > 0 && len <= max_frame_; }

  size_t max_frame_;
  bool broken_ = false;
  std::vector<uint8_t> buf_;
};

}  // namespace causeway::netstack
