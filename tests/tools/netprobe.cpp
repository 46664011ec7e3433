// causeway-netprobe: the small network program the integration tests run
// inside namespaces (busybox nc has no UDP, and a guest-side server must say
// when it is ready so tests can poll instead of sleeping).
//
//   causeway-netprobe serve [--bind ADDR] [--tcp PORT]... [--udp PORT]... [--lifetime SECONDS]
//       Listens on every given port, prints "listening tcp|udp PORT" for each
//       and then "ready" on stdout, and answers the echo protocol of
//       net_util.hpp until SIGTERM or the lifetime (default 30 s) ends.
//       ADDR "::" listens dual-stack.
//   causeway-netprobe send tcp|udp ADDR PORT MESSAGE [--timeout-ms N]
//       One request/reply exchange; prints the reply, exit 0. Failure: one
//       line on stderr, exit 1 (3 when the timeout, default 3000 ms, passed).
//   causeway-netprobe listen-series N GAP_MS PORT_BASE SEED
//       For scripts/bench-forward.sh in a VM (no python there): 2N listens on
//       PORT_BASE.., alternating 0.0.0.0 and 127.0.0.1, each after a pseudo-
//       random pause of 0..GAP_MS; after each listen() it prints
//       "L ADDR PORT", answers connections with one byte, and closes the
//       listener when a line arrives on stdin. Prints "E" at the end.
//   causeway-netprobe raw-syn IFACE SRC|auto DST PORT DSTMAC [--timeout-ms N]
//       Writes one TCP SYN to DST:PORT straight onto IFACE (AF_PACKET, to
//       DSTMAC, from SRC or the interface's first global address of DST's
//       family) — what a hostile guest does, bypassing the namespace's own
//       routing — and prints how the far end answered: "rst", "synack", or
//       "timeout" (exit 3). Needs CAP_NET_RAW in the namespace.
//   causeway-netprobe check-netns
//       Can this user make causeway's namespaces? Exit 0; 10 if /dev/net/tun
//       cannot be opened; 11 if a user namespace (when not root) cannot be made.
//
// Limits: the server answers one TCP connection at a time, each bounded by
// kConnectionTimeout, which is plenty for tests that make a handful.
//
// Thread safety: single-threaded program.
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "base/byte_order.hpp"
#include "base/unique_fd.hpp"
#include "tests/support/net_util.hpp"

namespace {

using causeway::UniqueFd;
using Clock = std::chrono::steady_clock;
namespace tt = causeway::testtools;

constexpr auto kConnectionTimeout = std::chrono::seconds(2);
constexpr int kDefaultLifetimeS = 30;
constexpr int kDefaultSendTimeoutMs = 3000;
constexpr int kExitUsage = 2;
constexpr int kExitTimeout = 3;
constexpr int kExitNoTun = 10;
constexpr int kExitNoUserns = 11;

void say(const std::string& line) {
  const std::string s = line + "\n";
  (void)!::write(STDOUT_FILENO, s.data(), s.size());
}

int fail(const std::string& line, int code = 1) {
  std::fprintf(stderr, "causeway-netprobe: %s\n", line.c_str());
  return code;
}

bool parse_port(const std::string& text, uint16_t& out) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 1 || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

struct Listener {
  UniqueFd fd;
  int type = SOCK_STREAM;
};

UniqueFd open_listener(const std::string& bind_ip, int type, uint16_t port, std::string& err) {
  auto ep = tt::make_endpoint(bind_ip, port);
  if (!ep) {
    err = "bad --bind address " + bind_ip;
    return {};
  }
  UniqueFd fd(::socket(ep->family(), type | SOCK_CLOEXEC, 0));
  const int one = 1;
  const int zero = 0;
  if (fd) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd && ep->family() == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) < 0 ||
      (type == SOCK_STREAM && ::listen(fd.get(), 16) < 0)) {
    err = "cannot listen on " + tt::to_string(*ep) + ": " + std::strerror(errno);
    return {};
  }
  return fd;
}

// One TCP request line (or whatever arrived before EOF / the deadline), then the echo reply.
void answer_tcp(int listen_fd) {
  UniqueFd conn(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return;
  const auto deadline = Clock::now() + kConnectionTimeout;
  std::string request;
  char buf[4096];
  while (request.find('\n') == std::string::npos && request.size() < tt::kMaxMessage) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{conn.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = ::recv(conn.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string reply = tt::echo_reply(request);
  (void)!::send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
}

void answer_udp(int fd) {
  std::string buf(tt::kMaxMessage, '\0');
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  const ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&peer), &len);
  if (n < 0) return;
  const std::string reply = tt::echo_reply(std::string_view(buf.data(), static_cast<size_t>(n)));
  (void)!::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<const sockaddr*>(&peer), len);
}

int run_serve(const std::vector<std::string>& args) {
  std::string bind_ip = "0.0.0.0";
  int lifetime_s = kDefaultLifetimeS;
  std::vector<std::pair<int, uint16_t>> wanted;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (i + 1 >= args.size()) return fail("serve: " + a + " needs a value", kExitUsage);
    const std::string& v = args[++i];
    uint16_t port = 0;
    if (a == "--bind") {
      bind_ip = v;
    } else if (a == "--lifetime") {
      lifetime_s = std::atoi(v.c_str());
    } else if ((a == "--tcp" || a == "--udp") && parse_port(v, port)) {
      wanted.emplace_back(a == "--tcp" ? SOCK_STREAM : SOCK_DGRAM, port);
    } else {
      return fail("serve: bad argument " + a + " " + v, kExitUsage);
    }
  }
  if (wanted.empty()) return fail("serve: give at least one --tcp PORT or --udp PORT", kExitUsage);

  std::vector<Listener> listeners;
  for (auto [type, port] : wanted) {
    std::string err;
    UniqueFd fd = open_listener(bind_ip, type, port, err);
    if (!fd) return fail(err);
    say(std::string("listening ") + (type == SOCK_STREAM ? "tcp " : "udp ") + std::to_string(port));
    listeners.push_back({std::move(fd), type});
  }
  say("ready");

  const auto end = Clock::now() + std::chrono::seconds(lifetime_s);
  while (Clock::now() < end) {
    std::vector<pollfd> fds;
    for (auto& l : listeners) fds.push_back({l.fd.get(), POLLIN, 0});
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(left, 0))) < 0 && errno != EINTR)
      return fail(std::string("poll: ") + std::strerror(errno));
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      if (listeners[i].type == SOCK_STREAM)
        answer_tcp(fds[i].fd);
      else
        answer_udp(fds[i].fd);
    }
  }
  return 0;
}

int run_send(const std::vector<std::string>& args) {
  if (args.size() != 4 && args.size() != 6) return fail("send: tcp|udp ADDR PORT MESSAGE [--timeout-ms N]", kExitUsage);
  uint16_t port = 0;
  if ((args[0] != "tcp" && args[0] != "udp") || !parse_port(args[2], port))
    return fail("send: tcp|udp ADDR PORT MESSAGE [--timeout-ms N]", kExitUsage);
  int timeout_ms = kDefaultSendTimeoutMs;
  if (args.size() == 6) {
    if (args[4] != "--timeout-ms") return fail("send: unknown option " + args[4], kExitUsage);
    timeout_ms = std::atoi(args[5].c_str());
  }
  const auto timeout = std::chrono::milliseconds(timeout_ms);
  const auto r = args[0] == "tcp" ? tt::tcp_exchange(args[1], port, args[3] + "\n", timeout)
                                  : tt::udp_exchange(args[1], port, args[3], timeout);
  if (!r.ok())
    return fail(args[0] + " " + args[1] + " port " + args[2] + ": " + r.describe(),
                r.error == ETIMEDOUT ? kExitTimeout : 1);
  (void)!::write(STDOUT_FILENO, r.reply.data(), r.reply.size());
  return 0;
}

// ---- raw-syn ---------------------------------------------------------------

using causeway::wire::load_be16, causeway::wire::store_be16;

// RFC 1071 sum over several pieces, returned inverted and ready to store.
uint16_t inet_checksum(std::initializer_list<std::pair<const uint8_t*, size_t>> parts) {
  uint32_t sum = 0;
  for (auto [p, n] : parts)
    for (size_t i = 0; i < n; ++i) sum += (i % 2 == 0) ? uint32_t{p[i]} << 8 : p[i];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool parse_mac(const std::string& text, uint8_t out[6]) {
  unsigned m[6];
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(m[i]);
  return true;
}

// The interface's first address of `family` (IPv6: global, not link-local), if it has one yet.
bool interface_address(const std::string& ifname, int family, uint8_t out[16]) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || ifname != i->ifa_name || i->ifa_addr->sa_family != family) continue;
    if (family == AF_INET) {
      std::memcpy(out, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
      found = true;
    } else {
      const auto& a = reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr;
      if (a.s6_addr[0] == 0xfe && (a.s6_addr[1] & 0xc0) == 0x80) continue;
      std::memcpy(out, a.s6_addr, 16);
      found = true;
    }
  }
  ::freeifaddrs(list);
  return found;
}

int run_raw_syn(const std::vector<std::string>& args) {
  const char* usage = "raw-syn IFACE SRC|auto DST PORT DSTMAC [--timeout-ms N]";
  if (args.size() != 5 && args.size() != 7) return fail(usage, kExitUsage);
  uint16_t port = 0;
  uint8_t dmac[6], smac[6], src[16] = {}, dst[16] = {};
  const int family = args[2].find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (!parse_port(args[3], port) || !parse_mac(args[4], dmac) || ::inet_pton(family, args[2].c_str(), dst) != 1)
    return fail(usage, kExitUsage);
  int timeout_ms = kDefaultSendTimeoutMs;
  if (args.size() == 7) {
    if (args[5] != "--timeout-ms") return fail("raw-syn: unknown option " + args[5], kExitUsage);
    timeout_ms = std::atoi(args[6].c_str());
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (args[1] == "auto") {
    // IPv6 comes by SLAAC a moment after the namespace starts: wait for it within the timeout.
    while (!interface_address(args[0], family, src)) {
      if (Clock::now() >= deadline) return fail("raw-syn: " + args[0] + " has no address of that family", 1);
      ::usleep(10'000);
    }
  } else if (::inet_pton(family, args[1].c_str(), src) != 1) {
    return fail(usage, kExitUsage);
  }
  const unsigned ifindex = ::if_nametoindex(args[0].c_str());
  if (ifindex == 0) return fail("raw-syn: no interface " + args[0], 1);
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!fd) return fail(std::string("raw-syn: AF_PACKET: ") + std::strerror(errno), 1);
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", args[0].c_str());
  if (::ioctl(fd.get(), SIOCGIFHWADDR, &ifr) != 0)
    return fail(std::string("raw-syn: SIOCGIFHWADDR: ") + std::strerror(errno), 1);
  std::memcpy(smac, ifr.ifr_hwaddr.sa_data, 6);
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_ALL);
  ll.sll_ifindex = static_cast<int>(ifindex);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ll), sizeof ll) != 0)
    return fail(std::string("raw-syn: bind: ") + std::strerror(errno), 1);

  const bool v4 = family == AF_INET;
  const size_t alen = v4 ? 4 : 16, iplen = v4 ? 20 : 40;
  const uint16_t sport = static_cast<uint16_t>(40000 + ::getpid() % 20000);
  std::vector<uint8_t> f(14 + iplen + 20, 0);
  std::memcpy(f.data(), dmac, 6);
  std::memcpy(f.data() + 6, smac, 6);
  store_be16(f.data() + 12, v4 ? 0x0800 : 0x86dd);
  uint8_t* ip = f.data() + 14;
  uint8_t* t = ip + iplen;
  store_be16(t, sport);
  store_be16(t + 2, port);
  t[7] = 1;  // seq 1
  t[12] = 5 << 4;
  t[13] = 0x02;  // SYN
  store_be16(t + 14, 65535);
  uint8_t pseudo[40] = {};
  size_t plen = 0;
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(iplen + 20));
    ip[8] = 64;
    ip[9] = 6;
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
    store_be16(ip + 10, inet_checksum({{ip, 20}}));
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[9] = 6;
    pseudo[11] = 20;
    plen = 12;
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, 20);
    ip[6] = 6;
    ip[7] = 64;
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, dst, 16);
    std::memcpy(pseudo, ip + 8, 32);
    pseudo[35] = 20;
    pseudo[39] = 6;
    plen = 40;
  }
  store_be16(t + 16, inet_checksum({{pseudo, plen}, {t, 20}}));
  if (::send(fd.get(), f.data(), f.size(), 0) != static_cast<ssize_t>(f.size()))
    return fail(std::string("raw-syn: send: ") + std::strerror(errno), 1);

  std::vector<uint8_t> buf(65536);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n < static_cast<ssize_t>(14 + iplen + 20)) continue;
    const uint8_t* r = buf.data();
    if (load_be16(r + 12) != (v4 ? 0x0800 : 0x86dd)) continue;
    const uint8_t* rip = r + 14;
    const size_t rihl = v4 ? static_cast<size_t>(rip[0] & 0x0f) * 4 : 40;
    if ((v4 ? rip[9] : rip[6]) != 6 || static_cast<size_t>(n) < 14 + rihl + 20) continue;
    const uint8_t* rsrc = rip + (v4 ? 12 : 8);
    const uint8_t* rdst = rip + (v4 ? 16 : 24);
    const uint8_t* rt = rip + rihl;
    if (std::memcmp(rsrc, dst, alen) != 0 || std::memcmp(rdst, src, alen) != 0) continue;
    if (load_be16(rt) != port || load_be16(rt + 2) != sport) continue;
    if (rt[13] & 0x04) {
      say("rst");
      return 0;
    }
    if ((rt[13] & 0x12) == 0x12) {
      say("synack");
      return 0;
    }
  }
  say("timeout");
  return kExitTimeout;
}

int check_netns() {
  UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tun) return fail(std::string("cannot open /dev/net/tun: ") + std::strerror(errno), kExitNoTun);
  if (::geteuid() != 0) {
    const pid_t pid = ::fork();
    if (pid < 0) return fail(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) ::_exit(::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 0 : errno);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      return fail(std::string("cannot create a user namespace: ") +
                      (WIFEXITED(st) ? std::strerror(WEXITSTATUS(st)) : "helper crashed"),
                  kExitNoUserns);
  }
  say("ok");
  return 0;
}

}  // namespace

int run_listen_series(const std::vector<std::string>& args) {
  if (args.size() != 4) return fail("listen-series N GAP_MS PORT_BASE SEED", kExitUsage);
  const long n = std::atol(args[0].c_str()), gap = std::atol(args[1].c_str()), base = std::atol(args[2].c_str());
  uint32_t rng = static_cast<uint32_t>(std::atol(args[3].c_str())) * 2654435761u + 1;
  if (n <= 0 || gap < 0 || base <= 0 || base + 2 * n > 65535) return fail("listen-series: bad numbers", kExitUsage);
  for (long i = 0; i < 2 * n; ++i) {
    rng = rng * 1664525u + 1013904223u;  // Numerical Recipes' LCG: plenty for spreading pauses
    const long pause_ms = gap ? static_cast<long>((rng >> 8) % static_cast<uint32_t>(gap + 1)) : 0;
    ::usleep(static_cast<useconds_t>(pause_ms * 1000));
    const bool any = i % 2 == 0;
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(any ? INADDR_ANY : INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(base + i));
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s.get(), 16) != 0)
      return fail("listen-series: port " + std::to_string(base + i) + ": " + std::strerror(errno), 1);
    std::printf("L %s %ld\n", any ? "0.0.0.0" : "127.0.0.1", base + i);
    std::fflush(stdout);
    for (;;) {
      pollfd p[2] = {{s.get(), POLLIN, 0}, {0, POLLIN, 0}};
      if (::poll(p, 2, 30'000) <= 0) return fail("listen-series: no word on stdin for 30 s", 1);
      if (p[0].revents) {
        UniqueFd c(::accept(s.get(), nullptr, nullptr));
        if (c) (void)!::send(c.get(), "x", 1, MSG_NOSIGNAL);
      }
      if (p[1].revents) {
        char line[64];
        if (!std::fgets(line, sizeof line, stdin)) return fail("listen-series: stdin ended", 1);
        break;
      }
    }
  }
  std::printf("E\n");
  std::fflush(stdout);
  return 0;
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return fail("usage: causeway-netprobe serve|send|check-netns ...", kExitUsage);
  const std::string cmd = args.front();
  args.erase(args.begin());
  if (cmd == "serve") return run_serve(args);
  if (cmd == "send") return run_send(args);
  if (cmd == "check-netns") return check_netns();
  if (cmd == "raw-syn") return run_raw_syn(args);
  if (cmd == "listen-series") return run_listen_series(args);
  return fail("unknown command " + cmd, kExitUsage);
}
