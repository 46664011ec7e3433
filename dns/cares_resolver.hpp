// CaresResolver: a Resolver that forwards raw queries to the host's DNS
// servers with c-ares, driven by Boost.Asio on the caller's io_context.
//
// Theory of operation
// -------------------
// A *channel set* is what one list of servers gets: three ares_channels
// (internal/cares_channel.hpp), because c-ares fixes the transport and the
// truncation policy per channel:
//   udp       ARES_FLAG_IGNTC                    queries without EDNS
//   udp_edns  ARES_FLAG_IGNTC | ARES_FLAG_EDNS   queries with an OPT record
//   tcp       ARES_FLAG_USEVC                    queries the guest sent over TCP
// IGNTC makes c-ares hand a truncated UDP answer back as it is (TC set)
// instead of retrying over TCP: a guest that asked over UDP gets the TC
// answer and retries over TCP itself, which then goes out over TCP here.
// Two UDP channels, because c-ares 1.18 silently cuts a UDP answer to the
// channel's packet size when IGNTC is set (512 bytes without ARES_FLAG_EDNS):
// EDNS queries need the EDNS channel (packet size kMaxUdpPayload) so large
// answers survive, and queries without EDNS must stay away from it, because
// on an EDNS channel c-ares answers a FORMERR without OPT by chopping the
// last 11 bytes of the query (assuming they are its own OPT) and retrying.
// Every server of the set is in each channel (ares_set_servers_ports_csv);
// c-ares tries them in order (or rotates, with `options rotate`), each
// kTries times, so a dead server fails over to the next — at once when the
// kernel reports it unreachable (ICMP, RST), after kTryTimeout when it is
// silent. c-ares 1.18 keeps no server health, so every new query starts at
// the first server again: an upstream that answers again is used at once.
//
// Queries are forwarded raw, with two changes: a fresh random id upstream
// (the guest's id is put back in the answer; c-ares 1.18 would otherwise
// send the guest's own id, which a guest could make predictable), and the
// OPT record's UDP payload size lowered to kMaxUdpPayload, the size of
// c-ares's receive buffer (MAXENDSSZ): a larger answer would be cut by
// recvfrom() without TC. Answers come back byte for byte, id aside.
//
// Split DNS: set_routes() gives each DOMAIN its own channel set; a query
// goes to the set of the longest DOMAIN its question name is at or under
// (wire.hpp's name_in_domain), else to the host's servers. Routes with the
// same DOMAIN share a set (and fail over between their servers).
//
// Live updates: update_servers() and set_routes() build new sets; new
// queries use them at once. The old sets are *retired*: queries in flight
// on them finish there, and a retired set is destroyed once it has no
// pending query (at most kMaxRetiredSets wait; older ones are destroyed at
// once and their queries complete with kCancelled).
//
// Timeouts: kTryTimeout per try, doubled after each pass over the server
// list (c-ares's back-off), kTries passes: with one server an unanswered
// query fails after 2 s + 4 s. The proxy answers SERVFAIL at its own
// deadline (proxy.hpp, 5 s) whichever comes first.
//
// Not handled, on purpose: IPv6 link-local servers with a zone
// ("fe80::1%eth0") are skipped with a warning — c-ares 1.18 cannot address
// them (its CSV parser rejects the zone, its structs have no scope id).
// c-ares ≥ 1.22 rewrites queries itself and ≥ 1.23 caches answers; the
// cache is turned off when the headers offer it, the rewriting is not
// something this code can prevent.
//
// Thread safety: confined to the executor of the io_context it was built on.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "dns/host_config.hpp"
#include "dns/resolver.hpp"

namespace causeway::dns {

namespace internal {
class CaresChannel;
}

struct CaresOptions {
  static constexpr auto kTryTimeout = std::chrono::milliseconds(2000);  // per try; c-ares's own default
  static constexpr int kTries = 2;                  // passes over the server list (glibc: attempts:2)
  static constexpr size_t kMaxPending = 4096;       // queries in flight upstream; over it: kOverCapacity
  static constexpr uint16_t kMaxUdpPayload = 4096;  // c-ares 1.18's UDP receive buffer (MAXENDSSZ)

  std::chrono::milliseconds try_timeout = kTryTimeout;
  int tries = kTries;
  size_t max_pending = kMaxPending;
};

struct CaresResolverStats {
  uint64_t sent_udp = 0;
  uint64_t sent_tcp = 0;
  uint64_t answers = 0;
  uint64_t timeouts = 0;
  uint64_t failures = 0;         // every other error, kOverCapacity and kNoServers included
  uint64_t routed = 0;           // queries that went to a --dns-route set
  uint64_t servers_skipped = 0;  // link-local servers with a zone (see above)
  uint64_t sets_retired = 0;
  size_t pending = 0;
  size_t retired_sets = 0;  // retired sets still draining
};

class CaresResolver final : public Resolver {
 public:
  static constexpr size_t kMaxRetiredSets = 8;

  explicit CaresResolver(boost::asio::io_context& io, CaresOptions options = {});
  // Destroys every channel; pending completions are dropped (resolver.hpp).
  ~CaresResolver() override;
  CaresResolver(const CaresResolver&) = delete;
  CaresResolver& operator=(const CaresResolver&) = delete;

  // The host's servers. Until the first call every query fails kNoServers.
  // On error the previous servers stay in use.
  boost::system::error_code update_servers(const HostDnsConfig& cfg);

  // Replaces the split-DNS routes (at most kMaxRoutes). On error the
  // previous routes stay in use.
  boost::system::error_code set_routes(const std::vector<DnsRoute>& routes);

  void send(std::span<const uint8_t> query, Transport t, Completion done) override;

  [[nodiscard]] CaresResolverStats stats() const;

 private:
  struct ChannelSet;
  struct Route;

  boost::system::result<std::unique_ptr<ChannelSet>> make_set(const std::vector<DnsServer>& servers, bool rotate,
                                                              std::string label);
  void retire(std::unique_ptr<ChannelSet> set);
  void schedule_reap();
  void complete(Completion done, Answer answer);
  ChannelSet* route_for(std::string_view name, bool& routed);
  uint16_t random_id();

  boost::asio::io_context& io_;
  CaresOptions options_;
  CaresResolverStats stats_;
  std::vector<uint8_t> random_pool_;
  size_t random_used_ = 0;
  bool reap_posted_ = false;
  bool destroying_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Declared last, destroyed first (their callbacks use the members above).
  std::list<std::unique_ptr<ChannelSet>> retired_;
  std::vector<Route> routes_;
  std::unique_ptr<ChannelSet> host_;
};

}  // namespace causeway::dns
