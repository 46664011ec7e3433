// GuestListenerSet: the guest's listeners as reported by an untrusted agent,
// one event at a time (ListenerAppeared / ListenerGone), kept as the set
// portfwd::AutoForwarder takes as a snapshot.
//
// Bounds: at most `cap` listeners; further appearances are refused and
// counted (the AutoForwarder caps forwards again, at kMaxForwards). Port 0 is
// not a listener anyone can reach and is refused too. A Gone for a listener
// never reported changes nothing. So a guest flooding events costs at most
// `cap` set entries and one policy pass per engine turn (the caller coalesces).
//
// Thread safety: confined to its owner's executor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>

#include "portfwd/forward_policy.hpp"

namespace causeway::portfwd {

class GuestListenerSet {
 public:
  static constexpr size_t kDefaultCap = 4096;
  explicit GuestListenerSet(size_t cap = kDefaultCap) : cap_(cap) {}

  // True when the set changed.
  bool appeared(const Listener& l) {
    if (l.port == 0) {
      ++refused_;
      return false;
    }
    if (set_.contains(l)) return false;
    if (set_.size() >= cap_) {
      ++refused_;
      return false;
    }
    set_.insert(l);
    return true;
  }
  bool gone(const Listener& l) { return set_.erase(l) > 0; }
  void clear() { set_.clear(); }

  [[nodiscard]] const std::set<Listener>& listeners() const { return set_; }
  [[nodiscard]] uint64_t refused() const { return refused_; }  // over the cap, or port 0

 private:
  size_t cap_;
  std::set<Listener> set_;
  uint64_t refused_ = 0;
};

}  // namespace causeway::portfwd
