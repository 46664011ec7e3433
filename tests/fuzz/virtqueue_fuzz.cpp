// libFuzzer target: the virtqueue walker over guest RAM the fuzzer fills.
// Input: byte 0 picks ring features (EVENT_IDX, INDIRECT_DESC); the rest is
// guest RAM (descriptor table, rings and buffers all live in it), so every
// descriptor field, index and flag is hostile. The walker must never read
// or write outside RAM, loop, or crash; chains must come back well-formed.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "vmm/guest_memory.hpp"
#include "vmm/virtio_spec.hpp"
#include "vmm/virtqueue.hpp"

using namespace causeway::vmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  constexpr uint64_t kBase = 0x100000;
  constexpr size_t kRam = 16384;
  constexpr uint32_t kQueue = 16;
  // Scratch guest RAM, reused between runs (zeroed first): a harness-only
  // static, not state the code under test keeps.
  alignas(4096) static uint8_t ram[kRam];
  std::memset(ram, 0, kRam);
  std::memcpy(ram, data + 1, std::min(size - 1, kRam));
  GuestMemory mem;
  (void)mem.add_buffer_region(kBase, {ram, kRam});
  Virtqueue q(mem);
  // desc at 0, avail at 256, used at 512 (all inside RAM, aligned).
  (void)q.set_layout({kQueue, kBase, kBase + 256, kBase + 512});
  uint64_t f = 0;
  if (data[0] & 1) f |= virtio::kFEventIdx;
  if (data[0] & 2) f |= virtio::kFIndirectDesc;
  q.set_features(f);
  q.set_next_avail(static_cast<uint16_t>(data[0] >> 4));
  if (q.start().has_error()) __builtin_trap();
  DescriptorChain c;
  for (int i = 0; i < 64; ++i) {
    const auto r = q.pop(c);
    if (r != Virtqueue::Pop::kChain) break;
    uint64_t rb = 0, wb = 0;
    for (auto& b : c.readable) {
      if (b.data() < ram || b.data() + b.size() > ram + kRam) __builtin_trap();
      rb += b.size();
    }
    for (auto& b : c.writable) {
      if (b.data() < ram || b.data() + b.size() > ram + kRam) __builtin_trap();
      std::memset(b.data(), 0xab, b.size());
      wb += b.size();
    }
    if (rb != c.readable_bytes || wb != c.writable_bytes) __builtin_trap();
    if (!c.ok() && (!c.readable.empty() || !c.writable.empty())) __builtin_trap();
    q.push_used(c.head, static_cast<uint32_t>(wb));
    q.notify();
  }
  (void)q.enable_notifications();
  return 0;
}
