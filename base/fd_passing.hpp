// Passing file descriptors over unix sockets (SCM_RIGHTS, unix(7)).
//
// Header-only and free of everything but libc: the static guest agent, the
// namespace helpers (after fork, before exec: both calls are
// async-signal-safe) and the engine all use it.
//
// Thread safety: stateless.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "base/unique_fd.hpp"

namespace causeway {

// Sends `len` bytes of `data` (len ≥ 1: a descriptor needs at least one byte
// to ride on) and, when fd ≥ 0, a copy of `fd`. Returns sendmsg(2)'s result.
inline ssize_t send_with_fd(int sock, const void* data, size_t len, int fd) {
  iovec iov{const_cast<void*>(data), len};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof ctrl;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

// Receives up to `len` bytes; a descriptor that came with them lands in `fd`
// (close-on-exec). Returns recvmsg(2)'s result. A message whose control data
// was truncated (MSG_CTRUNC: more descriptors than one) keeps nothing of it:
// the kernel closes what did not fit, and `fd` is left empty.
inline ssize_t recv_with_fd(int sock, void* data, size_t len, UniqueFd& fd, int flags = 0) {
  iovec iov{data, len};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  const ssize_t n = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(sizeof(int))) continue;
    int raw = -1;
    std::memcpy(&raw, CMSG_DATA(c), sizeof raw);
    fd.reset(raw);
  }
  return n;
}

}  // namespace causeway
