// FakeDnsServer: an in-process DNS server implementing "just enough of
// RFC 1035" for component tests (after Envoy's test server). UDP and TCP on
// one loopback address and port (port 0 by default), answering from a
// table. Its own minimal parsing, independent of dns/wire.
//
// Answers: QR, AA, RA set, RD copied, the question echoed byte for byte,
// records owned by a pointer to the question (0xc00c), an OPT record back
// when the query had one. Unknown name: NXDOMAIN; known name, other type:
// NODATA. Over UDP an answer larger than the client's size (512, or its
// EDNS size) is cut to header + question with TC set (RFC 1035 §4.2.1),
// as is every UDP answer with truncate_udp. Modes: answer, silent (reads
// and says nothing), servfail.
//
// Runs on the caller's io_context (the test's), no threads. Every answer
// it sends is recorded, so tests compare bytes end to end.
//
// Thread safety: confined to the io_context's executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dns/host_config.hpp"
#include "tests/support/dns_test_support.hpp"

namespace causeway::dns::testing {

class FakeDnsServer {
 public:
  enum class Mode { kAnswer, kSilent, kServFail };
  struct Rr {
    uint16_t type;
    Bytes rdata;
    uint32_t ttl = 300;
  };

  // Binds UDP and TCP on `address`:`port` (0: a free port for both).
  // ok() tells whether both binds worked.
  FakeDnsServer(boost::asio::io_context& io, const boost::asio::ip::address& address, uint16_t port = 0);
  ~FakeDnsServer();
  FakeDnsServer(const FakeDnsServer&) = delete;
  FakeDnsServer& operator=(const FakeDnsServer&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] DnsServer server() const;

  void add(std::string name, Rr rr);  // name lower-case, no trailing dot
  void set_mode(Mode m) { mode_ = m; }
  void set_truncate_udp(bool on) { truncate_udp_ = on; }

  // Rdata builders.
  static Bytes a(const char* dotted);
  static Bytes aaaa(const char* text);
  static Bytes mx(uint16_t preference, std::string_view exchange);
  static Bytes txt(const std::vector<std::string>& strings);

  size_t udp_queries = 0;
  size_t tcp_queries = 0;
  std::vector<Bytes> received;  // every query, as received
  std::vector<Bytes> sent;      // every answer, as sent

 private:
  struct Conn;
  void receive_udp();
  void accept_tcp();
  void read_tcp(const std::shared_ptr<Conn>& c);
  // The answer to `q`, or empty when silent or unparseable.
  Bytes answer(const Bytes& q, bool udp);

  boost::asio::io_context& io_;
  boost::asio::ip::udp::socket udp_;
  boost::asio::ip::tcp::acceptor tcp_;
  boost::asio::ip::udp::endpoint peer_;
  Bytes buf_ = Bytes(65536);
  std::list<std::weak_ptr<Conn>> conns_;
  std::map<std::string, std::vector<Rr>> table_;
  Mode mode_ = Mode::kAnswer;
  bool truncate_udp_ = false;
  bool ok_ = false;
  uint16_t port_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A port on 127.0.0.1 that nothing listens on (UDP gets ICMP unreachable,
// TCP gets RST): a dead server.
uint16_t unused_port();

}  // namespace causeway::dns::testing
