#include "dns/proxy.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "dns/wire.hpp"

namespace causeway::dns {
namespace asio = boost::asio;

Proxy::Proxy(asio::io_context& io, const Clock& clock, Resolver& resolver, LocalZone zone, ProxyLimits limits)
    : io_(io), clock_(clock), resolver_(resolver), zone_(zone), limits_(limits), deadline_timer_(io) {}

Proxy::~Proxy() {
  *alive_ = false;
  deadline_timer_.cancel();
}

ProxyStats Proxy::stats() const {
  ProxyStats s = stats_;
  s.in_flight = waiting_.size() + orphaned_;
  return s;
}

void Proxy::post_reply(Reply reply, std::vector<uint8_t> bytes) {
  asio::post(io_, [reply = std::move(reply), bytes = std::move(bytes), alive = std::weak_ptr<bool>(alive_)]() mutable {
    const auto a = alive.lock();
    if (!a || !*a) return;
    reply(std::move(bytes));
  });
}

void Proxy::on_query(std::span<const uint8_t> query, Transport t, Reply reply) {
  ++stats_.queries;
  QueryCheck check = validate_query(query);
  if (!check.ok()) {
    ++stats_.malformed;
    if (check.verdict == QueryVerdict::kDrop) ++stats_.dropped;
    if (malformed_log_.allow(clock_.now_ms()))
      spdlog::warn("dns: malformed guest query over {} ({} bytes): {}; {} ({} similar messages suppressed)",
                   to_string(t), query.size(), check.reason,
                   check.verdict == QueryVerdict::kDrop ? "dropped" : "answered FORMERR", malformed_log_.suppressed());
    if (check.verdict == QueryVerdict::kFormErr)
      post_reply(std::move(reply), make_error_response(query, Rcode::kFormErr));
    return;
  }
  if (check.header.opcode() != kOpcodeQuery) {  // NOTIFY, UPDATE, ...: not a resolver's business
    ++stats_.not_implemented;
    post_reply(std::move(reply), make_error_response(query, Rcode::kNotImp));
    return;
  }
  if (auto local = zone_.answer(query)) {
    ++stats_.local_answers;
    post_reply(std::move(reply), std::move(*local));
    return;
  }
  if (waiting_.size() + orphaned_ >= limits_.max_in_flight) {
    ++stats_.refused_over_capacity;
    if (upstream_log_.allow(clock_.now_ms()))
      spdlog::warn("dns: {} queries in flight, answering SERVFAIL to {} ({} similar messages suppressed)",
                   limits_.max_in_flight, check.question.name, upstream_log_.suppressed());
    post_reply(std::move(reply), make_error_response(query, Rcode::kServFail));
    return;
  }
  const uint64_t seq = next_seq_++;
  InFlight& entry = waiting_[seq];
  entry.reply = std::move(reply);
  entry.guest_id = check.header.id;
  entry.deadline_ns =
      clock_.now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(limits_.query_deadline).count();
  entry.name = std::move(check.question.name);
  entry.head.assign(query.begin(), query.begin() + static_cast<ptrdiff_t>(check.question.end));
  arm_deadline_timer();
  resolver_.send(query, t, [this, seq, alive = std::weak_ptr<bool>(alive_)](Resolver::Answer answer) {
    const auto a = alive.lock();
    if (!a || !*a) return;
    on_resolved(seq, std::move(answer));
  });
}

void Proxy::on_resolved(uint64_t seq, Resolver::Answer answer) {
  auto it = waiting_.find(seq);
  if (it == waiting_.end()) {  // SERVFAIL went out at the deadline
    --orphaned_;
    ++stats_.late_answers;
    return;
  }
  InFlight entry = std::move(it->second);
  waiting_.erase(it);
  std::vector<uint8_t> bytes;
  if (answer && answer->size() >= kHeaderSize) {
    bytes = std::move(*answer);
    set_id(bytes, entry.guest_id);  // the resolver restores it too; cheap to be sure
    ++stats_.answers;
  } else {
    const bool timeout = !answer && answer.error() == make_error_code(ResolveErrc::kTimeout);
    ++(timeout ? stats_.timeouts : stats_.upstream_failures);
    if (upstream_log_.allow(clock_.now_ms()))
      spdlog::warn("dns: no answer for {} from upstream ({}); answering SERVFAIL ({} similar messages suppressed)",
                   entry.name, answer ? std::string("short answer") : answer.error().message(),
                   upstream_log_.suppressed());
    bytes = servfail_for(entry);
  }
  entry.reply(std::move(bytes));
}

std::vector<uint8_t> Proxy::servfail_for(const InFlight& entry) {
  return make_error_response(entry.head, Rcode::kServFail);  // the head carries the guest's id
}

void Proxy::expire_overdue() {
  const int64_t now = clock_.now_ns();
  std::vector<InFlight> expired;
  for (auto it = waiting_.begin(); it != waiting_.end() && it->second.deadline_ns <= now;) {
    expired.push_back(std::move(it->second));
    it = waiting_.erase(it);
    ++orphaned_;
    ++stats_.timeouts;
  }
  if (!expired.empty() && upstream_log_.allow(clock_.now_ms()))
    spdlog::warn("dns: no upstream answer for {} within {} ms; answering SERVFAIL ({} similar messages suppressed)",
                 expired.front().name, limits_.query_deadline.count(), upstream_log_.suppressed());
  const std::weak_ptr<bool> alive = alive_;
  for (InFlight& entry : expired) {
    entry.reply(servfail_for(entry));
    const auto a = alive.lock();
    if (!a || !*a) return;  // a reply destroyed us
  }
  arm_deadline_timer();
}

void Proxy::arm_deadline_timer() {
  if (waiting_.empty()) {
    if (timer_due_ns_ >= 0) deadline_timer_.cancel();
    timer_due_ns_ = -1;
    return;
  }
  const int64_t due = waiting_.begin()->second.deadline_ns;
  if (timer_due_ns_ >= 0 && timer_due_ns_ <= due) return;  // armed early enough already
  timer_due_ns_ = due;
  deadline_timer_.expires_after(std::chrono::nanoseconds(std::max<int64_t>(due - clock_.now_ns(), 0)));
  deadline_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    if (ec) return;  // re-armed or cancelled
    const auto a = alive.lock();
    if (!a || !*a) return;
    timer_due_ns_ = -1;
    expire_overdue();
  });
}

}  // namespace causeway::dns
