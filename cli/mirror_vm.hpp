// Mirrored mode for the VM attachment (`causeway run --mode mirrored`): the
// GuestApplier that converges a VM's guest through its agent.
//
// MirrorSyncer (netstack/mirror/syncer.hpp) plans the guest's links from the
// host's and calls converge(); this applier sends the plan as a MirrorApply
// over the agent session and completes when the agent's MirrorReport of the
// same generation comes back — the agent runs the same converge loop
// (converge.hpp) with its macvlan applier (vmm/agent/guest/mirror.hpp). The
// syncer's event loop never waits: the report arrives as a message.
//
// Timeout: kReportTimeout without a report completes the converge with an
// error (the syncer retries with back-off); a report that comes later has an
// old generation and is dropped (counted). The end of the session completes
// an in-flight converge with an error, once.
//
// The guest's unmanaged links (lo, eth0 — the NAT link) are reserved names
// for the plan: at first the ones we know the image has, then the ones the
// agent reports.
//
// Data path: the guest's mirrored links share its one virtio-net; their
// frames are split by source MAC (netstack/frame_demux.hpp). sync_vm_links
// keeps one MirrorLink per link the agent reports (built by
// MirrorLinkTable, cli/mirrored_mode.hpp), registered in the demux by MAC.
//
// Thread safety: confined to the engine thread (the session's executor).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <system_error>

#include "cli/mirrored_mode.hpp"
#include "netstack/frame_demux.hpp"
#include "netstack/mirror/converge.hpp"
#include "vmm/agent/protocol.hpp"

namespace causeway::cli {

inline constexpr auto kReportTimeout = std::chrono::seconds(10);

class AgentGuestApplier final : public netstack::mirror::GuestApplier {
 public:
  using Send = std::function<std::error_code(const agent::MirrorApply&)>;
  struct Counters {
    uint64_t applies = 0;
    uint64_t reports = 0;
    uint64_t stale_reports = 0;  // an old generation (after a timeout) or unsolicited
    uint64_t timeouts = 0;
    uint64_t send_errors = 0;
  };

  AgentGuestApplier(boost::asio::io_context& io, Send send, std::chrono::milliseconds timeout = kReportTimeout);
  ~AgentGuestApplier() override;

  void converge(netstack::mirror::DesiredFn desired,
                std::function<void(netstack::mirror::ConvergeResult)> done) override;
  [[nodiscard]] std::string_view mechanism() const override { return "vm"; }

  // Called after every report that has the guest's state, with the links the
  // guest reports *and* the last plan asked for, with the plan's name and MAC
  // (the run wiring attaches a MirrorLink per link): the guest cannot make the
  // host open a data path for a link or MAC the host did not plan.
  void set_on_guest_state(std::function<void(const netstack::mirror::NetState&)> f) { on_guest_state_ = std::move(f); }

  // From the agent session.
  void on_report(const agent::MirrorReport& r);
  void on_session_end();

  [[nodiscard]] const Counters& counters() const { return counters_; }
  [[nodiscard]] const std::set<std::string>& guest_unmanaged() const { return unmanaged_; }

 private:
  void complete(netstack::mirror::ConvergeResult r);
  static netstack::mirror::ConvergeResult failure(std::string op, std::string error);

  Send send_;
  std::chrono::milliseconds timeout_;
  boost::asio::steady_timer timer_;
  uint32_t generation_ = 0;
  std::optional<uint32_t> waiting_;
  std::function<void(netstack::mirror::ConvergeResult)> done_;
  std::set<std::string> unmanaged_{"lo", "eth0"};
  bool ended_ = false;
  std::function<void(const netstack::mirror::NetState&)> on_guest_state_;
  netstack::mirror::NetState last_desired_;
  Counters counters_;
};

// The guest reported `reported` (the links it has that the plan asked for):
// a MirrorLink for each new one over `nic`, registered in `demux` by its MAC;
// a link whose MAC changed is rebuilt, one gone is removed, the rest follow
// their MTU.
void sync_vm_links(MirrorLinkTable& links, netstack::FrameDemux& demux, netstack::FramePort& nic,
                   const netstack::mirror::NetState& reported);

}  // namespace causeway::cli
