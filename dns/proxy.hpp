// Proxy: the guest-facing DNS service on the virtual resolver address
// (10.0.2.3 / fd00::3 in NAT mode). The engine hands it each query it
// intercepts, over UDP or TCP, and sends back whatever reply it gets.
//
// Theory of operation
// -------------------
//   on_query(bytes, transport, reply)
//     validate_query()     kDrop    -> nothing sent            malformed, dropped
//                          kFormErr -> FORMERR                  malformed
//     opcode != QUERY                -> NOTIMP                  not_implemented
//     LocalZone::answer()            -> the local answer        local_answers
//     in-flight table full           -> SERVFAIL                refused_over_capacity
//     otherwise: Resolver::send() raw; the answer (guest id restored) ->
//       guest                                                   answers
//       resolver error               -> SERVFAIL                upstream_failures / timeouts
//       nothing by the deadline      -> SERVFAIL                timeouts
//
// The in-flight table holds at most limits.max_in_flight queries, each with
// a deadline (limits.query_deadline after it arrived, from the injected
// Clock). At the deadline the guest gets SERVFAIL even if the resolver is
// still trying; the query keeps its slot until the resolver completes it
// (every Resolver completes every query, within its own timeouts), so a
// guest that floods queries at a silent upstream is held to max_in_flight
// upstream queries — memory and sockets stay bounded. A late answer is
// counted and discarded.
//
// Replies: `reply` is called at most once per query, never from inside
// on_query (local answers and errors are posted to the io_context), and not
// at all for dropped queries. Every reply carries the guest's id. A UDP
// answer is relayed as the upstream sent it: the upstream saw the guest's own
// EDNS size, and a truncated answer keeps its TC bit, so the guest retries
// over TCP (RFC 7766 §5). TCP framing is the engine's, with tcp_framing.hpp.
//
// Guest-triggered errors (malformed queries, overflow) and upstream errors
// are counted and logged through rate limiters.
//
// Thread safety: confined to the engine executor (the io_context's).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "dns/local_zone.hpp"
#include "dns/resolver.hpp"

namespace causeway::dns {

struct ProxyLimits {
  static constexpr size_t kMaxInFlight = 1024;  // queries; over it: SERVFAIL (refused_over_capacity)
  // s; glibc's own per-try timeout is 5 s (RES_TIMEOUT), so a guest hears
  // SERVFAIL about when it would have given up on this server anyway.
  static constexpr auto kQueryDeadline = std::chrono::milliseconds(5000);

  size_t max_in_flight = kMaxInFlight;
  std::chrono::milliseconds query_deadline = kQueryDeadline;
};

struct ProxyStats {
  uint64_t queries = 0;                // every on_query call
  uint64_t answers = 0;                // upstream answers relayed to the guest
  uint64_t local_answers = 0;          // answered from the local zone
  uint64_t upstream_failures = 0;      // resolver errors other than timeouts -> SERVFAIL
  uint64_t timeouts = 0;               // resolver timeouts and our deadline -> SERVFAIL
  uint64_t malformed = 0;              // FORMERR sent, or dropped
  uint64_t dropped = 0;                // of malformed: no header, or a response (QR set)
  uint64_t not_implemented = 0;        // opcode other than QUERY -> NOTIMP
  uint64_t refused_over_capacity = 0;  // in-flight table full -> SERVFAIL
  uint64_t late_answers = 0;           // resolver finished after the deadline had answered
  size_t in_flight = 0;                // queries holding a slot now
};

class Proxy {
 public:
  using Reply = std::function<void(std::vector<uint8_t> answer)>;

  Proxy(boost::asio::io_context& io, const Clock& clock, Resolver& resolver, LocalZone zone, ProxyLimits limits = {});
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  void on_query(std::span<const uint8_t> query, Transport t, Reply reply);

  [[nodiscard]] ProxyStats stats() const;

  // Answers SERVFAIL to every query past its deadline at clock.now(). The
  // proxy's own timer calls it; public so tests with a fake clock can too.
  void expire_overdue();

 private:
  struct InFlight {
    Reply reply;
    uint16_t guest_id = 0;
    int64_t deadline_ns = 0;
    std::string name;           // for logs
    std::vector<uint8_t> head;  // the query's header and question, for a SERVFAIL
  };

  void on_resolved(uint64_t seq, Resolver::Answer answer);
  void post_reply(Reply reply, std::vector<uint8_t> bytes);
  [[nodiscard]] static std::vector<uint8_t> servfail_for(const InFlight& entry);
  void arm_deadline_timer();

  boost::asio::io_context& io_;
  const Clock& clock_;
  Resolver& resolver_;
  LocalZone zone_;
  ProxyLimits limits_;
  ProxyStats stats_;
  RateLimitedLog malformed_log_;
  RateLimitedLog upstream_log_;
  // Waiting for an answer, by arrival order (= deadline order).
  std::map<uint64_t, InFlight> waiting_;
  // Answered SERVFAIL at the deadline; the resolver still holds them.
  size_t orphaned_ = 0;
  uint64_t next_seq_ = 0;
  boost::asio::steady_timer deadline_timer_;
  int64_t timer_due_ns_ = -1;  // when the armed timer fires (clock ns); -1: not armed
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::dns
