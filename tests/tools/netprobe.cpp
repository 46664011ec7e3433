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
//   causeway-netprobe check-netns
//       Can this user make causeway's namespaces? Exit 0; 10 if /dev/net/tun
//       cannot be opened; 11 if a user namespace (when not root) cannot be made.
//
// Limits: the server answers one TCP connection at a time, each bounded by
// kConnectionTimeout, which is plenty for tests that make a handful.
//
// Thread safety: single-threaded program.
#include <fcntl.h>
#include <netinet/in.h>
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
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "tests/tools/net_util.hpp"

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
      if (listeners[i].type == SOCK_STREAM) answer_tcp(fds[i].fd);
      else answer_udp(fds[i].fd);
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
  if (cmd == "listen-series") return run_listen_series(args);
  return fail("unknown command " + cmd, kExitUsage);
}
