// FakeVsockStream: an in-process vmm::VsockStream whose far end is the test,
// playing the guest agent: it sees what the host wrote, delivers guest bytes
// or messages, grants credit, and ends the stream.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "vmm/agent/protocol.hpp"
#include "vmm/vsock.hpp"

namespace causeway::testing {

class FakeVsockStream final : public vmm::VsockStream {
 public:
  // ---- the host's side (VsockStream)
  size_t write(std::span<const uint8_t> data) override {
    if (closed) return 0;
    const size_t take = std::min(credit, data.size());
    credit -= take;
    written.insert(written.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
    return take;
  }
  void set_on_data(std::function<void(std::span<const uint8_t>)> cb) override { on_data_ = std::move(cb); }
  void set_receive_paused(bool p) override { paused = p; }
  void set_on_writable(std::function<void()> cb) override { on_writable_ = std::move(cb); }
  void set_on_eof(std::function<void()> cb) override { on_eof_ = std::move(cb); }
  void set_on_closed(std::function<void(std::string_view)> cb) override { on_closed_ = std::move(cb); }
  void shutdown_write() override { write_shut = true; }
  void close() override { closed = true; }
  [[nodiscard]] uint32_t guest_port() const override { return 49152; }

  // ---- the guest's side (the test)
  void deliver(std::span<const uint8_t> bytes) {
    if (auto cb = on_data_) cb(bytes);
  }
  void deliver(const agent::Message& m) {
    const auto bytes = agent::encode(m);
    deliver(bytes);
  }
  void grant(size_t n) {
    credit += n;
    if (auto cb = on_writable_) cb();
  }
  void guest_eof() {
    if (auto cb = on_eof_) cb();
  }
  void guest_reset(std::string_view why) {
    if (auto cb = on_closed_) cb(why);
  }
  // Everything the host sent, decoded as the agent would.
  [[nodiscard]] std::vector<agent::Message> host_messages() const {
    agent::Decoder d(agent::Direction::HostToGuest);
    d.feed(written);
    std::vector<agent::Message> out;
    while (auto m = d.next()) out.push_back(std::move(*m));
    return out;
  }

  std::vector<uint8_t> written;
  size_t credit = std::numeric_limits<size_t>::max();
  bool write_shut = false;
  bool closed = false;
  bool paused = false;

 private:
  std::function<void(std::span<const uint8_t>)> on_data_;
  std::function<void()> on_writable_;
  std::function<void()> on_eof_;
  std::function<void(std::string_view)> on_closed_;
};

}  // namespace causeway::testing
