// DnsTcpFrontend: DNS over TCP for guests (RFC 7766), on a private unix
// socket that libslirp connects to for every guest TCP connection to
// 10.0.2.3:53 (slirp_add_unix: one host connection per guest connection, so
// messages of different guest connections never mix). Each connection
// decodes length-prefixed queries (RFC 1035 §4.2.2), hands them to
// dns::Proxy as kTcp, and writes the answers back framed, in completion
// order (RFC 7766 §7 allows out-of-order answers; ids tell them apart).
//
// Limits: kMaxConnections connections (more are closed at once, counted);
// kMaxPending unanswered queries per connection (reading pauses until
// answers drain: backpressure to the guest's TCP). IPv6 TCP to fd00::3 is not
// served (libslirp's unix forwards are IPv4-only); UDP over IPv6 is.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/error_code.hpp>
#include <memory>
#include <string>

#include "base/accept_backoff.hpp"
#include "dns/proxy.hpp"

namespace causeway::netstack {

struct DnsTcpStats {
  uint64_t connections = 0;
  uint64_t refused = 0;
  uint64_t queries = 0;
  uint64_t framing_errors = 0;
  uint64_t accept_backoffs = 0;  // accepts paused: out of descriptors (base/accept_backoff.hpp)
};

class DnsTcpFrontend {
 public:
  static constexpr size_t kMaxConnections = 64;
  static constexpr size_t kMaxPending = 16;

  DnsTcpFrontend(boost::asio::io_context& io, dns::Proxy& proxy, std::string path);
  ~DnsTcpFrontend();
  boost::system::error_code start();
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const DnsTcpStats& stats() const { return *stats_; }

 private:
  void accept();
  dns::Proxy& proxy_;
  std::string path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  AcceptBackoff backoff_;  // out of descriptors: pause accepts instead of spinning
  std::shared_ptr<DnsTcpStats> stats_ = std::make_shared<DnsTcpStats>();
  std::shared_ptr<size_t> live_ = std::make_shared<size_t>(0);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool bound_ = false;
};

}  // namespace causeway::netstack
