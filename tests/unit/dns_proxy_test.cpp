// The proxy driven the way the engine drives it, with a FakeResolver and a
// fake clock: verdicts, id restore, SERVFAIL mapping, the in-flight cap and
// the deadline, all asserted on bytes and counters.
#include "dns/proxy.hpp"

#include <gtest/gtest.h>

#include "dns/wire.hpp"
#include "tests/support/dns_test_support.hpp"

namespace causeway::dns {
namespace {
using testing::Bytes;
using testing::drain;
using testing::FakeClock;
using testing::FakeResolver;
using testing::make_query;
using testing::rcode_of;

class ProxyTest : public ::testing::Test {
 protected:
  explicit ProxyTest(ProxyLimits limits = {.max_in_flight = 4, .query_deadline = std::chrono::seconds(5)})
      : proxy_(io_, clock_, resolver_, LocalZone(LocalZoneAddresses::nat_defaults()), limits) {}

  // Sends a query; its reply (if any) lands in replies_[index].
  size_t ask(const Bytes& q, Transport t = Transport::kUdp) {
    const size_t index = replies_.size();
    replies_.emplace_back();
    proxy_.on_query(q, t, [this, index](Bytes answer) {
      ASSERT_FALSE(replies_[index].has_value()) << "replied twice";
      replies_[index] = std::move(answer);
    });
    return index;
  }

  // An upstream answer to `q` with a different id, as c-ares would see it.
  static Bytes upstream_answer(const Bytes& q, uint16_t id) {
    Bytes a = q;
    set_id(a, id);
    a[2] |= 0x80;
    a[3] = 0x80;
    return a;
  }

  boost::asio::io_context io_;
  FakeClock clock_;
  FakeResolver resolver_;
  Proxy proxy_;
  std::vector<std::optional<Bytes>> replies_;
};

TEST_F(ProxyTest, ForwardsRawAndRestoresTheGuestsId) {
  const Bytes q = make_query("example.test", rrtype::kTxt, {.id = 0x0a0b, .edns_size = 1232});
  const size_t r = ask(q, Transport::kTcp);
  ASSERT_EQ(resolver_.sent.size(), 1u);
  EXPECT_EQ(resolver_.sent[0].query, q);  // raw: every byte as the guest sent it
  EXPECT_EQ(resolver_.sent[0].transport, Transport::kTcp);
  resolver_.complete_front(upstream_answer(q, 0x7777));
  ASSERT_TRUE(replies_[r]);
  Bytes expected = upstream_answer(q, 0x0a0b);
  EXPECT_EQ(*replies_[r], expected);
  const auto s = proxy_.stats();
  EXPECT_EQ(s.queries, 1u);
  EXPECT_EQ(s.answers, 1u);
  EXPECT_EQ(s.in_flight, 0u);
}

TEST_F(ProxyTest, TruncatedUdpAnswerKeepsTc) {
  const Bytes q = make_query("big.test", rrtype::kTxt);
  const size_t r = ask(q);
  Bytes a = upstream_answer(q, 1);
  set_tc(a);
  resolver_.complete_front(a);
  ASSERT_TRUE(replies_[r]);
  EXPECT_TRUE(testing::tc_of(*replies_[r]));
}

TEST_F(ProxyTest, MalformedQueriesGetFormErrOrNothing) {
  const size_t formerr = ask(Bytes{0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0});  // zero questions
  const size_t dropped = ask(Bytes{1, 2, 3});
  Bytes response = make_query("a.test", 1);
  response[2] |= 0x80;
  const size_t qr = ask(response);
  EXPECT_TRUE(resolver_.sent.empty());
  EXPECT_FALSE(replies_[formerr]);  // never inside on_query
  drain(io_);
  ASSERT_TRUE(replies_[formerr]);
  EXPECT_EQ(rcode_of(*replies_[formerr]), 1);
  EXPECT_EQ(get_id(*replies_[formerr]), 0x1234);
  EXPECT_FALSE(replies_[dropped]);
  EXPECT_FALSE(replies_[qr]);
  const auto s = proxy_.stats();
  EXPECT_EQ(s.malformed, 3u);
  EXPECT_EQ(s.dropped, 2u);
}

TEST_F(ProxyTest, NonQueryOpcodesGetNotImp) {
  const size_t r = ask(make_query("a.test", 1, {.flags = 0x2000}));  // opcode 4, NOTIFY
  drain(io_);
  ASSERT_TRUE(replies_[r]);
  EXPECT_EQ(rcode_of(*replies_[r]), 4);
  EXPECT_EQ(proxy_.stats().not_implemented, 1u);
  EXPECT_TRUE(resolver_.sent.empty());
}

TEST_F(ProxyTest, LocalZoneNeverGoesUpstream) {
  const size_t r = ask(make_query("host.causeway.internal", rrtype::kA, {.id = 9}));
  EXPECT_TRUE(resolver_.sent.empty());
  drain(io_);
  ASSERT_TRUE(replies_[r]);
  EXPECT_EQ(get_id(*replies_[r]), 9);
  EXPECT_EQ(rcode_of(*replies_[r]), 0);
  EXPECT_EQ(proxy_.stats().local_answers, 1u);
}

TEST_F(ProxyTest, ResolverErrorsBecomeServFail) {
  const Bytes q1 = make_query("a.test", 1, {.id = 1});
  const Bytes q2 = make_query("b.test", 1, {.id = 2});
  const size_t r1 = ask(q1);
  const size_t r2 = ask(q2);
  resolver_.complete_front(make_error_code(ResolveErrc::kTimeout));
  resolver_.complete_front(make_error_code(ResolveErrc::kUpstreamFailed));
  ASSERT_TRUE(replies_[r1] && replies_[r2]);
  EXPECT_EQ(*replies_[r1], make_error_response(q1, Rcode::kServFail));
  EXPECT_EQ(*replies_[r2], make_error_response(q2, Rcode::kServFail));
  const auto s = proxy_.stats();
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.upstream_failures, 1u);
  EXPECT_EQ(s.answers, 0u);
}

TEST_F(ProxyTest, ShortUpstreamAnswerBecomesServFail) {
  const Bytes q = make_query("a.test", 1);
  const size_t r = ask(q);
  resolver_.complete_front(Bytes{1, 2, 3});
  ASSERT_TRUE(replies_[r]);
  EXPECT_EQ(rcode_of(*replies_[r]), 2);
  EXPECT_EQ(proxy_.stats().upstream_failures, 1u);
}

TEST_F(ProxyTest, InFlightCapAnswersServFailAndCounts) {
  for (int i = 0; i < 4; ++i) ask(make_query("a.test", 1, {.id = static_cast<uint16_t>(i)}));
  const Bytes extra = make_query("b.test", 1, {.id = 99});
  const size_t over = ask(extra);
  EXPECT_EQ(resolver_.sent.size(), 4u);
  drain(io_);
  ASSERT_TRUE(replies_[over]);
  EXPECT_EQ(*replies_[over], make_error_response(extra, Rcode::kServFail));
  auto s = proxy_.stats();
  EXPECT_EQ(s.refused_over_capacity, 1u);
  EXPECT_EQ(s.in_flight, 4u);
  // A slot frees when an answer comes back.
  resolver_.complete_front(upstream_answer(make_query("a.test", 1), 5));
  ask(extra);
  EXPECT_EQ(resolver_.sent.size(), 4u);
  EXPECT_EQ(proxy_.stats().in_flight, 4u);
}

TEST_F(ProxyTest, DeadlineAnswersServFailAndKeepsTheSlotUntilTheResolverFinishes) {
  const Bytes q = make_query("slow.test", 1, {.id = 0x5151});
  const size_t r = ask(q);
  clock_.advance(std::chrono::milliseconds(4999));
  proxy_.expire_overdue();
  EXPECT_FALSE(replies_[r]);
  clock_.advance(std::chrono::milliseconds(1));
  proxy_.expire_overdue();
  ASSERT_TRUE(replies_[r]);
  EXPECT_EQ(*replies_[r], make_error_response(q, Rcode::kServFail));
  auto s = proxy_.stats();
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.in_flight, 1u);                       // the resolver still holds it
  resolver_.complete_front(upstream_answer(q, 1));  // late: discarded (replied-twice would fail)
  s = proxy_.stats();
  EXPECT_EQ(s.late_answers, 1u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.answers, 0u);
}

TEST_F(ProxyTest, ReplyAfterProxyDestroyedIsDropped) {
  auto proxy = std::make_unique<Proxy>(io_, clock_, resolver_, LocalZone{});
  bool called = false;
  proxy->on_query(make_query("a.test", 1), Transport::kUdp, [&](Bytes) { called = true; });
  proxy->on_query(Bytes{0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Transport::kUdp, [&](Bytes) { called = true; });
  proxy.reset();
  resolver_.complete_front(Bytes(12, 0));
  drain(io_);
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace causeway::dns
