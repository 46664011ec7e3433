#include "netstack/netns_sockets.hpp"

#include "base/fd_passing.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <vector>

namespace causeway::netstack {
namespace {

enum RequestKind : int { kSocket = 0, kOpen = 1 };
struct Request {
  int kind;
  int family;      // kSocket
  int type;        // kSocket; open(2) flags for kOpen
  int protocol;    // kSocket
  char path[128];  // kOpen, NUL-terminated
};

bool send_reply(int sock, int err, int fd) {
  return send_with_fd(sock, &err, sizeof err, fd) == static_cast<ssize_t>(sizeof err);
}

// Closes every descriptor from 3 up except those in `keep` (-1 entries ignored).
void close_all_but(std::vector<int> keep) {
  keep.push_back(2);  // stderr and below stay
  std::sort(keep.begin(), keep.end());
  unsigned next = 3;
  for (int fd : keep) {
    if (fd < static_cast<int>(next)) continue;
    if (static_cast<unsigned>(fd) > next) ::close_range(next, static_cast<unsigned>(fd) - 1, 0);
    next = static_cast<unsigned>(fd) + 1;
  }
  ::close_range(next, ~0U, 0);
}

[[noreturn]] void helper_main(int sock, int netfd, int userfd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  int err = 0;
  if (userfd >= 0 && ::setns(userfd, CLONE_NEWUSER) < 0) err = errno;
  if (!err && ::setns(netfd, CLONE_NEWNET) < 0) err = errno;
  ::close(netfd);
  if (userfd >= 0) ::close(userfd);
  // First message: 0 when inside, errno otherwise.
  if (!send_reply(sock, err, -1) || err) ::_exit(1);
  for (;;) {
    Request r{};
    const ssize_t n = ::recv(sock, &r, sizeof r, 0);
    if (n != static_cast<ssize_t>(sizeof r)) ::_exit(0);  // the engine went away
    r.path[sizeof r.path - 1] = '\0';
    const int fd =
        r.kind == kOpen ? ::open(r.path, r.type | O_CLOEXEC) : ::socket(r.family, r.type | SOCK_CLOEXEC, r.protocol);
    send_reply(sock, fd < 0 ? errno : 0, fd);
    if (fd >= 0) ::close(fd);
  }
}

boost::system::result<std::pair<int, UniqueFd>> recv_reply(int sock) {
  int err = 0;
  UniqueFd fd;
  const ssize_t n = recv_with_fd(sock, &err, sizeof err, fd);
  if (n != static_cast<ssize_t>(sizeof err))
    return boost::system::error_code(n < 0 ? errno : EPIPE, boost::system::system_category());
  return std::pair<int, UniqueFd>(err, std::move(fd));
}

}  // namespace

boost::system::result<std::unique_ptr<NamespaceSocketFactory>, std::string> NamespaceSocketFactory::start(
    const std::string& netns, const std::string& userns) {
  using R = boost::system::result<std::unique_ptr<NamespaceSocketFactory>, std::string>;
  auto fail = [](std::string s) { return R(boost::system::in_place_error, std::move(s)); };
  UniqueFd netfd(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netfd) return fail(fmt::format("cannot open {}: {}", netns, std::strerror(errno)));
  UniqueFd userfd;
  if (!userns.empty()) {
    userfd.reset(::open(userns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!userfd) return fail(fmt::format("cannot open {}: {}", userns, std::strerror(errno)));
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return fail(fmt::format("socketpair: {}", std::strerror(errno)));
  UniqueFd ours(sv[0]);
  UniqueFd theirs(sv[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return fail(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ours.reset();
    // Keep only our three descriptors: an inherited copy of another
    // factory's socket would keep that factory's helper from ever seeing EOF.
    close_all_but({theirs.get(), netfd.get(), userfd ? userfd.get() : -1});
    helper_main(theirs.get(), netfd.release(), userfd ? userfd.release() : -1);
  }
  theirs.reset();
  auto hello = recv_reply(ours.get());
  if (hello.has_error() || hello->first != 0) {
    ::waitpid(pid, nullptr, 0);
    const int err = hello.has_error() ? hello.error().value() : hello->first;
    return fail(fmt::format("cannot enter namespace {}: {}", netns, std::strerror(err)));
  }
  return std::unique_ptr<NamespaceSocketFactory>(new NamespaceSocketFactory(pid, std::move(ours)));
}

NamespaceSocketFactory::~NamespaceSocketFactory() {
  sock_.reset();  // EOF: the helper exits
  ::waitpid(pid_, nullptr, 0);
}

boost::system::result<UniqueFd> NamespaceSocketFactory::create(int family, int type, int protocol) {
  Request r{kSocket, family, type, protocol, {}};
  return request(&r, sizeof r);
}

boost::system::result<UniqueFd> NamespaceSocketFactory::open_file(const std::string& path, int flags) {
  Request r{kOpen, 0, flags, 0, {}};
  if (path.size() >= sizeof r.path) return boost::system::error_code(ENAMETOOLONG, boost::system::system_category());
  std::memcpy(r.path, path.data(), path.size());
  return request(&r, sizeof r);
}

boost::system::result<UniqueFd> NamespaceSocketFactory::request(const void* r, size_t len) {
  if (::send(sock_.get(), r, len, MSG_NOSIGNAL) != static_cast<ssize_t>(len))
    return boost::system::error_code(errno, boost::system::system_category());
  auto reply = recv_reply(sock_.get());
  if (reply.has_error()) return reply.error();
  if (reply->first != 0) return boost::system::error_code(reply->first, boost::system::system_category());
  return std::move(reply->second);
}

namespace {
sockaddr_storage guest_loopback(portfwd::Family f, const portfwd::GuestTarget& t, socklen_t& len) {
  sockaddr_storage ss{};
  const uint16_t port = t.port;
  if (f == portfwd::Family::kIpv4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);  // SAFETY: sockaddr_storage fits any sockaddr
    a->sin_family = AF_INET;
    std::memcpy(&a->sin_addr, t.v4_loopback.data(), 4);  // network order, as stored
    a->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);  // SAFETY: as above
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  }
  return ss;
}
}  // namespace

void NetnsConnector::async_connect(const portfwd::GuestTarget& guest, ConnectHandler handler) {
  const int family = family_ == portfwd::Family::kIpv4 ? AF_INET : AF_INET6;
  auto fd = factory_.create(family, SOCK_STREAM, IPPROTO_TCP);
  auto sock = std::make_shared<portfwd::StreamSocket>(io_);
  if (fd.has_error()) {
    handler(fd.error(), std::move(*sock));
    return;
  }
  socklen_t len = 0;
  const auto target = guest_loopback(family_, guest, len);
  const boost::asio::generic::stream_protocol::endpoint ep(&target, len, IPPROTO_TCP);
  boost::system::error_code ec;
  sock->assign(ep.protocol(), fd->release(), ec);
  if (ec) {
    handler(ec, std::move(*sock));
    return;
  }
  sock->async_connect(
      ep, [sock, handler = std::move(handler)](boost::system::error_code cec) { handler(cec, std::move(*sock)); });
}

NetnsDatagramChannel::~NetnsDatagramChannel() {
  for (auto& [id, f] : flows_) {
    boost::system::error_code ec;
    f->sock.close(ec);
  }
}

std::optional<uint16_t> NetnsDatagramChannel::open_flow(uint16_t guest_port, ReplyHandler on_reply) {
  if (flows_.size() >= kMaxFlows) return std::nullopt;
  const int family = family_ == portfwd::Family::kIpv4 ? AF_INET : AF_INET6;
  auto fd = factory_.create(family, SOCK_DGRAM, IPPROTO_UDP);
  if (fd.has_error()) return std::nullopt;
  socklen_t len = 0;
  const auto target = guest_loopback(family_, portfwd::GuestTarget(guest_port), len);
  const boost::asio::generic::datagram_protocol::endpoint ep(&target, len, IPPROTO_UDP);
  auto flow = std::make_shared<Flow>(io_);
  boost::system::error_code ec;
  flow->sock.assign(ep.protocol(), fd->release(), ec);
  if (!ec) flow->sock.connect(ep, ec);
  if (!ec) flow->sock.non_blocking(true, ec);  // a full socket drops the datagram, never blocks the engine
  if (ec) return std::nullopt;
  flow->on_reply = std::move(on_reply);
  while (flows_.count(next_id_) || next_id_ == 0) ++next_id_;
  const uint16_t id = next_id_++;
  flows_[id] = flow;
  receive(id, flow);
  return id;
}

void NetnsDatagramChannel::receive(uint16_t id, const std::shared_ptr<Flow>& f) {
  f->sock.async_receive(boost::asio::buffer(f->buf),
                        [this, id, weak = std::weak_ptr<Flow>(f)](boost::system::error_code ec, size_t n) {
                          auto flow = weak.lock();
                          if (!flow || ec == boost::asio::error::operation_aborted) return;
                          auto it = flows_.find(id);
                          if (it == flows_.end() || it->second != flow) return;
                          if (!ec) flow->on_reply({flow->buf.data(), n});
                          // ECONNREFUSED (nothing listening right now) is not fatal for a flow.
                          if (flows_.count(id)) receive(id, flow);
                        });
}

bool NetnsDatagramChannel::send_on_flow(uint16_t flow, std::span<const uint8_t> payload) {
  auto it = flows_.find(flow);
  if (it == flows_.end()) return false;
  boost::system::error_code ec;
  it->second->sock.send(boost::asio::buffer(payload.data(), payload.size()), 0, ec);
  return !ec;
}

void NetnsDatagramChannel::close_flow(uint16_t flow) {
  auto it = flows_.find(flow);
  if (it == flows_.end()) return;
  boost::system::error_code ec;
  it->second->sock.close(ec);
  flows_.erase(it);  // the pending receive holds the Flow until it completes
}

}  // namespace causeway::netstack
