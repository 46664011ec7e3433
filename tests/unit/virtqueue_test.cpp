// Virtqueue walker on fake guest RAM: well-formed chains, every kind of
// hostile chain, ring-index abuse and notification suppression.
#include "vmm/virtqueue.hpp"

#include <gtest/gtest.h>

#include "tests/support/fake_guest.hpp"
#include "vmm/virtio_spec.hpp"

namespace causeway::vmm {
namespace {

using testing::Buf;
using testing::FakeDriverQueue;
using testing::FakeGuestRam;
namespace v = virtio;

class VirtqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ram.attach(mem);
    ASSERT_TRUE(q.set_layout(drv.layout()).has_value());
    q.set_features(v::kFIndirectDesc);
    ASSERT_TRUE(q.start().has_value());
    q.set_on_interrupt([this] { ++interrupts; });
    q.set_on_broken([this](std::string_view) { ++broken_reports; });
  }
  Virtqueue::Pop pop() { return q.pop(chain); }

  FakeGuestRam ram;
  GuestMemory mem;
  FakeDriverQueue drv{ram, 8};
  Virtqueue q{mem};
  DescriptorChain chain;
  int interrupts = 0;
  int broken_reports = 0;
};

TEST_F(VirtqueueTest, EmptyQueuePopsNothing) { EXPECT_EQ(pop(), Virtqueue::Pop::kEmpty); }

TEST_F(VirtqueueTest, PopsReadableThenWritableBuffersInOrder) {
  const uint64_t a = ram.alloc(100), b = ram.alloc(50), c = ram.alloc(200);
  ram.at(a)[0] = 0xaa;
  const uint16_t head = drv.add_chain({{a, 100, false}, {b, 50, false}, {c, 200, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_TRUE(chain.ok());
  EXPECT_EQ(chain.head, head);
  ASSERT_EQ(chain.readable.size(), 2u);
  ASSERT_EQ(chain.writable.size(), 1u);
  EXPECT_EQ(chain.readable_bytes, 150u);
  EXPECT_EQ(chain.writable_bytes, 200u);
  EXPECT_EQ(chain.readable[0][0], 0xaa);
  EXPECT_EQ(chain.writable[0].data(), ram.at(c));
  EXPECT_EQ(pop(), Virtqueue::Pop::kEmpty);
}

TEST_F(VirtqueueTest, PushUsedReturnsTheChainToTheDriver) {
  const uint64_t a = ram.alloc(64);
  const uint16_t head = drv.add_chain({{a, 64, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.push_used(chain.head, 17);
  auto u = drv.take_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->id, head);
  EXPECT_EQ(u->len, 17u);
  EXPECT_EQ(q.stats().used, 1u);
}

TEST_F(VirtqueueTest, AddedUsedEntriesStayInvisibleUntilPublished) {
  for (int i = 0; i < 3; ++i) drv.add_chain({{ram.alloc(64), 64, true}});
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
    q.add_used(chain.head, 10);
  }
  EXPECT_EQ(drv.used_idx(), 0);  // the driver sees none of them yet
  q.publish_used();
  EXPECT_EQ(drv.used_idx(), 3);  // then all at once, with one index store
  EXPECT_EQ(q.stats().used, 3u);
  EXPECT_EQ(q.stats().used_publishes, 1u);
}

TEST_F(VirtqueueTest, NotifyPublishesFirst) {
  drv.add_chain({{ram.alloc(64), 64, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.add_used(chain.head, 1);
  q.notify();
  EXPECT_EQ(drv.used_idx(), 1);
  EXPECT_EQ(interrupts, 1);
}

TEST_F(VirtqueueTest, IndirectTableIsWalked) {
  const uint64_t a = ram.alloc(10), b = ram.alloc(20);
  drv.add_indirect({{a, 10, false}, {b, 20, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  ASSERT_TRUE(chain.ok()) << to_string(chain.error);
  EXPECT_EQ(chain.readable_bytes, 10u);
  EXPECT_EQ(chain.writable_bytes, 20u);
}

TEST_F(VirtqueueTest, DescriptorLoopIsCutAtQueueSize) {
  const uint64_t a = ram.alloc(8);
  drv.set_desc(0, a, 8, v::kDescFNext, 1);
  drv.set_desc(1, a, 8, v::kDescFNext, 0);  // back to 0
  drv.publish(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kTooLong);
  EXPECT_EQ(chain.head, 0);
  EXPECT_TRUE(chain.readable.empty());
  EXPECT_EQ(q.stats().bad_chains, 1u);
  EXPECT_FALSE(q.broken());  // the chain is bad, the queue goes on
}

TEST_F(VirtqueueTest, NextIndexOutOfRangeIsABadChain) {
  const uint64_t a = ram.alloc(8);
  drv.set_desc(3, a, 8, v::kDescFNext, 200);
  drv.publish(3);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kIndexOutOfRange);
  EXPECT_EQ(chain.head, 3);
}

TEST_F(VirtqueueTest, BufferOutsideRamIsABadChain) {
  drv.set_desc(0, ram.end() - 4, 8, 0, 0);  // runs 4 bytes past the end of RAM
  drv.publish(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kOutsideRam);
  drv.set_desc(1, 0x1000, 8, 0, 0);  // below RAM
  drv.publish(1);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kOutsideRam);
}

TEST_F(VirtqueueTest, HugeLengthIsABadChainNotAnOverflow) {
  drv.set_desc(0, ram.base(), 0xffffffffu, 0, 0);
  drv.publish(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kOutsideRam);
  drv.set_desc(1, ~0ull - 3, 16, 0, 0);  // address + length wraps
  drv.publish(1);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kOutsideRam);
}

TEST_F(VirtqueueTest, IndirectInsideIndirectIsRefused) {
  const uint64_t inner = ram.alloc(16), outer = ram.alloc(16), a = ram.alloc(8);
  FakeDriverQueue::write_desc(ram, inner, 0, a, 8, 0, 0);
  FakeDriverQueue::write_desc(ram, outer, 0, inner, 16, v::kDescFIndirect, 0);
  drv.set_desc(0, outer, 16, v::kDescFIndirect, 0);
  drv.publish(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kNestedIndirect);
}

TEST_F(VirtqueueTest, IndirectWithNextOrBadLengthIsRefused) {
  const uint64_t t = ram.alloc(32), a = ram.alloc(8);
  FakeDriverQueue::write_desc(ram, t, 0, a, 8, 0, 0);
  drv.set_desc(0, t, 16, v::kDescFIndirect | v::kDescFNext, 1);
  drv.publish(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kIndirectWithNext);
  drv.set_desc(1, t, 20, v::kDescFIndirect, 0);  // not a multiple of 16
  drv.publish(1);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kBadIndirectTable);
  drv.set_desc(2, t, 16 * 64, v::kDescFIndirect, 0);  // longer than the queue (8)
  drv.publish(2);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kBadIndirectTable);
}

TEST_F(VirtqueueTest, IndirectLoopIsCut) {
  const uint64_t t = ram.alloc(32), a = ram.alloc(8);
  FakeDriverQueue::write_desc(ram, t, 0, a, 8, v::kDescFNext, 1);
  FakeDriverQueue::write_desc(ram, t, 1, a, 8, v::kDescFNext, 0);
  drv.set_desc(0, t, 32, v::kDescFIndirect, 0);
  drv.publish(0);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kTooLong);
}

TEST_F(VirtqueueTest, IndirectWithoutTheFeatureIsRefused) {
  q.set_features(0);
  drv.add_indirect({{ram.alloc(8), 8, false}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kIndirectNotNegotiated);
}

TEST_F(VirtqueueTest, ReadableAfterWritableIsRefused) {
  const uint64_t a = ram.alloc(8);
  drv.add_chain({{a, 8, true}, {a, 8, false}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.error, ChainError::kReadableAfterWritable);
}

TEST_F(VirtqueueTest, AvailIndexJumpBreaksTheQueue) {
  drv.set_avail_idx(9);  // 9 entries ahead of a queue of 8
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);
  EXPECT_TRUE(q.broken());
  EXPECT_EQ(broken_reports, 1);
  EXPECT_EQ(q.stats().broken, 1u);
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);  // stays broken, reported once
  EXPECT_EQ(broken_reports, 1);
}

TEST_F(VirtqueueTest, HeadIndexOutOfRangeBreaksTheQueue) {
  drv.publish(8);  // queue size 8: heads are 0..7
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);
  EXPECT_TRUE(q.broken());
}

TEST_F(VirtqueueTest, RestartClearsBroken) {
  drv.publish(9);
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);
  q.stop();
  q.set_next_avail(1);
  ASSERT_TRUE(q.start().has_value());
  EXPECT_FALSE(q.broken());
}

TEST_F(VirtqueueTest, UndoPopHandsTheSameChainOutAgain) {
  const uint16_t h = drv.add_chain({{ram.alloc(8), 8, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.undo_pop(1);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_EQ(chain.head, h);
}

TEST_F(VirtqueueTest, IndexWrapsAround) {
  for (int i = 0; i < 70000; ++i) {
    drv.add_chain({{ram.base(), 8, true}});
    ASSERT_EQ(pop(), Virtqueue::Pop::kChain) << i;
    q.push_used(chain.head, 0);
    ASSERT_TRUE(drv.take_used().has_value());
  }
  EXPECT_FALSE(q.broken());
}

TEST_F(VirtqueueTest, RingOutsideRamCannotStart) {
  Virtqueue other(mem);
  ASSERT_TRUE(other.set_layout({8, ram.end() - 64, ram.base(), ram.base() + 256}).has_value());
  EXPECT_TRUE(other.start().has_error());
}

TEST_F(VirtqueueTest, MisalignedOrOddSizedLayoutIsRefused) {
  Virtqueue other(mem);
  EXPECT_TRUE(other.set_layout({8, ram.base() + 8, ram.base() + 512, ram.base() + 1024}).has_error());
  EXPECT_TRUE(other.set_layout({6, ram.base(), ram.base() + 512, ram.base() + 1024}).has_error());
  EXPECT_TRUE(other.set_layout({65536, ram.base(), ram.base() + 512, ram.base() + 1024}).has_error());
}

TEST_F(VirtqueueTest, MemoryReplacementThatDropsTheRingBreaksTheQueue) {
  drv.add_chain({{ram.alloc(8), 8, true}});
  mem.clear();
  EXPECT_EQ(pop(), Virtqueue::Pop::kBroken);
  EXPECT_EQ(broken_reports, 1);
}

TEST_F(VirtqueueTest, InterruptsFollowTheAvailFlags) {
  drv.add_chain({{ram.alloc(8), 8, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.push_used(chain.head, 0);
  q.notify();
  EXPECT_EQ(interrupts, 1);
  drv.set_avail_flags(v::kAvailFNoInterrupt);
  drv.add_chain({{ram.alloc(8), 8, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.push_used(chain.head, 0);
  q.notify();
  EXPECT_EQ(interrupts, 1);
  EXPECT_EQ(q.stats().interrupts_suppressed, 1u);
}

TEST_F(VirtqueueTest, EventIdxInterruptsOnlyWhenUsedEventIsCrossed) {
  q.set_features(v::kFEventIdx);
  for (int i = 0; i < 4; ++i) drv.add_chain({{ram.alloc(8), 8, true}});
  drv.set_used_event(2);  // "interrupt me when entry 2 is used" (used.idx becomes 3)
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
    q.push_used(chain.head, 0);
  }
  q.notify();  // first decision always interrupts (nothing signalled before)
  EXPECT_EQ(interrupts, 1);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.push_used(chain.head, 0);  // used.idx 3: crosses used_event 2
  q.notify();
  EXPECT_EQ(interrupts, 2);
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  q.push_used(chain.head, 0);  // used.idx 4: event not crossed again
  q.notify();
  EXPECT_EQ(interrupts, 2);
}

TEST_F(VirtqueueTest, EventIdxKickRequestWritesAvailEvent) {
  q.set_features(v::kFEventIdx);
  drv.add_chain({{ram.alloc(8), 8, true}});
  ASSERT_EQ(pop(), Virtqueue::Pop::kChain);
  EXPECT_FALSE(q.enable_notifications());
  EXPECT_EQ(drv.avail_event(), 1);
  drv.add_chain({{ram.alloc(8), 8, true}});
  EXPECT_TRUE(q.enable_notifications());  // the race check sees the new entry
}

TEST_F(VirtqueueTest, FlagsKickSuppression) {
  q.disable_notifications();
  EXPECT_EQ(drv.used_flags(), v::kUsedFNoNotify);
  EXPECT_FALSE(q.enable_notifications());
  EXPECT_EQ(drv.used_flags(), 0);
}

}  // namespace
}  // namespace causeway::vmm
