#include "netstack/stream_port.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace causeway::netstack {

StreamFramePort::StreamFramePort(boost::asio::local::stream_protocol::socket socket, size_t max_frame,
                                 std::function<void(const std::string&)> on_closed)
    : socket_(std::move(socket)), decoder_(max_frame), rbuf_(256 * 1024), on_closed_(std::move(on_closed)) {}

StreamFramePort::~StreamFramePort() {
  *alive_ = false;
  boost::system::error_code ec;
  socket_.close(ec);
}

void StreamFramePort::start(FrameSink& sink) {
  sink_ = &sink;
  read_some();
}

void StreamFramePort::close() { finish("closed by causeway"); }

void StreamFramePort::read_some() {
  socket_.async_read_some(
      boost::asio::buffer(rbuf_), [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec, size_t n) {
        auto a = alive.lock();
        if (!a || !*a || closed_) return;
        if (ec) {
          if (decoder_.buffered() > 0) {
            ++stats_.truncated_close;
            finish("peer disconnected in the middle of a frame (" + std::to_string(decoder_.buffered()) +
                   " bytes of it dropped)");
          } else {
            finish(ec == boost::asio::error::eof ? "peer closed the connection" : ec.message());
          }
          return;
        }
        const bool ok = decoder_.feed(std::span<const uint8_t>(rbuf_.data(), n), [&](std::span<const uint8_t> f) {
          ++stats_.frames_read;
          if (!closed_) sink_->on_guest_frame(f);
        });
        if (!*a || closed_) return;
        if (!ok) {
          ++stats_.bad_length;
          finish("bogus frame length prefix; the stream cannot be resynchronised");
          return;
        }
        read_some();
      });
}

void StreamFramePort::send_to_guest(std::span<const uint8_t> frame) {
  if (closed_) return;
  if (queued_.size() + frame.size() + kStreamHeaderLen > kMaxQueuedBytes) {
    ++stats_.queue_drops;
    return;
  }
  const auto hdr = encode_stream_header(static_cast<uint32_t>(frame.size()));
  queued_.insert(queued_.end(), hdr.begin(), hdr.end());
  queued_.insert(queued_.end(), frame.begin(), frame.end());
  ++stats_.frames_written;
  if (!writing_) flush();
}

void StreamFramePort::flush() {
  if (queued_.empty() || closed_) return;
  writing_ = true;
  in_flight_.swap(queued_);
  queued_.clear();
  boost::asio::async_write(socket_, boost::asio::buffer(in_flight_),
                           [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec, size_t) {
                             auto a = alive.lock();
                             if (!a || !*a) return;
                             writing_ = false;
                             in_flight_.clear();
                             if (ec) {
                               finish("write to peer failed: " + ec.message());
                               return;
                             }
                             flush();
                           });
}

void StreamFramePort::finish(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
  // Defer: the owner typically destroys us from on_closed.
  boost::asio::post(socket_.get_executor(), [cb = on_closed_, why, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a && cb) cb(why);
  });
}

}  // namespace causeway::netstack
