// The idle rule of a distribution's VM (cli/idle_rule.hpp): time is a number
// passed in, so every case is exact.
#include "cli/idle_rule.hpp"

#include <gtest/gtest.h>

namespace causeway::cli {
namespace {

constexpr int64_t kTimeout = 2000;

TEST(IdleRule, NothingIsIdleBeforeTheVmIsReady) {
  IdleRule r(kTimeout);
  r.update(0, 0, 100);
  EXPECT_FALSE(r.deadline_ms());
  EXPECT_FALSE(r.expired(1'000'000));
}

TEST(IdleRule, AnUnusedVmPowersOffOneTimeoutAfterReady) {
  IdleRule r(kTimeout);
  r.ready(1000);
  ASSERT_TRUE(r.deadline_ms());
  EXPECT_EQ(*r.deadline_ms(), 3000);
  EXPECT_FALSE(r.expired(2999));
  EXPECT_TRUE(r.expired(3000));
}

TEST(IdleRule, AnOpenSessionKeepsItUpAndTheClockRestartsWhenItCloses) {
  IdleRule r(kTimeout);
  r.ready(0);
  r.update(1, 0, 500);
  EXPECT_FALSE(r.deadline_ms());
  EXPECT_FALSE(r.expired(100'000));
  r.update(2, 0, 600);
  r.update(1, 0, 700);
  EXPECT_FALSE(r.deadline_ms());  // one still open
  r.update(0, 0, 10'000);
  EXPECT_EQ(r.deadline_ms(), 12'000);
  // A change that keeps it idle does not restart the clock.
  r.update(0, 0, 11'000);
  EXPECT_EQ(r.deadline_ms(), 12'000);
}

TEST(IdleRule, ALateForwardedListenerKeepsItUp) {
  IdleRule r(kTimeout);
  r.ready(0);
  r.update(0, 1, 100);
  EXPECT_FALSE(r.deadline_ms());
  r.update(0, 0, 5000);
  EXPECT_EQ(r.deadline_ms(), 7000);
}

TEST(IdleRule, NegativeTimeoutIsNeverAndZeroIsAtOnce) {
  IdleRule never(-1);
  never.ready(0);
  EXPECT_FALSE(never.deadline_ms());
  EXPECT_FALSE(never.expired(INT64_MAX / 2));
  IdleRule at_once(0);
  at_once.ready(50);
  EXPECT_TRUE(at_once.expired(50));
  at_once.update(1, 0, 60);
  EXPECT_FALSE(at_once.expired(60));
  at_once.update(0, 0, 70);
  EXPECT_TRUE(at_once.expired(70));
}

TEST(LateListeners, ListenersOfTheBootDoNotCountNewOnesDo) {
  LateListeners late;
  const ListenerKey ssh{true, 22}, web{true, 8000}, dns{false, 53};
  late.set_baseline({ssh, dns});
  EXPECT_EQ(late.count({ssh, dns}, {ssh, dns}), 0u);
  EXPECT_EQ(late.count({ssh, dns, web}, {ssh, dns, web}), 1u);
}

TEST(LateListeners, OnlyForwardedListenersCount) {
  LateListeners late;
  const ListenerKey web{true, 8000};
  // The guest listens but there is no active forward (ignored port, host port taken).
  EXPECT_EQ(late.count({web}, {}), 0u);
  EXPECT_EQ(late.count({web}, {web}), 1u);
}

TEST(LateListeners, ABootListenerThatComesBackIsNew) {
  LateListeners late;
  const ListenerKey ssh{true, 22};
  late.set_baseline({ssh});
  EXPECT_EQ(late.count({ssh}, {ssh}), 0u);
  EXPECT_EQ(late.count({}, {}), 0u);  // gone: leaves the baseline
  EXPECT_TRUE(late.baseline().empty());
  EXPECT_EQ(late.count({ssh}, {ssh}), 1u);  // the user restarted it
}

TEST(LateListeners, TcpAndUdpOnOnePortAreDifferentListeners) {
  LateListeners late;
  late.set_baseline({{true, 53}});
  EXPECT_EQ(late.count({{true, 53}, {false, 53}}, {{true, 53}, {false, 53}}), 1u);
}

}  // namespace
}  // namespace causeway::cli
