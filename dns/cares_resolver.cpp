#include "dns/cares_resolver.hpp"

#include <ares.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/system/errc.hpp>
#include <random>

#include "dns/internal/cares_channel.hpp"
#include "dns/wire.hpp"

namespace causeway::dns {
namespace asio = boost::asio;

struct CaresResolver::ChannelSet {
  std::string label;  // "host servers" or the route's domain, for logs
  std::unique_ptr<internal::CaresChannel> udp;
  std::unique_ptr<internal::CaresChannel> udp_edns;
  std::unique_ptr<internal::CaresChannel> tcp;
  bool retired = false;
  bool dying = false;

  ChannelSet() = default;
  ChannelSet(const ChannelSet&) = delete;
  ChannelSet& operator=(const ChannelSet&) = delete;
  ~ChannelSet() {
    // Each reset() nulls the member before ares_destroy() runs the
    // callbacks, which may look at this set (pending(), dying).
    dying = true;
    tcp.reset();
    udp_edns.reset();
    udp.reset();
  }
  [[nodiscard]] size_t pending() const {
    return (udp ? udp->pending() : 0) + (udp_edns ? udp_edns->pending() : 0) + (tcp ? tcp->pending() : 0);
  }
};

struct CaresResolver::Route {
  std::string domain;
  std::unique_ptr<ChannelSet> set;
};

CaresResolver::CaresResolver(asio::io_context& io, CaresOptions options) : io_(io), options_(options) {}

CaresResolver::~CaresResolver() {
  destroying_ = true;  // callbacks from ares_destroy drop their completions
  *alive_ = false;
  host_.reset();
  routes_.clear();
  retired_.clear();
}

boost::system::result<std::unique_ptr<CaresResolver::ChannelSet>> CaresResolver::make_set(
    const std::vector<DnsServer>& servers, bool rotate, std::string label) {
  std::string csv;
  for (const DnsServer& s : servers) {
    if (!s.scope.empty()) {
      ++stats_.servers_skipped;
      spdlog::warn("dns: skipping upstream server {} for {}: c-ares cannot address a link-local server with a zone",
                   s.to_string(), label);
      continue;
    }
    if (!csv.empty()) csv += ',';
    csv += s.to_string();
  }
  auto set = std::make_unique<ChannelSet>();
  set->label = std::move(label);
  if (csv.empty()) {
    spdlog::warn("dns: no usable upstream server for {}: its queries will get SERVFAIL", set->label);
    return set;
  }
  internal::CaresChannelConfig cfg;
  cfg.servers_csv = csv;
  cfg.try_timeout = options_.try_timeout;
  cfg.tries = options_.tries;
  cfg.rotate = rotate;
  // UDP sockets stay open between queries (one per server and channel):
  // no socket()/connect()/close() per query under load.
  cfg.flags = ARES_FLAG_IGNTC | ARES_FLAG_STAYOPEN;
  auto udp = internal::CaresChannel::create(io_, cfg);
  if (!udp) return udp.error();
  cfg.flags = ARES_FLAG_IGNTC | ARES_FLAG_STAYOPEN | ARES_FLAG_EDNS;
  cfg.edns_udp_size = CaresOptions::kMaxUdpPayload;
  auto udp_edns = internal::CaresChannel::create(io_, cfg);
  if (!udp_edns) return udp_edns.error();
  cfg.flags = ARES_FLAG_USEVC;  // TCP connections close when idle
  cfg.edns_udp_size = 0;
  auto tcp = internal::CaresChannel::create(io_, cfg);
  if (!tcp) return tcp.error();
  set->udp = std::move(*udp);
  set->udp_edns = std::move(*udp_edns);
  set->tcp = std::move(*tcp);
  spdlog::info("dns: upstream servers for {}: {}", set->label, csv);
  return set;
}

boost::system::error_code CaresResolver::update_servers(const HostDnsConfig& cfg) {
  auto set = make_set(cfg.servers, cfg.rotate, "host servers");
  if (!set) return set.error();
  if (host_) retire(std::move(host_));
  host_ = std::move(*set);
  return {};
}

boost::system::error_code CaresResolver::set_routes(const std::vector<DnsRoute>& routes) {
  if (routes.size() > kMaxRoutes) return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  // Group by domain, keeping the order servers were given in (failover order).
  std::vector<std::pair<std::string, std::vector<DnsServer>>> groups;
  for (const DnsRoute& r : routes) {
    const std::string domain = normalize_domain(r.domain);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == domain; });
    if (it == groups.end()) it = groups.insert(groups.end(), {domain, {}});
    it->second.push_back(r.server);
  }
  std::vector<Route> fresh;
  for (auto& [domain, servers] : groups) {
    auto set = make_set(servers, false, domain.empty() ? std::string("route .") : "route " + domain);
    if (!set) return set.error();
    fresh.push_back(Route{domain, std::move(*set)});
  }
  for (Route& r : routes_) retire(std::move(r.set));
  routes_ = std::move(fresh);
  return {};
}

void CaresResolver::retire(std::unique_ptr<ChannelSet> set) {
  if (!set || set->pending() == 0) return;  // nothing in flight: destroyed right here
  set->retired = true;
  retired_.push_back(std::move(set));
  ++stats_.sets_retired;
  while (retired_.size() > kMaxRetiredSets) {
    // Overflow policy: the oldest set goes now; its queries complete with
    // kCancelled (the proxy answers SERVFAIL).
    std::unique_ptr<ChannelSet> oldest = std::move(retired_.front());
    retired_.pop_front();
    spdlog::warn("dns: dropping {} queries still pending on old servers for {} (servers changed too often)",
                 oldest->pending(), oldest->label);
  }
}

void CaresResolver::schedule_reap() {
  if (reap_posted_) return;
  reap_posted_ = true;
  // Not from inside the c-ares callback that noticed: ares_destroy() must
  // not run inside ares_process_fd() of the same channel.
  asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_)] {
    const auto a = alive.lock();
    if (!a || !*a) return;
    reap_posted_ = false;
    retired_.remove_if([](const std::unique_ptr<ChannelSet>& s) { return s->pending() == 0; });
  });
}

void CaresResolver::complete(Completion done, Answer answer) {
  asio::post(io_, [done = std::move(done), answer = std::move(answer), alive = std::weak_ptr<bool>(alive_)]() mutable {
    const auto a = alive.lock();
    if (!a || !*a) return;
    done(std::move(answer));
  });
}

CaresResolver::ChannelSet* CaresResolver::route_for(std::string_view name, bool& routed) {
  const Route* best = nullptr;
  for (const Route& r : routes_) {
    if (name_in_domain(name, r.domain) && (!best || r.domain.size() > best->domain.size())) best = &r;
  }
  routed = best != nullptr;
  return best ? best->set.get() : host_.get();
}

uint16_t CaresResolver::random_id() {
  if (random_used_ + 2 > random_pool_.size()) {
    random_pool_.resize(512);
    random_used_ = 0;
    if (::getrandom(random_pool_.data(), random_pool_.size(), 0) != static_cast<ssize_t>(random_pool_.size())) {
      std::random_device rd;  // getrandom(2) is there since Linux 3.17; this is a fallback
      for (auto& b : random_pool_) b = static_cast<uint8_t>(rd());
    }
  }
  const uint16_t id = static_cast<uint16_t>((random_pool_[random_used_] << 8) | random_pool_[random_used_ + 1]);
  random_used_ += 2;
  return id;
}

void CaresResolver::send(std::span<const uint8_t> query, Transport t, Completion done) {
  if (query.size() < kHeaderSize || query.size() > kMaxMessageSize) {
    ++stats_.failures;
    complete(std::move(done), make_error_code(ResolveErrc::kBadQuery));
    return;
  }
  if (stats_.pending >= options_.max_pending) {
    ++stats_.failures;
    complete(std::move(done), make_error_code(ResolveErrc::kOverCapacity));
    return;
  }
  bool routed = false;
  const auto name = question_name(query);
  ChannelSet* set = route_for(name ? std::string_view(*name) : std::string_view{}, routed);

  std::vector<uint8_t> q(query.begin(), query.end());
  const auto edns = find_edns(q);
  internal::CaresChannel* channel = nullptr;
  if (set) channel = t == Transport::kTcp ? set->tcp.get() : edns ? set->udp_edns.get() : set->udp.get();
  if (!channel) {
    ++stats_.failures;
    complete(std::move(done), make_error_code(ResolveErrc::kNoServers));
    return;
  }
  const uint16_t guest_id = get_id(q);
  set_id(q, random_id());
  if (edns) clamp_edns_udp_size(q, *edns, CaresOptions::kMaxUdpPayload);
  if (routed) ++stats_.routed;
  ++(t == Transport::kTcp ? stats_.sent_tcp : stats_.sent_udp);
  ++stats_.pending;
  channel->send(q, [this, set, guest_id, done = std::move(done)](int status, std::span<const uint8_t> abuf) mutable {
    // Inside c-ares: only bookkeeping and a post() here.
    --stats_.pending;
    if (destroying_) return;
    Answer answer = make_error_code(ResolveErrc::kUpstreamFailed);
    switch (status) {
      case ARES_SUCCESS:
        if (abuf.size() >= kHeaderSize) {
          std::vector<uint8_t> bytes(abuf.begin(), abuf.end());
          set_id(bytes, guest_id);
          answer = std::move(bytes);
          ++stats_.answers;
        } else {
          ++stats_.failures;
        }
        break;
      case ARES_ETIMEOUT:
        ++stats_.timeouts;
        answer = make_error_code(ResolveErrc::kTimeout);
        break;
      case ARES_EDESTRUCTION:
      case ARES_ECANCELLED:
        ++stats_.failures;
        answer = make_error_code(ResolveErrc::kCancelled);
        break;
      case ARES_EBADQUERY:
        ++stats_.failures;
        answer = make_error_code(ResolveErrc::kBadQuery);
        break;
      default:  // ECONNREFUSED (also every server answering SERVFAIL/REFUSED/NOTIMP in 1.18), ESERVFAIL, ...
        ++stats_.failures;
        break;
    }
    complete(std::move(done), std::move(answer));
    if (set->retired && !set->dying && set->pending() == 0) schedule_reap();
  });
}

CaresResolverStats CaresResolver::stats() const {
  CaresResolverStats s = stats_;
  s.retired_sets = retired_.size();
  return s;
}

}  // namespace causeway::dns
