// Logging: spdlog to stderr, plus a rate limiter for messages that a guest can
// trigger at will (a malformed-frame flood must not become a log flood).
//
// Thread safety: RateLimitedLog is not synchronised; keep one per executor.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <string_view>

namespace causeway {

// Sets up the process-wide stderr logger. `level` is an spdlog level name
// (trace, debug, info, warn, error, off). Returns false for an unknown name.
bool init_logging(std::string_view level);

// Allows a burst of `burst` messages, then one per `interval_ms`; counts the
// rest so the next message that passes can say how many were suppressed.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(int burst = 5, int64_t interval_ms = 1000)
      : burst_(burst), interval_ms_(interval_ms), tokens_(burst) {}

  // Returns true if a message may be logged at `now_ms`. When it returns true,
  // suppressed() tells how many were dropped since the last one.
  bool allow(int64_t now_ms) {
    if (last_refill_ms_ < 0) last_refill_ms_ = now_ms;
    if (now_ms - last_refill_ms_ >= interval_ms_) {
      tokens_ = burst_;
      last_refill_ms_ = now_ms;
    }
    if (tokens_ > 0) {
      --tokens_;
      reported_suppressed_ = suppressed_;
      suppressed_ = 0;
      return true;
    }
    ++suppressed_;
    return false;
  }
  [[nodiscard]] uint64_t suppressed() const { return reported_suppressed_; }

 private:
  int burst_;
  int64_t interval_ms_;
  int tokens_;
  int64_t last_refill_ms_ = -1;
  uint64_t suppressed_ = 0;
  uint64_t reported_suppressed_ = 0;
};

}  // namespace causeway
