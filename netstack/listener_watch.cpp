#include "netstack/listener_watch.hpp"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <spdlog/spdlog.h>

namespace causeway::netstack {
namespace {

constexpr auto kFirstRescan = std::chrono::milliseconds(1);
constexpr auto kBurstRescan = std::chrono::milliseconds(3);
constexpr int kBurstScans = 3;

long seccomp(unsigned op, unsigned flags, void* args) { return ::syscall(SYS_seccomp, op, flags, args); }

}  // namespace

boost::system::result<UniqueFd> install_listener_trap() {
  // seccomp_unotify(2): load arch; x86-64 only (others: allow, the poll sees them);
  // bind and listen → USER_NOTIF; everything else → ALLOW.
  sock_filter prog[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_listen, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bind, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  // Jump targets above: arch mismatch skips 4 to ALLOW (index 5); listen jumps 2 and bind 1, both to NOTIF (index 6).
  sock_fprog fprog{static_cast<unsigned short>(sizeof prog / sizeof prog[0]), prog};
  const long fd = seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
  if (fd < 0) return boost::system::error_code(errno, boost::system::system_category());
  return UniqueFd(static_cast<int>(fd));
}

NetnsListenerSource::NetnsListenerSource(boost::asio::io_context& io, std::unique_ptr<portfwd::SockDiag> diag,
                                         UniqueFd seccomp_notify, std::chrono::milliseconds poll,
                                         OnSnapshot on_snapshot)
    : io_(io),
      diag_(std::move(diag)),
      notify_fd_(std::move(seccomp_notify)),
      notify_desc_(io),
      poll_(poll),
      on_snapshot_(std::move(on_snapshot)),
      timer_(io) {
  set_trap(std::move(notify_fd_));
}

void NetnsListenerSource::set_trap(UniqueFd seccomp_notify) {
  notify_fd_ = std::move(seccomp_notify);
  if (notify_fd_) {
    seccomp_notif_sizes sizes{};
    if (seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0) {
      // The kernel's structures may be newer (larger) than our headers'.
      notif_buf_.resize(std::max<size_t>(sizes.seccomp_notif, sizeof(seccomp_notif)));
      resp_buf_.resize(std::max<size_t>(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp)));
      notify_desc_.assign(notify_fd_.get());
    } else {
      notify_fd_.reset();
    }
  }
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
      spdlog::warn("cannot read the namespace's listening sockets ({}); is the inet_diag/tcp_diag/udp_diag module "
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
  // POLLHUP: every process under the filter has exited; stop watching.
  pollfd p{notify_fd_.get(), POLLIN, 0};
  if (::poll(&p, 1, 0) > 0 && (p.revents & POLLHUP)) return;
  std::fill(notif_buf_.begin(), notif_buf_.end(), 0);
  if (::ioctl(notify_fd_.get(), SECCOMP_IOCTL_NOTIF_RECV, notif_buf_.data()) == 0) {
    seccomp_notif req{};
    std::memcpy(&req, notif_buf_.data(), sizeof req);
    std::fill(resp_buf_.begin(), resp_buf_.end(), 0);
    seccomp_notif_resp resp{};
    resp.id = req.id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;  // run the syscall as the process asked
    std::memcpy(resp_buf_.data(), &resp, sizeof resp);
    // ENOENT: the process died (or was interrupted) meanwhile; nothing to do.
    ::ioctl(notify_fd_.get(), SECCOMP_IOCTL_NOTIF_SEND, resp_buf_.data());
    ++stats_.trapped_syscalls;
    burst_left_ = kBurstScans - 1;
    schedule(kFirstRescan);
  }
  wait_notification();
}

}  // namespace causeway::netstack
