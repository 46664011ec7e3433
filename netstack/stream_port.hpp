// StreamFramePort: frames between the engine and a VMM speaking QEMU's
// `-netdev stream` protocol over a unix stream socket (stream_codec.hpp).
//
// One connection is one guest. Reads decode length-prefixed frames straight
// out of the receive buffer; writes are queued up to kMaxQueuedBytes and
// flushed by one async_write at a time — past the cap, frames are dropped and
// counted rather than buffered without bound (a VMM that stops reading must
// not grow our memory). A bogus length prefix or a disconnect in the middle
// of a frame ends the connection, counted and logged.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "netstack/frame_port.hpp"
#include "netstack/stream_codec.hpp"

namespace causeway::netstack {

struct StreamStats {
  uint64_t frames_read = 0;
  uint64_t frames_written = 0;
  uint64_t queue_drops = 0;      // frames dropped because the VMM was not reading
  uint64_t bad_length = 0;       // bogus length prefix (connection closed)
  uint64_t truncated_close = 0;  // peer disconnected mid-frame
};

class StreamFramePort final : public FramePort {
 public:
  static constexpr size_t kMaxQueuedBytes = 8u << 20;

  // `on_closed` runs once when the connection ends for any reason.
  StreamFramePort(boost::asio::local::stream_protocol::socket socket, size_t max_frame,
                  std::function<void(const std::string& why)> on_closed);
  ~StreamFramePort() override;

  void start(FrameSink& sink);
  void send_to_guest(std::span<const uint8_t> frame) override;
  void close();
  [[nodiscard]] const StreamStats& stats() const { return stats_; }

 private:
  void read_some();
  void flush();
  void finish(const std::string& why);

  boost::asio::local::stream_protocol::socket socket_;
  StreamDecoder decoder_;
  FrameSink* sink_ = nullptr;
  std::vector<uint8_t> rbuf_;
  std::vector<uint8_t> queued_;
  std::vector<uint8_t> in_flight_;
  bool writing_ = false;
  bool closed_ = false;
  std::function<void(const std::string&)> on_closed_;
  StreamStats stats_;
  RateLimitedLog log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::netstack
