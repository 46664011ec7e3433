// `causeway netns --attach PID|PATH`: serve a namespace someone else made
// (ip netns add, or a process's own), until SIGINT/SIGTERM.
//
// Needs root: `ip netns add` and `unshare --net` create namespaces directly.
// Every namespace is named after this process's PID and deleted in teardown.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <string>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/guest_server.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/named_netns.hpp"
#include "tests/support/net_util.hpp"

namespace causeway::integration {
namespace {

class Attach : public testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: creates namespaces with `ip netns add` and `unshare --net`";
    if (auto why = missing_tool("ip", "iproute2")) GTEST_SKIP() << *why;
  }
};

TEST_F(Attach, NamedNamespaceGetsTapAndReachesHostUntilSigterm) {
  NamedNetns ns("cwtest-" + std::to_string(::getpid()));
  ASSERT_TRUE(ns.ok()) << ns.created().describe();
  HostTcpServer server("127.0.0.1");
  TempDir dir;
  BackgroundProcess causeway({kCauseway, "netns", "--attach", ns.path()}, dir.path(), "causeway");

  RunResult addr;
  EXPECT_TRUE(wait_until(
      [&] {
        addr = run(ns.exec({"ip", "-br", "addr", "show", "dev", "tap0"}));
        return addr.out.find("10.0.2.15/24") != std::string::npos || !causeway.running();
      },
      kStartTimeout))
      << addr.describe();
  ASSERT_NE(addr.out.find("10.0.2.15/24"), std::string::npos) << addr.describe() << "\n" << causeway.describe();

  const auto r = run(ns.exec(probe_send("tcp", "10.0.2.2", server.port(), "from-attached-netns")));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "echo:from-attached-netns\n") << r.describe();

  ASSERT_TRUE(causeway.running()) << causeway.describe();
  EXPECT_EQ(causeway.stop(SIGTERM), 0) << causeway.describe();
}

TEST_F(Attach, SigintDetachesWithStatus0) {
  NamedNetns ns("cwtest-int-" + std::to_string(::getpid()));
  ASSERT_TRUE(ns.ok()) << ns.created().describe();
  HostTcpServer server("127.0.0.1");
  TempDir dir;
  BackgroundProcess causeway({kCauseway, "netns", "--attach", ns.path()}, dir.path(), "causeway");
  // Serving: the guest's request makes it through the engine to the host.
  RunResult r;
  ASSERT_TRUE(wait_until(
      [&] {
        r = run(ns.exec(probe_send("tcp", "10.0.2.2", server.port(), "serving?", 500ms)));
        return r.status == 0 || !causeway.running();
      },
      kStartTimeout))
      << r.describe() << "\n"
      << causeway.describe();
  ASSERT_TRUE(causeway.running()) << causeway.describe();
  EXPECT_EQ(causeway.stop(SIGINT), 0) << causeway.describe();
}

// Once tap0 in the namespace has its address, causeway has visibly started,
// so a signal from then on must detach cleanly (exit 0), not kill it. The
// window between configuring the tap and handling signals is short, so the
// test tries several times, each with a fresh namespace.
TEST_F(Attach, SigtermRightAfterTapIsConfiguredStillDetachesWithStatus0) {
  constexpr int kTries = 8;
  for (int i = 0; i < kTries; ++i) {
    NamedNetns ns("cwtest-early-" + std::to_string(::getpid()) + "-" + std::to_string(i));
    ASSERT_TRUE(ns.ok()) << ns.created().describe();
    TempDir dir;
    BackgroundProcess causeway({kCauseway, "netns", "--attach", ns.path()}, dir.path(), "causeway");
    ASSERT_TRUE(wait_until(
        [&] {
          return run(ns.exec({"ip", "-br", "addr", "show", "dev", "tap0"})).out.find("10.0.2.15/24") !=
                     std::string::npos ||
                 !causeway.running();
        },
        kStartTimeout, 1ms))
        << causeway.describe();
    ASSERT_EQ(causeway.stop(SIGTERM), 0) << "try " << i + 1 << " of " << kTries << ": " << causeway.describe();
  }
}

TEST_F(Attach, ProcessNamespaceByPidServesPublishedPort) {
  if (auto why = missing_tool("unshare", "util-linux")) GTEST_SKIP() << *why;
  TempDir dir;
  // A process in its own network namespace, with a server but no network yet.
  BackgroundProcess guest(
      {"unshare", "--net", "--", kNetprobe, "serve", "--tcp", std::to_string(kGuestTcpPort), "--lifetime", "40"},
      dir.path(), "guest");
  ASSERT_TRUE(guest.wait_for_output("ready", kStartTimeout)) << guest.describe();

  const uint16_t port = pick_free_port();
  BackgroundProcess causeway({kCauseway, "netns", "--attach", std::to_string(guest.pid()), "-p",
                              "127.0.0.1:" + std::to_string(port) + ":" + std::to_string(kGuestTcpPort)},
                             dir.path(), "causeway");
  testtools::Exchange r;
  EXPECT_TRUE(wait_until(
      [&] {
        r = testtools::tcp_exchange("127.0.0.1", port, "into-pid-netns\n", kGuestIoTimeout);
        return r.ok() || !causeway.running();
      },
      kStartTimeout));
  EXPECT_EQ(r.reply, "echo:into-pid-netns\n") << r.describe() << "\n" << causeway.describe();
  EXPECT_EQ(causeway.stop(SIGTERM), 0) << causeway.describe();
}

}  // namespace
}  // namespace causeway::integration
