#include "portfwd/listener_trap.hpp"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace causeway::portfwd {
namespace {

long seccomp(unsigned op, unsigned flags, void* args) { return ::syscall(SYS_seccomp, op, flags, args); }

}  // namespace

int install_listener_trap() noexcept {
  // Load arch; x86-64 only (others: allow); bind and listen → USER_NOTIF; the rest → ALLOW.
  sock_filter prog[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_listen, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bind, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  // Jump targets: arch mismatch skips 4 to ALLOW (index 5); listen jumps 2 and bind 1, both to NOTIF (index 6).
  sock_fprog fprog{static_cast<unsigned short>(sizeof prog / sizeof prog[0]), prog};
  const long fd = seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
  return fd < 0 ? -errno : static_cast<int>(fd);
}

ListenerTrapResponder::ListenerTrapResponder() {
  seccomp_notif_sizes sizes{};
  size_t notif = sizeof(seccomp_notif), resp = sizeof(seccomp_notif_resp);
  if (seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0) {
    notif = std::max<size_t>(sizes.seccomp_notif, notif);
    resp = std::max<size_t>(sizes.seccomp_notif_resp, resp);
  }
  notif_.resize(notif);
  resp_.resize(resp);
}

ListenerTrapResponder::Result ListenerTrapResponder::answer_one(int notify_fd) {
  pollfd p{notify_fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return Result::kNothing;
  if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return Result::kHangup;
  std::fill(notif_.begin(), notif_.end(), 0);
  if (::ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, notif_.data()) != 0) return Result::kNothing;
  seccomp_notif req{};
  std::memcpy(&req, notif_.data(), sizeof req);
  seccomp_notif_resp resp{};
  resp.id = req.id;
  resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;  // run the syscall as the process asked
  std::fill(resp_.begin(), resp_.end(), 0);
  std::memcpy(resp_.data(), &resp, sizeof resp);
  // ENOENT: the process died (or was interrupted) meanwhile; nothing to do.
  ::ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND, resp_.data());
  return Result::kAnswered;
}

}  // namespace causeway::portfwd
