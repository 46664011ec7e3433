// vhost-user framing and payload parsing: valid messages, byte-at-a-time
// delivery, and malformed input (bad version, sizes, descriptor counts).
#include "vmm/vhost_user/message.hpp"

#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <cstring>

namespace causeway::vmm::vhost_user {
namespace {

std::vector<uint8_t> u64_payload(uint64_t v) {
  std::vector<uint8_t> p(8);
  std::memcpy(p.data(), &v, 8);
  return p;
}

std::vector<UniqueFd> make_fds(size_t n) {
  std::vector<UniqueFd> fds;
  for (size_t i = 0; i < n; ++i) fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
  return fds;
}

Message assemble(const std::vector<uint8_t>& wire, std::vector<UniqueFd> fds = {}) {
  MessageAssembler a;
  EXPECT_EQ(a.wanted(), kHeaderSize);
  size_t off = 0;
  bool first = true;
  while (off < wire.size()) {
    const size_t n = std::min(a.wanted(), wire.size() - off);
    auto err = a.feed({wire.data() + off, n}, first ? std::move(fds) : std::vector<UniqueFd>{});
    first = false;
    EXPECT_FALSE(err.has_value());
    off += n;
  }
  auto m = a.take();
  EXPECT_TRUE(m.has_value());
  return m ? std::move(*m) : Message{};
}

TEST(VhostUserMessage, AssemblesHeaderAndPayload) {
  auto m = assemble(encode_request(Request::kSetFeatures, u64_payload(0x1234), kFlagNeedReply));
  EXPECT_EQ(m.request, static_cast<uint32_t>(Request::kSetFeatures));
  EXPECT_TRUE(m.need_reply());
  EXPECT_EQ(*parse_u64(m), 0x1234u);
}

TEST(VhostUserMessage, AssemblesOneByteAtATime) {
  auto wire = encode_request(Request::kSetVringNum, u64_payload((256ull << 32) | 1));
  MessageAssembler a;
  for (uint8_t b : wire) {
    ASSERT_FALSE(a.take().has_value());
    ASSERT_FALSE(a.feed({&b, 1}, {}).has_value());
  }
  auto m = a.take();
  ASSERT_TRUE(m.has_value());
  auto s = parse_vring_state(*m);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->index, 1u);
  EXPECT_EQ(s->num, 256u);
  EXPECT_EQ(a.wanted(), kHeaderSize);  // ready for the next message
}

TEST(VhostUserMessage, EmptyPayloadCompletesAtTheHeader) {
  auto m = assemble(encode_request(Request::kSetOwner, {}));
  EXPECT_EQ(m.request, static_cast<uint32_t>(Request::kSetOwner));
  EXPECT_TRUE(m.payload.empty());
}

TEST(VhostUserMessage, RefusesBadVersionReplyFlagAndHugePayload) {
  for (uint32_t flags : {0u, 2u, 3u}) {
    auto wire = encode_request(Request::kSetOwner, {});
    std::memcpy(wire.data() + 4, &flags, 4);
    MessageAssembler a;
    EXPECT_EQ(a.feed(wire, {}), FrameError::kBadVersion) << flags;
  }
  auto reply = encode_reply(1, {});
  MessageAssembler a;
  EXPECT_EQ(a.feed(reply, {}), FrameError::kReplyFlag);
  auto big = encode_request(Request::kSetMemTable, {});
  const uint32_t size = kMaxPayloadSize + 1;
  std::memcpy(big.data() + 8, &size, 4);
  MessageAssembler b;
  EXPECT_EQ(b.feed(big, {}), FrameError::kPayloadTooLarge);
  const uint32_t huge = 0xffffffff;
  std::memcpy(big.data() + 8, &huge, 4);
  MessageAssembler c;
  EXPECT_EQ(c.feed(big, {}), FrameError::kPayloadTooLarge);
}

TEST(VhostUserMessage, RefusesTooManyFds) {
  MessageAssembler a;
  auto wire = encode_request(Request::kSetOwner, {});
  EXPECT_EQ(a.feed({wire.data(), 4}, make_fds(kMaxFds + 1)), FrameError::kTooManyFds);
  MessageAssembler b;
  ASSERT_FALSE(b.feed({wire.data(), 4}, make_fds(kMaxFds)).has_value());
  EXPECT_EQ(b.feed({wire.data() + 4, 4}, make_fds(1)), FrameError::kTooManyFds);
}

TEST(VhostUserMessage, PayloadSizesAreExact) {
  auto m = assemble(encode_request(Request::kSetFeatures, std::vector<uint8_t>(7)));
  EXPECT_TRUE(parse_u64(m).has_error());
  auto n = assemble(encode_request(Request::kSetVringAddr, std::vector<uint8_t>(39)));
  EXPECT_TRUE(parse_vring_addr(n).has_error());
  auto o = assemble(encode_request(Request::kSetVringNum, std::vector<uint8_t>(9)));
  EXPECT_TRUE(parse_vring_state(o).has_error());
}

TEST(VhostUserMessage, VringAddrLayout) {
  std::vector<uint8_t> p(40);
  const uint32_t idx = 1;
  const uint64_t desc = 0x1000, used = 0x2000, avail = 0x3000;
  std::memcpy(p.data(), &idx, 4);
  std::memcpy(p.data() + 8, &desc, 8);
  std::memcpy(p.data() + 16, &used, 8);
  std::memcpy(p.data() + 24, &avail, 8);
  auto a = parse_vring_addr(assemble(encode_request(Request::kSetVringAddr, p)));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->index, 1u);
  EXPECT_EQ(a->desc_user_addr, desc);
  EXPECT_EQ(a->used_user_addr, used);
  EXPECT_EQ(a->avail_user_addr, avail);
}

TEST(VhostUserMessage, VringFileNeedsExactlyTheAnnouncedFd) {
  auto with_fd = parse_vring_file(assemble(encode_request(Request::kSetVringKick, u64_payload(1)), make_fds(1)));
  ASSERT_TRUE(with_fd.has_value());
  EXPECT_EQ(with_fd->index, 1u);
  EXPECT_FALSE(with_fd->no_fd);
  EXPECT_TRUE(parse_vring_file(assemble(encode_request(Request::kSetVringKick, u64_payload(1)))).has_error());
  auto poll = parse_vring_file(assemble(encode_request(Request::kSetVringKick, u64_payload(1 | kVringNoFdFlag))));
  ASSERT_TRUE(poll.has_value());
  EXPECT_TRUE(poll->no_fd);
  EXPECT_TRUE(
      parse_vring_file(assemble(encode_request(Request::kSetVringKick, u64_payload(kVringNoFdFlag)), make_fds(1)))
          .has_error());
  EXPECT_TRUE(parse_vring_file(assemble(encode_request(Request::kSetVringKick, u64_payload(1ull << 9)), make_fds(1)))
                  .has_error());
}

std::vector<uint8_t> mem_table_payload(uint32_t n, size_t regions_in_payload) {
  std::vector<uint8_t> p(8 + 32 * regions_in_payload);
  std::memcpy(p.data(), &n, 4);
  for (size_t i = 0; i < regions_in_payload; ++i) {
    const uint64_t gpa = i << 30, size = 1 << 20, uva = 0x7f0000000000 + (i << 30), off = 0;
    std::memcpy(p.data() + 8 + 32 * i, &gpa, 8);
    std::memcpy(p.data() + 16 + 32 * i, &size, 8);
    std::memcpy(p.data() + 24 + 32 * i, &uva, 8);
    std::memcpy(p.data() + 32 + 32 * i, &off, 8);
  }
  return p;
}

TEST(VhostUserMessage, MemTableParsing) {
  auto ok = parse_mem_table(assemble(encode_request(Request::kSetMemTable, mem_table_payload(2, 2)), make_fds(2)));
  ASSERT_TRUE(ok.has_value());
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[1].guest_phys_addr, 1ull << 30);
  // The full 8-slot struct is accepted too.
  EXPECT_TRUE(parse_mem_table(assemble(encode_request(Request::kSetMemTable, mem_table_payload(2, 8)), make_fds(2)))
                  .has_value());
  EXPECT_TRUE(parse_mem_table(assemble(encode_request(Request::kSetMemTable, mem_table_payload(2, 2)), make_fds(1)))
                  .has_error());
  EXPECT_TRUE(parse_mem_table(assemble(encode_request(Request::kSetMemTable, mem_table_payload(0, 0)))).has_error());
  EXPECT_TRUE(parse_mem_table(assemble(encode_request(Request::kSetMemTable, mem_table_payload(9, 9)), make_fds(8)))
                  .has_error());
  EXPECT_TRUE(parse_mem_table(assemble(encode_request(Request::kSetMemTable, mem_table_payload(3, 2)), make_fds(3)))
                  .has_error());
}

TEST(VhostUserMessage, ConfigAccessBounds) {
  std::vector<uint8_t> p(12 + 8);
  const uint32_t off = 0, size = 8;
  std::memcpy(p.data(), &off, 4);
  std::memcpy(p.data() + 4, &size, 4);
  auto c = parse_config(assemble(encode_request(Request::kGetConfig, p)));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->size, 8u);
  const uint32_t bad_off = 250;
  std::memcpy(p.data(), &bad_off, 4);
  EXPECT_TRUE(parse_config(assemble(encode_request(Request::kGetConfig, p))).has_error());
  std::vector<uint8_t> short_p(12);
  std::memcpy(short_p.data() + 4, &size, 4);
  EXPECT_TRUE(parse_config(assemble(encode_request(Request::kGetConfig, short_p))).has_error());
}

TEST(VhostUserMessage, RepliesCarryTheReplyFlag) {
  auto r = encode_u64_reply(15, 7);
  ASSERT_EQ(r.size(), kHeaderSize + 8);
  uint32_t flags;
  std::memcpy(&flags, r.data() + 4, 4);
  EXPECT_EQ(flags, kVersion | kFlagReply);
}

}  // namespace
}  // namespace causeway::vmm::vhost_user
