// DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): every message on the
// stream is preceded by its length as a two-byte big-endian number.
// Sans-I/O: the engine feeds the guest's stream bytes (from libslirp's
// guestfwd callback) to a TcpFrameDecoder and writes encode_tcp_frame() of
// each answer back.
//
// The decoder buffers at most one partial message (≤ 2 + max_message bytes);
// whole messages are handed out as they complete, so pipelined queries
// (RFC 7766 §6.2.1.1) come out in order from a single feed. A length prefix
// shorter than a DNS header or longer than max_message is not something a
// DNS client sends: the decoder fails for good and the caller should close
// the connection (RFC 7766 §8 does not define resynchronising a stream).
//
// Thread safety: a value type; one per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace causeway::dns {

// A query is one question plus EDNS/TSIG records: a few hundred bytes. 4 KiB
// is generous and keeps a hostile stream's buffer small.
constexpr size_t kMaxTcpQuery = 4096;

class TcpFrameDecoder {
 public:
  explicit TcpFrameDecoder(size_t max_message = kMaxTcpQuery) : max_message_(max_message) {}

  // Consumes `bytes`, appending each complete message to `out`. Returns
  // false once the stream carried an absurd length (and from then on).
  bool feed(std::span<const uint8_t> bytes, std::vector<std::vector<uint8_t>>& out);

  [[nodiscard]] bool failed() const { return failed_; }
  [[nodiscard]] size_t buffered() const { return buf_.size(); }

 private:
  size_t max_message_;
  std::vector<uint8_t> buf_;  // the partial message, length prefix included
  bool failed_ = false;
};

// The length prefix and `message`; empty if the message is over 65535 bytes.
std::vector<uint8_t> encode_tcp_frame(std::span<const uint8_t> message);

}  // namespace causeway::dns
