#include "netstack/slirp_bridge.hpp"

#include <slirp/libslirp.h>
#include <sys/epoll.h>

#include <boost/asio/post.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace causeway::netstack {
namespace {

constexpr int kMaxEpollEvents = 256;
constexpr int64_t kInterestCacheLifetimeMs = 1000;  // safety net, see header

uint32_t to_epoll(int slirp_events) {
  uint32_t e = 0;
  if (slirp_events & SLIRP_POLL_IN) e |= EPOLLIN;
  if (slirp_events & SLIRP_POLL_OUT) e |= EPOLLOUT;
  if (slirp_events & SLIRP_POLL_PRI) e |= EPOLLPRI;
  return e;  // EPOLLERR and EPOLLHUP are always reported
}

int from_epoll(uint32_t e) {
  int r = 0;
  if (e & EPOLLIN) r |= SLIRP_POLL_IN;
  if (e & EPOLLOUT) r |= SLIRP_POLL_OUT;
  if (e & EPOLLPRI) r |= SLIRP_POLL_PRI;
  if (e & EPOLLERR) r |= SLIRP_POLL_ERR;
  if (e & EPOLLHUP) r |= SLIRP_POLL_HUP;
  return r;
}

}  // namespace

struct SlirpBridge::Timer {
  SlirpTimerId id;
  void* cb_opaque;
  int64_t expire_ms = -1;  // -1: not armed
};

void SlirpBridge::SlirpDeleter::operator()(Slirp* s) const { slirp_cleanup(s); }

SlirpBridge::SlirpBridge(boost::asio::io_context& io, const Clock& clock, const NatConfig& cfg, ToGuest to_guest)
    : io_(io),
      clock_(clock),
      to_guest_(std::move(to_guest)),
      epfd_(epoll_create1(EPOLL_CLOEXEC)),
      ep_desc_(io),
      wake_timer_(io) {
  if (!epfd_) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  // The descriptor does not own the fd: epfd_ does (released before close in ~SlirpBridge).
  ep_desc_.assign(epfd_.get());

  static const SlirpCb callbacks = [] {
    SlirpCb cb{};
    cb.send_packet = &SlirpBridge::cb_send_packet;
    cb.guest_error = &SlirpBridge::cb_guest_error;
    cb.clock_get_ns = &SlirpBridge::cb_clock_get_ns;
    cb.timer_free = &SlirpBridge::cb_timer_free;
    cb.timer_mod = &SlirpBridge::cb_timer_mod;
    cb.register_poll_fd = &SlirpBridge::cb_register_poll_fd;
    cb.unregister_poll_fd = &SlirpBridge::cb_unregister_poll_fd;
    cb.notify = &SlirpBridge::cb_notify;
    cb.timer_new_opaque = [](SlirpTimerId id, void* cb_opaque, void* opaque) {
      return SlirpBridge::cb_timer_new_opaque(static_cast<int>(id), cb_opaque, opaque);
    };
    return cb;
  }();

  std::vector<const char*> search;
  for (auto& s : cfg.dns_search) search.push_back(s.c_str());
  search.push_back(nullptr);

  SlirpConfig sc{};
  sc.version = 4;
  sc.restricted = 0;
  sc.in_enabled = true;
  sc.vnetwork = cfg.network;
  sc.vnetmask = cfg.netmask;
  sc.vhost = cfg.gateway;
  sc.in6_enabled = cfg.ipv6;
  sc.vprefix_addr6 = cfg.prefix6;
  sc.vprefix_len = cfg.prefix6_len;
  sc.vhost6 = cfg.gateway6;
  sc.vhostname = cfg.hostname.c_str();  // libslirp copies the strings it keeps
  sc.vdhcp_start = cfg.guest;
  sc.vnameserver = cfg.dns;
  sc.vnameserver6 = cfg.dns6;
  sc.vdnssearch = cfg.dns_search.empty() ? nullptr : search.data();
  sc.if_mtu = cfg.mtu;
  sc.if_mru = cfg.mtu;
  sc.disable_host_loopback = !cfg.host_loopback;
  sc.enable_emu = false;  // libslirp: "this code isn't safe"
  sc.disable_dns = !cfg.slirp_dns;
  cache_reset_ms_ = clock_.now_ms();
  slirp_.reset(slirp_new(&sc, &callbacks, this));
  if (!slirp_) throw std::runtime_error("libslirp refused the network configuration (slirp_new failed)");
  schedule_pump();
}

SlirpBridge::~SlirpBridge() {
  *alive_ = false;
  wake_timer_.cancel();
  ep_desc_.cancel();
  slirp_.reset();  // closes libslirp's sockets (calling unregister_poll_fd on us)
  (void)ep_desc_.release();
}

void SlirpBridge::input(std::span<const uint8_t> frame) {
  slirp_input(slirp_.get(), frame.data(), static_cast<int>(frame.size()));
}

boost::system::error_code SlirpBridge::add_host_forward(const PortForward& f, in_addr guest_addr) {
  // Host side IPv4 only (see engine.hpp); the guest side is an IPv4 address.
  sockaddr_in guest{};
  guest.sin_family = AF_INET;
  guest.sin_addr = guest_addr;
  guest.sin_port = htons(f.guest_port);
  const int flags = f.proto == Proto::kUdp ? SLIRP_HOSTFWD_UDP : 0;
  errno = 0;
  if (slirp_add_hostxfwd(slirp_.get(), reinterpret_cast<const sockaddr*>(&f.host), sizeof(sockaddr_in),
                         reinterpret_cast<const sockaddr*>(&guest), sizeof guest, flags) < 0) {
    return {errno ? errno : EINVAL, boost::system::system_category()};
  }
  return {};
}

void SlirpBridge::remove_host_forward(const PortForward& f) {
  const int flags = f.proto == Proto::kUdp ? SLIRP_HOSTFWD_UDP : 0;
  slirp_remove_hostxfwd(slirp_.get(), reinterpret_cast<const sockaddr*>(&f.host), sizeof(sockaddr_in), flags);
}

boost::system::error_code SlirpBridge::add_unix_forward(const std::string& path, in_addr addr, uint16_t port) {
  if (slirp_add_unix(slirp_.get(), path.c_str(), &addr, static_cast<int>(port)) < 0)
    return {errno ? errno : EINVAL, boost::system::system_category()};
  return {};
}

void SlirpBridge::schedule_pump() {
  if (pump_posted_) return;
  pump_posted_ = true;
  boost::asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (auto a = alive.lock(); a && *a) pump();
  });
}

int SlirpBridge::collect_ready(int timeout_ms) {
  std::array<epoll_event, kMaxEpollEvents> evs{};
  revents_.clear();
  const int n = epoll_wait(epfd_.get(), evs.data(), kMaxEpollEvents, timeout_ms);
  for (int i = 0; i < n; ++i)
    revents_[evs[static_cast<size_t>(i)].data.fd] = from_epoll(evs[static_cast<size_t>(i)].events);
  return n;
}

void SlirpBridge::pump() {
  pump_posted_ = false;
  ++pumps_;
  fire_timers();

  // Readiness for the descriptors of the previous fill.
  const int n = collect_ready(0);
  slirp_pollfds_poll(slirp_.get(), n < 0 ? 1 : 0, &SlirpBridge::cb_get_revents, this);

  fds_.clear();
  uint32_t timeout = UINT32_MAX;
  slirp_pollfds_fill(slirp_.get(), &timeout, &SlirpBridge::cb_add_poll, this);
  sync_interest();

  // Level-triggered leftovers (data libslirp did not drain) raise no new edge
  // on the private epoll fd, so look before sleeping.
  struct pollfd self {
    epfd_.get(), POLLIN, 0
  };
  if (::poll(&self, 1, 0) > 0) {
    schedule_pump();
    return;
  }
  arm_waits(timeout);
}

void SlirpBridge::sync_interest() {
  const int64_t now = clock_.now_ms();
  // Steady state: libslirp asked for exactly what it asked for last turn.
  const bool same = fds_.size() == prev_fds_.size() &&
                    std::equal(fds_.begin(), fds_.end(), prev_fds_.begin(),
                               [](const pollfd& a, const pollfd& b) { return a.fd == b.fd && a.events == b.events; });
  if (same && now - cache_reset_ms_ < kInterestCacheLifetimeMs) return;
  prev_fds_ = fds_;
  if (now - cache_reset_ms_ >= kInterestCacheLifetimeMs) {
    // Safety net (see header): forget and re-add everything still wanted.
    for (auto& [fd, ev] : interest_) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
    interest_.clear();
    cache_reset_ms_ = now;
  }
  std::unordered_map<int, uint32_t> wanted;
  wanted.reserve(fds_.size());
  for (auto& p : fds_) wanted[p.fd] |= static_cast<uint32_t>(p.events);
  // Drop descriptors libslirp no longer watches.
  for (auto it = interest_.begin(); it != interest_.end();) {
    if (!wanted.count(it->first)) {
      epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->first, nullptr);
      it = interest_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [fd, ev] : wanted) {
    auto it = interest_.find(fd);
    if (it != interest_.end() && it->second == ev) continue;
    epoll_event e{};
    e.events = ev;
    e.data.fd = fd;
    if (it != interest_.end()) {
      if (epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &e) < 0 && errno == ENOENT)
        epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &e);
    } else if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &e) < 0 && errno == EEXIST) {
      epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &e);
    }
    interest_[fd] = ev;
  }
}

void SlirpBridge::arm_waits(uint32_t timeout_ms) {
  int64_t deadline_ms = timeout_ms == UINT32_MAX ? -1 : clock_.now_ms() + timeout_ms;
  for (auto& t : timers_)
    if (t->expire_ms >= 0 && (deadline_ms < 0 || t->expire_ms < deadline_ms)) deadline_ms = t->expire_ms;
  // Re-arm only for an earlier deadline: a timer that fires early costs one
  // idle pump, re-arming on every busy turn costs a cancel and a handler.
  if (deadline_ms >= 0 && (timer_armed_ms_ < 0 || deadline_ms < timer_armed_ms_)) {
    const auto delay = std::chrono::milliseconds(std::max<int64_t>(0, deadline_ms - clock_.now_ms()));
    timer_armed_ms_ = deadline_ms;
    wake_timer_.expires_after(delay);
    wake_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
      if (ec) return;
      if (auto a = alive.lock(); a && *a) {
        timer_armed_ms_ = -1;
        schedule_pump();
      }
    });
  }
  if (!ep_wait_armed_) {
    ep_wait_armed_ = true;
    ep_desc_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                        [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                          auto a = alive.lock();
                          if (!a || !*a) return;
                          ep_wait_armed_ = false;
                          if (!ec) schedule_pump();
                        });
  }
}

void SlirpBridge::fire_timers() {
  const int64_t now = clock_.now_ms();
  for (size_t i = 0; i < timers_.size(); ++i) {
    Timer* t = timers_[i].get();
    if (t->expire_ms >= 0 && t->expire_ms <= now) {
      t->expire_ms = -1;
      slirp_handle_timer(slirp_.get(), t->id, t->cb_opaque);  // may re-arm or free timers
    }
  }
}

// ---- libslirp callbacks ----

ssize_t SlirpBridge::cb_send_packet(const void* buf, size_t len, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  self->to_guest_(std::span<const uint8_t>(static_cast<const uint8_t*>(buf), len));
  return static_cast<ssize_t>(len);
}

void SlirpBridge::cb_guest_error(const char* msg, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  ++self->guest_errors_;
  if (self->guest_error_log_.allow(self->clock_.now_ms()))
    spdlog::warn("guest error: {} ({} similar messages suppressed)", msg, self->guest_error_log_.suppressed());
}

int64_t SlirpBridge::cb_clock_get_ns(void* opaque) { return static_cast<SlirpBridge*>(opaque)->clock_.now_ns(); }

void* SlirpBridge::cb_timer_new_opaque(int id, void* cb_opaque, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  self->timers_.push_back(std::make_unique<Timer>(Timer{static_cast<SlirpTimerId>(id), cb_opaque, -1}));
  return self->timers_.back().get();
}

void SlirpBridge::cb_timer_free(void* timer, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  std::erase_if(self->timers_, [timer](const auto& t) { return t.get() == timer; });
}

void SlirpBridge::cb_timer_mod(void* timer, int64_t expire_ms, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  static_cast<Timer*>(timer)->expire_ms = expire_ms;
  self->schedule_pump();  // recompute the wake-up deadline
}

void SlirpBridge::cb_register_poll_fd(int, void*) {}

void SlirpBridge::cb_unregister_poll_fd(int fd, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  if (self->interest_.erase(fd)) epoll_ctl(self->epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  self->prev_fds_.clear();  // the next turn must resync
}

void SlirpBridge::cb_notify(void* opaque) { static_cast<SlirpBridge*>(opaque)->schedule_pump(); }

int SlirpBridge::cb_add_poll(int fd, int events, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  // `events` holds epoll bits here (they fit a short), translated once.
  self->fds_.push_back(pollfd{fd, static_cast<short>(to_epoll(events)), 0});
  return static_cast<int>(self->fds_.size() - 1);
}

int SlirpBridge::cb_get_revents(int idx, void* opaque) {
  auto* self = static_cast<SlirpBridge*>(opaque);
  if (idx < 0 || static_cast<size_t>(idx) >= self->fds_.size()) return 0;
  auto it = self->revents_.find(self->fds_[static_cast<size_t>(idx)].fd);
  return it == self->revents_.end() ? 0 : it->second;
}

}  // namespace causeway::netstack
