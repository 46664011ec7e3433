#include "portfwd/sock_diag.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace causeway::portfwd {
namespace {
constexpr uint32_t kTcpListen = 10;  // TCP_LISTEN in include/net/tcp_states.h
constexpr uint32_t kTcpClose = 7;    // TCP_CLOSE: how the kernel reports unconnected UDP sockets
}  // namespace

std::vector<uint8_t> build_diag_request(uint8_t family, uint8_t protocol, uint32_t states, uint32_t seq) {
  struct {
    nlmsghdr nh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nh.nlmsg_len = sizeof msg;
  msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nh.nlmsg_seq = seq;
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = protocol;
  msg.req.idiag_states = states;
  std::vector<uint8_t> out(sizeof msg);
  std::memcpy(out.data(), &msg, sizeof msg);
  return out;
}

DiagParse parse_diag_messages(std::span<const uint8_t> d, L4 proto, std::set<Listener>& out) {
  size_t off = 0;
  while (d.size() - off >= sizeof(nlmsghdr)) {
    nlmsghdr nh{};
    std::memcpy(&nh, d.data() + off, sizeof nh);
    if (nh.nlmsg_len < sizeof(nlmsghdr) || nh.nlmsg_len > d.size() - off) return DiagParse::kError;
    if (nh.nlmsg_type == NLMSG_DONE) return DiagParse::kDone;
    if (nh.nlmsg_type == NLMSG_ERROR) return DiagParse::kError;
    if (nh.nlmsg_type == SOCK_DIAG_BY_FAMILY && nh.nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
      inet_diag_msg m{};
      std::memcpy(&m, d.data() + off + NLMSG_HDRLEN, sizeof m);
      Listener l;
      l.proto = proto;
      l.family = m.idiag_family == AF_INET6 ? Family::kIpv6 : Family::kIpv4;
      l.port = ntohs(m.id.idiag_sport);
      std::memcpy(&l.address, m.id.idiag_src, l.family == Family::kIpv6 ? 16 : 4);
      // Attributes follow the message (rtattr TLVs, 4-byte aligned).
      size_t a = off + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg));
      const size_t end = off + nh.nlmsg_len;
      while (a + sizeof(uint16_t) * 2 <= end) {
        uint16_t alen = 0;
        uint16_t atype = 0;
        std::memcpy(&alen, d.data() + a, 2);
        std::memcpy(&atype, d.data() + a + 2, 2);
        if (alen < 4 || a + alen > end) break;
        if (atype == INET_DIAG_SKV6ONLY && alen >= 5) l.v6only = d[a + 4] != 0;
        a += (alen + 3u) & ~3u;
      }
      if (l.port != 0) out.insert(l);
    }
    off += NLMSG_ALIGN(nh.nlmsg_len);
  }
  return DiagParse::kMore;
}

SockDiag::SockDiag(UniqueFd s) : sock_(std::move(s)) {
  timeval tv{1, 0};
  ::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

boost::system::result<void> SockDiag::dump(uint8_t family, L4 proto, std::set<Listener>& out) {
  const uint32_t seq = seq_++;
  const auto req = build_diag_request(family, proto == L4::kTcp ? IPPROTO_TCP : IPPROTO_UDP,
                                      proto == L4::kTcp ? (1u << kTcpListen) : (1u << kTcpClose), seq);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock_.get(), req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return boost::system::error_code(errno, boost::system::system_category());
  for (;;) {
    const ssize_t n = ::recv(sock_.get(), buf_.data(), buf_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return boost::system::error_code(errno, boost::system::system_category());
    }
    switch (parse_diag_messages({buf_.data(), static_cast<size_t>(n)}, proto, out)) {
      case DiagParse::kDone: return {};
      case DiagParse::kError:
        // ENOENT here means the protocol's diag module is missing (udp_diag/tcp_diag).
        return boost::system::error_code(EPROTO, boost::system::system_category());
      case DiagParse::kMore: break;
    }
  }
}

boost::system::result<std::set<Listener>> SockDiag::scan() {
  std::set<Listener> out;
  for (uint8_t fam : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    for (L4 p : {L4::kTcp, L4::kUdp}) {
      if (auto r = dump(fam, p, out); r.has_error()) return r.error();
    }
  }
  return out;
}

}  // namespace causeway::portfwd
