// libFuzzer target for the guest-facing parser: validate_query, the name
// decoder, the builders that echo guest bytes, and the local zone. Every
// input must come back without a crash, a leak or undefined behaviour, and
// with a few invariants that hold for any bytes.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dns/local_zone.hpp"
#include "dns/tcp_framing.hpp"
#include "dns/wire.hpp"

using namespace causeway::dns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> msg(data, size);
  const QueryCheck check = validate_query(msg);
  if (check.ok()) {
    // A query that passes names its question, and the routing name agrees.
    const auto name = question_name(msg);
    if (!name || *name != check.question.name) __builtin_trap();
    if (check.question.end > size) __builtin_trap();
    // Every decoded name re-encodes: the escapes round-trip.
    std::vector<uint8_t> encoded;
    if (!append_name(encoded, *name) || encoded.size() > kMaxNameLength) __builtin_trap();
  }
  if (check.verdict != QueryVerdict::kDrop) {
    const auto r = make_error_response(msg, Rcode::kFormErr);
    if (r.size() < kHeaderSize || get_id(r) != check.header.id) __builtin_trap();
  }
  static const LocalZone zone(LocalZoneAddresses::nat_defaults());
  if (const auto a = zone.answer(msg)) {
    if (a->size() < kHeaderSize || get_id(*a) != check.header.id) __builtin_trap();
  }
  (void)find_edns(msg);
  TcpFrameDecoder decoder;
  std::vector<std::vector<uint8_t>> out;
  (void)decoder.feed(msg, out);
  return 0;
}
