#include "netstack/mirror/syncer.hpp"

#include <algorithm>
#include <ctime>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace causeway::netstack::mirror {
namespace {

using json = nlohmann::json;

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

std::string mac_text(const std::optional<MacAddress>& m) {
  if (!m) return "";
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", (*m)[0], (*m)[1], (*m)[2], (*m)[3], (*m)[4], (*m)[5]);
}

}  // namespace

json to_json(const NetState& s, size_t max_items) {
  json links = json::array(), addrs = json::array(), routes = json::array();
  for (const auto& l : s.links) {
    if (links.size() >= max_items) break;
    links.push_back(json{{"name", l.name},
                         {"ifindex", l.ifindex},
                         {"mtu", l.mtu},
                         {"mac", mac_text(l.mac)},
                         {"up", l.up()},
                         {"kind", l.kind}});
  }
  for (const auto& a : s.addresses) {
    if (addrs.size() >= max_items) break;
    addrs.push_back(a.describe());
  }
  for (const auto& r : s.routes) {
    if (routes.size() >= max_items) break;
    routes.push_back(r.describe());
  }
  return json{{"links", links},
              {"addresses", addrs},
              {"routes", routes},
              {"counts", {{"links", s.links.size()}, {"addresses", s.addresses.size()}, {"routes", s.routes.size()}}}};
}

json to_json(const PlanCounters& c) {
  return json{{"links_loopback", c.links_loopback},
              {"links_down", c.links_down},
              {"links_own", c.links_own},
              {"links_over_cap", c.links_over_cap},
              {"links_renamed", c.links_renamed},
              {"links_mtu_clamped", c.links_mtu_clamped},
              {"addresses_not_preferred", c.addresses_not_preferred},
              {"addresses_host_scope", c.addresses_host_scope},
              {"addresses_unmirrored_link", c.addresses_unmirrored_link},
              {"addresses_over_cap", c.addresses_over_cap},
              {"routes_local_table", c.routes_local_table},
              {"routes_not_unicast", c.routes_not_unicast},
              {"routes_unmirrored_link", c.routes_unmirrored_link},
              {"routes_via_other_family", c.routes_via_other_family},
              {"routes_over_cap", c.routes_over_cap},
              {"onlink_routes_added", c.onlink_routes_added}};
}

MirrorSyncer::MirrorSyncer(boost::asio::io_context& io, HostView& host, GuestApplier& guest, PlanOptions options)
    : host_(host), guest_(guest), options_(std::move(options)), retry_timer_(io), periodic_timer_(io) {}

MirrorSyncer::~MirrorSyncer() {
  *alive_ = false;
  retry_timer_.cancel();
  periodic_timer_.cancel();
}

boost::system::result<void, std::string> MirrorSyncer::start() {
  auto r = host_.start([this](const NetState&) {
    attempt_ = 0;  // a new host state deserves a fresh set of retries
    sync();
  });
  if (r.has_error()) return r.error();
  schedule_periodic();
  return {};
}

void MirrorSyncer::sync() {
  if (in_flight_) {
    // The guest is still answering the previous plan: one more sync when it has.
    if (!pending_) ++totals_.coalesced;
    pending_ = true;
    return;
  }
  in_flight_ = true;
  pending_ = false;
  ++totals_.syncs;
  const auto t0 = std::chrono::steady_clock::now();
  auto desired = [this](const std::set<std::string>& unmanaged) {
    PlanOptions opts = options_;
    opts.reserved_names.insert(unmanaged.begin(), unmanaged.end());
    Plan p = plan(host_.state(), opts);
    counters_ = p.counters;
    if (on_plan_) on_plan_(p.desired);
    return std::move(p.desired);
  };
  guest_.converge(std::move(desired), [this, alive = alive_, t0, time = utc_now()](ConvergeResult r) mutable {
    if (!*alive) return;
    on_converged(std::move(r), t0, std::move(time));
  });
}

void MirrorSyncer::on_converged(ConvergeResult r, std::chrono::steady_clock::time_point t0, std::string time) {
  in_flight_ = false;
  LastSync rec;
  rec.time = std::move(time);
  rec.changes = r.changes;
  rec.passes = r.passes;
  rec.converged = r.converged;
  rec.errors = std::move(r.errors);
  rec.errors_total = r.errors_total;
  rec.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (r.read_failed) {
    ++totals_.read_errors;
  } else {
    guest_view_ = std::move(r.actual);
  }
  const bool failed = !rec.converged || rec.errors_total > 0;
  totals_.changes += rec.changes;
  totals_.errors += rec.errors_total;
  // Retries of the same failure log at debug level only.
  if (rec.changes || (failed && attempt_ == 0))
    spdlog::info("mirror: sync applied {} change(s) in {:.1f} ms{}", rec.changes, rec.duration_ms,
                 failed && !rec.errors.empty() ? fmt::format(", {} error(s) (first: {}: {})", rec.errors_total,
                                                             rec.errors.front().op, rec.errors.front().error)
                                               : "");
  last_ = std::move(rec);
  if (pending_) {
    sync();  // the host changed meanwhile: its newest state, now
  } else if (failed) {
    schedule_retry();
  } else {
    attempt_ = 0;
  }
}

void MirrorSyncer::schedule_retry() {
  if (attempt_ >= kMaxRetries) {
    spdlog::warn("mirror: giving up after {} retries until the host changes again", kMaxRetries);
    return;
  }
  const auto delay = std::min<std::chrono::milliseconds>(kRetryInitial * (1 << attempt_), kRetryMax);
  ++attempt_;
  ++totals_.retries;
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    sync();
  });
}

void MirrorSyncer::schedule_periodic() {
  periodic_timer_.expires_after(kPeriodicResync);
  periodic_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    sync();
    schedule_periodic();
  });
}

json MirrorSyncer::status_json() const {
  json errors = json::array();
  for (const auto& e : last_.errors) errors.push_back(json{{"op", e.op}, {"error", e.error}});
  const auto& hs = host_.stats();
  json host = to_json(host_.state());
  host["stats"] = json{{"reads", hs.reads},
                       {"changes", hs.changes},
                       {"notifications", hs.notifications},
                       {"overruns", hs.overruns},
                       {"read_errors", hs.read_errors},
                       {"links_over_cap", hs.caps.links_over_cap},
                       {"addresses_over_cap", hs.caps.addresses_over_cap},
                       {"routes_over_cap", hs.caps.routes_over_cap}};
  return json{{"guest_mechanism", guest_.mechanism()},
              {"in_flight", in_flight_},
              {"host", host},
              {"guest", to_json(guest_view_)},
              {"plan", to_json(counters_)},
              {"last_sync",
               {{"time", last_.time},
                {"duration_ms", last_.duration_ms},
                {"changes", last_.changes},
                {"passes", last_.passes},
                {"converged", last_.converged},
                {"errors", errors},
                {"errors_total", last_.errors_total}}},
              {"totals",
               {{"syncs", totals_.syncs},
                {"changes", totals_.changes},
                {"errors", totals_.errors},
                {"retries", totals_.retries},
                {"read_errors", totals_.read_errors},
                {"coalesced", totals_.coalesced}}}};
}

}  // namespace causeway::netstack::mirror
