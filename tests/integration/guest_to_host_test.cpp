// The guest reaching the host: ping to the gateway, and TCP/UDP to servers on
// the host's loopback through the gateway alias (10.0.2.2 → 127.0.0.1,
// fd00::2 → ::1), as root and as an unprivileged user, and the same traffic
// refused under --no-host-loopback; and a guest that writes its own SYN at
// the host's loopback address itself (AF_PACKET on tap0, issue 13) reset,
// whatever --no-host-loopback says.
//
// Host servers live in this process (harness.hpp) and count what reaches
// them, so a test can tell "refused by causeway" from "never tried".
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"

namespace causeway::integration {
namespace {

using GuestToHost = NetnsFamilyTest;

// causeway-netprobe send failed on the network (exit 1: an error such as
// "Network is unreachable"; 3: no answer in time), not on its arguments or
// because causeway could not start the namespace.
bool is_network_failure(const RunResult& r) {
  return (r.status == 1 || r.status == 3) && r.out.empty() && r.err.find("causeway-netprobe: ") != std::string::npos;
}

TEST_P(GuestToHost, GuestPingsGateway) {
  if (auto why = missing_tool("ping", "iputils-ping")) GTEST_SKIP() << *why;
  const std::string flag = family() == Family::kIpv4 ? "-4" : "-6";
  const auto r = run(netns_argv({}, {"ping", flag, "-c1", "-W2", std::string(guest_gateway(family()))}));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("1 received"), std::string::npos) << r.describe();
}

TEST_P(GuestToHost, CurlReachesHostLoopbackHttpServerThroughGateway) {
  if (auto why = missing_tool("curl", "curl")) GTEST_SKIP() << *why;
  HostTcpServer server(loopback(family()));
  const std::string url =
      "http://" + url_host(guest_gateway(family())) + ":" + std::to_string(server.port()) + "/causeway-test";
  const auto r = run(netns_argv({}, {"curl", "--silent", "--show-error", "--max-time", "5", url}));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, HostTcpServer::kHttpBody) << r.describe();
  EXPECT_EQ(server.connections(), 1);
}

TEST_P(GuestToHost, TcpRequestIsAnsweredByHostLoopbackServer) {
  HostTcpServer server(loopback(family()));
  const auto r = run(netns_argv({}, probe_send("tcp", guest_gateway(family()), server.port(), "tcp-to-host")));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "echo:tcp-to-host\n") << r.describe();
}

TEST_P(GuestToHost, TcpCarriesLargeRequestToHostIntact) {
  HostTcpServer server(loopback(family()));
  std::string big;
  for (int i = 0; big.size() < 60000; ++i) big += std::to_string(i) + ",";  // many segments, no repeats
  const auto r = run(netns_argv({}, probe_send("tcp", guest_gateway(family()), server.port(), big)));
  ASSERT_EQ(r.status, 0) << r.describe().substr(0, 500);
  EXPECT_EQ(r.out.size(), big.size() + 6);
  EXPECT_TRUE(r.out == "echo:" + big + "\n") << "reply differs from the request";
}

TEST_P(GuestToHost, UdpDatagramIsEchoedByHostLoopbackServer) {
  HostUdpEchoServer server(loopback(family()));
  const auto r = run(netns_argv({}, probe_send("udp", guest_gateway(family()), server.port(), "udp-to-host")));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "echo:udp-to-host") << r.describe();
  EXPECT_EQ(server.datagrams(), 1);
}

TEST_P(GuestToHost, NoHostLoopbackKeepsTcpFromHostLoopbackServer) {
  HostTcpServer server(loopback(family()));
  const auto r = run(netns_argv({"--no-host-loopback"},
                                probe_send("tcp", guest_gateway(family()), server.port(), "must-not-arrive", 1500ms)));
  EXPECT_TRUE(is_network_failure(r)) << "expected the guest's connection to fail:\n" << r.describe();
  EXPECT_EQ(server.connections(), 0);
}

TEST_P(GuestToHost, NoHostLoopbackKeepsUdpFromHostLoopbackServer) {
  HostUdpEchoServer server(loopback(family()));
  const auto r = run(netns_argv({"--no-host-loopback"},
                                probe_send("udp", guest_gateway(family()), server.port(), "must-not-arrive", 1000ms)));
  EXPECT_TRUE(is_network_failure(r)) << "expected no answer:\n" << r.describe();
  EXPECT_EQ(server.datagrams(), 0);
}

// Issue 13: the gateway rule is not the only gate. A process in the namespace writes a TCP SYN
// to 127.0.0.1:P / [::1]:P straight onto tap0 (to the gateway's MAC, bypassing its own routing);
// with a host listener on that port, the SYN must be answered with RST, the listener must see
// nothing, and `ctl stats` must count dropped.forbidden_destination.
TEST_P(GuestToHost, RawSynToHostLoopbackAddressIsResetEvenWithNoHostLoopback) {
  HostTcpServer server(loopback(family()));
  TempDir dir;
  const std::string sock = (dir.path() / "ctl").string();
  const std::string mac = family() == Family::kIpv4 ? "52:55:0a:00:02:02" : "52:56:00:00:00:02";
  const std::string probe = kNetprobe + " raw-syn tap0 auto " + std::string(loopback(family())) + " " +
                            std::to_string(server.port()) + " " + mac + " --timeout-ms 3000";
  for (const bool no_host_loopback : {true, false}) {
    std::vector<std::string> opts{"--control", sock};
    if (no_host_loopback) opts.push_back("--no-host-loopback");
    const auto r = run(netns_argv(opts, {"sh", "-c", probe + " && " + kCauseway + " ctl " + sock + " stats"}), 15s);
    ASSERT_EQ(r.status, 0) << r.describe();
    const auto nl = r.out.find('\n');
    ASSERT_NE(nl, std::string::npos) << r.describe();
    EXPECT_EQ(r.out.substr(0, nl), "rst") << "the SYN to the host's loopback was not reset:\n" << r.describe();
    const auto stats = nlohmann::json::parse(r.out.substr(nl + 1), nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(stats.is_object() && stats.contains("guests") && !stats["guests"].empty()) << r.describe();
    const auto& engine = stats["guests"][0]["engine"];
    EXPECT_GE(engine["dropped"].value("forbidden_destination", 0), 1) << engine.dump();
    EXPECT_GE(engine["forbidden_destination"].value("loopback", 0), 1) << engine.dump();
  }
  EXPECT_EQ(server.connections(), 0) << "the host's loopback listener accepted the guest's connection";
}

// Without privileges causeway builds the network namespace inside a user
// namespace (as slirp4netns does); the data path must not care.
TEST_P(GuestToHost, UnprivilegedUserReachesHostLoopbackServerThroughGateway) {
  if (auto why = nobody_netns_unavailable()) GTEST_SKIP() << *why;
  HostTcpServer server(loopback(family()));
  const auto r =
      run(as_nobody(netns_argv({}, probe_send("tcp", guest_gateway(family()), server.port(), "from-unprivileged"))));
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "echo:from-unprivileged\n") << r.describe();
  EXPECT_EQ(server.connections(), 1);
}

INSTANTIATE_TEST_SUITE_P(Families, GuestToHost, testing::Values(Family::kIpv4, Family::kIpv6), family_param_name);

}  // namespace
}  // namespace causeway::integration
