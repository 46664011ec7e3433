// SocketVsockStream; see socket_stream.hpp.
#include "vmm/agent/socket_stream.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>

namespace causeway::agent {

SocketVsockStream::SocketVsockStream(boost::asio::local::stream_protocol::socket socket, uint32_t port)
    : socket_(std::move(socket)), port_(port), rbuf_(kReadSize) {}

SocketVsockStream::~SocketVsockStream() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void SocketVsockStream::start() { read_some(); }

void SocketVsockStream::set_receive_paused(bool paused) {
  paused_ = paused;
  if (!paused_ && !reading_ && !read_done_ && !closed_) read_some();
}

void SocketVsockStream::read_some() {
  reading_ = true;
  socket_.async_read_some(boost::asio::buffer(rbuf_),
                          [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                            self->reading_ = false;
                            if (self->closed_) return;
                            if (!ec) {
                              if (auto cb = self->on_data_) cb(std::span<const uint8_t>(self->rbuf_.data(), n));
                              if (!self->closed_ && !self->paused_ && !self->reading_) self->read_some();
                              return;
                            }
                            if (ec == boost::asio::error::eof) {
                              self->read_done_ = true;
                              if (auto cb = self->on_eof_) cb();
                              if (self->write_shut_ && !self->closed_) self->finish("stream ended");
                              return;
                            }
                            self->finish("read: " + ec.message());
                          });
}

size_t SocketVsockStream::write(std::span<const uint8_t> data) {
  if (closed_ || write_shut_ || shutdown_pending_) return 0;
  const size_t room = kMaxQueued > queued_.size() ? kMaxQueued - queued_.size() : 0;
  const size_t take = std::min(room, data.size());
  if (take < data.size()) refused_ = true;
  queued_.insert(queued_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
  if (!writing_) write_some();
  return take;
}

void SocketVsockStream::write_some() {
  if (queued_.empty()) {
    if (shutdown_pending_ && !write_shut_) {
      boost::system::error_code ignored;
      socket_.shutdown(boost::asio::socket_base::shutdown_send, ignored);
      write_shut_ = true;
      if (read_done_) finish("stream ended");
    }
    return;
  }
  writing_ = true;
  in_flight_.swap(queued_);
  queued_.clear();
  boost::asio::async_write(socket_, boost::asio::buffer(in_flight_),
                           [self = shared_from_this()](boost::system::error_code ec, size_t) {
                             self->writing_ = false;
                             if (self->closed_) return;
                             if (ec) return self->finish("write: " + ec.message());
                             self->in_flight_.clear();
                             const bool notify = self->refused_ && self->queued_.size() <= kMaxQueued / 2;
                             self->write_some();
                             if (notify && !self->closed_) {
                               self->refused_ = false;
                               if (auto cb = self->on_writable_) cb();
                             }
                           });
}

void SocketVsockStream::shutdown_write() {
  if (closed_ || shutdown_pending_) return;
  shutdown_pending_ = true;
  if (!writing_) write_some();
}

void SocketVsockStream::close() { finish("closed by the host"); }

void SocketVsockStream::finish(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  if (!read_done_) {
    read_done_ = true;
    if (auto cb = on_eof_) cb();
  }
  // Copies: a callback may replace or clear the members while it runs.
  if (auto cb = on_closed_) cb(why);
}

}  // namespace causeway::agent
