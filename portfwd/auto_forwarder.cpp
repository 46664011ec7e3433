#include "portfwd/auto_forwarder.hpp"

#include <netinet/in.h>

#include <spdlog/spdlog.h>

namespace causeway::portfwd {

namespace {
sockaddr_storage host_address(Family f, uint16_t port, bool wildcard) {
  sockaddr_storage ss{};
  if (f == Family::kIpv4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);  // SAFETY: sockaddr_storage fits any sockaddr
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(wildcard ? INADDR_ANY : INADDR_LOOPBACK);
    a->sin_port = htons(port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);  // SAFETY: as above
    a->sin6_family = AF_INET6;
    a->sin6_addr = wildcard ? in6addr_any : in6addr_loopback;
    a->sin6_port = htons(port);
  }
  return ss;
}
std::string_view proto_name(L4 p) { return p == L4::kTcp ? "tcp" : "udp"; }
}  // namespace

AutoForwarder::AutoForwarder(boost::asio::io_context& io, const Clock& clock, GuestSide guest, PolicySettings settings)
    : io_(io), clock_(clock), guest_(guest), settings_(std::move(settings)), retry_timer_(io) {}

AutoForwarder::~AutoForwarder() {
  *alive_ = false;
  retry_timer_.cancel();
}

void AutoForwarder::on_listeners(const std::set<Listener>& snapshot) {
  ++stats_.snapshots;
  if (snapshot == listeners_) return;
  listeners_ = snapshot;
  apply();
}

void AutoForwarder::set_settings(PolicySettings s) {
  settings_ = std::move(s);
  apply();
}

boost::system::error_code AutoForwarder::try_open(const HostForward& f, Entry& e) {
  const auto host = host_address(f.host_family, f.port, f.wildcard);
  boost::system::error_code ec;
  if (f.proto == L4::kTcp) {
    GuestConnector* c = f.guest_family == Family::kIpv4 ? guest_.tcp4 : guest_.tcp6;
    if (!c) return boost::system::errc::make_error_code(boost::system::errc::address_family_not_supported);
    auto fwd = std::make_unique<TcpForwarder>(io_, host, GuestTarget(f.port, f.guest_v4), *c);
    fwd->set_max_connections(max_connections_each_);
    if (!(ec = fwd->start())) e.tcp = std::move(fwd);
  } else {
    GuestDatagramChannel* ch = f.guest_family == Family::kIpv4 ? guest_.udp4 : guest_.udp6;
    if (!ch) return boost::system::errc::make_error_code(boost::system::errc::address_family_not_supported);
    auto fwd = std::make_unique<UdpForwarder>(io_, clock_, host, f.port, *ch);
    if (!(ec = fwd->start())) e.udp = std::move(fwd);
  }
  return ec;
}

void AutoForwarder::apply() {
  const auto wanted = plan_forwards(listeners_, settings_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (!wanted.count(it->first)) {
      if (it->second.conflict.empty()) {
        ++stats_.closed;
        spdlog::info("auto-forward closed: {} {} (the guest stopped listening)", proto_name(it->first.proto),
                     it->first.host_endpoint());
      }
      if (it->second.tcp) stats_.accept_backoffs_closed += it->second.tcp->stats().accept_backoffs;
      it = entries_.erase(it);  // the listener closes; established relays drain on their own
    } else {
      ++it;
    }
  }
  bool any_conflict = false;
  for (const auto& f : wanted) {
    auto it = entries_.find(f);
    if (it != entries_.end() && it->second.conflict.empty()) continue;
    if (it == entries_.end()) {
      if (entries_.size() >= max_forwards_) {
        ++stats_.over_capacity;
        continue;
      }
      it = entries_.emplace(f, Entry{}).first;
    }
    Entry& e = it->second;
    if (auto ec = try_open(f, e)) {
      const std::string hint =
          ec.category() == boost::system::system_category() ? host_bind_hint(ec.value(), f) : std::string();
      if (e.conflict.empty()) {
        ++stats_.conflicts;
        spdlog::warn(
            "auto-forward {} {} -> guest {}: cannot listen on the host: {}{}{}; will retry while the guest "
            "listens",
            proto_name(f.proto), f.host_endpoint(), f.guest_endpoint(), ec.message(), hint.empty() ? "" : " — ", hint);
      }
      e.conflict = ec.message();
      e.hint = hint;
      any_conflict = true;
    } else {
      if (!e.conflict.empty())
        spdlog::info("auto-forward {} {}: host port free again", proto_name(f.proto), f.host_endpoint());
      e.conflict.clear();
      e.hint.clear();
      ++stats_.opened;
      spdlog::info("auto-forward opened: {} {} -> guest {}", proto_name(f.proto), f.host_endpoint(),
                   f.guest_endpoint());
    }
  }
  if (any_conflict) arm_retry();
}

void AutoForwarder::arm_retry() {
  if (retry_armed_) return;
  retry_armed_ = true;
  retry_timer_.expires_after(kRetryInterval);
  retry_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    auto a = alive.lock();
    if (!a || !*a) return;
    retry_armed_ = false;
    if (!ec) apply();
  });
}

uint64_t AutoForwarder::accept_backoffs() const {
  uint64_t n = stats_.accept_backoffs_closed;
  for (auto& [f, e] : entries_)
    if (e.tcp) n += e.tcp->stats().accept_backoffs;
  return n;
}

std::vector<AutoForwardInfo> AutoForwarder::list() const {
  std::vector<AutoForwardInfo> out;
  for (auto& [f, e] : entries_) {
    AutoForwardInfo i;
    i.forward = f;
    i.active = e.conflict.empty();
    i.reason = e.conflict;
    i.hint = e.hint;
    if (e.tcp) {
      i.connections = e.tcp->stats().connections;
      i.bytes_to_guest = e.tcp->stats().bytes_to_guest;
      i.bytes_from_guest = e.tcp->stats().bytes_from_guest;
    }
    if (e.udp) i.datagrams = e.udp->stats().datagrams_to_guest + e.udp->stats().datagrams_from_guest;
    out.push_back(i);
  }
  return out;
}

}  // namespace causeway::portfwd
