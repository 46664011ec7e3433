// TcpForwarder: listens on a host address and relays each accepted
// connection to a guest service through a GuestConnector.
//
// Per connection, two directions, each a read→write loop over its own fixed
// buffer (kBufferSize): a direction reads again only after its write
// completed, so a slow reader on one side stops reads from the other — that
// is the backpressure, and memory per connection is bounded by the two
// buffers. EOF on one side becomes shutdown(SHUT_WR) on the other (half-close
// survives); the connection closes when both directions have finished or
// either side fails. No thread per connection: everything is completion
// handlers on the engine executor.
//
// Capacity: at most kMaxConnections live connections per forwarder; beyond
// that new connections are accepted and closed at once (counted as refused).
// Out of descriptors (EMFILE/ENFILE), accepting pauses for kAcceptBackoff
// instead of spinning (counted as accept_backoffs).
//
// Thread safety: confined to the engine executor.
#pragma once

#include <sys/socket.h>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "base/accept_backoff.hpp"
#include "portfwd/guest_connector.hpp"

namespace causeway::portfwd {

struct RelayStats {
  uint64_t connections = 0;  // accepted and relayed
  uint64_t active = 0;
  uint64_t refused = 0;  // over capacity, or the guest side could not be reached
  uint64_t bytes_to_guest = 0;
  uint64_t bytes_from_guest = 0;
  uint64_t accept_backoffs = 0;  // accepts paused kAcceptBackoff: out of descriptors (base/accept_backoff.hpp)
};

class TcpForwarder {
 public:
  static constexpr size_t kBufferSize = 64 * 1024;
  static constexpr size_t kMaxConnections = 1024;

  TcpForwarder(boost::asio::io_context& io, const sockaddr_storage& listen_on, GuestTarget guest,
               GuestConnector& connector);
  ~TcpForwarder();
  TcpForwarder(const TcpForwarder&) = delete;
  TcpForwarder& operator=(const TcpForwarder&) = delete;

  // Binds and listens. EADDRINUSE and friends come back as they are.
  boost::system::error_code start();
  [[nodiscard]] const RelayStats& stats() const { return *stats_; }
  // The cap on live connections (default kMaxConnections; the process's descriptor budget,
  // netstack/budget.hpp, sets it lower when RLIMIT_NOFILE is small).
  void set_max_connections(size_t n) { max_connections_ = n; }

 private:
  void accept();

  sockaddr_storage listen_on_;
  GuestTarget guest_;
  GuestConnector& connector_;
  boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor_;
  AcceptBackoff backoff_;
  // Shared with live connections, which may outlive the forwarder briefly.
  std::shared_ptr<RelayStats> stats_ = std::make_shared<RelayStats>();
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  size_t max_connections_ = kMaxConnections;
};

// Splices two connected streams until both directions finish. Exposed for
// tests and for other relays (vsock, namespace sockets).
void splice_streams(StreamSocket a, StreamSocket b, std::shared_ptr<RelayStats> stats);

}  // namespace causeway::portfwd
