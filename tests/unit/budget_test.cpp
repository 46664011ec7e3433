// The descriptor budget (netstack/budget.hpp): every cap comes from RLIMIT_NOFILE and the
// descriptors all tables hold at their caps never exceed it.
#include "netstack/budget.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace causeway::netstack {
namespace {

class BudgetForLimit : public ::testing::TestWithParam<uint64_t> {};

TEST_P(BudgetForLimit, TablesAtTheirCapsFitUnderTheLimit) {
  const uint64_t nofile = GetParam();
  const FdBudget b = derive_budget(nofile);
  EXPECT_EQ(b.nofile, nofile);
  EXPECT_LE(b.descriptors_at_caps(), b.pool);
  if (!b.limit_too_small) {
    EXPECT_LE(b.descriptors_at_caps() + FdBudget::kReservedFds, nofile);
  }
}

TEST_P(BudgetForLimit, EveryTableHoldsAtLeastOneEntry) {
  const FdBudget b = derive_budget(GetParam());
  for (size_t cap : {b.tcp_flows, b.slirp_sockets, b.forward_connections, b.udp_forward_flows, b.auto_forwards,
                     b.vsock_streams, b.dns_tcp_connections, b.control_connections, b.dns_in_flight})
    EXPECT_GE(cap, 1u);
}

INSTANTIATE_TEST_SUITE_P(Limits, BudgetForLimit,
                         ::testing::Values(uint64_t{0}, uint64_t{64}, uint64_t{255}, uint64_t{256}, uint64_t{1024},
                                           uint64_t{4096}, uint64_t{20000}, uint64_t{524288}, uint64_t{1} << 20));

TEST(Budget, DefaultSoftLimitGivesTheDocumentedCaps) {
  // Linux's default soft limit: 1024 - 128 reserved = 896 in the pool.
  const FdBudget b = derive_budget(1024);
  EXPECT_FALSE(b.limit_too_small);
  EXPECT_EQ(b.pool, 896u);
  EXPECT_EQ(b.tcp_flows, 358u);            // 40 %
  EXPECT_EQ(b.slirp_sockets, 134u);        // 15 %
  EXPECT_EQ(b.forward_connections, 112u);  // 25 %, two descriptors each
  EXPECT_EQ(b.udp_forward_flows, 44u);
  EXPECT_EQ(b.auto_forwards, 11u);  // 5 %, four listeners each
  EXPECT_EQ(b.vsock_streams, 44u);
  EXPECT_EQ(b.dns_tcp_connections, 17u);
  EXPECT_EQ(b.control_connections, 8u);
  EXPECT_EQ(b.dns_in_flight, 1024u);
}

TEST(Budget, LargeLimitsStopAtTheMemoryCeilings) {
  const FdBudget b = derive_budget(uint64_t{1} << 20);
  EXPECT_EQ(b.tcp_flows, 4096u);
  EXPECT_EQ(b.slirp_sockets, 1024u);
  EXPECT_EQ(b.forward_connections, 1024u);
  EXPECT_EQ(b.udp_forward_flows, 4096u);
  EXPECT_EQ(b.auto_forwards, 256u);
  EXPECT_EQ(b.vsock_streams, 256u);
  EXPECT_EQ(b.dns_tcp_connections, 64u);
  EXPECT_EQ(b.control_connections, 16u);
}

TEST(Budget, CapsGrowWithTheLimit) {
  FdBudget prev = derive_budget(256);
  for (uint64_t n = 512; n <= (uint64_t{1} << 20); n *= 2) {
    const FdBudget b = derive_budget(n);
    EXPECT_GE(b.tcp_flows, prev.tcp_flows) << n;
    EXPECT_GE(b.slirp_sockets, prev.slirp_sockets) << n;
    EXPECT_GE(b.forward_connections, prev.forward_connections) << n;
    EXPECT_GE(b.auto_forwards, prev.auto_forwards) << n;
    prev = b;
  }
}

TEST(Budget, ALimitUnderTheReserveIsReported) {
  EXPECT_TRUE(derive_budget(100).limit_too_small);
  EXPECT_TRUE(derive_budget(FdBudget::kReservedFds + FdBudget::kMinPool - 1).limit_too_small);
  EXPECT_FALSE(derive_budget(FdBudget::kReservedFds + FdBudget::kMinPool).limit_too_small);
}

TEST(Budget, FromProcessReadsTheSoftLimit) {
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur == RLIM_INFINITY) GTEST_SKIP() << "RLIMIT_NOFILE is unlimited here";
  EXPECT_EQ(FdBudget::from_process().nofile, rl.rlim_cur);
}

}  // namespace
}  // namespace causeway::netstack
