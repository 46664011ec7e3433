// The guest agent's listener reports and loopback relays; the theory of
// operation is in port_service.hpp.
#include "vmm/agent/guest/port_service.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace causeway::agent::guest {
namespace {

constexpr auto kFirstRescan = std::chrono::milliseconds(1);
constexpr auto kBurstRescan = std::chrono::milliseconds(3);
constexpr int kBurstScans = 3;

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

// A socket to the guest's own loopback, port `port`; connect started (TCP)
// or done (UDP). On failure: empty, errno set.
UniqueFd loopback_socket(const RelayRequest& req) {
  const int family = req.family == 6 ? AF_INET6 : AF_INET;
  const int type = req.proto == IpProto::Tcp ? SOCK_STREAM : SOCK_DGRAM;
  UniqueFd s(::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return s;
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons(req.port);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = htons(req.port);
    len = sizeof *a;
  }
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    const int e = errno;
    s.reset();
    errno = e;
  }
  return s;
}

}  // namespace

Listener to_protocol(const portfwd::Listener& l) {
  Listener out;
  out.proto = l.proto == portfwd::L4::kTcp ? IpProto::Tcp : IpProto::Udp;
  out.addr.family = l.family == portfwd::Family::kIpv4 ? 4 : 6;
  std::memcpy(out.addr.bytes.data(), &l.address, l.family == portfwd::Family::kIpv4 ? 4 : 16);
  out.port = l.port;
  out.v6only = l.v6only;
  return out;
}

// One direction of a TCP relay: bytes read from `from`, not yet written to `to`.
struct Direction {
  std::vector<uint8_t> buf;
  size_t off = 0, len = 0;
  bool eof = false;   // `from` ended
  bool done = false;  // eof and everything written, `to` shut down for writing
  [[nodiscard]] bool empty() const { return off == len; }
};

struct PortService::Relay {
  enum class Phase { kRequest, kConnecting, kOpen, kClosing };
  UniqueFd host;   // the stream from the host (vsock)
  UniqueFd guest;  // the loopback socket
  Phase phase = Phase::kRequest;
  RelayRequest req;
  uint8_t reqbuf[kRelayRequestSize] = {};
  size_t reqlen = 0;
  Clock::time_point deadline;
  // TCP: host → guest and guest → host. UDP: g2h holds framed replies (bounded
  // by kMaxUdpQueue); h2g is unused and the reader splits the stream.
  Direction h2g, g2h;
  RelayDatagramReader reader;
  bool dead = false;

  [[nodiscard]] short host_events() const {
    short ev = 0;
    switch (phase) {
      case Phase::kRequest: return POLLIN;
      case Phase::kConnecting: return 0;
      case Phase::kOpen:
        if (req.proto == IpProto::Tcp) {
          if (h2g.empty() && !h2g.eof) ev |= POLLIN;
        } else {
          ev |= POLLIN;
        }
        if (!g2h.empty()) ev |= POLLOUT;
        return ev;
      case Phase::kClosing: return g2h.empty() ? 0 : POLLOUT;
    }
    return ev;
  }
  [[nodiscard]] short guest_events() const {
    if (!guest) return 0;
    if (phase == Phase::kConnecting) return POLLOUT;
    if (phase != Phase::kOpen) return 0;
    short ev = 0;
    if (req.proto == IpProto::Tcp) {
      if (g2h.empty() && !g2h.eof) ev |= POLLIN;
      if (!h2g.empty()) ev |= POLLOUT;
    } else if (g2h.len - g2h.off < kMaxUdpQueue) {
      ev |= POLLIN;
    }
    return ev;
  }
};

PortService::PortService(UniqueFd relay_listener, UniqueFd sock_diag, PortServiceOptions opts, OnListener on_listener)
    : listen_fd_(std::move(relay_listener)), opts_(opts), on_listener_(std::move(on_listener)) {
  if (sock_diag) diag_.emplace(std::move(sock_diag));
  if (listen_fd_) ::fcntl(listen_fd_.get(), F_SETFL, ::fcntl(listen_fd_.get(), F_GETFL) | O_NONBLOCK);
}

PortService::~PortService() = default;

void PortService::start() {
  if (started_) return;
  started_ = true;
  if (diag_) scan();
}

void PortService::add_trap(UniqueFd notify) {
  if (notify) traps_.push_back(std::move(notify));
}

// ---------------------------------------------------------------- listeners
void PortService::schedule_scan(Clock::duration delay) {
  const auto at = Clock::now() + delay;
  if (!next_scan_ || at < *next_scan_) next_scan_ = at;
}

void PortService::scan() {
  next_scan_.reset();
  ++counters_.scans;
  auto r = diag_->scan();
  if (r.has_error()) {
    ++counters_.scan_errors;
    if (!scan_failing_ && on_problem_)
      on_problem_("port forwarding: cannot read the guest's listening sockets: " + r.error().message());
    scan_failing_ = true;
  } else {
    scan_failing_ = false;
    std::set<portfwd::Listener> now;
    for (const auto& l : *r) {
      if (now.size() >= kMaxListeners) {
        ++counters_.listeners_over_cap;
        break;
      }
      now.insert(l);
    }
    for (const auto& l : reported_)
      if (!now.contains(l)) on_listener_(false, to_protocol(l));
    for (const auto& l : now)
      if (!reported_.contains(l)) on_listener_(true, to_protocol(l));
    reported_ = std::move(now);
  }
  if (burst_left_ > 0) {
    --burst_left_;
    schedule_scan(kBurstRescan);
  } else {
    schedule_scan(opts_.poll);
  }
}

// ---------------------------------------------------------------- poll integration
void PortService::add_pollfds(std::vector<pollfd>& fds) {
  polled_listen_ = static_cast<bool>(listen_fd_);  // over capacity, streams are accepted and closed at once
  if (polled_listen_) fds.push_back({listen_fd_.get(), POLLIN, 0});
  polled_traps_ = traps_.size();
  for (const auto& t : traps_) fds.push_back({t.get(), POLLIN, 0});
  polled_relays_.clear();
  for (auto& r : relays_) {
    polled_relays_.push_back(r.get());
    // A descriptor we want nothing from is left out (fd -1): poll reports
    // POLLHUP whatever the events, and a hung-up side we cannot act on yet
    // (its peer's buffer still draining) would spin the loop. A vanished host
    // shows as EOF/ECONNRESET when we next read it, or as EPIPE when we write.
    const short hev = r->host_events(), gev = r->guest_events();
    fds.push_back({hev ? r->host.get() : -1, hev, 0});
    fds.push_back({gev && r->guest ? r->guest.get() : -1, gev, 0});
  }
}

void PortService::handle(std::span<const pollfd> fds) {
  size_t i = 0;
  if (polled_listen_) {
    if (i < fds.size() && fds[i].revents) accept_relays();
    ++i;
  }
  bool hung_up = false;
  for (size_t t = 0; t < polled_traps_; ++t, ++i) {
    if (i >= fds.size() || !fds[i].revents) continue;
    switch (responder_.answer_one(traps_[t].get())) {
      case portfwd::ListenerTrapResponder::Result::kHangup:
        traps_[t].reset();
        hung_up = true;
        break;
      case portfwd::ListenerTrapResponder::Result::kAnswered:
        ++counters_.trapped;
        if (diag_ && started_) {
          burst_left_ = kBurstScans - 1;
          schedule_scan(kFirstRescan);
        }
        break;
      case portfwd::ListenerTrapResponder::Result::kNothing: break;
    }
  }
  if (hung_up) std::erase_if(traps_, [](const UniqueFd& t) { return !t; });
  for (Relay* r : polled_relays_) {
    if (i + 2 > fds.size()) break;
    const short hev = fds[i].revents, gev = fds[i + 1].revents;
    i += 2;
    if (hev || gev) service(*r, hev, gev);
  }
  polled_relays_.clear();
  relays_.remove_if([](const std::unique_ptr<Relay>& r) { return r->dead; });
}

std::optional<PortService::Clock::time_point> PortService::deadline() const {
  std::optional<Clock::time_point> d = started_ && diag_ ? next_scan_ : std::nullopt;
  for (const auto& r : relays_)
    if (r->phase == Relay::Phase::kRequest || r->phase == Relay::Phase::kConnecting)
      if (!d || r->deadline < *d) d = r->deadline;
  return d;
}

void PortService::on_deadline(Clock::time_point now) {
  if (started_ && diag_ && next_scan_ && *next_scan_ <= now) scan();
  for (auto& r : relays_) {
    if ((r->phase == Relay::Phase::kRequest || r->phase == Relay::Phase::kConnecting) && r->deadline <= now) {
      ++counters_.relays_rejected;
      r->dead = true;
    }
  }
  relays_.remove_if([](const std::unique_ptr<Relay>& r) { return r->dead; });
}

// ---------------------------------------------------------------- relays
void PortService::accept_relays() {
  for (int k = 0; k < 16; ++k) {
    UniqueFd s(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!s) return;  // EAGAIN, or a transient error (ECONNABORTED...): try on the next wakeup
    if (relays_.size() >= opts_.max_relays) {
      ++counters_.relays_rejected;
      continue;  // closed: the host's connect sees the stream end
    }
    auto r = std::make_unique<Relay>();
    r->host = std::move(s);
    r->deadline = Clock::now() + opts_.handshake_timeout;
    relays_.push_back(std::move(r));
  }
}

void PortService::service(Relay& r, short hev, short gev) {
  auto fail = [&] { r.dead = true; };
  // ---- handshake
  if (r.phase == Relay::Phase::kRequest) {
    if (!(hev & (POLLIN | POLLHUP | POLLERR))) return;
    const ssize_t n = ::read(r.host.get(), r.reqbuf + r.reqlen, kRelayRequestSize - r.reqlen);
    if (n < 0 && would_block(errno)) return;
    if (n <= 0) return fail();
    r.reqlen += static_cast<size_t>(n);
    if (r.reqlen < kRelayRequestSize) return;
    auto req = decode_relay_request(std::span<const uint8_t, kRelayRequestSize>(r.reqbuf));
    if (!req) {
      ++counters_.relays_rejected;
      return fail();
    }
    r.req = *req;
    r.guest = loopback_socket(r.req);
    const int err = r.guest ? 0 : errno;
    r.h2g.buf.resize(kRelayBuffer);
    r.g2h.buf.resize(r.req.proto == IpProto::Tcp ? kRelayBuffer : 0);
    if (err) {
      ++counters_.relays_failed;
      const auto reply = encode_relay_reply(static_cast<uint16_t>(err));
      r.g2h.buf.assign(reply.begin(), reply.end());
      r.g2h.off = 0;
      r.g2h.len = reply.size();
      r.phase = Relay::Phase::kClosing;
      hev = POLLOUT;  // try to say why at once
    } else {
      r.phase = r.req.proto == IpProto::Tcp ? Relay::Phase::kConnecting : Relay::Phase::kOpen;
      if (r.phase == Relay::Phase::kOpen) {
        ++counters_.relays;
        const auto reply = encode_relay_reply(0);
        r.g2h.buf.assign(reply.begin(), reply.end());
        r.g2h.len = reply.size();
      }
      return;
    }
  }
  if (r.phase == Relay::Phase::kConnecting) {
    if (!(gev & (POLLOUT | POLLERR | POLLHUP))) {
      if (hev & (POLLHUP | POLLERR)) fail();  // the host gave up
      return;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (::getsockopt(r.guest.get(), SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
    const auto reply = encode_relay_reply(static_cast<uint16_t>(soerr));
    std::memcpy(r.g2h.buf.data(), reply.data(), reply.size());
    r.g2h.off = 0;
    r.g2h.len = reply.size();
    if (soerr) {
      ++counters_.relays_failed;
      r.guest.reset();
      r.phase = Relay::Phase::kClosing;
    } else {
      ++counters_.relays;
      r.phase = Relay::Phase::kOpen;
    }
    hev = POLLOUT;  // the reply goes out now if the stream takes it
    gev = 0;
  }
  // ---- writes toward the host (TCP bytes, UDP frames, the reply)
  auto flush_to_host = [&]() -> bool {
    while (!r.g2h.empty()) {
      const ssize_t n = ::send(r.host.get(), r.g2h.buf.data() + r.g2h.off, r.g2h.len - r.g2h.off, MSG_NOSIGNAL);
      if (n < 0 && would_block(errno)) {
        if (r.req.proto == IpProto::Udp && r.g2h.off > kRelayBuffer) {  // keep the queue's consumed prefix small
          r.g2h.buf.erase(r.g2h.buf.begin(), r.g2h.buf.begin() + static_cast<std::ptrdiff_t>(r.g2h.off));
          r.g2h.len -= r.g2h.off;
          r.g2h.off = 0;
        }
        return true;
      }
      if (n <= 0) return false;
      r.g2h.off += static_cast<size_t>(n);
    }
    if (r.req.proto == IpProto::Udp || r.phase == Relay::Phase::kClosing) {
      r.g2h.buf.clear();  // UDP's queue grows and shrinks; the reply was its first bytes
    }
    r.g2h.off = r.g2h.len = 0;
    return true;
  };
  if (r.phase == Relay::Phase::kClosing) {
    if (!flush_to_host() || r.g2h.empty()) fail();
    return;
  }
  if (r.phase != Relay::Phase::kOpen) return;

  if (r.req.proto == IpProto::Udp) {
    if (hev & (POLLIN | POLLHUP | POLLERR)) {
      uint8_t buf[16 * 1024];
      const ssize_t n = ::read(r.host.get(), buf, sizeof buf);
      if (n == 0 || (n < 0 && !would_block(errno))) return fail();
      if (n > 0) {
        r.reader.feed(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
        while (auto d = r.reader.next()) {
          if (::send(r.guest.get(), d->data(), d->size(), MSG_NOSIGNAL) < 0 && errno != ECONNREFUSED)
            ++counters_.udp_dropped;
        }
        if (r.reader.error()) {
          ++counters_.relays_rejected;
          return fail();
        }
      }
    }
    if (gev & (POLLIN | POLLERR)) {
      std::vector<uint8_t>& dgram = scratch_;
      dgram.resize(kMaxRelayDatagram + 1);
      for (int k = 0; k < 64; ++k) {
        const ssize_t n = ::recv(r.guest.get(), dgram.data(), dgram.size(), 0);
        if (n < 0) break;  // EAGAIN, or ECONNREFUSED from an earlier send: nothing to relay
        if (static_cast<size_t>(n) > kMaxRelayDatagram || r.g2h.len - r.g2h.off >= kMaxUdpQueue) {
          ++counters_.udp_dropped;
          continue;
        }
        r.g2h.buf.resize(r.g2h.len);
        append_relay_datagram(std::span<const uint8_t>(dgram.data(), static_cast<size_t>(n)), r.g2h.buf);
        r.g2h.len = r.g2h.buf.size();
      }
    }
    if (!flush_to_host()) fail();
    return;
  }

  // ---- TCP: read into an empty buffer, write out a full one
  auto pump = [&](int from, int to, Direction& d, bool readable, bool writable) -> bool {
    if (readable && d.empty() && !d.eof) {
      const ssize_t n = ::read(from, d.buf.data(), d.buf.size());
      if (n > 0) {
        d.off = 0;
        d.len = static_cast<size_t>(n);
        writable = true;  // try at once
      } else if (n == 0) {
        d.eof = true;
      } else if (!would_block(errno)) {
        return false;
      }
    }
    if (writable && !d.empty()) {
      const ssize_t n = ::send(to, d.buf.data() + d.off, d.len - d.off, MSG_NOSIGNAL);
      if (n > 0)
        d.off += static_cast<size_t>(n);
      else if (n < 0 && !would_block(errno))
        return false;
      if (d.empty()) d.off = d.len = 0;
    }
    if (d.eof && d.empty() && !d.done) {
      ::shutdown(to, SHUT_WR);
      d.done = true;
    }
    return true;
  };
  const bool host_in = hev & (POLLIN | POLLHUP | POLLERR), guest_in = gev & (POLLIN | POLLHUP | POLLERR);
  if (!pump(r.host.get(), r.guest.get(), r.h2g, host_in, (gev & POLLOUT) != 0) ||
      !pump(r.guest.get(), r.host.get(), r.g2h, guest_in, (hev & POLLOUT) != 0) || (r.h2g.done && r.g2h.done))
    fail();
}

}  // namespace causeway::agent::guest
