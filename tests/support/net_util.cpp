#include "tests/support/net_util.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unique_fd.hpp"

namespace causeway::testtools {
namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on fd until the deadline; returns 0, or ETIMEDOUT / errno.
int wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, ms_left(deadline));
    if (n > 0) return 0;
    if (n == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
}

Exchange failed(std::string step, int error, std::string reply = {}) {
  Exchange e;
  e.step = std::move(step);
  e.error = error;
  e.reply = std::move(reply);
  return e;
}

}  // namespace

std::string echo_reply(std::string_view request) { return std::string(kEchoPrefix) + std::string(request); }

std::optional<Endpoint> make_endpoint(std::string_view ip, uint16_t port) {
  Endpoint e;
  const std::string text(ip);
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&e.addr, &v4, sizeof v4);
    e.len = sizeof v4;
    return e;
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&e.addr, &v6, sizeof v6);
    e.len = sizeof v6;
    return e;
  }
  return std::nullopt;
}

std::string to_string(const Endpoint& e) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (e.family() == AF_INET) {
    sockaddr_in v4{};
    std::memcpy(&v4, &e.addr, sizeof v4);
    ::inet_ntop(AF_INET, &v4.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  sockaddr_in6 v6{};
  std::memcpy(&v6, &e.addr, sizeof v6);
  ::inet_ntop(AF_INET6, &v6.sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(v6.sin6_port));
}

std::string Exchange::describe() const {
  if (ok()) return "ok, reply '" + reply + "'";
  std::string s = step + ": " + std::strerror(error);
  if (!reply.empty()) s += " (after partial reply '" + reply + "')";
  return s;
}

Exchange tcp_exchange(std::string_view ip, uint16_t port, std::string_view message, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto ep = make_endpoint(ip, port);
  if (!ep) return failed("address", EINVAL);
  UniqueFd fd(::socket(ep->family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return failed("socket", errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) < 0) {
    if (errno != EINPROGRESS) return failed("connect", errno);
    if (int err = wait_for(fd.get(), POLLOUT, deadline)) return failed("connect", err);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr) return failed("connect", soerr);
  }
  size_t sent = 0;
  while (sent < message.size()) {
    const ssize_t n = ::send(fd.get(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno != EAGAIN && errno != EINTR) return failed("send", errno);
    if (int err = wait_for(fd.get(), POLLOUT, deadline)) return failed("send", err);
  }
  std::string reply;
  char buf[4096];
  for (;;) {
    if (int err = wait_for(fd.get(), POLLIN, deadline)) return failed("recv", err, reply);
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      reply.append(buf, static_cast<size_t>(n));
      if (reply.size() > kMaxMessage) return failed("recv", EMSGSIZE, reply);
      continue;
    }
    if (n == 0) break;  // the peer closed: the reply is complete
    if (errno != EAGAIN && errno != EINTR) return failed("recv", errno, reply);
  }
  // A peer that closes without a byte did not answer; report it as such.
  if (reply.empty()) return failed("recv", ECONNRESET);
  Exchange e;
  e.reply = std::move(reply);
  return e;
}

Exchange udp_exchange(std::string_view ip, uint16_t port, std::string_view message, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto ep = make_endpoint(ip, port);
  if (!ep) return failed("address", EINVAL);
  UniqueFd fd(::socket(ep->family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return failed("socket", errno);
  // Connected, so an ICMP port unreachable surfaces as ECONNREFUSED on recv.
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) < 0) return failed("connect", errno);
  if (::send(fd.get(), message.data(), message.size(), MSG_NOSIGNAL) < 0) return failed("send", errno);
  std::string reply(kMaxMessage, '\0');
  for (;;) {
    if (int err = wait_for(fd.get(), POLLIN, deadline)) return failed("recv", err);
    const ssize_t n = ::recv(fd.get(), reply.data(), reply.size(), 0);
    if (n >= 0) {
      reply.resize(static_cast<size_t>(n));
      Exchange e;
      e.reply = std::move(reply);
      return e;
    }
    if (errno != EINTR) return failed("recv", errno);
  }
}

}  // namespace causeway::testtools
