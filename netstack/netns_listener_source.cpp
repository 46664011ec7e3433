#include "netstack/netns_listener_source.hpp"

#include <spdlog/spdlog.h>

#include "portfwd/listener_trap.hpp"

namespace causeway::netstack {
namespace {

constexpr auto kFirstRescan = std::chrono::milliseconds(1);
constexpr auto kBurstRescan = std::chrono::milliseconds(3);
constexpr int kBurstScans = 3;

}  // namespace

boost::system::result<UniqueFd> install_listener_trap() {
  const int fd = portfwd::install_listener_trap();
  if (fd < 0) return boost::system::error_code(-fd, boost::system::system_category());
  return UniqueFd(fd);
}

NetnsListenerSource::NetnsListenerSource(boost::asio::io_context& io, std::unique_ptr<portfwd::SockDiag> diag,
                                         UniqueFd seccomp_notify, std::chrono::milliseconds poll,
                                         OnSnapshot on_snapshot)
    : diag_(std::move(diag)),
      notify_fd_(std::move(seccomp_notify)),
      notify_desc_(io),
      poll_(poll),
      on_snapshot_(std::move(on_snapshot)),
      timer_(io) {
  set_trap(std::move(notify_fd_));
}

void NetnsListenerSource::set_trap(UniqueFd seccomp_notify) {
  notify_fd_ = std::move(seccomp_notify);
  if (notify_fd_) notify_desc_.assign(notify_fd_.get());
  if (started_ && notify_desc_.is_open()) wait_notification();
}

NetnsListenerSource::~NetnsListenerSource() {
  *alive_ = false;
  timer_.cancel();
  if (notify_desc_.is_open()) {
    notify_desc_.cancel();
    (void)notify_desc_.release();  // notify_fd_ owns it
  }
}

void NetnsListenerSource::start() {
  started_ = true;
  scan();
  if (notify_desc_.is_open()) wait_notification();
}

void NetnsListenerSource::schedule(std::chrono::milliseconds delay) {
  const auto at = std::chrono::steady_clock::now() + delay;
  if (armed_ && next_ <= at) return;
  armed_ = true;
  next_ = at;
  timer_.expires_at(at);
  timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    auto a = alive.lock();
    if (!a || !*a || ec) return;  // operation_aborted: re-armed sooner
    armed_ = false;
    scan();
  });
}

void NetnsListenerSource::scan() {
  ++stats_.scans;
  auto r = diag_->scan();
  if (r.has_error()) {
    if (stats_.scan_errors++ == 0)
      spdlog::warn(
          "cannot read the namespace's listening sockets ({}); is the inet_diag/tcp_diag/udp_diag module "
          "available?",
          r.error().message());
  } else {
    on_snapshot_(*r);
  }
  if (burst_left_ > 0) {
    --burst_left_;
    schedule(kBurstRescan);
  } else {
    schedule(poll_);
  }
}

void NetnsListenerSource::wait_notification() {
  notify_desc_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                          [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                            auto a = alive.lock();
                            if (!a || !*a || ec) return;
                            on_notification();
                          });
}

void NetnsListenerSource::on_notification() {
  switch (responder_.answer_one(notify_fd_.get())) {
    case portfwd::ListenerTrapResponder::Result::kHangup:
      return;  // every process under the filter has exited; stop watching
    case portfwd::ListenerTrapResponder::Result::kAnswered:
      ++stats_.trapped_syscalls;
      burst_left_ = kBurstScans - 1;
      schedule(kFirstRescan);
      break;
    case portfwd::ListenerTrapResponder::Result::kNothing: break;
  }
  wait_notification();
}

}  // namespace causeway::netstack
