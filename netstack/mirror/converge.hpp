// Mirrored mode: the diff/apply loop that makes a guest's managed network
// state equal to a desired one — shared by the network-namespace applier
// (apply.hpp, libnl, on the host) and the VM's guest agent (raw rtnetlink
// in the guest, vmm/agent/guest/mirror.hpp), which receives the desired
// state over the agent protocol and runs this same loop inside the VM.
//
// Theory of operation
//   converge(guest, desired):
//     for pass in 1..max_passes:
//       actual = guest.read_managed()          (only what mirrored mode made)
//       want   = desired(guest.unmanaged_links())   (the plan, with the guest's
//                                                    own link names reserved)
//       ops    = diff(want, actual)            empty → converged
//       last pass: what still differs is an error ("something mirrored mode
//                  does not manage is in the way") — the applier takes
//                  "exists" as success, so a conflicting route shows here
//       guest.apply(ops)                       errors recorded; on errors the
//                                              loop stops (the caller retries)
//   Several passes because the kernel adds routes of its own when an address
//   is added; the next pass removes what the host lacks.
//
// Two interfaces:
//   StateApplier  synchronous: read the managed state, apply operations.
//                 Implemented where netlink is local (a namespace, the guest).
//   GuestApplier  asynchronous: "converge to this plan, call me back". What
//                 MirrorSyncer drives, so its event loop never blocks on a
//                 guest: a namespace converges at once; a VM sends the plan to
//                 its agent and the callback runs when the report comes back
//                 (or a timeout fires).
//
// This file is std-only (the static guest agent links it).
// Thread safety: pure function and interfaces; implementations state theirs.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "netstack/mirror/plan.hpp"

namespace causeway::netstack::mirror {

inline constexpr int kMaxPasses = 3;
inline constexpr size_t kMaxErrorsKept = 32;  // per sync: ctl and the agent's report

struct OpError {
  std::string op;
  std::string error;
  bool operator==(const OpError&) const = default;
};

struct ApplyReport {
  size_t applied = 0;  // operations that changed the guest
  size_t already = 0;  // "exists" on an add, "not there" on a remove
  std::vector<OpError> errors;
};

struct ConvergeResult {
  size_t changes = 0;
  size_t passes = 0;
  bool converged = false;
  bool read_failed = false;     // the guest's state could not be read
  std::vector<OpError> errors;  // the first kMaxErrorsKept
  size_t errors_total = 0;
  NetState actual;                  // the guest's managed state after the last pass
  std::set<std::string> unmanaged;  // guest links mirrored mode does not manage (lo, eth0, tap0)
};

class StateApplier {
 public:
  virtual ~StateApplier() = default;
  // Reads what mirrored mode manages in the guest into `out`; the error text, or nullopt.
  virtual std::optional<std::string> read_managed(NetState& out) = 0;
  // Guest links not managed here, as of the last read_managed().
  [[nodiscard]] virtual const std::set<std::string>& unmanaged_links() const = 0;
  // Runs every operation; a failure does not stop the rest.
  virtual ApplyReport apply(const std::vector<Op>& ops) = 0;
};

// The desired guest state, given the guest's unmanaged link names (which the
// plan must not take).
using DesiredFn = std::function<NetState(const std::set<std::string>& unmanaged)>;

ConvergeResult converge(StateApplier& guest, const DesiredFn& desired, int max_passes = kMaxPasses);

class GuestApplier {
 public:
  virtual ~GuestApplier() = default;
  // Converges the guest to `desired` and calls `done` exactly once — possibly
  // before converge() returns (a namespace), possibly much later (a VM).
  // At most one converge is in flight: the caller waits for `done`.
  virtual void converge(DesiredFn desired, std::function<void(ConvergeResult)> done) = 0;
  // "netns" or "vm": for ctl and logs.
  [[nodiscard]] virtual std::string_view mechanism() const = 0;
};

}  // namespace causeway::netstack::mirror
