// Host → guest: ports published with -p at startup, and forwards added and
// removed at run time through the control socket (`causeway ctl`).
//
// The guest runs causeway-netprobe serve (TCP 8080, UDP 8081); the host side
// is this process, talking the echo protocol over real loopback sockets.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/guest_server.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/net_util.hpp"

namespace causeway::integration {
namespace {

using json = nlohmann::json;
using testtools::tcp_exchange;
using testtools::udp_exchange;

Family other(Family f) { return f == Family::kIpv4 ? Family::kIpv6 : Family::kIpv4; }

// "127.0.0.1:PORT" / "[::1]:PORT": how causeway names a host endpoint.
std::string host_endpoint(Family f, uint16_t port) { return url_host(loopback(f)) + ":" + std::to_string(port); }

// ---- -p at startup -----------------------------------------------------------

using Publish = NetnsFamilyTest;

TEST_P(Publish, PublishedTcpPortIsReachableFromHost) {
  const uint16_t port = pick_free_port();
  GuestServer guest({"-p", std::to_string(port) + ":" + std::to_string(kGuestTcpPort)});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  const auto r = tcp_exchange(loopback(family()), port, "published-tcp\n", kGuestIoTimeout);
  EXPECT_EQ(r.reply, "echo:published-tcp\n") << r.describe();
}

TEST_P(Publish, PublishedTcpPortServesConnectionsOneAfterAnother) {
  const uint16_t port = pick_free_port();
  GuestServer guest({"-p", std::to_string(port) + ":" + std::to_string(kGuestTcpPort)});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  for (int i = 0; i < 5; ++i) {
    const std::string msg = "connection-" + std::to_string(i) + "\n";
    const auto r = tcp_exchange(loopback(family()), port, msg, kGuestIoTimeout);
    ASSERT_EQ(r.reply, "echo:" + msg) << "connection " << i << ": " << r.describe();
  }
}

// Issue 13, item 3: the guest's server closes first, so the guest keeps each connection's
// four-tuple in TIME-WAIT for 60 s. With four source ports every connection after the fourth
// reuses a tuple the guest still holds; each must open at once (RFC 6528 ISNs, and a reset for
// TIME-WAIT's old ACK), not wait out TIME-WAIT. 28k connections made the same happen with the
// default range (a -p forward fell from ~5,900 to 4 requests/s).
TEST_P(Publish, PublishedTcpPortSurvivesSourcePortReuseWhileTheGuestHoldsTimeWait) {
  const uint16_t port = pick_free_port();
  GuestServer guest(
      {"-p", std::to_string(port) + ":" + std::to_string(kGuestTcpPort), "--forward-source-ports", "40000-40003"});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  const auto start = Clock::now();
  for (int i = 0; i < 120; ++i) {
    const std::string msg = "reuse-" + std::to_string(i) + "\n";
    const auto r = tcp_exchange(loopback(family()), port, msg, 2s);
    ASSERT_EQ(r.reply, "echo:" + msg) << "connection " << i << " (source port " << 40000 + i % 4
                                      << ", its tuple in the guest's TIME-WAIT): " << r.describe();
  }
  // Before the fix roughly every other reuse stalled a full second or more (RTO, then TIME-WAIT).
  EXPECT_LT(Clock::now() - start, 20s);
}

TEST_P(Publish, PublishedTcpPortCarriesLargeRequestIntact) {
  const uint16_t port = pick_free_port();
  GuestServer guest({"-p", std::to_string(port) + ":" + std::to_string(kGuestTcpPort)});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  std::string big;
  for (int i = 0; big.size() < 60000; ++i) big += std::to_string(i) + ",";  // many segments, no repeats
  const auto r = tcp_exchange(loopback(family()), port, big + "\n", kGuestIoTimeout);
  ASSERT_TRUE(r.ok()) << r.describe().substr(0, 200);
  EXPECT_EQ(r.reply.size(), big.size() + 6);
  EXPECT_TRUE(r.reply == "echo:" + big + "\n") << "reply differs from the request";
}

TEST_P(Publish, PublishedUdpPortRoundTripsFromHost) {
  const uint16_t port = pick_free_port();
  GuestServer guest({"-p", std::to_string(port) + ":" + std::to_string(kGuestUdpPort) + "/udp"});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  const auto r = udp_exchange(loopback(family()), port, "published-udp", kGuestIoTimeout);
  EXPECT_EQ(r.reply, "echo:published-udp") << r.describe();
}

TEST_P(Publish, HostIpInSpecPublishesOnlyOnThatAddress) {
  const uint16_t port = pick_free_port();
  GuestServer guest({"-p", host_endpoint(family(), port) + ":" + std::to_string(kGuestTcpPort)});
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  const auto on_it = tcp_exchange(loopback(family()), port, "on-the-address\n", kGuestIoTimeout);
  EXPECT_EQ(on_it.reply, "echo:on-the-address\n") << on_it.describe();
  const auto elsewhere = tcp_exchange(loopback(other(family())), port, "elsewhere\n", kGuestIoTimeout);
  EXPECT_EQ(elsewhere.error, ECONNREFUSED) << elsewhere.describe();
}

INSTANTIATE_TEST_SUITE_P(Families, Publish, testing::Values(Family::kIpv4, Family::kIpv6), family_param_name);

// ---- control socket ------------------------------------------------------------

json parse_json(const RunResult& r) {
  const json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.describe();
  return j.is_discarded() ? json::object() : j;
}

// The forward-list entries for host endpoint `host`.
std::vector<json> listed(const json& list, const std::string& host) {
  std::vector<json> out;
  for (const auto& f : list.value("forwards", json::array()))
    if (f.value("host", "") == host) out.push_back(f);
  return out;
}

class ControlSocket : public NetnsFamilyTest {
 protected:
  void SetUp() override {
    NetnsFamilyTest::SetUp();
    if (IsSkipped()) return;
    guest_.emplace(std::vector<std::string>{}, GuestServer::Control::kSocket);
    ASSERT_TRUE(guest_->ready()) << guest_->process().describe();
  }

  RunResult ctl(const std::vector<std::string>& args) { return run(ctl_argv(guest_->control_socket(), args)); }

  // SPEC for the guest's TCP server on this test's family: "127.0.0.1:P:8080" / "[::1]:P:8080".
  std::string tcp_spec(uint16_t port) const {
    return host_endpoint(family(), port) + ":" + std::to_string(kGuestTcpPort);
  }

  std::optional<GuestServer> guest_;
};

TEST_P(ControlSocket, ForwardAddMakesGuestPortReachableFromHost) {
  const uint16_t port = pick_free_port();
  const auto add = ctl({"forward-add", tcp_spec(port)});
  ASSERT_EQ(add.status, 0) << add.describe();
  const auto r = tcp_exchange(loopback(family()), port, "added-at-runtime\n", kGuestIoTimeout);
  EXPECT_EQ(r.reply, "echo:added-at-runtime\n") << r.describe();
}

TEST_P(ControlSocket, ForwardListShowsAddedForward) {
  const uint16_t port = pick_free_port();
  ASSERT_EQ(ctl({"forward-add", tcp_spec(port)}).status, 0);
  const auto list = ctl({"forward-list"});
  ASSERT_EQ(list.status, 0) << list.describe();
  const auto entries = listed(parse_json(list), host_endpoint(family(), port));
  ASSERT_EQ(entries.size(), 1u) << list.out;
  EXPECT_EQ(entries[0].value("proto", ""), "tcp");
  EXPECT_EQ(entries[0].value("guest_port", 0), kGuestTcpPort);
}

TEST_P(ControlSocket, ForwardRemoveClosesHostPort) {
  const uint16_t port = pick_free_port();
  ASSERT_EQ(ctl({"forward-add", tcp_spec(port)}).status, 0);
  const auto before = tcp_exchange(loopback(family()), port, "before-removal\n", kGuestIoTimeout);
  ASSERT_EQ(before.reply, "echo:before-removal\n") << before.describe();

  const auto remove = ctl({"forward-remove", tcp_spec(port)});
  ASSERT_EQ(remove.status, 0) << remove.describe();
  testtools::Exchange after;
  EXPECT_TRUE(wait_until(
      [&] {
        after = tcp_exchange(loopback(family()), port, "after-removal\n", kGuestIoTimeout);
        return after.error == ECONNREFUSED;
      },
      2s))
      << "host port still open after forward-remove: " << after.describe();
  const auto list = ctl({"forward-list"});
  EXPECT_TRUE(listed(parse_json(list), host_endpoint(family(), port)).empty()) << list.out;
}

TEST_P(ControlSocket, UdpForwardAddedAtRuntimeRoundTrips) {
  const uint16_t port = pick_free_port();
  const auto add = ctl({"forward-add", host_endpoint(family(), port) + ":" + std::to_string(kGuestUdpPort) + "/udp"});
  ASSERT_EQ(add.status, 0) << add.describe();
  const auto r = udp_exchange(loopback(family()), port, "udp-added-at-runtime", kGuestIoTimeout);
  EXPECT_EQ(r.reply, "echo:udp-added-at-runtime") << r.describe();
}

TEST_P(ControlSocket, ForwardAddOnBusyHostPortFailsNamingThePort) {
  const uint16_t port = pick_free_port();
  PortHolder holder(loopback(family()), port, SOCK_STREAM);
  ASSERT_TRUE(holder.ok()) << holder.error();
  const auto add = ctl({"forward-add", tcp_spec(port)});
  EXPECT_EQ(add.status, 1) << add.describe();
  EXPECT_NE(add.err.find(host_endpoint(family(), port)), std::string::npos) << add.describe();
  EXPECT_NE(add.err.find("Address already in use"), std::string::npos) << add.describe();
  const auto list = ctl({"forward-list"});
  EXPECT_TRUE(listed(parse_json(list), host_endpoint(family(), port)).empty())
      << "a failed forward-add left an entry:\n"
      << list.out;
}

// Without HOSTIP a spec means both 127.0.0.1 and [::1]; if one is busy, neither is opened.
TEST_P(ControlSocket, ForwardAddForBothFamiliesIsAllOrNothing) {
  const uint16_t port = pick_free_port();
  PortHolder holder(loopback(other(family())), port, SOCK_STREAM);
  ASSERT_TRUE(holder.ok()) << holder.error();
  const auto add = ctl({"forward-add", std::to_string(port) + ":" + std::to_string(kGuestTcpPort)});
  EXPECT_EQ(add.status, 1) << add.describe();
  EXPECT_NE(add.err.find(host_endpoint(other(family()), port)), std::string::npos) << add.describe();
  const auto r = tcp_exchange(loopback(family()), port, "half-added\n", kGuestIoTimeout);
  EXPECT_EQ(r.error, ECONNREFUSED) << "the free family's port was left open: " << r.describe();
  const auto list = ctl({"forward-list"});
  EXPECT_TRUE(listed(parse_json(list), host_endpoint(family(), port)).empty()) << list.out;
}

TEST_P(ControlSocket, ForwardAddOfExistingForwardFails) {
  const uint16_t port = pick_free_port();
  ASSERT_EQ(ctl({"forward-add", tcp_spec(port)}).status, 0);
  const auto again = ctl({"forward-add", tcp_spec(port)});
  EXPECT_EQ(again.status, 1) << again.describe();
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.describe();
  // The first forward still works.
  const auto r = tcp_exchange(loopback(family()), port, "still-there\n", kGuestIoTimeout);
  EXPECT_EQ(r.reply, "echo:still-there\n") << r.describe();
}

INSTANTIATE_TEST_SUITE_P(Families, ControlSocket, testing::Values(Family::kIpv4, Family::kIpv6), family_param_name);

class ControlStats : public NetnsTest {};

TEST_F(ControlStats, StatsCountFramesInBothDirections) {
  GuestServer guest({}, GuestServer::Control::kSocket);
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  const auto stats = run(ctl_argv(guest.control_socket(), {"stats"}));
  ASSERT_EQ(stats.status, 0) << stats.describe();
  const json j = parse_json(stats);
  ASSERT_EQ(j.value("guests", json::array()).size(), 1u) << stats.out;
  const json engine = j["guests"][0].value("engine", json::object());
  // The guest has at least solicited a router by now (SLAAC completed before COMMAND ran).
  EXPECT_GT(engine.value("frames_in", 0), 0) << stats.out;
  EXPECT_GT(engine.value("frames_out", 0), 0) << stats.out;
}

TEST_F(ControlStats, StatusReportsOwnPidAndMtu) {
  GuestServer guest({"--mtu", "9000"}, GuestServer::Control::kSocket);
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  const auto status = run(ctl_argv(guest.control_socket(), {"status"}));
  ASSERT_EQ(status.status, 0) << status.describe();
  const json j = parse_json(status);
  EXPECT_EQ(j.value("pid", 0), guest.process().pid()) << status.out;
  EXPECT_EQ(j.value("mtu", 0), 9000) << status.out;
  EXPECT_EQ(j.value("guests", 0), 1) << status.out;
}

TEST(ControlClient, NoSuchSocketExitsWith1) {
  const auto r = run(ctl_argv("/nonexistent/causeway-test.sock", {"status"}));
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_FALSE(r.err.empty());
}

}  // namespace
}  // namespace causeway::integration
