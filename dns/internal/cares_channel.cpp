#include "dns/internal/cares_channel.hpp"

#include <spdlog/spdlog.h>
#include <sys/time.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/errc.hpp>

namespace causeway::dns::internal {
namespace asio = boost::asio;

struct CaresChannel::Socket {
  Socket(asio::io_context& io, int descriptor) : desc(io), fd(descriptor) {
    boost::system::error_code ec;
    desc.assign(fd, ec);
    if (ec) spdlog::error("dns: cannot watch c-ares socket {}: {}", fd, ec.message());
  }
  ~Socket() {
    // c-ares owns the descriptor: never let Asio close it.
    if (desc.is_open()) (void)desc.release();
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  asio::posix::stream_descriptor desc;
  int fd;
  bool want_read = false;
  bool want_write = false;
  bool read_waiting = false;
  bool write_waiting = false;
  bool closed = false;
};

void CaresChannel::ChannelDeleter::operator()(ares_channel c) const { ares_destroy(c); }

std::string cares_status_text(int status) { return ares_strerror(status); }

CaresChannel::CaresChannel(asio::io_context& io) : io_(io), timer_(io) {}

boost::system::result<std::unique_ptr<CaresChannel>> CaresChannel::create(asio::io_context& io,
                                                                          const CaresChannelConfig& cfg) {
  std::unique_ptr<CaresChannel> self(new CaresChannel(io));
  ares_options opts{};
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB | ARES_OPT_SERVERS |
             ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS | ARES_OPT_RESOLVCONF |
             (cfg.rotate ? ARES_OPT_ROTATE : ARES_OPT_NOROTATE);
  opts.flags = cfg.flags;
  opts.timeout = static_cast<int>(cfg.try_timeout.count());
  opts.tries = cfg.tries;
  opts.sock_state_cb = &CaresChannel::on_sock_state;
  opts.sock_state_cb_data = self.get();
  // The servers come from us (ares_set_servers_ports_csv below), never from
  // the host's files: no servers, no search domains, DNS lookups only, and
  // an empty resolv.conf, so c-ares reads nothing of the host's own.
  opts.servers = nullptr;
  opts.nservers = 0;
  opts.domains = nullptr;
  opts.ndomains = 0;
  char lookups[] = "b";
  opts.lookups = lookups;
  char resolv_conf[] = "/dev/null";
  opts.resolvconf_path = resolv_conf;
  if (cfg.flags & ARES_FLAG_EDNS) {
    mask |= ARES_OPT_EDNSPSZ;
    opts.ednspsz = cfg.edns_udp_size;
  }
#ifdef ARES_OPT_QUERY_CACHE
  // c-ares >= 1.23 caches answers by default; a forwarder must not (the
  // guest and the upstream each keep their own caches and TTLs).
  mask |= ARES_OPT_QUERY_CACHE;
  opts.qcache_max_ttl = 0;
#endif
  ares_channel raw = nullptr;
  if (const int rc = ares_init_options(&raw, &opts, mask); rc != ARES_SUCCESS) {
    spdlog::error("dns: c-ares initialisation failed: {}", ares_strerror(rc));
    if (raw) ares_destroy(raw);
    return boost::system::errc::make_error_code(rc == ARES_ENOMEM ? boost::system::errc::not_enough_memory
                                                                  : boost::system::errc::io_error);
  }
  self->channel_.reset(raw);
  if (const int rc = ares_set_servers_ports_csv(raw, cfg.servers_csv.c_str()); rc != ARES_SUCCESS) {
    spdlog::error("dns: c-ares refused the servers \"{}\": {}", cfg.servers_csv, ares_strerror(rc));
    return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  }
  return self;
}

CaresChannel::~CaresChannel() {
  // ares_destroy() closes every socket (on_sock_state(fd, 0, 0) first) and
  // completes every request with ARES_EDESTRUCTION; both need the members.
  channel_.reset();
  *alive_ = false;
  timer_.cancel();
  sockets_.clear();
}

void CaresChannel::send(std::span<const uint8_t> query, Callback cb) {
  auto req = std::make_unique<Request>(Request{this, std::move(cb)});
  ++pending_;
  // c-ares may complete (and free) the request before ares_send returns.
  ares_send(channel_.get(), query.data(), static_cast<int>(query.size()), &CaresChannel::on_answer, req.release());
  arm_timer();
}

void CaresChannel::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<Request> req(static_cast<Request*>(arg));
  --req->channel->pending_;
  std::span<const uint8_t> answer;
  if (status == ARES_SUCCESS && abuf != nullptr && alen > 0) answer = {abuf, static_cast<size_t>(alen)};
  req->cb(status, answer);
}

void CaresChannel::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  static_cast<CaresChannel*>(data)->on_socket(fd, readable != 0, writable != 0);
}

void CaresChannel::on_socket(int fd, bool readable, bool writable) {
  auto it = sockets_.find(fd);
  if (!readable && !writable) {
    // c-ares is about to close(fd): let go of it while it is still open, so
    // Asio deregisters the right file (and cancels the waits).
    if (it != sockets_.end()) {
      it->second->closed = true;
      if (it->second->desc.is_open()) (void)it->second->desc.release();
      sockets_.erase(it);
    }
    return;
  }
  if (it == sockets_.end()) {
    auto s = std::make_shared<Socket>(io_, fd);
    if (!s->desc.is_open()) return;  // logged; the request will time out
    it = sockets_.emplace(fd, std::move(s)).first;
  }
  const std::shared_ptr<Socket> s = it->second;
  s->want_read = readable;
  s->want_write = writable;
  if (readable) watch(s, false);
  if (writable) watch(s, true);
}

void CaresChannel::watch(const std::shared_ptr<Socket>& s, bool write) {
  bool& waiting = write ? s->write_waiting : s->read_waiting;
  if (waiting || s->closed) return;
  waiting = true;
  s->desc.async_wait(write ? asio::posix::descriptor_base::wait_write : asio::posix::descriptor_base::wait_read,
                     [this, s, write, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
                       (write ? s->write_waiting : s->read_waiting) = false;
                       if (ec || s->closed) return;  // released: c-ares closed it
                       const auto a = alive.lock();
                       if (!a || !*a) return;
                       ares_process_fd(channel_.get(), write ? ARES_SOCKET_BAD : s->fd,
                                       write ? s->fd : ARES_SOCKET_BAD);
                       if (!s->closed) {
                         if (s->want_read) watch(s, false);
                         if (s->want_write) watch(s, true);
                       }
                       arm_timer();
                     });
}

void CaresChannel::arm_timer() {
  timeval tv{};
  if (ares_timeout(channel_.get(), nullptr, &tv) == nullptr) {
    timer_.cancel();  // nothing pending
    return;
  }
  timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
  timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    if (ec) return;
    const auto a = alive.lock();
    if (!a || !*a) return;
    ares_process_fd(channel_.get(), ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts only
    arm_timer();
  });
}

}  // namespace causeway::dns::internal
