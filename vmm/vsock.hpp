// The host end of virtio-vsock, as the rest of causeway sees it: streams to
// and from the guest, independent of how the device is implemented (our
// vhost-user virtio-vsock device model, or a fake in tests).
//
// Thread safety: confined to the engine executor; callbacks run there.
#pragma once

#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

namespace causeway::vmm {

constexpr uint32_t kHostCid = 2;  // VMADDR_CID_HOST

// One connected stream (SOCK_STREAM semantics: ordered bytes, half-close).
class VsockStream {
 public:
  virtual ~VsockStream() = default;
  // Queues up to data.size() bytes for the guest; returns how many were
  // taken (0 when the guest's credit and our bounded queue are exhausted:
  // wait for on_writable). Never blocks.
  virtual size_t write(std::span<const uint8_t> data) = 0;
  virtual void set_on_data(std::function<void(std::span<const uint8_t>)> cb) = 0;
  // Receive backpressure: while paused, nothing is handed to on_data; what
  // the guest sends waits in the stream (bounded by the credit we advertise,
  // so a paused stream stops the guest's sender). Unpausing delivers it on a
  // later turn.
  virtual void set_receive_paused(bool paused) = 0;
  virtual void set_on_writable(std::function<void()> cb) = 0;
  // Runs once: the guest shut down its sending side (eof=true) or the
  // stream ended (reset, device reset, close()).
  virtual void set_on_eof(std::function<void()> cb) = 0;
  virtual void set_on_closed(std::function<void(std::string_view reason)> cb) = 0;
  virtual void shutdown_write() = 0;  // our side is done sending (VIRTIO_VSOCK_SHUTDOWN_SEND)
  virtual void close() = 0;           // reset the stream
  [[nodiscard]] virtual uint32_t guest_port() const = 0;
};

using VsockAcceptHandler = std::function<void(std::shared_ptr<VsockStream>)>;
using VsockConnectHandler = std::function<void(boost::system::error_code, std::shared_ptr<VsockStream>)>;

// What a vsock device offers the host side.
class VsockHost {
 public:
  virtual ~VsockHost() = default;
  // Accepts guest connections to host port `port` (CID 2).
  virtual void listen(uint32_t port, VsockAcceptHandler on_accept) = 0;
  // Connects to the guest's port; ECONNREFUSED if nothing listens there.
  virtual void connect(uint32_t guest_port, VsockConnectHandler on_connect) = 0;
};

}  // namespace causeway::vmm
