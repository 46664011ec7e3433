// Mirrored mode: the loop that keeps a guest's links, addresses and routes
// equal to the plan made from the host's.
//
//   HostView ──(debounced change)──► sync():
//       guest.converge(plan(host, options + guest's own link names reserved))
//       (converge.hpp: read, diff, apply, at most kMaxPasses passes) ──►
//   on_converged(result): record it; errors → retry with back-off
//
// The guest is a GuestApplier (converge.hpp): a network namespace converges
// at once (NetlinkGuestApplier); a VM sends the plan to its agent and
// answers later (AgentGuestApplier, cli/mirror_vm.hpp). One converge is in
// flight at a time; host changes meanwhile set `pending_` and one more sync
// runs when the answer comes — so a slow guest never queues up plans, and
// the event loop never blocks on it.
//
// Timers: the host view's debounce (kDebounce) bounds how bursts are merged;
// a sync with errors is retried with back-off (kRetryInitial doubling up to
// kRetryMax, at most kMaxRetries times — an address the guest cannot take is
// reported and skipped, not retried forever); every kPeriodicResync the
// guest is checked again, which repairs changes made inside the guest.
//
// The last sync (wall-clock time, duration, operations applied, errors) and
// both views are kept for `causeway ctl PATH mirror` (status_json).
//
// Thread safety: confined to the executor of the io_context it is given.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "netstack/mirror/converge.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/plan.hpp"

namespace causeway::netstack::mirror {

inline constexpr auto kRetryInitial = std::chrono::milliseconds(100);
inline constexpr auto kRetryMax = std::chrono::milliseconds(5000);
inline constexpr int kMaxRetries = 6;
inline constexpr auto kPeriodicResync = std::chrono::seconds(30);
inline constexpr size_t kMaxListedInStatus = 256;  // links/addresses/routes per view in status_json

class MirrorSyncer {
 public:
  struct LastSync {
    std::string time;  // ISO 8601, UTC
    double duration_ms = 0;
    size_t changes = 0;
    size_t passes = 0;
    bool converged = false;
    std::vector<OpError> errors;
    size_t errors_total = 0;
  };
  struct Totals {
    uint64_t syncs = 0;
    uint64_t changes = 0;
    uint64_t errors = 0;
    uint64_t retries = 0;
    uint64_t read_errors = 0;
    uint64_t coalesced = 0;  // host changes folded into the sync after an in-flight one
  };

  MirrorSyncer(boost::asio::io_context& io, HostView& host, GuestApplier& guest, PlanOptions options);
  ~MirrorSyncer();
  MirrorSyncer(const MirrorSyncer&) = delete;
  MirrorSyncer& operator=(const MirrorSyncer&) = delete;

  // Starts the host view; the first sync runs before this returns.
  boost::system::result<void, std::string> start();
  // Runs a sync now (also what the host view's callback does).
  void sync();
  // Called with each plan's desired state before the guest converges to it: the data path learns
  // which addresses each link may use (MirrorLink::set_addresses) before the guest has them.
  void set_on_plan(std::function<void(const NetState& desired)> f) { on_plan_ = std::move(f); }

  [[nodiscard]] const LastSync& last_sync() const { return last_; }
  [[nodiscard]] const Totals& totals() const { return totals_; }
  [[nodiscard]] const NetState& guest_view() const { return guest_view_; }
  [[nodiscard]] const PlanCounters& plan_counters() const { return counters_; }
  nlohmann::json status_json() const;

 private:
  void on_converged(ConvergeResult r, std::chrono::steady_clock::time_point t0, std::string time);
  void schedule_retry();
  void schedule_periodic();

  HostView& host_;
  GuestApplier& guest_;
  bool in_flight_ = false;
  bool pending_ = false;
  // Cleared on destruction: a VM's answer may arrive after the syncer is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  PlanOptions options_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer periodic_timer_;
  int attempt_ = 0;
  LastSync last_;
  Totals totals_;
  NetState guest_view_;
  PlanCounters counters_;
  std::function<void(const NetState&)> on_plan_;
};

nlohmann::json to_json(const NetState& s, size_t max_items = kMaxListedInStatus);
nlohmann::json to_json(const PlanCounters& c);

}  // namespace causeway::netstack::mirror
