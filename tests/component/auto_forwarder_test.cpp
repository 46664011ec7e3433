// AutoForwarder over real loopback sockets; the guest side is a fake of our
// own GuestConnector that reaches an in-process server.
#include "portfwd/auto_forwarder.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "tests/support/fakes.hpp"

namespace causeway::portfwd {
namespace {
namespace asio = boost::asio;
using causeway::testing::run_until;

uint16_t free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// "The guest": answers every connection with "guest:<port>" and closes.
class FakeGuest final : public GuestConnector {
 public:
  explicit FakeGuest(asio::io_context& io) : io_(io), acceptor_(io, {asio::ip::address_v4::loopback(), 0}) { accept(); }
  void async_connect(const GuestTarget& target, ConnectHandler handler) override {
    ++connects;
    last_port = target.port;
    auto sock = std::make_shared<StreamSocket>(io_);
    const asio::ip::tcp::endpoint ep = acceptor_.local_endpoint();
    const asio::generic::stream_protocol::endpoint gep(ep.data(), ep.size(), IPPROTO_TCP);
    sock->async_connect(gep, [sock, handler](boost::system::error_code ec) { handler(ec, std::move(*sock)); });
  }
  int connects = 0;
  uint16_t last_port = 0;

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      auto sp = std::make_shared<asio::ip::tcp::socket>(std::move(s));
      auto msg = std::make_shared<std::string>("guest:" + std::to_string(last_port));
      asio::async_write(*sp, asio::buffer(*msg), [sp, msg](boost::system::error_code, size_t) {
        boost::system::error_code ignored;
        sp->shutdown(asio::socket_base::shutdown_both, ignored);
      });
      accept();
    });
  }
  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
};

Listener tcp_any(uint16_t port) {
  Listener l;
  l.port = port;
  return l;
}

// Connects to 127.0.0.1:port from a thread and returns what it reads ("" if refused).
std::string fetch(asio::io_context& io, uint16_t port) {
  std::string out;
  bool done = false;
  std::thread t([&] {
    asio::io_context cio;
    asio::ip::tcp::socket c(cio);
    boost::system::error_code ec;
    c.connect({asio::ip::address_v4::loopback(), port}, ec);
    std::array<char, 64> buf{};
    while (!ec) {
      const size_t n = c.read_some(asio::buffer(buf), ec);
      out.append(buf.data(), ec ? 0 : n);
    }
    done = true;
  });
  run_until(io, [&] { return done; });
  t.join();
  return out;
}

class AutoForwarderTest : public ::testing::Test {
 protected:
  asio::io_context io;
  causeway::testing::FakeClock clock;
  FakeGuest guest{io};
  AutoForwarder af{io, clock, GuestSide{&guest, &guest, nullptr, nullptr}, PolicySettings{}};
};

TEST_F(AutoForwarderTest, OpensWhenTheGuestListensAndClosesWhenItStops) {
  const uint16_t port = free_port();
  af.on_listeners({tcp_any(port)});
  ASSERT_EQ(af.list().size(), 1u);
  EXPECT_TRUE(af.list()[0].active);
  EXPECT_EQ(fetch(io, port), "guest:" + std::to_string(port));
  EXPECT_EQ(af.list()[0].connections, 1u);
  af.on_listeners({});
  EXPECT_TRUE(af.list().empty());
  EXPECT_EQ(fetch(io, port), "") << "host port still open after the guest stopped listening";
  EXPECT_EQ(af.stats().opened, 1u);
  EXPECT_EQ(af.stats().closed, 1u);
}

TEST_F(AutoForwarderTest, TakenHostPortIsAConflictThatOpensOnceFreed) {
  const uint16_t port = free_port();
  asio::ip::tcp::acceptor squatter(io, {asio::ip::address_v4::loopback(), port});
  af.on_listeners({tcp_any(port)});
  ASSERT_EQ(af.list().size(), 1u);
  EXPECT_FALSE(af.list()[0].active);
  EXPECT_NE(af.list()[0].reason.find("in use"), std::string::npos) << af.list()[0].reason;
  EXPECT_EQ(af.stats().conflicts, 1u);
  squatter.close();
  ASSERT_TRUE(run_until(
      io, [&] { return !af.list().empty() && af.list()[0].active; }, AutoForwarder::kRetryInterval * 3));
  EXPECT_EQ(fetch(io, port), "guest:" + std::to_string(port));
  EXPECT_EQ(af.stats().conflicts, 1u) << "the conflict is counted once, not per retry";
}

TEST_F(AutoForwarderTest, ManualForwardOnTheSamePortWins) {
  const uint16_t port = free_port();
  PolicySettings s;
  s.manual.insert({L4::kTcp, Family::kIpv4, port});
  af.set_settings(s);
  af.on_listeners({tcp_any(port)});
  EXPECT_TRUE(af.list().empty());
  af.set_settings(PolicySettings{});
  EXPECT_EQ(af.list().size(), 1u) << "the forward opens once the manual one is gone";
}

TEST_F(AutoForwarderTest, RepeatedIdenticalSnapshotsChangeNothing) {
  const uint16_t port = free_port();
  for (int i = 0; i < 50; ++i) af.on_listeners({tcp_any(port)});
  EXPECT_EQ(af.stats().opened, 1u);
  EXPECT_EQ(af.stats().snapshots, 50u);
}

TEST(HostBindHint, PermissionDeniedNamesTheSysctlAndAManualForward) {
  const HostForward f{L4::kTcp, Family::kIpv4, 80, Family::kIpv4, false};
  const std::string hint = host_bind_hint(EACCES, f);
  EXPECT_NE(hint.find("sysctl net.ipv4.ip_unprivileged_port_start=80"), std::string::npos) << hint;
  EXPECT_NE(hint.find("-p 8080:80"), std::string::npos) << hint;
  HostForward u = f;
  u.proto = L4::kUdp;
  EXPECT_NE(host_bind_hint(EACCES, u).find("-p 8080:80/udp"), std::string::npos) << host_bind_hint(EACCES, u);
  EXPECT_EQ(host_bind_hint(EADDRINUSE, f), "") << "a taken port has no such fix";
}

// Child exit codes for the privileged-port check below.
enum ChildResult : int { kHinted = 0, kNoConflict = 1, kNoHint = 2, kNoIdentity = 3 };

// In a forked child without CAP_NET_BIND_SERVICE (uid 65534 when we are
// root): a guest listener on `port`, below the unprivileged start, must be a
// conflict whose hint names the sysctl and a manual forward.
[[noreturn]] void forward_privileged_port_unprivileged(uint16_t port) {
  if (::geteuid() == 0 && ::setresuid(65534, 65534, 65534) != 0) ::_exit(kNoIdentity);
  asio::io_context io;
  causeway::testing::FakeClock clock;
  FakeGuest guest{io};
  AutoForwarder af{io, clock, GuestSide{&guest, &guest, nullptr, nullptr}, PolicySettings{}};
  af.on_listeners({tcp_any(port)});
  const auto list = af.list();
  if (list.size() != 1 || list[0].active) ::_exit(kNoConflict);
  const std::string sysctl = "sysctl net.ipv4.ip_unprivileged_port_start=" + std::to_string(port);
  if (list[0].hint.find(sysctl) == std::string::npos) ::_exit(kNoHint);
  if (list[0].hint.find("-p 8080:" + std::to_string(port)) == std::string::npos) ::_exit(kNoHint);
  ::_exit(kHinted);
}

TEST(AutoForwarderPrivilegedPort, PermissionDeniedConflictCarriesTheFixInItsHint) {
  int start = 1024;
  std::ifstream("/proc/sys/net/ipv4/ip_unprivileged_port_start") >> start;
  if (start <= 1)
    GTEST_SKIP() << "net.ipv4.ip_unprivileged_port_start is " << start << ": every port is unprivileged here";
  const auto port = static_cast<uint16_t>(std::min(start, 1024) - 1);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) forward_privileged_port_unprivileged(port);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), kHinted)
      << "port " << port << ": 1 = not a conflict, 2 = conflict without the hint, 3 = could not drop root";
}

}  // namespace
}  // namespace causeway::portfwd
