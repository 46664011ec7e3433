// Resolver: where the proxy sends the queries it does not answer itself.
//
// The interface is raw: a whole DNS message in, a whole DNS message out, so
// every record type, flag, EDNS option and section survives the trip. The
// answer carries the query's id (an implementation may use other ids
// upstream, and must put the caller's back).
//
// Completion contract: `done` is called exactly once, on the executor of
// the io_context the resolver was built on, and never from inside send()
// (so a caller may hold locks or iterators across send). If the resolver is
// destroyed first, pending completions are dropped, not called: callers that
// may outlive it need no guard, callers that it may outlive (the usual case)
// guard `this` themselves.
//
// Errors are ResolveErrc values in resolve_category(); the proxy maps them
// all to SERVFAIL and counts kTimeout apart.
//
// Thread safety: implementations are confined to their io_context's executor.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

namespace causeway::dns {

enum class Transport : uint8_t { kUdp, kTcp };
std::string_view to_string(Transport t);

enum class ResolveErrc {
  kTimeout = 1,     // no server answered within the tries
  kUpstreamFailed,  // every server refused, failed (SERVFAIL/REFUSED/NOTIMP) or was unreachable
  kNoServers,       // nothing to ask (no usable server configured for this name)
  kBadQuery,        // the query is not a DNS message the resolver can send
  kOverCapacity,    // the resolver's own pending-query limit
  kCancelled,       // the servers changed and the old channel had to go at once
};

const boost::system::error_category& resolve_category();
boost::system::error_code make_error_code(ResolveErrc e);

class Resolver {
 public:
  using Answer = boost::system::result<std::vector<uint8_t>>;
  using Completion = std::function<void(Answer)>;

  virtual ~Resolver() = default;

  // Sends `query` (copied before send returns) upstream over `t`.
  virtual void send(std::span<const uint8_t> query, Transport t, Completion done) = 0;
};

}  // namespace causeway::dns

template <>
struct boost::system::is_error_code_enum<causeway::dns::ResolveErrc> : std::true_type {};
