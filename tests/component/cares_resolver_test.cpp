// CaresResolver + Proxy through a real io_context against FakeDnsServer on
// loopback (port 0), over IPv4 and IPv6: raw forwarding byte for byte, ids,
// TC and TCP, timeouts, failover, recovery, split DNS, caps, live updates.
#include "dns/cares_resolver.hpp"

#include <gtest/gtest.h>

#include "dns/proxy.hpp"
#include "dns/tcp_framing.hpp"
#include "dns/wire.hpp"
#include "tests/support/dns_test_support.hpp"
#include "tests/support/fake_dns_server.hpp"

namespace causeway::dns {
namespace {
namespace asio = boost::asio;
using std::chrono::milliseconds;
using testing::Bytes;
using testing::FakeDnsServer;
using testing::make_query;
using testing::rcode_of;
using testing::run_until;

using Ms = std::chrono::milliseconds;
using Clk = std::chrono::steady_clock;

// Fast timeouts keep the suite quick; the production values are the
// documented constants, exercised by the same code paths.
constexpr auto kTry = Ms(150);

HostDnsConfig config_of(std::vector<DnsServer> servers) {
  HostDnsConfig c;
  c.servers = std::move(servers);
  return c;
}

DnsServer dead_server() {
  DnsServer s;
  s.address = asio::ip::address_v4::loopback();
  s.port = testing::unused_port();
  return s;
}

// The answer the server sent, with the guest's id in place of c-ares's.
Bytes with_id(Bytes b, uint16_t id) {
  set_id(b, id);
  return b;
}

// The last message in `v` (empty if none: a failed comparison, not UB).
Bytes last(const std::vector<Bytes>& v) { return v.empty() ? Bytes{} : v.back(); }

class Harness {
 public:
  explicit Harness(CaresOptions co = {.try_timeout = kTry, .tries = 2},
                   ProxyLimits pl = {.max_in_flight = 64, .query_deadline = Ms(3000)})
      : resolver(io, co), proxy(io, clock, resolver, LocalZone(LocalZoneAddresses::nat_defaults()), pl) {}

  // Sends through the proxy and runs the loop until the reply.
  std::optional<Bytes> ask(const Bytes& q, Transport t = Transport::kUdp, Ms deadline = Ms(3000)) {
    std::optional<Bytes> reply;
    proxy.on_query(q, t, [&reply](Bytes a) { reply = std::move(a); });
    run_until(
        io, [&] { return reply.has_value(); }, deadline);
    return reply;
  }

  asio::io_context io;
  SteadyClock clock;
  CaresResolver resolver;
  Proxy proxy;
};

class Forwarding : public ::testing::TestWithParam<bool> {
 protected:
  Forwarding()
      : server_(h_.io, GetParam() ? asio::ip::address(asio::ip::address_v6::loopback())
                                  : asio::ip::address(asio::ip::address_v4::loopback())) {}
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    ASSERT_FALSE(h_.resolver.update_servers(config_of({server_.server()})));
    server_.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.10")});
    server_.add("www.example.test", {rrtype::kAaaa, FakeDnsServer::aaaa("2001:db8::10")});
    server_.add("example.test", {rrtype::kMx, FakeDnsServer::mx(10, "mail.example.test")});
    server_.add("example.test", {rrtype::kTxt, FakeDnsServer::txt({"v=spf1 -all", "hello"})});
    std::vector<std::string> big(12, std::string(250, 'x'));  // ~3 KB of TXT
    server_.add("big.example.test", {rrtype::kTxt, FakeDnsServer::txt(big)});
    std::vector<std::string> huge(240, std::string(250, 'y'));  // ~60 KB: many reads on the TCP socket
    server_.add("huge.example.test", {rrtype::kTxt, FakeDnsServer::txt(huge)});
  }
  Harness h_;
  FakeDnsServer server_;
};

INSTANTIATE_TEST_SUITE_P(Dns, Forwarding, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Ipv6" : "Ipv4"; });

TEST_P(Forwarding, AnswersAreByteIdenticalExceptTheId) {
  struct Case {
    const char* name;
    uint16_t type;
    std::optional<uint16_t> edns;
  };
  uint16_t id = 0x1000;
  for (const Case& c : {Case{"www.example.test", rrtype::kA, {}}, Case{"www.example.test", rrtype::kAaaa, 1232},
                        Case{"Example.Test", rrtype::kMx, {}}, Case{"example.test", rrtype::kTxt, 1232}}) {
    const Bytes q = make_query(c.name, c.type, {.id = ++id, .edns_size = c.edns});
    const auto reply = h_.ask(q);
    ASSERT_TRUE(reply) << c.name;
    ASSERT_FALSE(server_.sent.empty());
    EXPECT_EQ(*reply, with_id(last(server_.sent), id)) << c.name;
    EXPECT_EQ(get_id(*reply), id);
    EXPECT_GT(parse_header(*reply)->ancount, 0) << c.name;
    // Upstream saw the guest's query byte for byte, except the id.
    EXPECT_EQ(with_id(last(server_.received), id), q) << c.name;
  }
  EXPECT_EQ(h_.proxy.stats().answers, 4u);
  EXPECT_EQ(h_.resolver.stats().sent_udp, 4u);
}

TEST_P(Forwarding, UpstreamIdsAreNotTheGuestsIds) {
  size_t same = 0;
  for (uint16_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(h_.ask(make_query("www.example.test", rrtype::kA, {.id = 7})));
    same += get_id(last(server_.received)) == 7;
  }
  EXPECT_LT(same, 2u);  // random 16-bit ids: one collision in 8 is already unlikely
}

TEST_P(Forwarding, NxDomainAndNoDataPassThrough) {
  const auto nx = h_.ask(make_query("nope.example.test", rrtype::kA, {.id = 1}));
  ASSERT_TRUE(nx);
  EXPECT_EQ(rcode_of(*nx), 3);
  EXPECT_EQ(*nx, with_id(last(server_.sent), 1));
  const auto nodata = h_.ask(make_query("www.example.test", rrtype::kSrv, {.id = 2}));
  ASSERT_TRUE(nodata);
  EXPECT_EQ(rcode_of(*nodata), 0);
  EXPECT_EQ(parse_header(*nodata)->ancount, 0);
}

TEST_P(Forwarding, LargeEdnsAnswerOverUdpIsNotCut) {
  const Bytes q = make_query("big.example.test", rrtype::kTxt, {.id = 3, .edns_size = 4096});
  const auto reply = h_.ask(q);
  ASSERT_TRUE(reply);
  EXPECT_GT(reply->size(), 3000u);
  EXPECT_FALSE(testing::tc_of(*reply));
  EXPECT_EQ(*reply, with_id(last(server_.sent), 3));
  EXPECT_EQ(server_.tcp_queries, 0u);
}

TEST_P(Forwarding, TruncatedUdpAnswerPassesThroughWithTc) {
  // No EDNS: the server cuts the 3 KB answer to header + question, TC set.
  const Bytes q = make_query("big.example.test", rrtype::kTxt, {.id = 4});
  const auto reply = h_.ask(q, Transport::kUdp);
  ASSERT_TRUE(reply);
  EXPECT_TRUE(testing::tc_of(*reply));
  EXPECT_EQ(*reply, with_id(last(server_.sent), 4));
  EXPECT_EQ(server_.tcp_queries, 0u);  // the guest retries over TCP, not us
}

TEST_P(Forwarding, GuestTcpQueryIsFetchedOverTcp) {
  server_.set_truncate_udp(true);
  const Bytes q = make_query("big.example.test", rrtype::kTxt, {.id = 5});
  const auto reply = h_.ask(q, Transport::kTcp);
  ASSERT_TRUE(reply);
  EXPECT_FALSE(testing::tc_of(*reply));
  EXPECT_GT(reply->size(), 3000u);
  EXPECT_EQ(*reply, with_id(last(server_.sent), 5));
  EXPECT_EQ(server_.tcp_queries, 1u);
  EXPECT_EQ(server_.udp_queries, 0u);
  EXPECT_EQ(h_.resolver.stats().sent_tcp, 1u);
}

TEST_P(Forwarding, SixtyKilobyteAnswerOverTcpArrivesWhole) {
  const Bytes q = make_query("huge.example.test", rrtype::kTxt, {.id = 6});
  const auto reply = h_.ask(q, Transport::kTcp);
  ASSERT_TRUE(reply);
  EXPECT_GT(reply->size(), 60000u);
  EXPECT_EQ(*reply, with_id(last(server_.sent), 6));
}

TEST_P(Forwarding, PipelinedTcpStreamThroughTheFramingHelper) {
  // What the engine does with libslirp's guestfwd bytes.
  const Bytes q1 = make_query("www.example.test", rrtype::kA, {.id = 21});
  const Bytes q2 = make_query("example.test", rrtype::kMx, {.id = 22});
  Bytes stream = encode_tcp_frame(q1);
  const Bytes f2 = encode_tcp_frame(q2);
  stream.insert(stream.end(), f2.begin(), f2.end());
  TcpFrameDecoder decoder;
  std::vector<Bytes> queries;
  ASSERT_TRUE(decoder.feed(stream, queries));
  ASSERT_EQ(queries.size(), 2u);
  Bytes to_guest;
  size_t replies = 0;
  for (const Bytes& q : queries) {
    h_.proxy.on_query(q, Transport::kTcp, [&](Bytes a) {
      const Bytes f = encode_tcp_frame(a);
      to_guest.insert(to_guest.end(), f.begin(), f.end());
      ++replies;
    });
  }
  ASSERT_TRUE(run_until(h_.io, [&] { return replies == 2; }));
  TcpFrameDecoder back(kMaxMessageSize);
  std::vector<Bytes> answers;
  ASSERT_TRUE(back.feed(to_guest, answers));
  ASSERT_EQ(answers.size(), 2u);
  std::set<uint16_t> ids{get_id(answers[0]), get_id(answers[1])};
  EXPECT_EQ(ids, (std::set<uint16_t>{21, 22}));
}

TEST_P(Forwarding, LocalZoneIsAnsweredWithoutUpstream) {
  const auto reply = h_.ask(make_query("host.causeway.internal", rrtype::kA, {.id = 8}));
  ASSERT_TRUE(reply);
  EXPECT_EQ(rcode_of(*reply), 0);
  EXPECT_EQ(server_.udp_queries + server_.tcp_queries, 0u);
  EXPECT_EQ(h_.proxy.stats().local_answers, 1u);
}

TEST_P(Forwarding, MalformedQueriesLeaveTheProxyAnswering) {
  const std::vector<Bytes> bad = {Bytes{1}, Bytes(12, 0),
                                  Bytes{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
                                  Bytes{0, 1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}};
  for (const Bytes& b : bad) h_.proxy.on_query(b, Transport::kUdp, [](Bytes) {});
  testing::drain(h_.io);
  EXPECT_EQ(h_.proxy.stats().malformed, bad.size());
  EXPECT_EQ(server_.udp_queries, 0u);
  ASSERT_TRUE(h_.ask(make_query("www.example.test", rrtype::kA)));
}

TEST(CaresResolver, SilentUpstreamGivesServFailWithinTheTimeout) {
  Harness h;  // c-ares: 150 ms, then 300 ms (back-off): gives up at ~450 ms
  FakeDnsServer server(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(server.ok());
  server.set_mode(FakeDnsServer::Mode::kSilent);
  ASSERT_FALSE(h.resolver.update_servers(config_of({server.server()})));
  const Bytes q = make_query("www.example.test", rrtype::kA, {.id = 0x77});
  const auto start = Clk::now();
  const auto reply = h.ask(q);
  const auto elapsed = Clk::now() - start;
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, make_error_response(q, Rcode::kServFail));
  EXPECT_GE(elapsed, Ms(400));
  EXPECT_LT(elapsed, Ms(1500));
  EXPECT_EQ(server.udp_queries, 2u);  // two tries
  EXPECT_EQ(h.proxy.stats().timeouts, 1u);
  EXPECT_EQ(h.resolver.stats().timeouts, 1u);
  EXPECT_EQ(h.proxy.stats().in_flight, 0u);
}

TEST(CaresResolver, ProxyDeadlineAnswersFirstWhenCaresIsSlower) {
  Harness h({.try_timeout = Ms(2000), .tries = 2}, {.max_in_flight = 8, .query_deadline = Ms(300)});
  FakeDnsServer server(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(server.ok());
  server.set_mode(FakeDnsServer::Mode::kSilent);
  ASSERT_FALSE(h.resolver.update_servers(config_of({server.server()})));
  const auto start = Clk::now();
  const auto reply = h.ask(make_query("www.example.test", rrtype::kA));
  const auto elapsed = Clk::now() - start;
  ASSERT_TRUE(reply);
  EXPECT_EQ(rcode_of(*reply), 2);
  EXPECT_GE(elapsed, Ms(290));
  EXPECT_LT(elapsed, Ms(1000));
  EXPECT_EQ(h.proxy.stats().timeouts, 1u);
  EXPECT_EQ(h.proxy.stats().in_flight, 1u);  // c-ares still owns it: the slot stays taken
}

TEST(CaresResolver, RecoversAsSoonAsTheUpstreamAnswersAgain) {
  Harness h;
  FakeDnsServer server(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(server.ok());
  server.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.10")});
  ASSERT_FALSE(h.resolver.update_servers(config_of({server.server()})));
  server.set_mode(FakeDnsServer::Mode::kSilent);
  auto reply = h.ask(make_query("www.example.test", rrtype::kA));
  ASSERT_TRUE(reply);
  EXPECT_EQ(rcode_of(*reply), 2);
  server.set_mode(FakeDnsServer::Mode::kAnswer);
  const auto start = Clk::now();
  reply = h.ask(make_query("www.example.test", rrtype::kA));
  ASSERT_TRUE(reply);
  EXPECT_EQ(rcode_of(*reply), 0);
  EXPECT_LT(Clk::now() - start, kTry);  // no penalty left from the outage
}

TEST(CaresResolver, FailsOverAtOnceWhenTheFirstServerIsDead) {
  Harness h;
  FakeDnsServer live(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(live.ok());
  live.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.10")});
  ASSERT_FALSE(h.resolver.update_servers(config_of({dead_server(), live.server()})));
  for (Transport t : {Transport::kUdp, Transport::kTcp}) {
    const auto start = Clk::now();
    const auto reply = h.ask(make_query("www.example.test", rrtype::kA, {.id = 3}), t);
    ASSERT_TRUE(reply) << to_string(t);
    EXPECT_EQ(*reply, with_id(last(live.sent), 3)) << to_string(t);
    EXPECT_LT(Clk::now() - start, kTry) << to_string(t);  // refused at once, no timeout
  }
}

TEST(CaresResolver, FailsOverWhenTheFirstServerIsSilent) {
  Harness h;
  FakeDnsServer silent(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(silent.ok());
  silent.set_mode(FakeDnsServer::Mode::kSilent);
  FakeDnsServer live(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(live.ok());
  live.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.10")});
  ASSERT_FALSE(h.resolver.update_servers(config_of({silent.server(), live.server()})));
  const auto start = Clk::now();
  const auto reply = h.ask(make_query("www.example.test", rrtype::kA, {.id = 4}));
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, with_id(last(live.sent), 4));
  EXPECT_GE(Clk::now() - start, kTry - Ms(10));
  EXPECT_EQ(silent.udp_queries, 1u);
}

TEST(CaresResolver, FailsOverWhenTheFirstServerSaysServFail) {
  Harness h;
  FakeDnsServer broken(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(broken.ok());
  broken.set_mode(FakeDnsServer::Mode::kServFail);
  FakeDnsServer live(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(live.ok());
  live.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.10")});
  ASSERT_FALSE(h.resolver.update_servers(config_of({broken.server(), live.server()})));
  const auto reply = h.ask(make_query("www.example.test", rrtype::kA, {.id = 5}));
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, with_id(last(live.sent), 5));
  EXPECT_EQ(broken.udp_queries, 1u);
}

TEST(CaresResolver, SplitRoutesSendADomainToItsOwnServer) {
  Harness h;
  FakeDnsServer host(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(host.ok());
  FakeDnsServer corp(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(corp.ok());
  FakeDnsServer eu(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(eu.ok());
  host.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.1")});
  corp.add("intranet.corp.test", {rrtype::kA, FakeDnsServer::a("10.1.0.1")});
  corp.add("corp.test", {rrtype::kA, FakeDnsServer::a("10.1.0.2")});
  eu.add("wiki.eu.corp.test", {rrtype::kA, FakeDnsServer::a("10.2.0.1")});
  ASSERT_FALSE(h.resolver.update_servers(config_of({host.server()})));
  ASSERT_FALSE(h.resolver.set_routes({DnsRoute{"corp.test", corp.server()}, DnsRoute{"EU.corp.test.", eu.server()}}));

  auto ask_ok = [&](const char* name) {
    const auto r = h.ask(make_query(name, rrtype::kA));
    return r && rcode_of(*r) == 0 && parse_header(*r)->ancount == 1;
  };
  EXPECT_TRUE(ask_ok("www.example.test"));
  EXPECT_TRUE(ask_ok("Intranet.Corp.Test"));
  EXPECT_TRUE(ask_ok("corp.test"));
  EXPECT_TRUE(ask_ok("wiki.eu.corp.test"));  // longest suffix wins
  EXPECT_EQ(host.udp_queries, 1u);
  EXPECT_EQ(corp.udp_queries, 2u);
  EXPECT_EQ(eu.udp_queries, 1u);
  EXPECT_EQ(h.resolver.stats().routed, 3u);
  // "xcorp.test" is not under corp.test.
  h.ask(make_query("xcorp.test", rrtype::kA));
  EXPECT_EQ(host.udp_queries, 2u);
}

TEST(CaresResolver, InFlightCapAnswersServFail) {
  Harness h({.try_timeout = Ms(2000), .tries = 1}, {.max_in_flight = 3, .query_deadline = Ms(3000)});
  FakeDnsServer server(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(server.ok());
  server.set_mode(FakeDnsServer::Mode::kSilent);
  ASSERT_FALSE(h.resolver.update_servers(config_of({server.server()})));
  std::vector<std::optional<Bytes>> replies(5);
  for (size_t i = 0; i < replies.size(); ++i)
    h.proxy.on_query(make_query("www.example.test", rrtype::kA, {.id = static_cast<uint16_t>(i)}), Transport::kUdp,
                     [&replies, i](Bytes a) { replies[i] = std::move(a); });
  ASSERT_TRUE(run_until(
      h.io, [&] { return replies[3] && replies[4]; }, Ms(500)));
  EXPECT_EQ(rcode_of(*replies[3]), 2);
  EXPECT_EQ(rcode_of(*replies[4]), 2);
  EXPECT_FALSE(replies[0] || replies[1] || replies[2]);
  const auto s = h.proxy.stats();
  EXPECT_EQ(s.refused_over_capacity, 2u);
  EXPECT_EQ(s.in_flight, 3u);
  EXPECT_EQ(h.resolver.stats().pending, 3u);
}

TEST(CaresResolver, UpdateServersSwitchesNewQueriesAndLetsOldOnesFinish) {
  Harness h;
  FakeDnsServer a(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(a.ok());
  FakeDnsServer b(h.io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(b.ok());
  a.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.1")});
  b.add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.2")});
  ASSERT_FALSE(h.resolver.update_servers(config_of({a.server()})));
  ASSERT_TRUE(h.ask(make_query("www.example.test", rrtype::kA)));
  EXPECT_EQ(a.udp_queries, 1u);
  // One query in flight on the old servers when they change.
  std::optional<Bytes> in_flight;
  h.proxy.on_query(make_query("www.example.test", rrtype::kA, {.id = 77}), Transport::kUdp,
                   [&](Bytes r) { in_flight = std::move(r); });
  ASSERT_FALSE(h.resolver.update_servers(config_of({b.server()})));
  ASSERT_TRUE(run_until(h.io, [&] { return in_flight.has_value(); }));
  EXPECT_EQ(*in_flight, with_id(last(a.sent), 77));
  ASSERT_TRUE(h.ask(make_query("www.example.test", rrtype::kA)));
  EXPECT_EQ(b.udp_queries, 1u);
  EXPECT_EQ(a.udp_queries, 2u);
  ASSERT_TRUE(run_until(h.io, [&] { return h.resolver.stats().retired_sets == 0; }));
  EXPECT_EQ(h.resolver.stats().sets_retired, 1u);
}

TEST(CaresResolver, NoServersMeansServFailNotAHang) {
  Harness h;
  auto reply = h.ask(make_query("www.example.test", rrtype::kA));
  ASSERT_TRUE(reply);
  EXPECT_EQ(rcode_of(*reply), 2);
  HostDnsConfig only_link_local = parse_resolv_conf("nameserver fe80::1%lo\n");
  ASSERT_FALSE(h.resolver.update_servers(only_link_local));
  EXPECT_EQ(h.resolver.stats().servers_skipped, 1u);
  reply = h.ask(make_query("www.example.test", rrtype::kA));
  ASSERT_TRUE(reply);
  EXPECT_EQ(rcode_of(*reply), 2);
  EXPECT_EQ(h.proxy.stats().upstream_failures, 2u);
}

TEST(CaresResolver, DestroyedWithQueriesInFlightDropsThem) {
  asio::io_context io;
  FakeDnsServer server(io, asio::ip::address_v4::loopback());
  ASSERT_TRUE(server.ok());
  server.set_mode(FakeDnsServer::Mode::kSilent);
  bool called = false;
  {
    CaresResolver r(io, {.try_timeout = Ms(2000), .tries = 1});
    ASSERT_FALSE(r.update_servers(config_of({server.server()})));
    r.send(make_query("a.test", 1), Transport::kUdp, [&](Resolver::Answer) { called = true; });
    r.send(make_query("a.test", 1), Transport::kTcp, [&](Resolver::Answer) { called = true; });
    run_until(io, [&] { return server.udp_queries == 1 && server.tcp_queries == 1; });
  }
  testing::drain(io);
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace causeway::dns
