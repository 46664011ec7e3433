#include "vmm/vhost_user/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace causeway::vmm::vhost_user {

namespace asio = boost::asio;
using asio::local::stream_protocol;

struct Server::Connection {
  Connection(stream_protocol::socket s, std::unique_ptr<Session> sess)
      : socket(std::move(s)), session(std::move(sess)) {}
  stream_protocol::socket socket;
  MessageAssembler assembler;
  std::unique_ptr<Session> session;
};

namespace {

void add(SessionStats& into, const SessionStats& s) {
  into.messages += s.messages;
  into.rejected += s.rejected;
  into.unsupported += s.unsupported;
  into.mem_tables += s.mem_tables;
  into.kicks += s.kicks;
  into.interrupts += s.interrupts;
  into.broken_queues += s.broken_queues;
}

}  // namespace

Server::Server(asio::io_context& io, const Clock& clock, VirtioDevice& device, std::string name)
    : io_(io), clock_(clock), device_(device), name_(std::move(name)) {}

Server::~Server() {
  *alive_ = false;
  on_change_ = nullptr;
  close();
}

ServerStats Server::stats() const {
  ServerStats s = stats_;
  s.session = past_sessions_;
  s.connected = conn_ != nullptr;
  if (conn_) {
    add(s.session, conn_->session->stats());
    s.acked_features = conn_->session->acked_features();
    s.protocol_features = conn_->session->protocol_features();
  }
  return s;
}

const VirtqueueStats* Server::queue_stats(size_t i) const { return conn_ ? conn_->session->queue_stats(i) : nullptr; }

boost::system::result<void, std::string> Server::listen(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return fmt::format("{} exists and is not a socket", path);
    // A socket file: live if something accepts on it.
    stream_protocol::socket probe(io_);
    boost::system::error_code ec;
    probe.connect(stream_protocol::endpoint(path), ec);
    if (!ec) return fmt::format("{} is in use by another process", path);
    ::unlink(path.c_str());
  }
  auto acc = std::make_unique<stream_protocol::acceptor>(io_);
  boost::system::error_code ec;
  acc->open(stream_protocol(), ec);
  if (!ec) acc->bind(stream_protocol::endpoint(path), ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fmt::format("cannot listen on {}: {}", path, ec.message());
  acceptor_ = std::move(acc);
  path_ = path;
  accept_next();
  return {};
}

boost::system::result<void, std::string> Server::connect(const std::string& path) {
  stream_protocol::socket s(io_);
  boost::system::error_code ec;
  s.connect(stream_protocol::endpoint(path), ec);
  if (ec) return fmt::format("cannot connect to {}: {}", path, ec.message());
  serve(std::move(s));
  return {};
}

void Server::accept_next() {
  if (!acceptor_) return;
  std::weak_ptr<bool> alive = alive_;
  acceptor_->async_accept([this, alive](boost::system::error_code ec, stream_protocol::socket s) {
    if (alive.expired() || ec == asio::error::operation_aborted) return;
    if (backoff_.defer_if_exhausted(ec, name_ + " " + path_, [this] { accept_next(); })) return;
    if (ec) {
      spdlog::warn("{}: accept on {}: {}", name_, path_, ec.message());
    } else {
      serve(std::move(s));
    }
    accept_next();
  });
}

void Server::serve(stream_protocol::socket socket) {
  if (conn_) {
    ++stats_.replaced;
    end("replaced by a new connection");
  }
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  conn_ = std::make_unique<Connection>(std::move(socket), std::make_unique<Session>(io_, clock_, device_, name_));
  ++stats_.connections;
  spdlog::info("{}: front-end connected", name_);
  if (on_change_) on_change_(true);
  if (conn_) read_some(*conn_);
}

void Server::read_some(Connection& c) {
  std::weak_ptr<bool> alive = alive_;
  Connection* cp = &c;
  c.socket.async_wait(stream_protocol::socket::wait_read, [this, alive, cp](boost::system::error_code ec) {
    if (alive.expired() || ec == asio::error::operation_aborted) return;
    if (conn_.get() != cp) return;  // that connection already ended
    if (ec) {
      end("socket error: " + ec.message());
      return;
    }
    on_readable(*cp);
  });
}

void Server::on_readable(Connection& c) {
  // Bounded work per wake-up so a chatty front-end cannot starve the data path.
  for (int budget = 64; budget > 0; --budget) {
    const size_t want = c.assembler.wanted();
    std::array<uint8_t, kHeaderSize + kMaxPayloadSize> buf;
    alignas(struct cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * (kMaxFds + 1))> ctrl{};
    iovec iov{buf.data(), want};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctrl.data();
    mh.msg_controllen = ctrl.size();
    const ssize_t n = ::recvmsg(c.socket.native_handle(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    std::vector<UniqueFd> fds;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        // SAFETY: CMSG_DATA points at `count` ints inside ctrl (the kernel
        // filled cmsg_len); memcpy avoids an unaligned int read.
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    if (n < 0) {
      end(fmt::format("recvmsg: {}", std::strerror(errno)));
      return;
    }
    if (n == 0) {
      end("front-end closed the connection");
      return;
    }
    if (mh.msg_flags & MSG_CTRUNC) {
      ++stats_.frame_errors;
      end("too many file descriptors on one message");
      return;
    }
    if (auto err = c.assembler.feed(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), std::move(fds))) {
      ++stats_.frame_errors;
      end(fmt::format("malformed message: {}", to_string(*err)));
      return;
    }
    while (auto msg = c.assembler.take()) {
      const uint32_t req = msg->request;
      spdlog::trace("{}: <- {} ({} bytes, {} fds)", name_, to_string(static_cast<Request>(req)), msg->payload.size(),
                    msg->fds.size());
      Session::Outcome out = c.session->handle(std::move(*msg));
      if (!out.error.empty()) spdlog::warn("{}: refused {}", name_, out.error);
      if (out.reply) {
        const auto& r = *out.reply;
        size_t off = 0;
        while (off < r.size()) {
          const ssize_t w =
              ::send(c.socket.native_handle(), r.data() + off, r.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) {
            end(fmt::format("cannot send reply: {}", std::strerror(errno)));
            return;
          }
          off += static_cast<size_t>(w);
        }
      }
      if (out.close) {
        ++stats_.protocol_errors;
        end(out.error);
        return;
      }
    }
  }
  read_some(c);
}

void Server::end(const std::string& why) {
  if (!conn_) return;
  spdlog::info("{}: front-end disconnected ({})", name_, why);
  add(past_sessions_, conn_->session->stats());
  ++stats_.disconnects;
  // Session's destructor detaches the queues and resets the device.
  auto dying = std::move(conn_);
  boost::system::error_code ec;
  dying->socket.close(ec);
  dying.reset();
  if (on_change_) on_change_(false);
}

void Server::close() {
  if (acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
    acceptor_.reset();
    if (!path_.empty()) ::unlink(path_.c_str());
    path_.clear();
  }
  end("server closed");
}

}  // namespace causeway::vmm::vhost_user
