// NetnsListenerSource: the guest namespace's listening sockets, as
// snapshots for portfwd::AutoForwarder.
//
// Mechanism (detection latency target: median ≤ 20 ms, worst ≤ 100 ms, no
// busy polling of an idle guest):
//  1. Event: processes started by `causeway netns -- COMMAND` run under a
//     seccomp filter that turns bind(2) and listen(2) into user
//     notifications (seccomp_unotify(2)). We answer each at once with
//     SECCOMP_USER_NOTIF_FLAG_CONTINUE — the kernel then runs the syscall
//     unchanged — and scan a moment later (1 ms, then twice more 3 ms apart,
//     because the syscall completes only after our answer). The filter
//     costs a round trip to us per bind/listen and nothing else.
//  2. Safety net: a sock_diag scan every `poll` interval (1 s with the trap;
//     100 ms for --attach, where no trap exists), which also sees sockets
//     closing (close(2) is not trapped: "gone" is noticed within one poll).
// Scans are coalesced: at most one is pending at any time.
//
// Limits: the trap follows COMMAND's process tree only (nsenter'ed
// processes are seen by the poll); it filters the x86-64 syscall numbers
// (other ABIs fall through to the poll).
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <set>

#include "base/unique_fd.hpp"
#include "portfwd/forward_policy.hpp"
#include "portfwd/listener_trap.hpp"
#include "portfwd/sock_diag.hpp"

namespace causeway::netstack {

struct NetnsListenerSourceStats {
  uint64_t scans = 0;
  uint64_t scan_errors = 0;
  uint64_t trapped_syscalls = 0;
};

class NetnsListenerSource {
 public:
  using OnSnapshot = std::function<void(const std::set<portfwd::Listener>&)>;
  NetnsListenerSource(boost::asio::io_context& io, std::unique_ptr<portfwd::SockDiag> diag, UniqueFd seccomp_notify,
                      std::chrono::milliseconds poll, OnSnapshot on_snapshot);
  ~NetnsListenerSource();
  void start();
  // Adds the trap's notification fd once it is available (after the child
  // has exec'ed); until then only the poll runs.
  void set_trap(UniqueFd seccomp_notify);
  [[nodiscard]] const NetnsListenerSourceStats& stats() const { return stats_; }

 private:
  void schedule(std::chrono::milliseconds delay);
  void scan();
  void wait_notification();
  void on_notification();

  std::unique_ptr<portfwd::SockDiag> diag_;
  UniqueFd notify_fd_;
  boost::asio::posix::stream_descriptor notify_desc_;
  std::chrono::milliseconds poll_;
  OnSnapshot on_snapshot_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  std::chrono::steady_clock::time_point next_{};
  int burst_left_ = 0;
  bool started_ = false;
  portfwd::ListenerTrapResponder responder_;
  NetnsListenerSourceStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Installs the bind/listen trap on the calling process (inherited by its
// children and across exec) and returns the notification descriptor.
// Called in the namespace child just before exec.
boost::system::result<UniqueFd> install_listener_trap();

}  // namespace causeway::netstack
