// The host's end of the relay channel; see relay_client.hpp.
#include "vmm/agent/relay_client.hpp"

#include <sys/socket.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

#include "base/unique_fd.hpp"

namespace causeway::agent {
namespace asio = boost::asio;

namespace {

constexpr size_t kBridgeChunk = 64 * 1024;
constexpr size_t kBridgeHigh = 256 * 1024;  // guest → host bytes waiting for the socket before we pause

boost::system::error_code errno_code(int e) { return {e, boost::system::system_category()}; }

}  // namespace

namespace detail {

class StreamBridge : public std::enable_shared_from_this<StreamBridge> {
 public:
  StreamBridge(asio::io_context& io, int fd, std::shared_ptr<vmm::VsockStream> stream)
      : sock_(io, asio::local::stream_protocol(), fd), stream_(std::move(stream)), rbuf_(kBridgeChunk) {}

  void start(std::vector<uint8_t> early) {
    auto self = shared_from_this();
    stream_->set_on_data([self](std::span<const uint8_t> d) { self->on_stream_data(d); });
    stream_->set_on_writable([self] { self->pump_to_stream(); });
    stream_->set_on_eof([self] {
      self->guest_eof_ = true;
      self->maybe_shut_socket();
    });
    stream_->set_on_closed([self](std::string_view) {
      self->stream_dead_ = true;
      self->guest_eof_ = true;
      self->maybe_shut_socket();
      self->check_done();
    });
    if (!early.empty()) on_stream_data(early);
    read_socket();
  }
  // Ends the relay now: closes the socket, resets the stream.
  void close() { finish(); }
  void set_on_done(std::function<void()> cb) { on_done_ = std::move(cb); }

 private:
  // ---- guest → host: stream bytes into the socket
  void on_stream_data(std::span<const uint8_t> d) {
    if (done_) return;
    wq_.insert(wq_.end(), d.begin(), d.end());
    if (!writing_) write_socket();
    if (!paused_ && wq_.size() + inflight_.size() > kBridgeHigh) {
      paused_ = true;
      stream_->set_receive_paused(true);
    }
  }
  void write_socket() {
    if (wq_.empty()) return;
    writing_ = true;
    inflight_.swap(wq_);
    wq_.clear();
    asio::async_write(sock_, asio::buffer(inflight_),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        self->writing_ = false;
                        self->inflight_.clear();
                        if (self->done_) return;
                        if (ec) return self->finish();
                        if (!self->wq_.empty()) return self->write_socket();
                        if (self->paused_ && self->stream_) {
                          self->paused_ = false;
                          self->stream_->set_receive_paused(false);
                        }
                        self->maybe_shut_socket();
                        self->check_done();
                      });
  }
  void maybe_shut_socket() {
    if (done_ || !guest_eof_ || writing_ || !wq_.empty() || sock_shut_) return;
    boost::system::error_code ignored;
    sock_.shutdown(asio::socket_base::shutdown_send, ignored);
    sock_shut_ = true;
    check_done();
  }

  // ---- host → guest: socket bytes into the stream
  void read_socket() {
    sock_.async_read_some(asio::buffer(rbuf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      if (self->done_) return;
      if (ec == asio::error::eof) {
        self->sock_eof_ = true;
      } else if (ec) {
        return self->finish();
      } else {
        self->roff_ = 0;
        self->rlen_ = n;
      }
      self->pump_to_stream();
    });
  }
  void pump_to_stream() {
    if (done_ || !stream_) return;
    while (roff_ < rlen_) {
      if (stream_dead_) return finish();  // the guest side is gone: what is left cannot be delivered
      const size_t n = stream_->write(std::span<const uint8_t>(rbuf_.data() + roff_, rlen_ - roff_));
      if (n == 0) return;  // out of credit: on_writable calls again
      roff_ += n;
    }
    roff_ = rlen_ = 0;
    if (sock_eof_) {
      if (!stream_shut_) {
        stream_shut_ = true;
        stream_->shutdown_write();
      }
      check_done();
      return;
    }
    if (!reading_blocked()) read_socket();
  }
  [[nodiscard]] bool reading_blocked() const { return stream_shut_; }

  void check_done() {
    if (done_) return;
    const bool to_host_done = sock_shut_;
    const bool to_guest_done = stream_shut_ || stream_dead_;
    if (to_host_done && to_guest_done) finish();
  }
  void finish() {
    if (done_) return;
    done_ = true;
    boost::system::error_code ignored;
    sock_.close(ignored);
    if (stream_) {
      // Break the stream → callbacks → this cycle.
      stream_->set_on_data(nullptr);
      stream_->set_on_writable(nullptr);
      stream_->set_on_eof(nullptr);
      stream_->set_on_closed(nullptr);
      stream_->close();
      stream_.reset();
    }
    if (auto cb = std::move(on_done_)) cb();
  }

  asio::local::stream_protocol::socket sock_;
  std::shared_ptr<vmm::VsockStream> stream_;
  std::vector<uint8_t> rbuf_;
  size_t roff_ = 0, rlen_ = 0;
  std::vector<uint8_t> wq_, inflight_;
  bool writing_ = false, paused_ = false;
  bool guest_eof_ = false, sock_shut_ = false;
  bool sock_eof_ = false, stream_shut_ = false;
  bool stream_dead_ = false, done_ = false;
  std::function<void()> on_done_;
};

}  // namespace detail

namespace {

using detail::StreamBridge;

void detach(vmm::VsockStream& s) {
  s.set_on_data(nullptr);
  s.set_on_writable(nullptr);
  s.set_on_eof(nullptr);
  s.set_on_closed(nullptr);
}

// One TCP relay handshake in progress.
struct Handshake {
  explicit Handshake(asio::io_context& io) : timer(io) {}
  std::shared_ptr<vmm::VsockStream> stream;
  std::vector<uint8_t> got;
  asio::steady_timer timer;
  portfwd::GuestConnector::ConnectHandler handler;
  bool done = false;
};

}  // namespace

std::weak_ptr<StreamBridge> bridge_stream(asio::io_context& io, int unix_fd, std::shared_ptr<vmm::VsockStream> stream,
                                          std::vector<uint8_t> early, std::function<void()> on_done) {
  auto b = std::make_shared<StreamBridge>(io, unix_fd, std::move(stream));
  b->set_on_done(std::move(on_done));
  b->start(std::move(early));
  return b;
}

void close_bridge(StreamBridge& b) { b.close(); }

// ---------------------------------------------------------------- TCP
VsockRelayConnector::VsockRelayConnector(asio::io_context& io, vmm::VsockHost& vsock, uint8_t family)
    : io_(io), vsock_(vsock), family_(family) {}

VsockRelayConnector::~VsockRelayConnector() {
  *alive_ = false;
  for (auto& w : *bridges_)
    if (auto b = w.lock()) b->close();
}

void VsockRelayConnector::async_connect(const portfwd::GuestTarget& target, ConnectHandler handler) {
  const uint16_t guest_port = target.port;
  if (!target.default_loopback()) {
    // RelayRequest names protocol, family and port only: the agent always
    // dials 127.0.0.1 / ::1. The policy does not plan such forwards for the
    // VM (PolicySettings::tcp_any_v4_loopback stays false); refuse, never
    // relay to the wrong address.
    asio::post(io_, [h = std::move(handler), &io = io_] {
      h(asio::error::address_family_not_supported, portfwd::StreamSocket(io));
    });
    return;
  }
  auto hs = std::make_shared<Handshake>(io_);
  hs->handler = std::move(handler);
  auto stats = stats_;
  auto& io = io_;
  auto bridges = bridges_;
  // Ends the handshake once: a socket for the relay, or an error.
  auto complete = [&io, stats, bridges](const std::shared_ptr<Handshake>& h, boost::system::error_code ec) {
    if (h->done) return;
    h->done = true;
    h->timer.cancel();
    if (!ec) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) ec = errno_code(errno);
      if (!ec) {
        std::vector<uint8_t> early(h->got.begin() + kRelayReplySize, h->got.end());
        detach(*h->stream);
        std::erase_if(*bridges, [](const std::weak_ptr<StreamBridge>& w) { return w.expired(); });
        bridges->push_back(bridge_stream(io, sv[1], std::move(h->stream), std::move(early)));
        portfwd::StreamSocket s(io, boost::asio::generic::stream_protocol(AF_UNIX, 0), sv[0]);
        auto done = std::move(h->handler);
        done({}, std::move(s));
        return;
      }
    }
    if (h->stream) {
      detach(*h->stream);
      h->stream->close();
      h->stream.reset();
    }
    auto done = std::move(h->handler);
    done(ec, portfwd::StreamSocket(io));
  };

  hs->timer.expires_after(kHandshakeTimeout);
  hs->timer.async_wait([hs, complete, stats](boost::system::error_code ec) {
    if (ec || hs->done) return;
    ++stats->failed;
    complete(hs, asio::error::timed_out);
  });
  const auto request = encode_relay_request(RelayRequest{IpProto::Tcp, family_, guest_port});
  vsock_.connect(kAgentRelayPort, [hs, complete, stats, request](boost::system::error_code ec,
                                                                 std::shared_ptr<vmm::VsockStream> stream) {
    if (hs->done) {
      if (stream) stream->close();
      return;
    }
    if (ec || !stream) {
      ++stats->failed;
      return complete(hs, ec ? ec : asio::error::connection_refused);
    }
    ++stats->streams;
    hs->stream = stream;
    stream->set_on_data([hs, complete, stats](std::span<const uint8_t> d) {
      if (hs->done) return;
      hs->got.insert(hs->got.end(), d.begin(), d.end());
      if (hs->got.size() < kRelayReplySize) return;
      const auto reply = decode_relay_reply(std::span<const uint8_t, kRelayReplySize>(hs->got.data(), kRelayReplySize));
      if (!reply) {
        ++stats->failed;
        return complete(hs, asio::error::connection_reset);
      }
      if (*reply != 0) ++stats->refused;
      complete(hs, *reply ? errno_code(*reply) : boost::system::error_code());
    });
    stream->set_on_closed([hs, complete, stats](std::string_view) {
      if (hs->done) return;
      ++stats->failed;
      complete(hs, asio::error::connection_reset);
    });
    // A new stream has the guest's whole buffer as credit: 8 bytes always fit.
    if (stream->write(request) != request.size()) {
      ++stats->failed;
      complete(hs, asio::error::connection_reset);
    }
  });
}

// ---------------------------------------------------------------- UDP
struct VsockRelayDatagramChannel::Flow {
  std::shared_ptr<vmm::VsockStream> stream;
  std::vector<uint8_t> out;  // the request, then framed datagrams, not yet taken by the stream
  size_t out_off = 0;
  std::vector<uint8_t> reply;
  bool open = false;  // the agent answered 0
  bool dead = false;
  RelayDatagramReader reader;
  ReplyHandler on_reply;
};

VsockRelayDatagramChannel::VsockRelayDatagramChannel(asio::io_context& /*io: the flows run on vsock's loop*/,
                                                     vmm::VsockHost& vsock, uint8_t family)
    : vsock_(vsock), family_(family) {}

VsockRelayDatagramChannel::~VsockRelayDatagramChannel() {
  *alive_ = false;
  for (auto& [id, f] : flows_)
    if (f->stream) {
      detach(*f->stream);
      f->stream->close();
    }
}

std::optional<uint16_t> VsockRelayDatagramChannel::open_flow(uint16_t guest_port, ReplyHandler on_reply) {
  if (flows_.size() >= kMaxFlows) return std::nullopt;
  while (next_id_ == 0 || flows_.contains(next_id_)) ++next_id_;
  const uint16_t id = next_id_++;
  auto f = std::make_shared<Flow>();
  f->on_reply = std::move(on_reply);
  const auto request = encode_relay_request(RelayRequest{IpProto::Udp, family_, guest_port});
  f->out.assign(request.begin(), request.end());
  flows_[id] = f;
  std::weak_ptr<bool> alive = alive_;
  std::weak_ptr<Flow> weak = f;
  vsock_.connect(kAgentRelayPort, [this, alive, weak](boost::system::error_code ec,
                                                      std::shared_ptr<vmm::VsockStream> stream) {
    auto flow = weak.lock();
    if (alive.expired() || !flow || flow->dead) {
      if (stream) stream->close();
      return;
    }
    if (ec || !stream) {
      ++stats_.failed;
      flow->dead = true;
      return;
    }
    ++stats_.streams;
    flow->stream = stream;
    Flow* fp = flow.get();
    stream->set_on_data([this, alive, fp](std::span<const uint8_t> d) {
      if (alive.expired() || fp->dead) return;
      if (!fp->open) {
        const size_t need = kRelayReplySize - fp->reply.size();
        const size_t take = std::min(need, d.size());
        fp->reply.insert(fp->reply.end(), d.begin(), d.begin() + static_cast<std::ptrdiff_t>(take));
        d = d.subspan(take);
        if (fp->reply.size() < kRelayReplySize) return;
        const auto r = decode_relay_reply(std::span<const uint8_t, kRelayReplySize>(fp->reply.data(), kRelayReplySize));
        if (!r || *r != 0) {
          ++(r ? stats_.refused : stats_.failed);
          fp->dead = true;
          fp->stream->close();
          return;
        }
        fp->open = true;
      }
      fp->reader.feed(d);
      while (auto dg = fp->reader.next()) {
        if (fp->on_reply) fp->on_reply(*dg);
        if (fp->dead) return;  // the reply handler closed the flow
      }
      if (fp->reader.error()) {
        ++stats_.failed;
        fp->dead = true;
        fp->stream->close();
      }
    });
    stream->set_on_writable([this, alive, fp] {
      if (!alive.expired() && !fp->dead) flush(*fp);
    });
    stream->set_on_closed([alive, fp](std::string_view) {
      if (!alive.expired()) fp->dead = true;
    });
    flush(*flow);
  });
  return id;
}

void VsockRelayDatagramChannel::flush(Flow& f) {
  if (!f.stream || f.dead) return;
  while (f.out_off < f.out.size()) {
    const size_t n = f.stream->write(std::span<const uint8_t>(f.out.data() + f.out_off, f.out.size() - f.out_off));
    if (n == 0) break;
    f.out_off += n;
  }
  if (f.out_off == f.out.size()) {
    f.out.clear();
    f.out_off = 0;
  } else if (f.out_off > 64 * 1024) {
    f.out.erase(f.out.begin(), f.out.begin() + static_cast<std::ptrdiff_t>(f.out_off));
    f.out_off = 0;
  }
}

bool VsockRelayDatagramChannel::send_on_flow(uint16_t flow, std::span<const uint8_t> payload) {
  auto it = flows_.find(flow);
  if (it == flows_.end() || it->second->dead || payload.size() > kMaxRelayDatagram) {
    ++stats_.udp_dropped;
    return false;
  }
  Flow& f = *it->second;
  if (f.out.size() - f.out_off + payload.size() + 2 > kMaxFlowQueue) {
    ++stats_.udp_dropped;
    return false;
  }
  append_relay_datagram(payload, f.out);
  flush(f);
  return true;
}

void VsockRelayDatagramChannel::close_flow(uint16_t flow) {
  auto it = flows_.find(flow);
  if (it == flows_.end()) return;
  auto f = it->second;
  flows_.erase(it);
  f->dead = true;
  if (f->stream) {
    detach(*f->stream);
    f->stream->close();
  }
}

}  // namespace causeway::agent
