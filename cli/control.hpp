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
// Thread safety: confined to the engine executor (the handler runs there).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include <boost/system/result.hpp>

namespace causeway::cli {

using ControlHandler = std::function<nlohmann::json(const nlohmann::json& request)>;

class ControlServer {
 public:
  static constexpr size_t kMaxLine = 64 * 1024;

  ControlServer(boost::asio::io_context& io, std::string path, ControlHandler handler);
  ~ControlServer();
  // Binds the socket. Fails if another live process holds `path`.
  boost::system::result<void, std::string> start();

 private:
  void accept();

  boost::asio::io_context& io_;
  std::string path_;
  ControlHandler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  bool bound_ = false;
};

// Answers a request line with the handler; never throws.
std::string handle_control_line(const std::string& line, const ControlHandler& handler);

// Client side: sends one request and returns the reply (or an error line).
boost::system::result<nlohmann::json, std::string> control_request(const std::string& path,
                                                                   const nlohmann::json& request);

}  // namespace causeway::cli
