// When a distribution's VM is idle, and when it powers off: a small
// sans-I/O state machine (the time is passed in), driven by the instance
// daemon (cli/instance_service.hpp).
//
// The rule (README, "Idle shutdown"):
//   The VM powers off cleanly once, for vmIdleTimeout milliseconds
//   ([wsl2] vmIdleTimeout, WSL's key and unit; default 60000) without a break,
//     - no exec session has been open (no `causeway run -d NAME` attached), and
//     - no automatically forwarded guest listener exists that appeared after
//       the VM became ready (a server the user started and left running:
//       `python3 -m http.server &`, a systemd service started later).
//   Listeners that were there when the VM became ready (the boot's own: an
//   sshd a systemd boot started) do not keep it up; one that goes away and
//   comes back later counts as new. A listener that is not forwarded (ignored
//   port, host port taken, localhostForwarding=false) does not count: nothing
//   on the host can be using it.
//   A negative timeout means never; 0 means at once when idle.
//   Before ready() nothing is idle (the boot has its own timeout).
//
// LateListeners decides which forwarded listeners count; IdleRule turns the
// two counts and the time into a deadline.
//
// Thread safety: plain values; confined to the owner's thread.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>

namespace causeway::cli {

struct ListenerKey {
  bool tcp = true;
  uint16_t port = 0;
  auto operator<=>(const ListenerKey&) const = default;
};

// The forwarded listeners that appeared after the VM became ready.
class LateListeners {
 public:
  // The guest's listeners at the moment the VM became ready.
  void set_baseline(std::set<ListenerKey> at_ready) { baseline_ = std::move(at_ready); }
  // `guest`: every listener the guest reports now; `forwarded`: those with an
  // active automatic forward. A baseline listener that is gone from `guest`
  // leaves the baseline (if it comes back, it is new).
  size_t count(const std::set<ListenerKey>& guest, const std::set<ListenerKey>& forwarded);
  [[nodiscard]] const std::set<ListenerKey>& baseline() const { return baseline_; }

 private:
  std::set<ListenerKey> baseline_;
};

class IdleRule {
 public:
  // `timeout_ms` < 0: never idle.
  explicit IdleRule(int64_t timeout_ms) : timeout_ms_(timeout_ms) {}

  // The VM became ready at `now_ms`: the idle clock may start.
  void ready(int64_t now_ms);
  // What keeps the VM up changed: `sessions` exec sessions open, `listeners`
  // late forwarded listeners (LateListeners::count).
  void update(size_t sessions, size_t listeners, int64_t now_ms);

  // When the VM should power off if nothing changes; nullopt while busy,
  // before ready, or when the timeout is negative.
  [[nodiscard]] std::optional<int64_t> deadline_ms() const;
  [[nodiscard]] bool expired(int64_t now_ms) const {
    auto d = deadline_ms();
    return d && now_ms >= *d;
  }
  [[nodiscard]] bool busy() const { return sessions_ > 0 || listeners_ > 0; }
  [[nodiscard]] size_t sessions() const { return sessions_; }
  [[nodiscard]] size_t listeners() const { return listeners_; }
  [[nodiscard]] int64_t timeout_ms() const { return timeout_ms_; }

 private:
  int64_t timeout_ms_;
  bool ready_ = false;
  size_t sessions_ = 0, listeners_ = 0;
  int64_t idle_since_ms_ = 0;  // when the VM last became idle (valid when ready_ && !busy())
};

}  // namespace causeway::cli
