// Mirrored mode's control plane (netstack/mirror/) against the real kernel:
// a "host" namespace with veth links (its peers in a "sink" namespace that
// forwards nothing), the host view reading it, the syncer applying into a
// "guest" namespace — no mocks. The guest is checked with `ip -j` (parsed
// with nlohmann-json) against the plan made from the host view's state;
// changes are timed with a netlink poll of the guest from this thread.
//
// Needs root (ip netns add, veth). Every namespace is named after this
// process's PID and deleted in teardown; every wait is bounded.
#include <linux/rtnetlink.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <future>
#include <gtest/gtest.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "netstack/mirror/apply.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/plan.hpp"
#include "netstack/mirror/syncer.hpp"
#include "netstack/netns_sockets.hpp"
#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/named_netns.hpp"

namespace causeway::integration {
namespace {

using json = nlohmann::json;
namespace mirror = netstack::mirror;

constexpr Ms kSyncBound = 1000ms;  // the promise: a host change reaches the guest within 1 s

json ip_json(const NamedNetns& ns, std::vector<std::string> args) {
  args.insert(args.begin(), "-j");
  const auto r = run(ns.ip(args));
  EXPECT_EQ(r.status, 0) << r.describe();
  json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << r.describe();
  return j.is_discarded() ? json::array() : j;
}

std::string table_name(uint32_t t) {
  if (t == mirror::kTableMain) return "main";
  if (t == mirror::kTableLocal) return "local";
  return std::to_string(t);
}

// One comparable line per link, address and route: what `ip -j` shows and the plan says.
struct Lines {
  std::set<std::string> links, addresses, routes;
};

Lines lines_from_plan(const mirror::NetState& s) {
  Lines out;
  for (const auto& l : s.links) {
    const auto& m = *l.mac;
    char mac[18];
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    out.links.insert(l.name + " mtu " + std::to_string(l.mtu) + " " + mac + " UP");
  }
  for (const auto& a : s.addresses)
    out.addresses.insert(a.link + " " + a.local.to_string() + "/" + std::to_string(a.prefix_len));
  for (const auto& r : s.routes) {
    for (const auto& nh : r.nexthops) {
      out.routes.insert(r.dst.to_string() + "/" + std::to_string(r.dst_len) + " dev " + nh.link + " via " +
                        (nh.gateway ? nh.gateway->to_string() : "-") + " metric " + std::to_string(r.priority) +
                        " table " + table_name(r.table));
    }
  }
  return out;
}

Lines lines_from_ip(const NamedNetns& guest, const std::set<std::string>& managed) {
  Lines out;
  for (const auto& l : ip_json(guest, {"link", "show"})) {
    const std::string name = l.value("ifname", "");
    if (!managed.count(name)) continue;
    const auto flags = l.value("flags", json::array());
    const bool up = std::find(flags.begin(), flags.end(), "UP") != flags.end();
    out.links.insert(name + " mtu " + std::to_string(l.value("mtu", 0)) + " " + l.value("address", "") +
                     (up ? " UP" : " DOWN"));
  }
  for (const auto& l : ip_json(guest, {"addr", "show"})) {
    const std::string name = l.value("ifname", "");
    if (!managed.count(name)) continue;
    for (const auto& a : l.value("addr_info", json::array()))
      if (a.contains("local"))
        out.addresses.insert(name + " " + a.value("local", "") + "/" + std::to_string(a.value("prefixlen", 0)));
  }
  for (const char* family : {"-4", "-6"}) {
    for (const auto& r : ip_json(guest, {family, "route", "show", "table", "all"})) {
      const std::string dev = r.value("dev", "");
      const std::string table = r.value("table", "main");
      if (!managed.count(dev) || table == "local" || r.value("type", "unicast") != "unicast") continue;
      std::string dst = r.value("dst", "");
      if (dst == "default") dst = std::string(family) == "-4" ? "0.0.0.0/0" : "::/0";
      if (dst.find('/') == std::string::npos) dst += std::string(family) == "-4" ? "/32" : "/128";
      out.routes.insert(dst + " dev " + dev + " via " + r.value("gateway", "-") + " metric " +
                        std::to_string(r.value("metric", 0)) + " table " + table);
    }
  }
  return out;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (auto& x : s) out += "  " + x + "\n";
  return out;
}

class MirrorSync : public testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: builds host, guest and sink namespaces with ip netns and veth";
    if (auto why = missing_tool("ip", "iproute2")) GTEST_SKIP() << *why;
    const std::string id = std::to_string(::getpid());
    host_ = std::make_unique<NamedNetns>("cwm-host-" + id);
    guest_ = std::make_unique<NamedNetns>("cwm-guest-" + id);
    sink_ = std::make_unique<NamedNetns>("cwm-sink-" + id);
    for (auto* ns : {host_.get(), guest_.get(), sink_.get()}) ASSERT_TRUE(ns->ok()) << ns->created().describe();
    // Link-local addresses preferred at once, so the host's state is settled when the test starts.
    must(host_->exec({"sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"}));
    // The LAN: IPv4 and IPv6, default routes with metrics, and a second routing table.
    must(host_->ip({"link", "add", "lan0", "type", "veth", "peer", "name", "lanpeer0", "netns", sink_->name()}));
    must(host_->ip({"link", "set", "lan0", "address", "52:54:00:aa:bb:01", "mtu", "1500"}));
    must(sink_->ip({"link", "set", "lanpeer0", "up"}));
    must(host_->ip({"link", "set", "lan0", "up"}));
    must(host_->ip({"addr", "add", "192.0.2.10/24", "dev", "lan0"}));
    must(host_->ip({"addr", "add", "2001:db8:2::10/64", "dev", "lan0", "nodad"}));
    must(host_->ip({"route", "add", "default", "via", "192.0.2.1", "dev", "lan0", "metric", "100"}));
    must(host_->ip({"-6", "route", "add", "default", "via", "2001:db8:2::1", "dev", "lan0", "metric", "100"}));
    must(host_->ip(
        {"route", "add", "198.18.0.0/16", "via", "192.0.2.254", "dev", "lan0", "metric", "50", "table", "100"}));
  }

  void TearDown() override {
    if (io_thread_.joinable()) {
      io_.stop();
      io_thread_.join();
    }
    syncer_.reset();
    applier_.reset();
    view_.reset();
    poll_.reset();
    host_factory_.reset();
    guest_factory_.reset();
  }

  static void must(const std::vector<std::string>& argv) {
    const auto r = run(argv);
    ASSERT_EQ(r.status, 0) << r.describe();
  }

  // A VPN-like link (veth, its own subnet, MTU 1380), left down.
  void add_vpn_link_down() {
    must(host_->ip({"link", "add", "vpn0", "type", "veth", "peer", "name", "vpnpeer0", "netns", sink_->name()}));
    must(sink_->ip({"link", "set", "vpnpeer0", "up"}));
    must(host_->ip({"link", "set", "vpn0", "mtu", "1380"}));
    must(host_->ip({"addr", "add", "198.51.100.2/24", "dev", "vpn0"}));
  }

  void start_mirror(int notify_rcvbuf = mirror::kNotifyRcvbuf) {
    // Forks first (the factories' helpers), threads last.
    auto hf = netstack::NamespaceSocketFactory::start(host_->path(), "");
    ASSERT_TRUE(hf.has_value()) << hf.error();
    host_factory_ = std::move(*hf);
    auto gf = netstack::NamespaceSocketFactory::start(guest_->path(), "");
    ASSERT_TRUE(gf.has_value()) << gf.error();
    guest_factory_ = std::move(*gf);
    auto* g = guest_factory_.get();
    auto poll = mirror::open_route_socket([g](int f, int t, int p) { return g->create(f, t, p); });
    ASSERT_TRUE(poll.has_value()) << poll.error();
    poll_ = std::move(*poll);
    auto* h = host_factory_.get();
    view_ = std::make_unique<mirror::HostView>(
        io_, [h](int f, int t, int p) { return h->create(f, t, p); }, mirror::kDebounce, notify_rcvbuf);
    auto applier = mirror::NetlinkGuestApplier::open(*guest_factory_);
    ASSERT_TRUE(applier.has_value()) << applier.error();
    applier_ = std::move(*applier);
    syncer_ = std::make_unique<mirror::MirrorSyncer>(io_, *view_, *applier_, mirror::PlanOptions{});
    auto started = syncer_->start();
    ASSERT_TRUE(started.has_value()) << started.error();
    io_thread_ = std::thread([this] {
      auto work = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }

  // Runs `f` on the syncer's thread and returns its result.
  template <class F>
  auto on_io(F f) {
    std::promise<decltype(f())> done;
    boost::asio::post(io_, [&] { done.set_value(f()); });
    return done.get_future().get();
  }

  mirror::Plan expected() {
    return on_io([this] {
      mirror::PlanOptions o;
      o.reserved_names = applier_->unmanaged_links();
      return mirror::plan(view_->state(), o);
    });
  }

  // The guest through this thread's own netlink socket (cheap enough to poll every millisecond).
  bool guest_matches(const std::function<bool(const mirror::NetState&)>& pred) {
    mirror::ReadCounters c;
    auto st = mirror::read_netlink_state(poll_.get(), c);
    return st.has_value() && pred(*st);
  }

  // Waits until `pred` holds in the guest; the elapsed time, or nullopt after `bound`.
  std::optional<Ms> time_until(const std::function<bool(const mirror::NetState&)>& pred, Clock::time_point t0,
                               Ms bound = kSyncBound) {
    if (!wait_until([&] { return guest_matches(pred); }, bound + 500ms, 1ms)) return std::nullopt;
    return std::chrono::duration_cast<Ms>(Clock::now() - t0);
  }

  // Asserts the guest, read with `ip -j`, equals the plan (polls briefly: the syncer may still be settling).
  void expect_guest_equals_plan() {
    Lines want, got;
    const bool same = wait_until(
        [&] {
          const auto p = expected();
          std::set<std::string> managed;
          for (auto& l : p.desired.links) managed.insert(l.name);
          want = lines_from_plan(p.desired);
          got = lines_from_ip(*guest_, managed);
          return want.links == got.links && want.addresses == got.addresses && want.routes == got.routes;
        },
        kSyncBound, 20ms);
    EXPECT_TRUE(same) << "links want:\n"
                      << join(want.links) << "got:\n"
                      << join(got.links) << "addresses want:\n"
                      << join(want.addresses) << "got:\n"
                      << join(got.addresses) << "routes want:\n"
                      << join(want.routes) << "got:\n"
                      << join(got.routes);
  }

  static bool has_link(const mirror::NetState& s, const std::string& name, uint32_t mtu = 0) {
    const auto* l = s.find_link(name);
    return l && (mtu == 0 || l->mtu == mtu);
  }
  static bool has_address(const mirror::NetState& s, const char* local) {
    const auto ip = mirror::IpAddress::parse(local);
    return std::any_of(s.addresses.begin(), s.addresses.end(), [&](auto& a) { return a.local == ip; });
  }
  static bool has_route(const mirror::NetState& s, const char* dst, uint8_t len) {
    const auto ip = mirror::IpAddress::parse(dst);
    return std::any_of(s.routes.begin(), s.routes.end(), [&](auto& r) { return r.dst == ip && r.dst_len == len; });
  }

  std::unique_ptr<NamedNetns> host_, guest_, sink_;
  boost::asio::io_context io_;
  std::thread io_thread_;
  std::unique_ptr<netstack::NamespaceSocketFactory> host_factory_, guest_factory_;
  mirror::NlSocket poll_;
  std::unique_ptr<mirror::HostView> view_;
  std::unique_ptr<mirror::NetlinkGuestApplier> applier_;
  std::unique_ptr<mirror::MirrorSyncer> syncer_;
};

TEST_F(MirrorSync, GuestEqualsPlanOfHostLinksAddressesAndRoutes) {
  start_mirror();
  if (HasFatalFailure()) return;
  expect_guest_equals_plan();
  const auto p = expected();
  ASSERT_NE(p.desired.find_link("lan0"), nullptr);
  // Spot checks against the host's own words.
  const auto routes = ip_json(*guest_, {"route", "show", "default"});
  ASSERT_EQ(routes.size(), 1u) << routes.dump();
  EXPECT_EQ(routes[0].value("gateway", ""), "192.0.2.1");
  EXPECT_EQ(routes[0].value("metric", 0), 100);
  const auto table100 = ip_json(*guest_, {"route", "show", "table", "100"});
  ASSERT_EQ(table100.size(), 1u) << table100.dump();
  EXPECT_EQ(table100[0].value("dst", ""), "198.18.0.0/16");
  const auto v6 = ip_json(*guest_, {"-6", "route", "show", "default"});
  ASSERT_EQ(v6.size(), 1u) << v6.dump();
  EXPECT_EQ(v6[0].value("gateway", ""), "2001:db8:2::1");
  // The guest never autoconfigures on a mirrored link.
  for (const char* key : {"accept_ra", "accept_dad", "use_tempaddr"}) {
    const auto r = run(guest_->exec({"sysctl", "-n", std::string("net.ipv6.conf.lan0.") + key}));
    EXPECT_EQ(r.out, "0\n") << key << ": " << r.describe();
  }
  const auto addrs = ip_json(*guest_, {"-6", "addr", "show", "dev", "lan0"});
  for (const auto& l : addrs)
    for (const auto& a : l.value("addr_info", json::array()))
      EXPECT_FALSE(a.value("tentative", false)) << "NODAD: " << a.dump();
  const auto last = on_io([this] { return syncer_->last_sync(); });
  EXPECT_TRUE(last.converged);
  EXPECT_TRUE(last.errors.empty()) << last.errors.front().op << ": " << last.errors.front().error;
}

TEST_F(MirrorSync, VpnLinkAppearsWithinOneSecondAndGoesWithinOneSecond) {
  add_vpn_link_down();
  start_mirror();
  if (HasFatalFailure()) return;
  ASSERT_FALSE(guest_matches([](auto& s) { return has_link(s, "vpn0"); })) << "a link that is down is not mirrored";

  const auto t0 = Clock::now();
  must(host_->ip({"link", "set", "vpn0", "up"}));
  must(host_->ip({"route", "add", "203.0.113.0/24", "via", "198.51.100.1", "dev", "vpn0"}));
  must(host_->ip({"route", "add", "10.99.0.0/16", "via", "10.98.0.1", "dev", "vpn0", "onlink"}));
  const auto up = time_until(
      [](const mirror::NetState& s) {
        return has_link(s, "vpn0", 1380) && has_address(s, "198.51.100.2") && has_route(s, "203.0.113.0", 24) &&
               has_route(s, "10.98.0.1", 32) && has_route(s, "10.99.0.0", 16);
      },
      t0);
  ASSERT_TRUE(up.has_value()) << "vpn0, its address and routes not in the guest after " << (kSyncBound + 500ms).count()
                              << " ms";
  std::printf("[ mirror ] vpn0 up → in the guest after %lld ms\n", static_cast<long long>(up->count()));
  EXPECT_LE(*up, kSyncBound);
  expect_guest_equals_plan();
  const auto onlink = ip_json(*guest_, {"route", "show", "10.98.0.1"});
  ASSERT_EQ(onlink.size(), 1u) << onlink.dump();
  EXPECT_EQ(onlink[0].value("scope", ""), "link") << "the off-link VPN gateway gets an on-link host route";

  const auto t1 = Clock::now();
  must(host_->ip({"link", "set", "vpn0", "down"}));
  const auto gone = time_until([](const mirror::NetState& s) { return !has_link(s, "vpn0"); }, t1);
  ASSERT_TRUE(gone.has_value()) << "vpn0 still in the guest";
  std::printf("[ mirror ] vpn0 down → gone from the guest after %lld ms\n", static_cast<long long>(gone->count()));
  EXPECT_LE(*gone, kSyncBound);
  expect_guest_equals_plan();
  EXPECT_TRUE(guest_matches([](auto& s) { return has_link(s, "lan0") && has_address(s, "192.0.2.10"); }))
      << "unrelated state is kept";
}

TEST_F(MirrorSync, SyncLatencyOverTwentyHostChanges) {
  start_mirror();
  if (HasFatalFailure()) return;
  std::vector<long long> us;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    std::function<bool(const mirror::NetState&)> pred;
    std::string what;
    if (i % 2 == 0) {
      what = "192.0.2." + std::to_string(100 + i);
      must(host_->ip({"addr", "add", what + "/24", "dev", "lan0"}));
      pred = [what](const mirror::NetState& s) { return has_address(s, what.c_str()); };
    } else {
      what = "198.19." + std::to_string(i) + ".0";
      must(host_->ip({"route", "add", what + "/24", "via", "192.0.2.1", "dev", "lan0"}));
      pred = [what](const mirror::NetState& s) { return has_route(s, what.c_str(), 24); };
    }
    if (HasFatalFailure()) return;
    const bool ok = wait_until([&] { return guest_matches(pred); }, kSyncBound + 500ms, 1ms);
    ASSERT_TRUE(ok) << what << " not in the guest";
    us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
  }
  std::vector<long long> sorted = us;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
  std::printf(
      "[ mirror ] host change → guest state over %zu changes (from before `ip` runs): min %.1f ms, median %.1f "
      "ms, mean %.1f ms, p90 %.1f ms, max %.1f ms\n",
      us.size(), static_cast<double>(sorted.front()) / 1000, static_cast<double>(sorted[sorted.size() / 2]) / 1000,
      mean / 1000, static_cast<double>(sorted[sorted.size() * 9 / 10]) / 1000,
      static_cast<double>(sorted.back()) / 1000);
  EXPECT_LE(sorted.back(), 1'000'000) << "a change took longer than 1 s";
  const auto totals = on_io([this] { return syncer_->totals(); });
  EXPECT_EQ(totals.errors, 0u);
}

TEST_F(MirrorSync, AddressTheGuestCannotTakeIsReportedAndTheRestApplies) {
  // IPv6 off for new links in the guest: its IPv6 addresses and routes are refused.
  must(guest_->exec({"sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"}));
  start_mirror();
  if (HasFatalFailure()) return;
  EXPECT_TRUE(guest_matches([](auto& s) {
    return has_link(s, "lan0") && has_address(s, "192.0.2.10") && has_route(s, "0.0.0.0", 0);
  })) << "IPv4 applied";
  const auto last = on_io([this] { return syncer_->last_sync(); });
  EXPECT_FALSE(last.converged);
  ASSERT_FALSE(last.errors.empty());
  const bool named = std::any_of(last.errors.begin(), last.errors.end(),
                                 [](auto& e) { return e.op.find("2001:db8:2::10") != std::string::npos; });
  EXPECT_TRUE(named) << "the refused address is reported: " << last.errors.front().op << ": "
                     << last.errors.front().error;
  const auto status = on_io([this] { return syncer_->status_json(); });
  EXPECT_GT(status["last_sync"]["errors_total"].get<size_t>(), 0u) << status.dump(2);
}

TEST_F(MirrorSync, BurstOfThousandsOfRoutesOverrunsNetlinkAndEndsCappedAfterAFullResync) {
  start_mirror(/*notify_rcvbuf=*/1);  // the kernel's minimum: the burst below overruns it
  if (HasFatalFailure()) return;
  TempDir dir;
  const auto batch = dir.path() / "burst.ip";
  {
    std::string text;
    for (int i = 0; i < 5000; ++i)
      text += "route add 10." + std::to_string(1 + i / 256) + "." + std::to_string(i % 256) +
              ".0/24 via 192.0.2.1 dev lan0\n";
    for (int i = 0; i < 300; ++i)
      text += "addr add 198.18." + std::to_string(1 + i / 250) + "." + std::to_string(1 + i % 250) + "/15 dev lan0\n";
    FILE* f = std::fopen(batch.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  const auto t0 = Clock::now();
  const auto r = run(host_->ip({"-batch", batch.string()}), 30s);
  ASSERT_EQ(r.status, 0) << r.describe();
  auto managed_routes = [](const mirror::NetState& s) {
    return std::count_if(s.routes.begin(), s.routes.end(), [](const mirror::HostRoute& x) {
      return x.table != mirror::kTableLocal && x.type == RTN_UNICAST && !x.nexthops.empty() &&
             x.nexthops[0].link == "lan0";
    });
  };
  auto lan_addresses = [](const mirror::NetState& s) {
    return std::count_if(s.addresses.begin(), s.addresses.end(), [](auto& a) { return a.link == "lan0"; });
  };
  const auto capped = time_until(
      [&](const mirror::NetState& s) {
        return managed_routes(s) == static_cast<long>(mirror::kMaxRoutes) &&
               lan_addresses(s) == static_cast<long>(mirror::kMaxAddressesPerLink);
      },
      t0, 10s);
  ASSERT_TRUE(capped.has_value()) << "the guest never settled at the caps";
  std::printf(
      "[ mirror ] 5000 routes + 300 addresses in one burst → guest at the caps (%zu routes, %zu addresses) "
      "after %lld ms (from before `ip -batch` runs)\n",
      mirror::kMaxRoutes, mirror::kMaxAddressesPerLink, static_cast<long long>(capped->count()));
  // The caps may be reached mid-burst; wait (bounded) for the sync of the whole burst.
  const bool settled = wait_until(
      [&] {
        return on_io([this] {
          return syncer_->plan_counters().addresses_over_cap == 303 - mirror::kMaxAddressesPerLink &&
                 syncer_->last_sync().converged;
        });
      },
      kSyncBound, 10ms);
  EXPECT_TRUE(settled);
  const auto stats = on_io([this] { return view_->stats(); });
  EXPECT_GT(stats.overruns, 0u) << "the tiny receive buffer should have overrun";
  const auto counters = on_io([this] { return syncer_->plan_counters(); });
  EXPECT_GT(counters.routes_over_cap, 0u);
  const auto last = on_io([this] { return syncer_->last_sync(); });
  EXPECT_EQ(last.errors_total, 0u);
  EXPECT_TRUE(guest_matches([&](const mirror::NetState& s) {
    return managed_routes(s) == static_cast<long>(mirror::kMaxRoutes) &&
           lan_addresses(s) == static_cast<long>(mirror::kMaxAddressesPerLink);
  }));
  // The defaults survive the cap.
  EXPECT_TRUE(guest_matches([](auto& s) { return has_route(s, "0.0.0.0", 0) && has_route(s, "::", 0); }));
}

// The same through the real binary: `causeway netns --mode mirrored` run in the host namespace.
TEST_F(MirrorSync, NetnsModeMirroredShowsBothViewsInCtlMirror) {
  TempDir dir;
  const std::string sock = (dir.path() / "ctl.sock").string();
  BackgroundProcess cw(host_->exec({kCauseway, "netns", "--mode", "mirrored", "--control", sock, "--", "sleep", "30"}),
                       dir.path(), "causeway");
  json reply;
  const bool ready = wait_until(
      [&] {
        const auto r = run(ctl_argv(sock, {"mirror"}), 2s);
        if (r.status != 0) return false;
        reply = json::parse(r.out, nullptr, false);
        return !reply.is_discarded() && reply.value("ok", false) &&
               reply["mirror"]["last_sync"].value("converged", false);
      },
      kStartTimeout);
  ASSERT_TRUE(ready) << cw.describe() << "\nlast reply: " << reply.dump(2);
  const auto& m = reply["mirror"];
  std::set<std::string> host_links, guest_links;
  for (auto& l : m["host"]["links"]) host_links.insert(l.value("name", ""));
  for (auto& l : m["guest"]["links"]) guest_links.insert(l.value("name", ""));
  EXPECT_TRUE(host_links.count("lan0")) << m.dump(2);
  EXPECT_EQ(guest_links, std::set<std::string>{"lan0"}) << m.dump(2);
  EXPECT_FALSE(m["last_sync"].value("time", "").empty());
  const auto status = run(ctl_argv(sock, {"status"}), 2s);
  EXPECT_NE(status.out.find("\"mirrored\""), std::string::npos) << status.describe();
  cw.stop(SIGTERM);
}

}  // namespace
}  // namespace causeway::integration
