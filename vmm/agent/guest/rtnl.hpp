// Raw rtnetlink for the guest agent (no libnl: the agent is a small static
// binary): a request builder with nested attributes, one-request-one-ACK
// transactions, and the socket. rtnetlink(7), netlink(7).
//
// Thread safety: none needed (the agent is single-threaded).
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/unique_fd.hpp"

namespace causeway::agent::guest {

// A netlink message under construction; lengths are patched as parts are added.
class NlBuilder {
 public:
  NlBuilder(uint16_t type, uint16_t flags, uint32_t seq) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = static_cast<uint16_t>(flags | NLM_F_REQUEST | NLM_F_ACK);
    h.nlmsg_seq = seq;
    append(&h, sizeof h);
  }
  template <class T>
  void body(const T& t) {
    append(&t, sizeof t);
  }
  void attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    append(&a, sizeof a);
    append(data, len);
  }
  void attr_u32(uint16_t type, uint32_t v) { attr(type, &v, sizeof v); }
  // A nested attribute: begin() returns its offset, end() patches its length.
  size_t begin(uint16_t type) {
    const size_t at = buf_.size();
    rtattr a{};
    a.rta_type = type;
    append(&a, sizeof a);
    return at;
  }
  void end(size_t at) {
    const auto len = static_cast<unsigned short>(buf_.size() - at);
    std::memcpy(buf_.data() + at + offsetof(rtattr, rta_len), &len, sizeof len);
  }
  // Raw bytes inside the current attribute (rtnexthop in RTA_MULTIPATH).
  void raw(const void* p, size_t n) { append(p, n); }
  size_t size() const { return buf_.size(); }
  void patch(size_t at, const void* p, size_t n) { std::memcpy(buf_.data() + at, p, n); }
  std::vector<uint8_t> finish() {
    const auto len = static_cast<uint32_t>(buf_.size());
    std::memcpy(buf_.data() + offsetof(nlmsghdr, nlmsg_len), &len, sizeof len);
    return std::move(buf_);
  }

 private:
  void append(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    buf_.resize(NLMSG_ALIGN(buf_.size()), 0);  // netlink(7): attributes start 4-aligned
  }
  std::vector<uint8_t> buf_;
};

// Sends one request and waits for its ACK. Returns 0 or a positive errno.
inline int transact(int fd, const std::vector<uint8_t>& req) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) return errno;
  uint32_t seq = 0;
  std::memcpy(&seq, req.data() + offsetof(nlmsghdr, nlmsg_seq), sizeof seq);
  alignas(nlmsghdr) uint8_t buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    // SAFETY: NLMSG_OK bounds every header against the n bytes received.
    auto* h = reinterpret_cast<nlmsghdr*>(buf);
    for (auto len = static_cast<unsigned>(n); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return EPROTO;
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      return -e->error;
    }
  }
}

inline UniqueFd open_rtnl() {
  UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return fd;
  timeval tv{2, 0};  // the kernel answers at once; a bound keeps PID 1 from hanging on a bug
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0) fd.reset();
  return fd;
}

}  // namespace causeway::agent::guest
