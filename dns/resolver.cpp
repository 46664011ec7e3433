#include "dns/resolver.hpp"

#include <string>

namespace causeway::dns {
namespace {

// Boost's error_category has a public non-virtual destructor by design
// (categories are never deleted through a base pointer: they are
// function-local statics). -Wnon-virtual-dtor cannot know that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class ResolveCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "causeway.dns.resolve"; }
  std::string message(int ev) const override {
    switch (static_cast<ResolveErrc>(ev)) {
      case ResolveErrc::kTimeout: return "no upstream DNS server answered in time";
      case ResolveErrc::kUpstreamFailed: return "every upstream DNS server failed or was unreachable";
      case ResolveErrc::kNoServers: return "no upstream DNS server configured";
      case ResolveErrc::kBadQuery: return "not a DNS query that can be forwarded";
      case ResolveErrc::kOverCapacity: return "too many DNS queries pending upstream";
      case ResolveErrc::kCancelled: return "DNS query cancelled by a server change";
    }
    return "unknown DNS resolver error";
  }
};
#pragma GCC diagnostic pop

}  // namespace

std::string_view to_string(Transport t) { return t == Transport::kTcp ? "tcp" : "udp"; }

const boost::system::error_category& resolve_category() {
  static const ResolveCategory category;  // immutable; error categories are singletons by design
  return category;
}

boost::system::error_code make_error_code(ResolveErrc e) { return {static_cast<int>(e), resolve_category()}; }

}  // namespace causeway::dns
