// SocketVsockStream: a vmm::VsockStream carried by a connected unix stream
// socket instead of virtio-vsock.
//
// Two uses: the guest agent's debugging transport — QEMU's virtio-serial
// port `org.causeway.agent` with its chardev on a unix socket (boot.hpp,
// cw.agent.transport=serial) — which needs no vsock device; and tests that
// run the real agent binary on the host (`causeway-agent --test-fd N`) over
// a socketpair.
//
// Semantics as VsockStream asks: write() takes what fits in a bounded queue
// (kMaxQueued; 0 = full) and on_writable fires once the queue has drained
// below half after a refusal; on_eof fires when the peer shut down its
// sending side; on_closed when the stream is over (error, close(), or both
// directions done). One async read and at most one async write in flight.
//
// Thread safety: confined to the socket's executor.
#pragma once

#include <boost/asio/local/stream_protocol.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vmm/vsock.hpp"

namespace causeway::agent {

class SocketVsockStream final : public vmm::VsockStream, public std::enable_shared_from_this<SocketVsockStream> {
 public:
  static constexpr size_t kMaxQueued = 256 * 1024;
  static constexpr size_t kReadSize = 64 * 1024;

  // Create with std::make_shared, then start() (handlers keep it alive while I/O is pending).
  explicit SocketVsockStream(boost::asio::local::stream_protocol::socket socket, uint32_t port = 0);
  ~SocketVsockStream() override;

  void start();

  size_t write(std::span<const uint8_t> data) override;
  void set_on_data(std::function<void(std::span<const uint8_t>)> cb) override { on_data_ = std::move(cb); }
  void set_receive_paused(bool paused) override;
  void set_on_writable(std::function<void()> cb) override { on_writable_ = std::move(cb); }
  void set_on_eof(std::function<void()> cb) override { on_eof_ = std::move(cb); }
  void set_on_closed(std::function<void(std::string_view)> cb) override { on_closed_ = std::move(cb); }
  void shutdown_write() override;
  void close() override;
  [[nodiscard]] uint32_t guest_port() const override { return port_; }

 private:
  void read_some();
  void write_some();
  void finish(const std::string& why);

  boost::asio::local::stream_protocol::socket socket_;
  uint32_t port_;
  std::vector<uint8_t> rbuf_;
  std::vector<uint8_t> queued_;     // waiting for the in-flight write
  std::vector<uint8_t> in_flight_;  // owned by the in-flight async_write
  bool writing_ = false;
  bool reading_ = false;
  bool paused_ = false;
  bool refused_ = false;  // write() returned less than offered
  bool shutdown_pending_ = false;
  bool write_shut_ = false;
  bool read_done_ = false;
  bool closed_ = false;
  std::function<void(std::span<const uint8_t>)> on_data_;
  std::function<void()> on_writable_;
  std::function<void()> on_eof_;
  std::function<void(std::string_view)> on_closed_;
};

}  // namespace causeway::agent
