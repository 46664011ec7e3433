#include "netstack/dns_tcp_frontend.hpp"

#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <deque>

#include "dns/tcp_framing.hpp"

namespace causeway::netstack {
namespace asio = boost::asio;

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::local::stream_protocol::socket s, dns::Proxy& proxy, std::shared_ptr<DnsTcpStats> stats,
             std::shared_ptr<size_t> live, std::weak_ptr<bool> owner_alive)
      : sock_(std::move(s)),
        proxy_(proxy),
        stats_(std::move(stats)),
        live_(std::move(live)),
        owner_alive_(std::move(owner_alive)) {
    ++*live_;
  }
  ~Connection() { --*live_; }

  void read() {
    if (pending_ >= DnsTcpFrontend::kMaxPending || closed_) {
      reading_ = false;
      return;  // resumed when answers drain
    }
    reading_ = true;
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      self->reading_ = false;
      if (ec) {
        self->closed_read_ = true;
        self->maybe_close();
        return;
      }
      std::vector<std::vector<uint8_t>> msgs;
      if (!self->decoder_.feed({self->buf_.data(), n}, msgs)) {
        ++self->stats_->framing_errors;
        self->close();
        return;
      }
      for (auto& m : msgs) self->query(std::move(m));
      self->read();
    });
  }

 private:
  void query(std::vector<uint8_t> q) {
    auto owner = owner_alive_.lock();
    if (!owner || !*owner) return;
    ++stats_->queries;
    ++pending_;
    proxy_.on_query(q, dns::Transport::kTcp, [self = shared_from_this()](std::vector<uint8_t> answer) {
      --self->pending_;
      if (self->closed_) return;
      self->out_.push_back(dns::encode_tcp_frame(answer));
      self->flush();
      if (!self->reading_ && !self->closed_read_) self->read();
    });
  }

  void flush() {
    if (writing_ || out_.empty() || closed_) return;
    writing_ = true;
    asio::async_write(sock_, asio::buffer(out_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        self->writing_ = false;
                        self->out_.pop_front();
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->flush();
                        self->maybe_close();
                      });
  }

  // The guest closed its side: finish the answers still owed, then close.
  void maybe_close() {
    if (closed_read_ && pending_ == 0 && out_.empty() && !writing_) close();
  }
  void close() {
    closed_ = true;
    boost::system::error_code ignored;
    sock_.close(ignored);
  }

  asio::local::stream_protocol::socket sock_;
  dns::Proxy& proxy_;
  std::shared_ptr<DnsTcpStats> stats_;
  std::shared_ptr<size_t> live_;
  std::weak_ptr<bool> owner_alive_;
  dns::TcpFrameDecoder decoder_;
  std::array<uint8_t, 4096> buf_{};
  std::deque<std::vector<uint8_t>> out_;
  size_t pending_ = 0;
  bool reading_ = false;
  bool writing_ = false;
  bool closed_read_ = false;
  bool closed_ = false;
};

}  // namespace

DnsTcpFrontend::DnsTcpFrontend(asio::io_context& io, dns::Proxy& proxy, std::string path)
    : proxy_(proxy), path_(std::move(path)), acceptor_(io), backoff_(io) {}

DnsTcpFrontend::~DnsTcpFrontend() {
  *alive_ = false;
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (bound_) ::unlink(path_.c_str());
}

boost::system::error_code DnsTcpFrontend::start() {
  boost::system::error_code ec;
  ::unlink(path_.c_str());
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(path_), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  bound_ = true;
  accept();
  return {};
}

void DnsTcpFrontend::accept() {
  acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec,
                                                                     asio::local::stream_protocol::socket s) {
    auto a = alive.lock();
    if (!a || !*a || ec == asio::error::operation_aborted) return;
    if (backoff_.defer_if_exhausted(ec, "DNS over TCP " + path_, [this] { accept(); })) {
      stats_->accept_backoffs = backoff_.backoffs();
      return;
    }
    if (!ec) {
      if (*live_ >= kMaxConnections) {
        ++stats_->refused;
      } else {
        ++stats_->connections;
        std::make_shared<Connection>(std::move(s), proxy_, stats_, live_, alive_)->read();
      }
    }
    accept();
  });
}

}  // namespace causeway::netstack
