#include "cli/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
    : io_(io),
      path_(std::move(path)),
      // `status` also reports the socket's own counters.
      handler_([this, inner = std::move(handler)](const json& req) {
        json reply = inner(req);
        if (req.value("cmd", "") == "status" && reply.is_object() && reply.value("ok", false)) {
          reply["control"] = json{{"accepted", stats_.accepted},
                                  {"refused_peers", stats_.refused_peers},
                                  {"accept_backoffs", stats_.accept_backoffs}};
          reply["accept_backoffs"] = reply.value("accept_backoffs", uint64_t{0}) + stats_.accept_backoffs;
        }
        return reply;
      }),
      acceptor_(io),
      backoff_(io) {}

ControlServer::~ControlServer() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (bound_) ::unlink(path_.c_str());
}

boost::system::result<void, std::string> ControlServer::start() {
  if (path_.size() >= sizeof(sockaddr_un::sun_path))
    return fmt::format("control socket path too long ({} bytes): {}", path_.size(), path_);
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    // Only a dead socket is ours to replace: anything else at PATH was named
    // by mistake and must survive (a typo must not cost the user a file).
    if (!S_ISSOCK(st.st_mode))
      return fmt::format(
          "control socket path {} exists and is not a socket; refusing to replace it "
          "(remove it yourself or choose another --control path)",
          path_);
    if (someone_listening(path_)) return fmt::format("control socket {} is in use by another process", path_);
    ::unlink(path_.c_str());  // stale, from a causeway that did not exit cleanly
  }
  boost::system::error_code ec;
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) {
    // bind() creates the file with 0777 & ~umask. Narrow the umask around it
    // so the socket is never reachable by others, not even until the chmod.
    // umask is per process: this runs at start-up on the only thread that
    // creates files.
    const mode_t old_mask = ::umask(static_cast<mode_t>(~kSocketMode) & 0777);
    acceptor_.bind(asio::local::stream_protocol::endpoint(path_), ec);
    ::umask(old_mask);
  }
  if (!ec && ::chmod(path_.c_str(), kSocketMode) != 0) ec.assign(errno, boost::system::system_category());
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fmt::format("cannot listen on control socket {}: {}", path_, ec.message());
  bound_ = true;
  accept();
  return {};
}

void ControlServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted) return;
    if (backoff_.defer_if_exhausted(ec, "control socket " + path_, [this] { accept(); })) {
      stats_.accept_backoffs = backoff_.backoffs();
      return;
    }
    if (!ec && !peer_allowed(sock.native_handle())) {
      boost::system::error_code ignored;
      sock.close(ignored);
    } else if (!ec) {
      ++stats_.accepted;
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

bool ControlServer::peer_allowed(int fd) {
  ucred peer{};
  socklen_t len = sizeof peer;
  const bool known = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0;
  if (known && (peer.uid == ::geteuid() || peer.uid == 0)) return true;
  ++stats_.refused_peers;
  if (refusal_log_.allow(clock_.now_ms())) {
    if (known)
      spdlog::warn("control socket {}: refused a connection from pid {} uid {} (only uid {} and root may use it){}",
                   path_, peer.pid, peer.uid, ::geteuid(),
                   refusal_log_.suppressed()
                       ? fmt::format("; {} more refused since the last message", refusal_log_.suppressed())
                       : std::string());
    else
      spdlog::warn("control socket {}: refused a connection whose credentials are unknown: {}", path_,
                   std::strerror(errno));
  }
  return false;
}

boost::system::result<json, std::string> control_request(const std::string& path, const json& request) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return ReplyResult(boost::system::in_place_error, fmt::format("control socket path too long: {}", path));
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    return ReplyResult(boost::system::in_place_error,
                       fmt::format("cannot connect to control socket {}: {} (is causeway running with --control {}?)",
                                   path, std::strerror(errno), path));
  const std::string line = request.dump() + "\n";
  if (::send(s.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return ReplyResult(boost::system::in_place_error, fmt::format("write to {}: {}", path, std::strerror(errno)));
  std::string reply;
  char buf[4096];
  timeval tv{10, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (reply.find('\n') == std::string::npos) {
    const ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n <= 0)
      return ReplyResult(
          boost::system::in_place_error,
          fmt::format("no reply from {}: {}", path, n == 0 ? "connection closed" : std::strerror(errno)));
    reply.append(buf, static_cast<size_t>(n));
  }
  try {
    return ReplyResult(boost::system::in_place_value, json::parse(reply.substr(0, reply.find('\n'))));
  } catch (const json::exception& e) {
    return ReplyResult(boost::system::in_place_error, fmt::format("malformed reply from {}: {}", path, e.what()));
  }
}

}  // namespace causeway::cli
