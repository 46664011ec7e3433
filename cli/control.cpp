#include "cli/control.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/unique_fd.hpp"

namespace causeway::cli {
namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

asio::awaitable<void> serve_client(asio::local::stream_protocol::socket sock, const ControlHandler& handler) {
  asio::streambuf buf(ControlServer::kMaxLine);
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(sock, buf, '\n', asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;  // EOF, or a line over kMaxLine (not_found)
    std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<long>(n) - 1);
    buf.consume(n);
    const std::string reply = handle_control_line(line, handler) + "\n";
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(reply), asio::as_tuple(asio::use_awaitable));
    if (wec) co_return;
  }
}

bool someone_listening(const std::string& path) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// json and std::string convert into each other: say which side is meant.
using ReplyResult = boost::system::result<json, std::string>;

}  // namespace

std::string handle_control_line(const std::string& line, const ControlHandler& handler) {
  json req;
  try {
    req = json::parse(line);
  } catch (const json::exception& e) {
    return json{{"ok", false}, {"error", fmt::format("bad JSON request: {}", e.what())}}.dump();
  }
  if (!req.is_object() || !req.contains("cmd") || !req["cmd"].is_string())
    return json{{"ok", false}, {"error", "request must be an object with a string \"cmd\""}}.dump();
  try {
    return handler(req).dump();
  } catch (const json::exception& e) {
    return json{{"ok", false}, {"error", fmt::format("bad request: {}", e.what())}}.dump();
  }
}

ControlServer::ControlServer(asio::io_context& io, std::string path, ControlHandler handler)
    : io_(io), path_(std::move(path)), handler_(std::move(handler)), acceptor_(io) {}

ControlServer::~ControlServer() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (bound_) ::unlink(path_.c_str());
}

boost::system::result<void, std::string> ControlServer::start() {
  if (path_.size() >= sizeof(sockaddr_un::sun_path))
    return fmt::format("control socket path too long ({} bytes): {}", path_.size(), path_);
  if (::access(path_.c_str(), F_OK) == 0) {
    if (someone_listening(path_)) return fmt::format("control socket {} is in use by another process", path_);
    ::unlink(path_.c_str());  // stale, from a causeway that did not exit cleanly
  }
  boost::system::error_code ec;
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(path_), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fmt::format("cannot listen on control socket {}: {}", path_, ec.message());
  bound_ = true;
  accept();
  return {};
}

void ControlServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      asio::co_spawn(io_, serve_client(std::move(sock), handler_), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          spdlog::warn("control client failed: {}", x.what());
        }
      });
    }
    accept();
  });
}

boost::system::result<json, std::string> control_request(const std::string& path, const json& request) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return ReplyResult(boost::system::in_place_error, fmt::format("control socket path too long: {}", path));
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    return ReplyResult(boost::system::in_place_error, fmt::format("cannot connect to control socket {}: {} (is causeway running with --control {}?)", path,
                       std::strerror(errno), path));
  const std::string line = request.dump() + "\n";
  if (::send(s.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return ReplyResult(boost::system::in_place_error, fmt::format("write to {}: {}", path, std::strerror(errno)));
  std::string reply;
  char buf[4096];
  timeval tv{10, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (reply.find('\n') == std::string::npos) {
    const ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n <= 0) return ReplyResult(boost::system::in_place_error, fmt::format("no reply from {}: {}", path, n == 0 ? "connection closed" : std::strerror(errno)));
    reply.append(buf, static_cast<size_t>(n));
  }
  try {
    return ReplyResult(boost::system::in_place_value, json::parse(reply.substr(0, reply.find('\n'))));
  } catch (const json::exception& e) {
    return ReplyResult(boost::system::in_place_error, fmt::format("malformed reply from {}: {}", path, e.what()));
  }
}

}  // namespace causeway::cli
