// Control socket: a unix stream socket taking one JSON request per line and
// answering one JSON line each.
//
//   → {"cmd":"forward-add","spec":"8080:80"}
//   ← {"ok":true,"added":["tcp 127.0.0.1:8080 -> guest:80", ...]}
//   ← {"ok":false,"error":"tcp 127.0.0.1:8080: Address already in use"}
//
// Commands: status, stats, forward-list, forward-add, forward-remove (see the
// README). A request line is capped at kMaxLine bytes; longer lines end the
// connection. Any number of clients; each is one coroutine.
//
// Access: the socket is the engine's whole control surface (it opens host
// ports), so it is created mode 0600 whatever the umask, and every accepted
// connection's SO_PEERCRED uid must be the engine's effective uid or root;
// others are closed at once, counted (refused_peers) and logged
// (rate-limited). Start-up never removes anything at PATH but a dead socket:
// a regular file, directory or live socket there is an error naming PATH.
// The `status` reply carries these counters under "control".
//
// Thread safety: confined to the engine executor (the handler runs there).
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include <boost/system/result.hpp>

#include "base/accept_backoff.hpp"
#include "base/clock.hpp"
#include "base/log.hpp"

namespace causeway::cli {

using ControlHandler = std::function<nlohmann::json(const nlohmann::json& request)>;

struct ControlServerStats {
  uint64_t accepted = 0;         // connections served
  uint64_t refused_peers = 0;    // closed at once: peer uid neither ours nor root
  uint64_t accept_backoffs = 0;  // accepts paused: out of descriptors (base/accept_backoff.hpp)
};

class ControlServer {
 public:
  static constexpr size_t kMaxLine = 64 * 1024;
  static constexpr mode_t kSocketMode = 0600;  // owner only, whatever the umask

  ControlServer(boost::asio::io_context& io, std::string path, ControlHandler handler);
  ~ControlServer();
  // Binds the socket. Fails if another live process holds `path`, or if
  // `path` exists and is not a socket (it is left untouched).
  boost::system::result<void, std::string> start();
  [[nodiscard]] const ControlServerStats& stats() const { return stats_; }

 private:
  void accept();
  // SO_PEERCRED: true if the peer may use the API (our euid or root).
  bool peer_allowed(int fd);

  boost::asio::io_context& io_;
  std::string path_;
  ControlHandler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  bool bound_ = false;
  ControlServerStats stats_;
  SteadyClock clock_;  // for the refusal log's rate limit only
  RateLimitedLog refusal_log_;
  AcceptBackoff backoff_;
};

// Answers a request line with the handler; never throws.
std::string handle_control_line(const std::string& line, const ControlHandler& handler);

// Client side: sends one request and returns the reply (or an error line).
boost::system::result<nlohmann::json, std::string> control_request(const std::string& path,
                                                                   const nlohmann::json& request);

}  // namespace causeway::cli
