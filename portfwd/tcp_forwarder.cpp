#include "portfwd/tcp_forwarder.hpp"

#include <netinet/in.h>

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace causeway::portfwd {
namespace asio = boost::asio;

namespace {

socklen_t sockaddr_len(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

// One relayed connection. Owned by the handlers in flight (shared_ptr): it
// lives exactly as long as some direction still has work.
class Splice : public std::enable_shared_from_this<Splice> {
 public:
  Splice(StreamSocket a, StreamSocket b, std::shared_ptr<RelayStats> stats)
      : a_(std::move(a)), b_(std::move(b)), stats_(std::move(stats)) {
    ++stats_->active;
  }
  ~Splice() { --stats_->active; }

  void start() {
    pump(a_, b_, buf_ab_, stats_->bytes_to_guest, done_ab_);
    pump(b_, a_, buf_ba_, stats_->bytes_from_guest, done_ba_);
  }

 private:
  using Buffer = std::array<uint8_t, TcpForwarder::kBufferSize>;

  void pump(StreamSocket& from, StreamSocket& to, Buffer& buf, uint64_t& counter, bool& done) {
    from.async_read_some(asio::buffer(buf), [self = shared_from_this(), &from, &to, &buf, &counter, &done](
                                                boost::system::error_code ec, size_t n) {
      if (ec) {
        // EOF (or reset): pass the half-close on, and let the other direction finish.
        boost::system::error_code ignored;
        done = true;
        if (ec == asio::error::eof) {
          to.shutdown(asio::socket_base::shutdown_send, ignored);
        } else {
          self->abort();
        }
        return;
      }
      asio::async_write(to, asio::buffer(buf, n),
                        [self, &from, &to, &buf, &counter, &done, n](boost::system::error_code wec, size_t) {
                          if (wec) {
                            done = true;
                            self->abort();
                            return;
                          }
                          counter += n;
                          self->pump(from, to, buf, counter, done);
                        });
    });
  }

  void abort() {
    boost::system::error_code ignored;
    a_.close(ignored);
    b_.close(ignored);
  }

  StreamSocket a_;
  StreamSocket b_;
  std::shared_ptr<RelayStats> stats_;
  Buffer buf_ab_{};
  Buffer buf_ba_{};
  bool done_ab_ = false;
  bool done_ba_ = false;
};

}  // namespace

void splice_streams(StreamSocket a, StreamSocket b, std::shared_ptr<RelayStats> stats) {
  std::make_shared<Splice>(std::move(a), std::move(b), std::move(stats))->start();
}

TcpForwarder::TcpForwarder(asio::io_context& io, const sockaddr_storage& listen_on, GuestTarget guest,
                           GuestConnector& connector)
    : listen_on_(listen_on), guest_(guest), connector_(connector), acceptor_(io), backoff_(io) {}

TcpForwarder::~TcpForwarder() {
  *alive_ = false;
  boost::system::error_code ec;
  acceptor_.close(ec);
}

boost::system::error_code TcpForwarder::start() {
  const asio::generic::stream_protocol::endpoint ep(&listen_on_, sockaddr_len(listen_on_), IPPROTO_TCP);
  boost::system::error_code ec;
  acceptor_.open(ep.protocol(), ec);
  if (ec) return ec;
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (listen_on_.ss_family == AF_INET6) {
    const int one = 1;  // the IPv4 side, if any, is a forward of its own
    ::setsockopt(acceptor_.native_handle(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return ec;
  }
  accept();
  return {};
}

void TcpForwarder::accept() {
  acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec,
                                                                     StreamSocket client) {
    auto a = alive.lock();
    if (!a || !*a || ec == asio::error::operation_aborted) return;
    if (backoff_.defer_if_exhausted(ec, "forward to guest port " + std::to_string(guest_.port), [this] { accept(); })) {
      stats_->accept_backoffs = backoff_.backoffs();
      return;
    }
    if (!ec) {
      if (stats_->active >= max_connections_) {
        ++stats_->refused;
      } else {
        auto c = std::make_shared<StreamSocket>(std::move(client));
        connector_.async_connect(guest_, [c, stats = stats_](boost::system::error_code cec, StreamSocket guest) {
          if (cec) {
            ++stats->refused;  // closing `c` tells the host client
            return;
          }
          ++stats->connections;
          splice_streams(std::move(*c), std::move(guest), stats);
        });
      }
    }
    accept();
  });
}

}  // namespace causeway::portfwd
