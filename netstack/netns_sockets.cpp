#include "netstack/netns_sockets.hpp"

#include "base/fd_passing.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <vector>

#include "netstack/netns.hpp"
#include "netstack/netns_helper_protocol.hpp"

namespace causeway::netstack {
namespace {

namespace proto = netns_helper;

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

// The helper keeps only `keep` of its capabilities (effective and permitted;
// the bounding, inheritable and ambient sets emptied) and sets no_new_privs.
// Best effort: a capability it did not have stays absent.
void keep_only_capabilities(std::initializer_list<int> keep) {
  for (int c = 0; c < 64; ++c)
    if (std::find(keep.begin(), keep.end(), c) == keep.end()) ::prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct now[2] = {};
  __user_cap_data_struct want[2] = {};
  if (::syscall(SYS_capget, &hdr, now) == 0) {
    for (int c : keep) {
      const uint32_t bit = 1U << (c % 32);
      want[c / 32].permitted |= now[c / 32].permitted & bit;
      want[c / 32].effective |= now[c / 32].permitted & bit;
    }
    hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    ::syscall(SYS_capset, &hdr, want);
  }
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

struct Helper {
  int sock = -1;
  int route = -1;  // NETLINK_ROUTE, made on the first kRoute
  uint32_t seq = 0;
  int root_fd = -1, mnt_fd = -1;  // COMMAND's root and mount namespace (kResolvConf)
  std::string resolv_file;

  int make_tap(const proto::RequestHeader& h, int& fd) const {
    const auto name = proto::field(h.ifname, sizeof h.ifname);
    if (int e = proto::check_ifname(name)) return e;
    if (h.tap_flags & ~proto::kTapVnetHdr) return EINVAL;
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return errno;
    ifreq ifr{};
    // IFF_TUN_EXCL: a new device, never one that exists.
    ifr.ifr_flags =
        static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL | (h.tap_flags & proto::kTapVnetHdr ? IFF_VNET_HDR : 0));
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    if (::ioctl(tun.get(), TUNSETIFF, &ifr) < 0) return errno;
    fd = tun.release();
    return 0;
  }

  static int write_sysctl(const proto::RequestHeader& h) {
    const auto ifname = proto::field(h.ifname, sizeof h.ifname);
    const auto key = proto::field(h.key, sizeof h.key);
    const auto value = proto::field(h.value, sizeof h.value);
    if (int e = proto::check_sysctl(ifname, key, value)) return e;
    const std::string path = fmt::format("/proc/sys/net/ipv6/conf/{}/{}", ifname, key);
    UniqueFd f(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!f) return errno;
    if (::write(f.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) return errno;
    return 0;
  }

  // Sends the request with NLM_F_ACK and returns the kernel's errno.
  int relay_route(std::span<const uint8_t> msg) {
    if (int e = proto::check_route_message(msg)) return e;
    if (route < 0) {
      route = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
      if (route < 0) return errno;
      const timeval tv{5, 0};  // the local kernel answers at once; this bounds a wedged one
      ::setsockopt(route, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    alignas(nlmsghdr) uint8_t out[proto::kMaxRouteMessage];
    std::memcpy(out, msg.data(), msg.size());
    auto* h = reinterpret_cast<nlmsghdr*>(out);  // SAFETY: aligned buffer, size checked above
    h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    h->nlmsg_seq = ++seq;
    h->nlmsg_pid = 0;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(route, out, msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) return errno;
    alignas(nlmsghdr) uint8_t in[8192];
    for (;;) {
      const ssize_t n = ::recv(route, in, sizeof in, 0);
      if (n < 0) return errno == EAGAIN ? ETIMEDOUT : errno;
      auto len = static_cast<size_t>(n);
      for (auto* r = reinterpret_cast<nlmsghdr*>(in); NLMSG_OK(r, len); r = NLMSG_NEXT(r, len)) {
        if (r->nlmsg_seq != seq || r->nlmsg_type != NLMSG_ERROR) continue;
        if (r->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return EPROTO;
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(r));
        return -e->error;
      }
    }
  }

  int resolv_conf() const {
    if (root_fd < 0 || resolv_file.empty()) return EOPNOTSUPP;
    return ensure_resolv_conf_bound(root_fd, mnt_fd, resolv_file) ? 0 : EIO;
  }

  [[noreturn]] void serve() {
    alignas(proto::RequestHeader) uint8_t buf[sizeof(proto::RequestHeader) + proto::kMaxRouteMessage];
    for (;;) {
      const ssize_t n = ::recv(sock, buf, sizeof buf, 0);
      if (n <= 0) break;  // the engine went away
      if (static_cast<size_t>(n) < sizeof(proto::RequestHeader)) {
        send_reply(sock, EINVAL, -1);
        continue;
      }
      proto::RequestHeader h;
      std::memcpy(&h, buf, sizeof h);
      int fd = -1;
      int err = EINVAL;
      switch (h.kind) {
        case proto::Kind::kSocket:
          err = proto::check_socket(h.family, h.type, h.protocol);
          if (!err) {
            fd = ::socket(h.family, h.type | SOCK_CLOEXEC, h.protocol);
            err = fd < 0 ? errno : 0;
          }
          break;
        case proto::Kind::kTap: err = make_tap(h, fd); break;
        case proto::Kind::kSysctl: err = write_sysctl(h); break;
        case proto::Kind::kRoute: err = relay_route({buf + sizeof h, static_cast<size_t>(n) - sizeof h}); break;
        case proto::Kind::kResolvConf: err = resolv_conf(); break;
      }
      send_reply(sock, err, fd);
      if (fd >= 0) ::close(fd);
    }
    if (!resolv_file.empty()) ::unlink(resolv_file.c_str());
    ::_exit(0);
  }
};

[[noreturn]] void helper_main(Helper& h, int netfd, int userfd) {
  // Interrupts go to the engine, which decides; the helper ends when the
  // engine's end of its socket closes (also when the engine dies), after
  // removing the resolv.conf file it owns.
  sigset_t quiet;
  sigemptyset(&quiet);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&quiet, s);
  ::sigprocmask(SIG_BLOCK, &quiet, nullptr);
  int err = 0;
  if (userfd >= 0 && ::setns(userfd, CLONE_NEWUSER) < 0) err = errno;
  if (!err && ::setns(netfd, CLONE_NEWNET) < 0) err = errno;
  ::close(netfd);
  if (userfd >= 0) ::close(userfd);
  if (h.resolv_file.empty()) {
    keep_only_capabilities({CAP_NET_ADMIN});
  } else {
    keep_only_capabilities({CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_CHROOT});  // setns(CLONE_NEWNS), mount
  }
  // First message: 0 when inside, errno otherwise.
  if (!send_reply(h.sock, err, -1) || err) ::_exit(1);
  h.serve();
}

boost::system::result<std::pair<int, UniqueFd>> recv_reply(int sock) {
  int err = 0;
  UniqueFd fd;
  const ssize_t n = recv_with_fd(sock, &err, sizeof err, fd);
  if (n != static_cast<ssize_t>(sizeof err))
    return boost::system::error_code(n < 0 ? errno : EPIPE, boost::system::system_category());
  return std::pair<int, UniqueFd>(err, std::move(fd));
}

boost::system::error_code sys_error(int e) { return {e, boost::system::system_category()}; }

// Into a fixed field of `size` bytes, truncated and NUL-terminated.
void copy_field(char* dst, size_t size, const std::string& s) {
  const size_t n = std::min(s.size(), size - 1);
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

}  // namespace

boost::system::result<std::unique_ptr<NamespaceSocketFactory>, std::string> NamespaceSocketFactory::start(
    const std::string& netns, const std::string& userns, const ResolvConfGuard& guard) {
  using R = boost::system::result<std::unique_ptr<NamespaceSocketFactory>, std::string>;
  auto fail = [](std::string s) { return R(boost::system::in_place_error, std::move(s)); };
  UniqueFd netfd(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netfd) return fail(fmt::format("cannot open {}: {}", netns, std::strerror(errno)));
  UniqueFd userfd;
  if (!userns.empty()) {
    userfd.reset(::open(userns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!userfd) return fail(fmt::format("cannot open {}: {}", userns, std::strerror(errno)));
  }
  // COMMAND's root and mount namespace, opened now: later the helper has no
  // right to look into /proc/PID (and COMMAND may have changed users).
  UniqueFd rootfd, mntfd;
  if (guard.pid > 0 && !guard.file.empty()) {
    const std::string proc = "/proc/" + std::to_string(guard.pid);
    rootfd.reset(::open((proc + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    mntfd.reset(::open((proc + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
    if (!rootfd || !mntfd)
      return fail(fmt::format("cannot open {}'s root and mount namespace: {}", proc, std::strerror(errno)));
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
    // Keep only our descriptors: an inherited copy of another factory's
    // socket would keep that factory's helper from ever seeing EOF.
    close_all_but(
        {theirs.get(), netfd.get(), userfd ? userfd.get() : -1, rootfd ? rootfd.get() : -1, mntfd ? mntfd.get() : -1});
    Helper h;
    h.sock = theirs.release();
    h.root_fd = rootfd ? rootfd.release() : -1;
    h.mnt_fd = mntfd ? mntfd.release() : -1;
    if (h.root_fd >= 0) h.resolv_file = guard.file;
    helper_main(h, netfd.release(), userfd ? userfd.release() : -1);
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
  proto::RequestHeader r{proto::Kind::kSocket};
  r.family = family;
  r.type = type;
  r.protocol = protocol;
  return request(&r, sizeof r);
}

boost::system::result<UniqueFd> NamespaceSocketFactory::create_tap(const std::string& name, bool vnet_hdr) {
  if (name.size() >= IFNAMSIZ) return sys_error(ENAMETOOLONG);
  proto::RequestHeader r{proto::Kind::kTap};
  r.tap_flags = vnet_hdr ? proto::kTapVnetHdr : 0;
  copy_field(r.ifname, sizeof r.ifname, name);
  return request(&r, sizeof r);
}

boost::system::error_code NamespaceSocketFactory::write_ipv6_sysctl(const std::string& ifname, const std::string& key,
                                                                    const std::string& value) {
  proto::RequestHeader r{proto::Kind::kSysctl};
  if (ifname.size() >= sizeof r.ifname || key.size() >= sizeof r.key || value.size() >= sizeof r.value)
    return sys_error(ENAMETOOLONG);
  copy_field(r.ifname, sizeof r.ifname, ifname);
  copy_field(r.key, sizeof r.key, key);
  copy_field(r.value, sizeof r.value, value);
  auto res = request(&r, sizeof r);
  return res.has_error() ? res.error() : boost::system::error_code{};
}

boost::system::error_code NamespaceSocketFactory::route_request(std::span<const uint8_t> msg) {
  if (msg.size() > proto::kMaxRouteMessage) return sys_error(EMSGSIZE);
  std::vector<uint8_t> buf(sizeof(proto::RequestHeader) + msg.size());
  const proto::RequestHeader r{proto::Kind::kRoute};
  std::memcpy(buf.data(), &r, sizeof r);
  std::memcpy(buf.data() + sizeof r, msg.data(), msg.size());
  auto res = request(buf.data(), buf.size());
  return res.has_error() ? res.error() : boost::system::error_code{};
}

boost::system::result<void> NamespaceSocketFactory::resolv_conf_bound() {
  const proto::RequestHeader r{proto::Kind::kResolvConf};
  auto res = request(&r, sizeof r);
  if (res.has_error()) return res.error();
  return {};
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
