// Test helpers for dns/: a query builder that does not use the code under
// test, a FakeResolver at the Resolver interface, and drain(). The fake clock
// and the bounded io_context driver (no sleeps: poll up to a predicate) are
// the shared ones from tests/support/fakes.hpp, named here for the DNS tests.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dns/resolver.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::dns::testing {

using Bytes = std::vector<uint8_t>;
using causeway::testing::FakeClock;
using causeway::testing::run_until;

inline void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

inline void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}

inline uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>((b[at] << 8) | b[at + 1]); }

// Uncompressed wire form of a dotted name with no escapes ("" is the root).
inline void put_name(Bytes& b, std::string_view name) {
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    b.push_back(static_cast<uint8_t>(dot - start));
    for (size_t i = start; i < dot; ++i) b.push_back(static_cast<uint8_t>(name[i]));
    start = dot + 1;
  }
  b.push_back(0);
}

struct QueryOptions {
  uint16_t id = 0x1234;
  uint16_t flags = 0x0100;            // RD
  std::optional<uint16_t> edns_size;  // adds an OPT record advertising this size
  uint16_t qclass = 1;
};

inline Bytes make_query(std::string_view name, uint16_t qtype, QueryOptions o = {}) {
  Bytes b;
  put16(b, o.id);
  put16(b, o.flags);
  put16(b, 1);
  put16(b, 0);
  put16(b, 0);
  put16(b, o.edns_size ? 1 : 0);
  put_name(b, name);
  put16(b, qtype);
  put16(b, o.qclass);
  if (o.edns_size) {
    b.push_back(0);  // root
    put16(b, 41);
    put16(b, *o.edns_size);
    put32(b, 0);
    put16(b, 0);
  }
  return b;
}

inline uint16_t rcode_of(std::span<const uint8_t> msg) { return msg.size() < 4 ? 0xffff : msg[3] & 0x0f; }
inline bool tc_of(std::span<const uint8_t> msg) { return msg.size() >= 3 && (msg[2] & 0x02) != 0; }

// A Resolver that records queries; the test completes them.
class FakeResolver final : public Resolver {
 public:
  struct Sent {
    Bytes query;
    Transport transport;
    Completion done;
  };
  void send(std::span<const uint8_t> query, Transport t, Completion done) override {
    sent.push_back(Sent{Bytes(query.begin(), query.end()), t, std::move(done)});
  }
  // Completes the oldest pending query (as a real resolver would: later,
  // from the io_context, never inside send()).
  void complete_front(Answer a) {
    Sent s = std::move(sent.front());
    sent.pop_front();
    s.done(std::move(a));
  }
  std::deque<Sent> sent;
};

// Runs every handler that is ready now, without waiting.
inline void drain(boost::asio::io_context& io) {
  io.restart();
  io.poll();
}

}  // namespace causeway::dns::testing
