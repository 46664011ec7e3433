// The relay channel end to end, without a VM: the real causeway-agent in its
// test mode (--test-fd 3 --test-relay-fd 4 [--test-ports]) serves relay
// streams on a unix socket; the host side is the real VsockRelayConnector /
// VsockRelayDatagramChannel over SocketVsockStream (a VsockStream on a unix
// socket), so the bridge, the agent's relays and the loopback connects are
// all real. Services are real sockets on this host's loopback.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/unique_fd.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/agent/relay.hpp"
#include "vmm/agent/relay_client.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/agent/socket_stream.hpp"

#ifndef CAUSEWAY_AGENT_BIN
#error "CAUSEWAY_AGENT_BIN must name the causeway-agent binary"
#endif

namespace causeway::agent {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// A VsockHost whose connect() reaches the agent's relay listener (a unix
// socket path) and wraps the connection in a SocketVsockStream.
class UnixVsockHost final : public vmm::VsockHost {
 public:
  UnixVsockHost(asio::io_context& io, std::string path) : io_(io), path_(std::move(path)) {}
  void listen(uint32_t, vmm::VsockAcceptHandler) override {}
  void connect(uint32_t port, vmm::VsockConnectHandler on_connect) override {
    ++connects;
    EXPECT_EQ(port, kAgentRelayPort);
    auto sock = std::make_shared<asio::local::stream_protocol::socket>(io_);
    sock->async_connect(asio::local::stream_protocol::endpoint(path_),
                        [sock, on_connect](boost::system::error_code ec) {
                          if (ec) return on_connect(ec, nullptr);
                          auto s = std::make_shared<SocketVsockStream>(std::move(*sock));
                          s->start();
                          on_connect({}, s);
                        });
  }
  int connects = 0;

 private:
  asio::io_context& io_;
  std::string path_;
};

// The agent with its control stream on fd 3 and a listening unix socket on fd 4.
class RelayAgent {
 public:
  explicit RelayAgent(bool ports = false) {
    dir_ = std::filesystem::temp_directory_path() /
           ("cw-relay-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
    path = (dir_ / "relay.sock").string();
    UniqueFd lis(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (bind(lis.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lis.get(), 16) != 0)
      throw std::runtime_error("relay listener");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    std::vector<std::string> args = {CAUSEWAY_AGENT_BIN, "--test-fd", "3", "--test-relay-fd", "4"};
    if (ports) args.emplace_back("--test-ports");
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      // Out of the way first: either descriptor may already be 3 or 4.
      const int t = fcntl(sv[1], F_DUPFD, 10), l = fcntl(lis.get(), F_DUPFD, 10);
      dup2(t, 3);
      dup2(l, 4);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(sv[1]);
    control.reset(sv[0]);
  }
  ~RelayAgent() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  [[nodiscard]] bool alive() const { return pid_ > 0 && kill(pid_, 0) == 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

  UniqueFd control;
  std::string path;

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

// Drives the agent's control stream (Hello; optionally a command) so it serves.
struct Session {
  Session(asio::io_context& io, RelayAgent& agent, AgentCallbacks cb = {}) {
    asio::local::stream_protocol::socket sock(io, asio::local::stream_protocol(), agent.control.release());
    stream = std::make_shared<SocketVsockStream>(std::move(sock));
    cb.on_end = [this](const SessionEnd& e) { ended = e; };
    session = std::make_unique<AgentSession>(io.get_executor(), stream, std::move(cb));
    stream->start();
    session->start();
  }
  std::shared_ptr<SocketVsockStream> stream;
  std::unique_ptr<AgentSession> session;
  std::optional<SessionEnd> ended;
};

// A TCP service on 127.0.0.1 or ::1 that reads to EOF and answers with what it read, reversed.
class ReverseServer {
 public:
  explicit ReverseServer(int family) {
    fd_.reset(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    bind(fd_.get(), reinterpret_cast<sockaddr*>(&ss), len);
    listen(fd_.get(), 4);
    getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                    : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    thread_ = std::thread([this] {
      UniqueFd c(accept(fd_.get(), nullptr, nullptr));
      if (!c) return;
      conn_ = c.get();
      std::vector<uint8_t> all;
      uint8_t buf[65536];
      ssize_t n;
      while ((n = read(c.get(), buf, sizeof buf)) > 0) all.insert(all.end(), buf, buf + n);
      std::reverse(all.begin(), all.end());
      size_t off = 0;
      while (off < all.size()) {
        n = write(c.get(), all.data() + off, all.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      conn_ = -1;  // before `c` closes it
    });
  }
  ~ReverseServer() {
    shutdown(fd_.get(), SHUT_RDWR);
    if (const int c = conn_.load(); c >= 0) shutdown(c, SHUT_RDWR);  // a relay the test left open
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port = 0;

 private:
  UniqueFd fd_;
  std::atomic<int> conn_{-1};
  std::thread thread_;
};

uint16_t closed_port(int family) {
  // Bind, learn the port, close: nothing listens there afterwards (for this test's purposes).
  UniqueFd s(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss{};
  socklen_t len = family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  ss.ss_family = static_cast<sa_family_t>(family);
  if (family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  else
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr = in6addr_loopback;
  bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len);
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  return ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                  : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

class RelayTest : public ::testing::TestWithParam<int> {};

TEST_P(RelayTest, TcpBytesCrossBothWaysWithHalfClose) {
  const int family = GetParam();
  RelayAgent agent;
  asio::io_context io;
  Session s(io, agent);
  UnixVsockHost host(io, agent.path);
  VsockRelayConnector conn(io, host, family == AF_INET6 ? 6 : 4);
  ReverseServer server(family);

  std::vector<uint8_t> data(3u << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + (i >> 11));
  std::optional<portfwd::StreamSocket> sock;
  boost::system::error_code cec = asio::error::would_block;
  conn.async_connect(server.port, [&](boost::system::error_code ec, portfwd::StreamSocket so) {
    cec = ec;
    sock.emplace(std::move(so));
  });
  ASSERT_TRUE(testing::run_until(
      io, [&] { return cec != asio::error::would_block; }, 10s));
  ASSERT_FALSE(cec) << cec.message();

  // Write everything, then half-close: the service answers only after EOF.
  std::vector<uint8_t> back;
  bool wrote = false, read_done = false;
  asio::async_write(*sock, asio::buffer(data), [&](boost::system::error_code ec, size_t) {
    EXPECT_FALSE(ec) << ec.message();
    sock->shutdown(asio::socket_base::shutdown_send);
    wrote = true;
  });
  std::vector<uint8_t> buf(65536);
  std::function<void()> rd = [&] {
    sock->async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, size_t n) {
      if (ec) {
        read_done = true;
        return;
      }
      back.insert(back.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      rd();
    });
  };
  rd();
  ASSERT_TRUE(testing::run_until(
      io, [&] { return wrote && read_done; }, 30s));
  std::reverse(back.begin(), back.end());
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data);
  EXPECT_EQ(conn.stats().streams, 1u);
}

TEST_P(RelayTest, NothingListeningIsARefusal) {
  const int family = GetParam();
  RelayAgent agent;
  asio::io_context io;
  Session s(io, agent);
  UnixVsockHost host(io, agent.path);
  VsockRelayConnector conn(io, host, family == AF_INET6 ? 6 : 4);
  boost::system::error_code cec = asio::error::would_block;
  conn.async_connect(closed_port(family), [&](boost::system::error_code ec, portfwd::StreamSocket) { cec = ec; });
  ASSERT_TRUE(testing::run_until(
      io, [&] { return cec != asio::error::would_block; }, 10s));
  EXPECT_EQ(cec, boost::system::error_code(ECONNREFUSED, boost::system::system_category())) << cec.message();
  EXPECT_EQ(conn.stats().refused, 1u);
}

INSTANTIATE_TEST_SUITE_P(Families, RelayTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& p) { return p.param == AF_INET ? "Ipv4" : "Ipv6"; });

TEST(RelayAgentTest, UdpDatagramsRoundTripThroughTheChannel) {
  RelayAgent agent;
  asio::io_context io;
  Session s(io, agent);
  UnixVsockHost host(io, agent.path);
  VsockRelayDatagramChannel chan(io, host, 4);
  // A UDP echo service that prefixes "re:".
  UniqueFd u(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(u.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t al = sizeof a;
  getsockname(u.get(), reinterpret_cast<sockaddr*>(&a), &al);
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    timeval tv{0, 100'000};
    setsockopt(u.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stop) {
      char buf[70000];
      sockaddr_in from{};
      socklen_t fl = sizeof from;
      const ssize_t n = recvfrom(u.get(), buf + 3, sizeof buf - 3, 0, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n < 0) continue;  // an empty datagram is a datagram too
      std::memcpy(buf, "re:", 3);
      sendto(u.get(), buf, static_cast<size_t>(n) + 3, 0, reinterpret_cast<sockaddr*>(&from), fl);
    }
  });
  std::vector<std::string> replies;
  auto flow =
      chan.open_flow(ntohs(a.sin_port), [&](std::span<const uint8_t> p) { replies.emplace_back(p.begin(), p.end()); });
  ASSERT_TRUE(flow);
  const std::string big(60000, 'x');
  for (const std::string m : {"one", "two", ""})
    EXPECT_TRUE(chan.send_on_flow(*flow, std::span(reinterpret_cast<const uint8_t*>(m.data()), m.size())));
  EXPECT_TRUE(chan.send_on_flow(*flow, std::span(reinterpret_cast<const uint8_t*>(big.data()), big.size())));
  const bool got = testing::run_until(
      io, [&] { return replies.size() >= 4; }, 10s);
  stop = true;
  echo.join();
  ASSERT_TRUE(got) << replies.size() << " replies";
  EXPECT_EQ(replies[0], "re:one");
  EXPECT_EQ(replies[1], "re:two");
  EXPECT_EQ(replies[2], "re:");
  EXPECT_EQ(replies[3], "re:" + big);
  chan.close_flow(*flow);
  EXPECT_EQ(chan.flows(), 0u);
}

TEST(RelayAgentTest, MalformedRequestsEndTheirStreamAndTheAgentKeepsServing) {
  RelayAgent agent;
  asio::io_context io;
  Session s(io, agent);
  for (const std::vector<uint8_t>& bad : {std::vector<uint8_t>{'X', 'X', 1, 6, 4, 0, 80, 0},    // magic
                                          std::vector<uint8_t>{'C', 'W', 9, 6, 4, 0, 80, 0},    // version
                                          std::vector<uint8_t>{'C', 'W', 1, 1, 4, 0, 80, 0},    // protocol
                                          std::vector<uint8_t>{'C', 'W', 1, 6, 5, 0, 80, 0},    // family
                                          std::vector<uint8_t>{'C', 'W', 1, 6, 4, 0, 0, 0}}) {  // port 0
    UniqueFd c(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, agent.path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(write(c.get(), bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
    timeval tv{5, 0};
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16];
    EXPECT_EQ(read(c.get(), buf, sizeof buf), 0) << "the agent should close a stream with a bad request";
  }
  EXPECT_TRUE(agent.alive());
  // And a good one still works.
  UnixVsockHost host(io, agent.path);
  VsockRelayConnector conn(io, host, 4);
  ReverseServer server(AF_INET);
  boost::system::error_code cec = asio::error::would_block;
  conn.async_connect(server.port, [&](boost::system::error_code ec, portfwd::StreamSocket) { cec = ec; });
  ASSERT_TRUE(testing::run_until(
      io, [&] { return cec != asio::error::would_block; }, 10s));
  EXPECT_FALSE(cec) << cec.message();
}

TEST(RelayAgentTest, ListenersOfTheCommandAreReportedAndTheirEndToo) {
  if (system("command -v busybox >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "busybox missing (apt-get install busybox-static)";
  RelayAgent agent(/*ports=*/true);
  asio::io_context io;
  const uint16_t port = closed_port(AF_INET);
  std::vector<Listener> appeared, gone;
  AgentCallbacks cb;
  cb.on_listener_appeared = [&](const ListenerAppeared& l) {
    if (l.port == port) appeared.push_back(l);
  };
  cb.on_listener_gone = [&](const ListenerGone& l) {
    if (l.port == port) gone.push_back(l);
  };
  Session s(io, agent, std::move(cb));
  // busybox nc listens on 0.0.0.0:port; the agent traps its bind/listen.
  ASSERT_FALSE(
      s.session->run(agent::Run{{"busybox", "nc", "-l", "-p", std::to_string(port)}, {}, "", false, 0, 0, ""}));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::run_until(
      io, [&] { return !appeared.empty(); }, 10s))
      << "no ListenerAppeared for " << port;
  const auto detect = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(appeared[0].proto, IpProto::Tcp);
  // busybox nc listens on 0.0.0.0, or on a dual-stack [::] where IPv6 is up.
  EXPECT_TRUE(appeared[0].addr.family == 4 || (appeared[0].addr.family == 6 && !appeared[0].v6only));
  // The trap reports within milliseconds; the 1 s poll alone would take longer. Generous bound for a busy machine.
  EXPECT_LT(detect, 900ms) << "detection took " << std::chrono::duration_cast<std::chrono::milliseconds>(detect).count()
                           << " ms: was the trap installed?";
  s.session->signal(SIGTERM);
  ASSERT_TRUE(testing::run_until(
      io, [&] { return !gone.empty(); }, 5s))
      << "no ListenerGone after the server exited";
  EXPECT_EQ(gone[0].port, port);
}

}  // namespace
}  // namespace causeway::agent
