// Clock: the engine's only source of time. Protocol code takes `now` from
// here (or as an argument) and never reads the system clock itself, so
// component tests can drive time with a fake.
//
// Thread safety: implementations must be safe to call from the engine thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace causeway {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary epoch.
  [[nodiscard]] virtual int64_t now_ns() const = 0;
  [[nodiscard]] int64_t now_ms() const { return now_ns() / 1'000'000; }
};

class SteadyClock final : public Clock {
 public:
  [[nodiscard]] int64_t now_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace causeway
