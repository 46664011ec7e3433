// Mirrored mode over the agent protocol, without a VM: AgentGuestApplier (the
// host side) sends MirrorApply frames that are decoded as the agent decodes
// them and converged by the agent's apply_mirror() over a fake guest (our own
// StateApplier interface); the report travels back encoded and decoded too.
// The macvlan applier itself runs in the e2e test (tests/e2e/vm_mirror_test.sh).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>

#include "cli/mirror_vm.hpp"
#include "vmm/agent/guest/mirror.hpp"

namespace causeway {
namespace {

namespace mirror = netstack::mirror;
using namespace std::chrono_literals;

// A guest whose managed state is what the operations made (the macvlan
// applier's bookkeeping, minus the kernel). `fail_links` refuses those links.
class FakeGuest final : public mirror::StateApplier {
 public:
  std::optional<std::string> read_managed(mirror::NetState& out) override {
    ++reads;
    out = state;
    return std::nullopt;
  }
  const std::set<std::string>& unmanaged_links() const override { return unmanaged; }
  mirror::ApplyReport apply(const std::vector<mirror::Op>& ops) override {
    mirror::ApplyReport r;
    for (const auto& op : ops) {
      if (op.kind == mirror::OpKind::kAddLink && fail_links.count(op.link.name)) {
        r.errors.push_back({op.describe(), "Operation not supported"});
        continue;
      }
      ++r.applied;
      switch (op.kind) {
        case mirror::OpKind::kAddLink: state.links.push_back(op.link); break;
        case mirror::OpKind::kSetLink:
          for (auto& l : state.links)
            if (l.name == op.link.name) l = op.link;
          break;
        case mirror::OpKind::kRemoveLink:
          std::erase_if(state.links, [&](const auto& l) { return l.name == op.link.name; });
          std::erase_if(state.addresses, [&](const auto& a) { return a.link == op.link.name; });
          std::erase_if(state.routes, [&](const auto& rt) { return rt.nexthops.front().link == op.link.name; });
          break;
        case mirror::OpKind::kAddAddress: state.addresses.push_back(op.address); break;
        case mirror::OpKind::kRemoveAddress:
          std::erase_if(state.addresses, [&](const auto& a) { return a.same_as(op.address); });
          break;
        case mirror::OpKind::kAddRoute: state.routes.push_back(op.route); break;
        case mirror::OpKind::kRemoveRoute:
          std::erase_if(state.routes, [&](const auto& rt) { return rt.same_as(op.route); });
          break;
      }
    }
    return r;
  }
  mirror::NetState state;
  std::set<std::string> unmanaged{"eth0", "lo"};
  std::set<std::string> fail_links;
  int reads = 0;
};

mirror::NetState host_plan(const std::set<std::string>& reserved, bool with_vpn) {
  mirror::NetState host;
  auto link = [](int ix, std::string name, uint32_t mtu) {
    mirror::HostLink l;
    l.ifindex = ix;
    l.name = std::move(name);
    l.mac = mirror::MacAddress{0x52, 0x54, 0, 0, 0, static_cast<uint8_t>(ix)};
    l.mtu = mtu;
    l.flags = 1 | 0x40;  // IFF_UP | IFF_RUNNING
    return l;
  };
  host.links = {link(2, "eth0", 1500), link(3, "lan0", 1500)};
  if (with_vpn) host.links.push_back(link(9, "vpn0", 1380));
  mirror::HostAddress a;
  a.link = "lan0";
  a.local = *mirror::IpAddress::parse("192.168.50.2");
  a.prefix_len = 24;
  host.addresses.push_back(a);
  mirror::HostRoute def;
  def.family = AF_INET;
  def.dst = *mirror::IpAddress::parse("0.0.0.0");
  def.nexthops = {{"lan0", mirror::IpAddress::parse("192.168.50.1"), 0}};
  host.routes.push_back(def);
  mirror::PlanOptions po;
  po.copy_mac = false;
  po.reserved_names = reserved;
  return mirror::plan(host, po).desired;
}

// The agent's end: decode what the host sent, converge, encode the report.
struct AgentEnd {
  FakeGuest guest;
  agent::Decoder from_host{agent::Direction::HostToGuest};
  agent::Decoder from_guest{agent::Direction::GuestToHost};
  std::vector<agent::MirrorApply> received;
  bool answer = true;

  std::optional<agent::MirrorReport> handle(const agent::MirrorApply& m) {
    std::vector<uint8_t> wire;
    if (auto ec = agent::encode_checked(m, wire)) ADD_FAILURE() << ec.message();
    from_host.feed(wire);
    auto got = from_host.next();
    if (!got) return std::nullopt;
    received.push_back(std::get<agent::MirrorApply>(*got));
    if (!answer) return std::nullopt;
    const agent::MirrorReport rep = agent::guest::apply_mirror(guest, received.back());
    std::vector<uint8_t> back;
    if (auto ec = agent::encode_checked(rep, back)) ADD_FAILURE() << ec.message();
    from_guest.feed(back);
    auto r = from_guest.next();
    if (!r) return std::nullopt;
    return std::get<agent::MirrorReport>(*r);
  }
};

class MirrorVm : public ::testing::Test {
 protected:
  MirrorVm()
      : applier_(
            io_,
            [this](const agent::MirrorApply& m) -> std::error_code {
              // Answer asynchronously, as a session does.
              if (auto rep = agent_.handle(m)) boost::asio::post(io_, [this, r = *rep] { applier_.on_report(r); });
              return {};
            },
            100ms) {}

  mirror::ConvergeResult converge(bool with_vpn) {
    std::optional<mirror::ConvergeResult> out;
    applier_.converge([with_vpn](const std::set<std::string>& reserved) { return host_plan(reserved, with_vpn); },
                      [&out](mirror::ConvergeResult r) { out = std::move(r); });
    io_.restart();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!out && std::chrono::steady_clock::now() < deadline) io_.run_one_for(10ms);
    EXPECT_TRUE(out.has_value());
    return out.value_or(mirror::ConvergeResult{});
  }

  boost::asio::io_context io_;
  AgentEnd agent_;
  cli::AgentGuestApplier applier_;
};

TEST_F(MirrorVm, ThePlanReachesTheGuestAndTheReportComesBack) {
  const auto r = converge(false);
  EXPECT_TRUE(r.converged);
  EXPECT_EQ(r.errors_total, 0u);
  // The host's eth0 is reserved for the guest's NAT link: it is mirrored as mir2.
  ASSERT_EQ(agent_.guest.state.links.size(), 2u);
  EXPECT_TRUE(agent_.guest.state.find_link("mir2"));
  const auto* lan = agent_.guest.state.find_link("lan0");
  ASSERT_TRUE(lan);
  EXPECT_EQ(lan->mac, (mirror::MacAddress{0x02, 0x43, 0x57, 0x4d, 0x00, 0x03}));
  EXPECT_EQ(agent_.guest.state.addresses.size(), 1u);
  EXPECT_EQ(agent_.guest.state.routes.size(), 1u);
  EXPECT_EQ(r.actual, agent_.guest.state);  // the host's view of the guest is the guest's
  EXPECT_EQ(r.changes, 4u);
  EXPECT_EQ(applier_.counters().reports, 1u);
}

TEST_F(MirrorVm, ALinkAddedAndRemovedOnTheHostFollowsInTheGuest) {
  converge(false);
  auto r = converge(true);
  EXPECT_TRUE(r.converged);
  ASSERT_TRUE(agent_.guest.state.find_link("vpn0"));
  EXPECT_EQ(agent_.guest.state.find_link("vpn0")->mtu, 1380u);
  r = converge(false);
  EXPECT_TRUE(r.converged);
  EXPECT_FALSE(agent_.guest.state.find_link("vpn0"));
  EXPECT_EQ(agent_.received.size(), 3u);
  EXPECT_EQ(agent_.received.back().generation, 3u);
}

TEST_F(MirrorVm, OnlyLinksThePlanAskedForAreOfferedForADataPath) {
  std::vector<std::string> offered;
  applier_.set_on_guest_state([&offered](const mirror::NetState& s) {
    offered.clear();
    for (const auto& l : s.links) offered.push_back(l.name);
  });
  agent_.answer = false;
  bool done = false;
  applier_.converge([](const std::set<std::string>& r) { return host_plan(r, false); },
                    [&done](mirror::ConvergeResult) { done = true; });
  ASSERT_EQ(agent_.received.size(), 1u);
  // A hostile report: the planned lan0, lan0's name with another MAC under mir2's
  // name, and a link of the guest's own making.
  agent::MirrorReport rep;
  rep.generation = agent_.received.back().generation;
  rep.converged = true;
  for (const auto& l : agent_.received.back().desired.links)
    if (l.name == "lan0") rep.actual.links.push_back(l);
  mirror::HostLink fake = rep.actual.links.front();
  fake.name = "mir2";
  rep.actual.links.push_back(fake);  // lan0's MAC, not mir2's
  fake.name = "rogue0";
  rep.actual.links.push_back(fake);
  applier_.on_report(rep);
  EXPECT_TRUE(done);
  EXPECT_EQ(offered, (std::vector<std::string>{"lan0"}));
}

TEST_F(MirrorVm, GuestErrorsComeBackPerItem) {
  agent_.guest.fail_links = {"lan0"};
  const auto r = converge(false);
  EXPECT_FALSE(r.converged);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors.front().op.find("lan0"), std::string::npos);
  EXPECT_EQ(r.errors.front().error, "Operation not supported");
}

TEST_F(MirrorVm, NoReportWithinTheTimeoutIsAnErrorAndALateReportIsDropped) {
  agent_.answer = false;
  const auto r = converge(false);
  EXPECT_FALSE(r.converged);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors.front().error.find("no report"), std::string::npos);
  EXPECT_EQ(applier_.counters().timeouts, 1u);
  agent::MirrorReport late;
  late.generation = 1;
  applier_.on_report(late);
  EXPECT_EQ(applier_.counters().stale_reports, 1u);
}

TEST_F(MirrorVm, TheEndOfTheSessionCompletesAnInFlightConvergeOnce) {
  agent_.answer = false;
  int calls = 0;
  applier_.converge([](const std::set<std::string>& r) { return host_plan(r, false); },
                    [&calls](mirror::ConvergeResult res) {
                      ++calls;
                      EXPECT_FALSE(res.errors.empty());
                    });
  applier_.on_session_end();
  applier_.on_session_end();
  io_.restart();
  io_.run_for(200ms);
  EXPECT_EQ(calls, 1);
  // After the end, a converge fails at once instead of waiting.
  applier_.converge([](const std::set<std::string>& r) { return host_plan(r, false); },
                    [&calls](mirror::ConvergeResult) { ++calls; });
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace causeway
