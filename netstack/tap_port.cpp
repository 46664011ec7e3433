#include "netstack/tap_port.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "netstack/frame.hpp"

namespace causeway::netstack {
namespace {
constexpr int kReadBatch = 64;  // frames per wake-up before yielding to other work
}

TapFramePort::TapFramePort(boost::asio::io_context& io, UniqueFd tap, size_t mtu, std::function<void()> on_closed)
    : fd_(std::move(tap)), desc_(io), buf_(mtu + kEthHeaderLen + 64), on_closed_(std::move(on_closed)) {
  const int fl = fcntl(fd_.get(), F_GETFL);
  fcntl(fd_.get(), F_SETFL, fl | O_NONBLOCK);
  desc_.assign(fd_.get());
}

TapFramePort::~TapFramePort() {
  *alive_ = false;
  desc_.cancel();
  (void)desc_.release();  // fd_ owns the descriptor
}

void TapFramePort::start(FrameSink& sink) {
  sink_ = &sink;
  drain();
}

void TapFramePort::wait_readable() {
  desc_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                   [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                     auto a = alive.lock();
                     if (!a || !*a || ec) return;
                     drain();
                   });
}

void TapFramePort::drain() {
  for (int i = 0; i < kReadBatch; ++i) {
    const ssize_t n = ::read(fd_.get(), buf_.data(), buf_.size());
    if (n > 0) {
      ++stats_.frames_read;
      sink_->on_guest_frame(std::span<const uint8_t>(buf_.data(), static_cast<size_t>(n)));
      if (!*alive_) return;  // the sink may have torn us down
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      wait_readable();
      return;
    }
    // EOF or a hard error (EBADFD/EIO once the device is unregistered).
    spdlog::info("tap device closed ({})", n == 0 ? "end of file" : std::strerror(errno));
    if (on_closed_) on_closed_();
    return;
  }
  // Batch exhausted: let other handlers run, then continue.
  boost::asio::post(desc_.get_executor(), [this, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) drain();
  });
}

void TapFramePort::send_to_guest(std::span<const uint8_t> frame) {
  const ssize_t n = ::write(fd_.get(), frame.data(), frame.size());
  if (n == static_cast<ssize_t>(frame.size())) {
    ++stats_.frames_written;
    return;
  }
  ++stats_.write_drops;
  if (log_.allow(0)) spdlog::debug("tap write dropped a frame: {}", n < 0 ? std::strerror(errno) : "short write");
}

}  // namespace causeway::netstack
