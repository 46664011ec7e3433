// The idle rule; see idle_rule.hpp.
#include "cli/idle_rule.hpp"

#include <algorithm>

namespace causeway::cli {

size_t LateListeners::count(const std::set<ListenerKey>& guest, const std::set<ListenerKey>& forwarded) {
  std::erase_if(baseline_, [&guest](const ListenerKey& k) { return !guest.contains(k); });
  return static_cast<size_t>(std::count_if(forwarded.begin(), forwarded.end(),
                                           [this](const ListenerKey& k) { return !baseline_.contains(k); }));
}

void IdleRule::ready(int64_t now_ms) {
  if (ready_) return;
  ready_ = true;
  idle_since_ms_ = now_ms;
}

void IdleRule::update(size_t sessions, size_t listeners, int64_t now_ms) {
  const bool was_busy = busy();
  sessions_ = sessions;
  listeners_ = listeners;
  // The clock restarts when the last thing keeping the VM up goes away.
  if (was_busy && !busy()) idle_since_ms_ = now_ms;
}

std::optional<int64_t> IdleRule::deadline_ms() const {
  if (!ready_ || busy() || timeout_ms_ < 0) return std::nullopt;
  return idle_since_ms_ + timeout_ms_;
}

}  // namespace causeway::cli
