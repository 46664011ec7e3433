// LocalZone: the few names the engine answers itself, without going upstream.
//
// The zone is causeway.internal (".internal" is reserved for private use by
// ICANN, 2024; it never resolves on the Internet, so shadowing it is safe):
//   host.causeway.internal     A/AAAA: the address the guest uses to reach the host
//   gateway.causeway.internal  A/AAAA: the guest's default gateway
//   causeway.internal          SOA (the zone apex)
// A name in the zone with no record of the asked type gets NODATA (NOERROR,
// empty answer); any other name in the zone gets NXDOMAIN (RFC 8020: nothing
// exists below it either). Both carry the zone's SOA in the authority
// section so guests cache the negative answer (RFC 2308 §3, §5). In NAT mode
// host and gateway are the same address (10.0.2.2 / fd00::2): libslirp maps
// the gateway to the host's loopback.
//
// Answers echo the question bytes exactly as asked (case included, for
// resolvers that use 0x20 randomisation) and set AA. An OPT record in the
// query gets one back (RFC 6891 §7). Classes other than IN (and ANY) under
// the zone get REFUSED. Names outside the zone return nullopt: forward them.
//
// Sans-I/O: bytes in, bytes out. Thread safety: immutable after construction.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace causeway::dns {

struct LocalZoneAddresses {
  std::optional<in_addr> host_v4;
  std::optional<in6_addr> host_v6;
  std::optional<in_addr> gateway_v4;
  std::optional<in6_addr> gateway_v6;

  // NAT mode's defaults: host and gateway 10.0.2.2 and fd00::2.
  static LocalZoneAddresses nat_defaults();
};

class LocalZone {
 public:
  static constexpr std::string_view kZone = "causeway.internal";
  static constexpr uint32_t kTtl = 60;            // s; short, the addresses follow the network mode
  static constexpr uint32_t kNegativeTtl = 60;    // s; SOA MINIMUM and TTL (RFC 2308 §5)
  static constexpr uint16_t kEdnsUdpSize = 1232;  // what we advertise back (DNS flag day 2020)

  LocalZone() = default;  // knows no addresses: every name in the zone is NODATA or NXDOMAIN
  explicit LocalZone(LocalZoneAddresses addresses) : addr_(addresses) {}

  // True for the zone apex and every name below it (lower-cased form).
  static bool in_zone(std::string_view name);

  // The answer to `query` if its name is in the zone; nullopt if it is not
  // (or the query does not pass validate_query: the caller handles those).
  [[nodiscard]] std::optional<std::vector<uint8_t>> answer(std::span<const uint8_t> query) const;

  [[nodiscard]] const LocalZoneAddresses& addresses() const { return addr_; }

 private:
  LocalZoneAddresses addr_;
};

}  // namespace causeway::dns
