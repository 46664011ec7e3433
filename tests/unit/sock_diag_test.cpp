// sock_diag reply parsing, on hand-built netlink messages (and, if the
// kernel allows, one real dump of this process's own namespace).
#include "portfwd/sock_diag.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace causeway::portfwd {
namespace {

std::vector<uint8_t> diag_msg(uint8_t family, const char* addr, uint16_t port, int v6only = -1) {
  std::vector<uint8_t> out(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg)) + (v6only >= 0 ? 8 : 0), 0);
  nlmsghdr nh{};
  nh.nlmsg_len = static_cast<uint32_t>(out.size());
  nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  std::memcpy(out.data(), &nh, sizeof nh);
  inet_diag_msg m{};
  m.idiag_family = family;
  m.id.idiag_sport = htons(port);
  inet_pton(family, addr, m.id.idiag_src);
  std::memcpy(out.data() + NLMSG_HDRLEN, &m, sizeof m);
  if (v6only >= 0) {
    uint8_t* a = out.data() + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg));
    const uint16_t len = 5;
    const uint16_t type = INET_DIAG_SKV6ONLY;
    std::memcpy(a, &len, 2);
    std::memcpy(a + 2, &type, 2);
    a[4] = static_cast<uint8_t>(v6only);
  }
  return out;
}

std::vector<uint8_t> done() {
  std::vector<uint8_t> out(NLMSG_HDRLEN + 4, 0);
  nlmsghdr nh{};
  nh.nlmsg_len = static_cast<uint32_t>(out.size());
  nh.nlmsg_type = NLMSG_DONE;
  std::memcpy(out.data(), &nh, sizeof nh);
  return out;
}

TEST(SockDiagParse, ReadsAddressesPortsAndV6Only) {
  auto d = diag_msg(AF_INET, "127.0.0.1", 8000);
  auto b = diag_msg(AF_INET6, "::", 9000, 1);
  d.insert(d.end(), b.begin(), b.end());
  auto e = done();
  d.insert(d.end(), e.begin(), e.end());
  std::set<Listener> out;
  EXPECT_EQ(parse_diag_messages(d, L4::kTcp, out), DiagParse::kDone);
  ASSERT_EQ(out.size(), 2u);
  bool saw_v6only = false;
  for (auto& l : out) {
    if (l.family == Family::kIpv6) {
      EXPECT_EQ(l.port, 9000);
      saw_v6only = l.v6only;
    } else {
      EXPECT_EQ(l.port, 8000);
      EXPECT_EQ(l.address.s6_addr[0], 127);
    }
  }
  EXPECT_TRUE(saw_v6only);
}

TEST(SockDiagParse, RejectsLengthsThatOverrunTheDatagram) {
  auto d = diag_msg(AF_INET, "127.0.0.1", 8000);
  nlmsghdr nh{};
  std::memcpy(&nh, d.data(), sizeof nh);
  nh.nlmsg_len = static_cast<uint32_t>(d.size() + 100);
  std::memcpy(d.data(), &nh, sizeof nh);
  std::set<Listener> out;
  EXPECT_EQ(parse_diag_messages(d, L4::kTcp, out), DiagParse::kError);
  EXPECT_TRUE(out.empty());
}

TEST(SockDiagParse, IgnoresTruncatedAttributesAndPortZero) {
  auto d = diag_msg(AF_INET6, "::1", 0, 0);  // port 0: not a listener worth forwarding
  std::set<Listener> out;
  EXPECT_EQ(parse_diag_messages(d, L4::kUdp, out), DiagParse::kMore);
  EXPECT_TRUE(out.empty());
}

TEST(SockDiagLive, SeesOurOwnListener) {
  const int nl = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) GTEST_SKIP() << "NETLINK_SOCK_DIAG unavailable here: " << std::strerror(errno);
  SockDiag diag{UniqueFd(nl)};
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(s, 1), 0);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  auto r = diag.scan();
  ::close(s);
  if (r.has_error()) GTEST_SKIP() << "inet_diag not loaded: " << r.error().message();
  bool found = false;
  for (auto& l : *r) found |= l.proto == L4::kTcp && l.port == ntohs(a.sin_port);
  EXPECT_TRUE(found) << "our listener on port " << ntohs(a.sin_port) << " is missing from " << r->size();
}

}  // namespace
}  // namespace causeway::portfwd
