// Test doubles at our own interfaces, and a bounded io_context driver.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/clock.hpp"
#include "netstack/frame_port.hpp"

namespace causeway::testing {

// A clock that moves only when told to.
class FakeClock final : public Clock {
 public:
  [[nodiscard]] int64_t now_ns() const override { return now_ns_; }
  void advance(std::chrono::nanoseconds d) { now_ns_ += d.count(); }

 private:
  int64_t now_ns_ = 1'000'000'000;
};

// Collects what the engine sends to the guest.
class FakeFramePort final : public netstack::FramePort {
 public:
  void send_to_guest(std::span<const uint8_t> frame) override { frames.emplace_back(frame.begin(), frame.end()); }
  std::vector<std::vector<uint8_t>> frames;
};

// Runs handlers until `done()` or the deadline; returns done().
inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
  // `done` is asked once per turn and never again after it said true: predicates may consume
  // what they look at (a queue of frames), and a second call would lose the match.
  const auto end = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    io.restart();
    io.run_one_for(std::chrono::milliseconds(10));
  }
}

}  // namespace causeway::testing
