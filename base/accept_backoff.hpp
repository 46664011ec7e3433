// AcceptBackoff: what an accept loop does when the process is out of
// descriptors.
//
// accept() that fails with EMFILE/ENFILE (or ENOBUFS/ENOMEM: no memory for
// the socket) leaves the connection in the listener's backlog, so the
// listener stays readable. A loop that re-arms at once is woken again at
// once and spins at 100% CPU without progress, starving every other handler
// on the executor — including the ones that would close descriptors. So on
// those errors the loop waits kAcceptBackoff before re-arming, counts it
// (a stat the owner exposes; `ctl status` sums them as accept_backoffs) and
// logs at most a few lines per second. Other accept errors (ECONNABORTED: the
// peer gave up) re-arm at once as before.
//
// The start-up half of the policy is in cli/main.cpp: the soft RLIMIT_NOFILE
// is raised to the hard limit once, so the backoff is for real exhaustion.
//
// Usage, in an accept handler:
//   if (backoff_.defer_if_exhausted(ec, "control socket", [this] { accept(); })) return;
// The owner holds the AcceptBackoff by value: destroying it cancels the timer
// and the deferred re-arm is never called.
//
// Thread safety: confined to the executor of the io_context it was made with.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <fmt/format.h>

#include "base/log.hpp"

namespace causeway {

inline constexpr std::chrono::milliseconds kAcceptBackoff{100};  // long enough to idle, short enough to recover

// accept(2) errors that mean "out of descriptors or memory", not a bad peer.
inline bool is_accept_exhaustion(int err) { return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM; }
inline bool is_accept_exhaustion(const boost::system::error_code& ec) {
  return ec.category() == boost::system::system_category() && is_accept_exhaustion(ec.value());
}

class AcceptBackoff {
 public:
  explicit AcceptBackoff(boost::asio::io_context& io) : timer_(io) {}

  // If `ec` is exhaustion: counts, logs (rate-limited), runs `rearm` after
  // kAcceptBackoff and returns true. Otherwise returns false and does nothing.
  template <class Rearm>
  bool defer_if_exhausted(const boost::system::error_code& ec, const std::string& what, Rearm&& rearm) {
    if (!is_accept_exhaustion(ec)) return false;
    defer(ec.value(), what, std::forward<Rearm>(rearm));
    return true;
  }
  template <class Rearm>
  bool defer_if_exhausted(int err, const std::string& what, Rearm&& rearm) {
    if (!is_accept_exhaustion(err)) return false;
    defer(err, what, std::forward<Rearm>(rearm));
    return true;
  }
  [[nodiscard]] uint64_t backoffs() const { return backoffs_; }

 private:
  template <class Rearm>
  void defer(int err, const std::string& what, Rearm&& rearm) {
    ++backoffs_;
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    if (log_.allow(now_ms)) {
      const uint64_t quiet = log_.suppressed();
      spdlog::warn(
          "{}: cannot accept a connection: {}; pausing accepts for {} ms (raise the open-file limit, "
          "`ulimit -n`){}",
          what, std::strerror(err), kAcceptBackoff.count(),
          quiet ? fmt::format("; {} more since the last message", quiet) : std::string());
    }
    timer_.expires_after(kAcceptBackoff);
    timer_.async_wait([r = std::forward<Rearm>(rearm)](const boost::system::error_code& tec) mutable {
      if (!tec) r();  // aborted: the owner is gone
    });
  }

  boost::asio::steady_timer timer_;
  uint64_t backoffs_ = 0;
  RateLimitedLog log_{3, 1000};
};

}  // namespace causeway
