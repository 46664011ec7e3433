#include "netstack/tap_port.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string>

#include "netstack/frame.hpp"

namespace causeway::netstack {
namespace {
constexpr int kReadBatch = 64;  // frames per wake-up before yielding to other work
}

TapFramePort::TapFramePort(boost::asio::io_context& io, UniqueFd tap, size_t mtu, std::function<void()> on_closed,
                           bool offload)
    : fd_(std::move(tap)), desc_(io), buf_(mtu + kEthHeaderLen + 64), on_closed_(std::move(on_closed)) {
  const int fl = fcntl(fd_.get(), F_GETFL);
  fcntl(fd_.get(), F_SETFL, fl | O_NONBLOCK);
  ifreq ifr{};
  if (::ioctl(fd_.get(), TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR)) {
    // The header's size and byte order are ours to fix: 12 bytes (virtio_net_hdr_v1), little-endian.
    int len = static_cast<int>(kVnetHdrLen);
    int le = 1;
    if (::ioctl(fd_.get(), TUNSETVNETHDRSZ, &len) != 0 || ::ioctl(fd_.get(), TUNSETVNETLE, &le) != 0) {
      // Without them the header's layout is not ours to know: no way to carry frames.
      throw std::runtime_error(std::string("tap: cannot set the virtio-net header (TUNSETVNETHDRSZ/TUNSETVNETLE): ") +
                               std::strerror(errno));
    }
    stats_.vnet_hdr = true;
    const unsigned features = offload ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) : 0u;
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, features) == 0) {
      stats_.offload = offload;
    } else if (offload) {
      spdlog::warn("tap: the kernel refused checksum/TSO offloads ({}); frames stay MTU-sized", std::strerror(errno));
      (void)::ioctl(fd_.get(), TUNSETOFFLOAD, 0u);
    }
    // A super-segment is up to 64 KiB whatever the MTU.
    buf_.resize(kVnetHdrLen + std::max(mtu + kEthHeaderLen, kMaxGsoFrame) + 64);
  } else if (offload) {
    spdlog::debug("tap has no virtio-net header (IFF_VNET_HDR): no offloads");
  }
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
      std::span<const uint8_t> frame(buf_.data(), static_cast<size_t>(n));
      if (!stats_.vnet_hdr) {
        sink_->on_guest_frame(frame);
      } else if (frame.size() < kVnetHdrLen) {
        ++stats_.read_drops;  // the kernel always writes the header: not reached
      } else {
        const VnetHdr h = read_vnet_hdr(frame.first<kVnetHdrLen>());
        frame = frame.subspan(kVnetHdrLen);
        if (h.plain()) {
          sink_->on_guest_frame(frame);
        } else {
          ++stats_.offload_frames_read;
          sink_->on_guest_offload_frame(frame, h);
        }
      }
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

void TapFramePort::send_to_guest(std::span<const uint8_t> frame) { write_frame(frame, nullptr); }

void TapFramePort::send_offload_to_guest(std::span<const uint8_t> frame, const VnetHdr& hdr) {
  if (!stats_.offload) {
    ++stats_.write_drops;  // a caller bug; the guest's TCP recovers
    return;
  }
  ++stats_.offload_frames_written;
  write_frame(frame, &hdr);
}

void TapFramePort::write_frame(std::span<const uint8_t> frame, const VnetHdr* hdr) {
  ssize_t n;
  size_t want = frame.size();
  if (stats_.vnet_hdr) {
    std::array<uint8_t, kVnetHdrLen> h{};
    if (hdr) write_vnet_hdr(h, *hdr);
    // SAFETY: iovec wants non-const pointers; writev only reads them.
    iovec iov[2] = {{h.data(), h.size()}, {const_cast<uint8_t*>(frame.data()), frame.size()}};
    n = ::writev(fd_.get(), iov, 2);
    want += kVnetHdrLen;
  } else {
    n = ::write(fd_.get(), frame.data(), frame.size());
  }
  if (n == static_cast<ssize_t>(want)) {
    ++stats_.frames_written;
    return;
  }
  ++stats_.write_drops;
  if (log_.allow(0)) spdlog::debug("tap write dropped a frame: {}", n < 0 ? std::strerror(errno) : "short write");
}

}  // namespace causeway::netstack
