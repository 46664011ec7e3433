// The harness checked on its own, so a red integration test means causeway,
// not the harness: timeouts really kill, output is really captured, the host
// servers really answer, and a stopped process is really gone.
#include <signal.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/net_util.hpp"

namespace causeway::integration {
namespace {

TEST(Harness, RunCapturesStdoutStderrAndExitStatus) {
  const auto r = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.status, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(Harness, RunKillsAtTheTimeoutWithItsDescendants) {
  const auto start = Clock::now();
  // The grandchild holds the pipes open; only killing the group ends the run.
  const auto r = run({"sh", "-c", "sleep 30 & sleep 30"}, 200ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status, 128 + SIGKILL);
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST(Harness, RunReportsMissingProgramAs127) {
  const auto r = run({"/nonexistent/causeway-harness-test"});
  EXPECT_EQ(r.status, 127);
  EXPECT_NE(r.err.find("causeway-harness-test"), std::string::npos);
}

TEST(Harness, BackgroundProcessIsPolledAndStopped) {
  TempDir dir;
  BackgroundProcess p({"sh", "-c", "echo started; exec sleep 30"}, dir.path(), "sleeper");
  ASSERT_TRUE(p.wait_for_output("started", 5s)) << p.describe();
  EXPECT_TRUE(p.running());
  EXPECT_EQ(p.stop(SIGTERM), 128 + SIGTERM);
  EXPECT_FALSE(p.running());
}

TEST(Harness, WaitUntilGivesUpAtTheDeadline) {
  const auto start = Clock::now();
  EXPECT_FALSE(wait_until([] { return false; }, 50ms));
  EXPECT_GE(Clock::now() - start, 50ms);
  EXPECT_TRUE(wait_until([] { return true; }, 0ms));
}

class HarnessServers : public testing::TestWithParam<Family> {};

TEST_P(HarnessServers, TcpServerAnswersEchoRequests) {
  HostTcpServer server(loopback(GetParam()));
  const auto r = testtools::tcp_exchange(loopback(GetParam()), server.port(), "ping\n", 2s);
  EXPECT_EQ(r.reply, "echo:ping\n") << r.describe();
  EXPECT_EQ(server.connections(), 1);
}

TEST_P(HarnessServers, UdpServerEchoesDatagrams) {
  HostUdpEchoServer server(loopback(GetParam()));
  const auto r = testtools::udp_exchange(loopback(GetParam()), server.port(), "ping", 2s);
  EXPECT_EQ(r.reply, "echo:ping") << r.describe();
  EXPECT_EQ(server.datagrams(), 1);
}

TEST_P(HarnessServers, PickedPortIsFreeAndHolderMakesItBusy) {
  const uint16_t port = pick_free_port();
  {
    PortHolder holder(loopback(GetParam()), port, SOCK_STREAM);
    ASSERT_TRUE(holder.ok()) << holder.error();
    EXPECT_FALSE(PortHolder(loopback(GetParam()), port, SOCK_STREAM).ok());
  }
  const auto refused = testtools::tcp_exchange(loopback(GetParam()), port, "x\n", 2s);
  EXPECT_EQ(refused.error, ECONNREFUSED) << refused.describe();
}

INSTANTIATE_TEST_SUITE_P(Families, HarnessServers, testing::Values(Family::kIpv4, Family::kIpv6), family_param_name);

TEST(Harness, NetprobeServesAndSendsOnHostLoopback) {
  TempDir dir;
  const uint16_t port = pick_free_port();
  BackgroundProcess server({kNetprobe, "serve", "--bind", "::", "--tcp", std::to_string(port), "--udp",
                            std::to_string(port), "--lifetime", "10"},
                           dir.path(), "netprobe");
  ASSERT_TRUE(server.wait_for_output("ready", 5s)) << server.describe();
  for (const char* ip : {"127.0.0.1", "::1"}) {
    const auto tcp = run(probe_send("tcp", ip, port, "probe"));
    EXPECT_EQ(tcp.out, "echo:probe\n") << ip << ": " << tcp.describe();
    const auto udp = run(probe_send("udp", ip, port, "probe"));
    EXPECT_EQ(udp.out, "echo:probe") << ip << ": " << udp.describe();
  }
}

}  // namespace
}  // namespace causeway::integration
