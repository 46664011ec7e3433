// `causeway netns -- COMMAND`: what COMMAND finds when it starts (tap0's
// addresses and routes, SLAAC, MTU, resolv.conf, a DHCP lease from the
// engine), how its exit status comes back, and how bad input is refused.
//
// Every test reads the namespace from inside, with the real tools (ip -j,
// busybox udhcpc) run as COMMAND, and asserts on their output.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/guest_server.hpp"
#include "tests/integration/harness.hpp"

namespace causeway::integration {
namespace {

using json = nlohmann::json;

// Runs COMMAND in a fresh namespace and parses its stdout as JSON (ip -j).
json ip_json_in_netns(const std::vector<std::string>& options, const std::vector<std::string>& ip_args) {
  std::vector<std::string> command{"ip", "-j"};
  command.insert(command.end(), ip_args.begin(), ip_args.end());
  const auto r = run(netns_argv(options, command));
  EXPECT_EQ(r.status, 0) << r.describe();
  const json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "ip printed no JSON:\n" << r.describe();
  return j.is_discarded() ? json::array() : j;
}

// The addresses of one interface in `ip -j addr` output. (ip prints an empty
// object for each address a "scope" filter left out; those are skipped.)
json addr_info(const json& links, std::string_view ifname) {
  json out = json::array();
  for (const auto& link : links) {
    if (link.value("ifname", "") != ifname) continue;
    for (const auto& a : link.value("addr_info", json::array()))
      if (a.contains("local")) out.push_back(a);
  }
  return out;
}

class NetnsSetup : public NetnsTest {
 protected:
  void SetUp() override {
    NetnsTest::SetUp();
    if (IsSkipped()) return;
    if (auto why = missing_tool("ip", "iproute2")) GTEST_SKIP() << *why;
  }
};

TEST_F(NetnsSetup, TapHasGuestAddressWithPrefix24) {
  const json links = ip_json_in_netns({}, {"addr", "show", "dev", "tap0"});
  bool found = false;
  for (const auto& a : addr_info(links, "tap0")) {
    if (a.value("family", "") == "inet" && a.value("local", "") == "10.0.2.15") {
      found = true;
      EXPECT_EQ(a.value("prefixlen", 0), 24) << a.dump();
    }
  }
  EXPECT_TRUE(found) << "no 10.0.2.15 on tap0: " << links.dump();
}

TEST_F(NetnsSetup, DefaultRouteGoesViaGatewayOnTap) {
  const json routes = ip_json_in_netns({}, {"-4", "route", "show", "default"});
  ASSERT_EQ(routes.size(), 1u) << routes.dump();
  EXPECT_EQ(routes[0].value("gateway", ""), "10.0.2.2") << routes.dump();
  EXPECT_EQ(routes[0].value("dev", ""), "tap0") << routes.dump();
}

TEST_F(NetnsSetup, Ipv6SlaacAddressExistsWhenCommandStarts) {
  const json links = ip_json_in_netns({}, {"-6", "addr", "show", "dev", "tap0", "scope", "global"});
  const json global = addr_info(links, "tap0");
  ASSERT_FALSE(global.empty()) << "no global IPv6 address on tap0 when COMMAND ran: " << links.dump();
  for (const auto& a : global) {
    EXPECT_EQ(a.value("local", "").rfind("fd00::", 0), 0u) << "not in fd00::/64: " << a.dump();
    EXPECT_EQ(a.value("prefixlen", 0), 64) << a.dump();
  }
}

TEST_F(NetnsSetup, Ipv6DefaultRouteGoesViaRouterLinkLocalWhenCommandStarts) {
  const json routes = ip_json_in_netns({}, {"-6", "route", "show", "default"});
  ASSERT_EQ(routes.size(), 1u) << routes.dump();
  EXPECT_EQ(routes[0].value("gateway", ""), "fe80::2") << routes.dump();
  EXPECT_EQ(routes[0].value("dev", ""), "tap0") << routes.dump();
}

TEST_F(NetnsSetup, NoIpv6LeavesTapWithoutIpv6Addresses) {
  const json links = ip_json_in_netns({"--no-ipv6"}, {"-6", "addr", "show", "dev", "tap0"});
  EXPECT_TRUE(addr_info(links, "tap0").empty()) << links.dump();
}

TEST_F(NetnsSetup, TapMtuDefaultsTo65520AndFollowsMtuOption) {
  const json by_default = ip_json_in_netns({}, {"link", "show", "dev", "tap0"});
  ASSERT_EQ(by_default.size(), 1u) << by_default.dump();
  EXPECT_EQ(by_default[0].value("mtu", 0), 65520);
  const json with_option = ip_json_in_netns({"--mtu", "1500"}, {"link", "show", "dev", "tap0"});
  ASSERT_EQ(with_option.size(), 1u) << with_option.dump();
  EXPECT_EQ(with_option[0].value("mtu", 0), 1500);
}

TEST_F(NetnsSetup, LoopbackIsUpInsideNamespace) {
  const json links = ip_json_in_netns({}, {"link", "show", "dev", "lo"});
  ASSERT_EQ(links.size(), 1u) << links.dump();
  const auto flags = links[0].value("flags", json::array());
  EXPECT_NE(std::find(flags.begin(), flags.end(), "UP"), flags.end()) << links.dump();
}

// causeway raises its own soft open-file limit to the hard limit (so its
// accept loops rarely meet EMFILE); COMMAND must still start with the limit
// it would have had.
TEST_F(NetnsSetup, CommandKeepsTheOpenFileLimitCausewayWasGiven) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max <= 512) GTEST_SKIP() << "hard open-file limit too low";
  rlimit low = saved;
  low.rlim_cur = 512;  // inherited by causeway at fork
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  const auto r = run(netns_argv({}, {"sh", "-c", "ulimit -Sn"}));
  ::setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "512\n") << r.describe();
}

using ResolvConf = NetnsTest;

TEST_F(ResolvConf, CommandSeesPrivateResolvConfWithEngineNameservers) {
  const std::string host_before = read_file("/etc/resolv.conf");
  const auto r = run(netns_argv({}, {"cat", "/etc/resolv.conf"}));
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("nameserver 10.0.2.3\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("fd00::3"), std::string::npos) << "fd00::3 serves UDP only: not listed: " << r.out;
  EXPECT_EQ(read_file("/etc/resolv.conf"), host_before) << "the host's /etc/resolv.conf changed";
}

// ---- DHCP --------------------------------------------------------------------

using Dhcp = NetnsTest;

TEST_F(Dhcp, BusyboxUdhcpcGetsGuestAddressFromEngine) {
  if (auto why = missing_tool("busybox", "busybox")) GTEST_SKIP() << *why;
  TempDir dir;
  // udhcpc reports the lease through a script; this one only prints it (the
  // address is already configured, and "deconfig" must not remove it).
  const auto script = dir.path() / "lease.sh";
  {
    std::ofstream f(script);
    f << "#!/bin/sh\n"
         "[ \"$1\" = bound ] && echo \"lease ip=$ip mask=$mask router=$router dns=$dns serverid=$serverid\"\n"
         "exit 0\n";
  }
  ::chmod(script.c_str(), 0755);
  const auto r = run(netns_argv({}, {"busybox", "udhcpc", "-i", "tap0", "-n", "-q", "-f", "-s", script.string()}));
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("lease ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3 serverid=10.0.2.2"), std::string::npos)
      << r.describe();
}

// ---- exit status -------------------------------------------------------------

using ExitStatus = NetnsTest;

TEST_F(ExitStatus, CommandExitCodeIsPropagated) {
  const auto r = run(netns_argv({}, {"sh", "-c", "exit 7"}));
  EXPECT_EQ(r.status, 7) << r.describe();
}

TEST_F(ExitStatus, CommandKilledBySignalGives128PlusSignal) {
  const auto r = run(netns_argv({}, {"sh", "-c", "kill -TERM $$"}));
  EXPECT_EQ(r.status, 128 + SIGTERM) << r.describe();
}

TEST_F(ExitStatus, SigtermIsPassedToCommandAndItsStatusReturned) {
  GuestServer guest({});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  EXPECT_EQ(guest.process().stop(SIGTERM), 128 + SIGTERM) << guest.process().describe();
}

TEST_F(ExitStatus, MissingCommandExitsWith127) {
  const auto r = run(netns_argv({}, {"/nonexistent/causeway-test-no-such-command"}));
  EXPECT_EQ(r.status, 127) << r.describe();
  EXPECT_NE(r.err.find("causeway-test-no-such-command"), std::string::npos) << r.describe();
}

// ---- bad input ---------------------------------------------------------------

size_t line_count(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

// These fail before any namespace exists, so they need no privileges.
TEST(BadInput, UnknownFlagExitsWith2AndOneLineOnStderr) {
  const auto r = run({kCauseway, "netns", "--no-such-flag", "--", "true"});
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.describe();
  EXPECT_NE(r.err.find("--no-such-flag"), std::string::npos) << r.describe();
}

TEST(BadInput, AttachToNonexistentPidExitsWith1NamingIt) {
  // A PID nobody has: counting down from pid_max finds one at once.
  std::string pid;
  for (long p = std::stol(read_file("/proc/sys/kernel/pid_max")) - 1; p > 1; --p) {
    if (!std::filesystem::exists("/proc/" + std::to_string(p))) {
      pid = std::to_string(p);
      break;
    }
  }
  ASSERT_FALSE(pid.empty());
  const auto r = run({kCauseway, "netns", "--attach", pid});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find(pid), std::string::npos) << r.describe();
}

class BadPublishSpec : public testing::TestWithParam<const char*> {};

TEST_P(BadPublishSpec, ExitsWith2AndOneLineNamingTheSpec) {
  const auto r = run({kCauseway, "netns", "-p", GetParam(), "--", "true"});
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_EQ(line_count(r.err), 1u) << r.describe();
  EXPECT_NE(r.err.find(GetParam()), std::string::npos) << r.describe();
}

INSTANTIATE_TEST_SUITE_P(Specs, BadPublishSpec,
                         testing::Values("8080", "8080:", "0:80", "70000:80", "8080:80/sctp", "a:b", "1.2.3:80:80:1",
                                         "[::1:8080:80", "not-an-ip:8080:80"),
                         [](const testing::TestParamInfo<const char*>& spec) {
                           return "Spec" + std::to_string(spec.index);
                         });

using BadStartup = NetnsTest;

TEST_F(BadStartup, PublishedHostPortInUseFailsAtStartupNamingThePort) {
  const uint16_t port = pick_free_port();
  PortHolder holder("127.0.0.1", port, SOCK_STREAM);
  ASSERT_TRUE(holder.ok()) << holder.error();
  const auto r = run(netns_argv({"-p", std::to_string(port) + ":80"}, {"sh", "-c", "echo command-ran"}));
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find(std::to_string(port)), std::string::npos) << r.describe();
  EXPECT_EQ(r.out.find("command-ran"), std::string::npos) << "COMMAND ran although startup failed";
}

}  // namespace
}  // namespace causeway::integration
