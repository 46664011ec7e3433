// libFuzzer target: the agent protocol's decoder, both directions — what a
// hostile guest sends the host (MirrorReport, listeners, output) and what the
// agent accepts. Every message that decodes must re-encode (encode_checked)
// to bytes that decode to the same message: the decoder never lets through
// what the validator refuses.
//
// Input: byte 0 picks the direction and whether the rest is a frame stream
// (Decoder) or one payload (decode_payload, type = byte 1).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "vmm/agent/protocol.hpp"

using namespace causeway::agent;

namespace {

void round_trip(const Message& m, Direction dir) {
  std::vector<uint8_t> bytes;
  if (encode_checked(m, bytes)) std::abort();  // decoded yet invalid: the two disagree
  Decoder d(dir);
  d.feed(bytes);
  auto again = d.next();
  if (!again || !(*again == m)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const Direction dir = (data[0] & 1) ? Direction::GuestToHost : Direction::HostToGuest;
  const std::span<const uint8_t> rest(data + 2, size - 2);
  if (data[0] & 2) {
    std::error_code ec;
    const auto type = static_cast<MessageType>(data[1]);
    if (auto m = decode_payload(type, rest, ec)) {
      if (direction_of(type) == dir) round_trip(*m, dir);
    }
    return 0;
  }
  Decoder d(dir);
  // Fed in two pieces at a point byte 1 picks: frames split anywhere.
  const size_t cut = rest.empty() ? 0 : data[1] % (rest.size() + 1);
  d.feed(rest.first(cut));
  while (auto m = d.next()) round_trip(*m, dir);
  d.feed(rest.subspan(cut));
  while (auto m = d.next()) round_trip(*m, dir);
  return 0;
}
