#include "cli/runtime.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/sandbox/sandbox.hpp"

namespace causeway::cli {
using json = nlohmann::json;
using netstack::PortForward;

namespace {

boost::system::result<std::vector<PortForward>, std::string> forwards_from_request(const json& req) {
  if (req.contains("spec")) {
    if (!req["spec"].is_string()) return std::string("\"spec\" must be a string");
    auto r = netstack::parse_publish_spec(req["spec"].get<std::string>());
    if (r.has_error()) return r.error();
    return *r;
  }
  const std::string proto = req.value("proto", "tcp");
  const std::string host_ip = req.value("host_ip", "127.0.0.1");
  if (!req.contains("host_port") || !req.contains("guest_port"))
    return std::string("need \"spec\" (e.g. \"8080:80/tcp\") or \"host_port\" and \"guest_port\"");
  auto f = netstack::make_forward(proto, host_ip, req["host_port"].get<int>(), req["guest_port"].get<int>());
  if (f.has_error()) return f.error();
  return std::vector<PortForward>{*f};
}

json forward_json(const PortForward& f, bool active) {
  return json{{"proto", std::string(to_string(f.proto))},
              {"host", f.host_endpoint()},
              {"guest_port", f.guest_port},
              {"state", active ? "active" : "pending"},
              {"origin", "manual"}};
}

}  // namespace

json budget_json(const netstack::FdBudget& b) {
  return json{{"nofile", b.nofile},
              {"reserved", netstack::FdBudget::kReservedFds},
              {"pool", b.pool},
              {"descriptors_at_caps", b.descriptors_at_caps()},
              {"limit_too_small", b.limit_too_small},
              {"caps",
               {{"tcp_flows", b.tcp_flows},
                {"slirp_sockets", b.slirp_sockets},
                {"forward_connections", b.forward_connections},
                {"udp_forward_flows", b.udp_forward_flows},
                {"auto_forwards", b.auto_forwards},
                {"vsock_streams", b.vsock_streams},
                {"dns_tcp_connections", b.dns_tcp_connections},
                {"control_connections", b.control_connections},
                {"dns_in_flight", b.dns_in_flight}}}};
}

json engine_stats_json(const netstack::EngineStats& s) {
  json dropped = json::object();
  for (size_t i = 1; i < s.dropped.size(); ++i)
    dropped[std::string(to_string(static_cast<netstack::FrameVerdict>(i)))] = s.dropped[i];
  // dropped.forbidden_destination, by the destination policy's class (dest_policy.hpp).
  json forbidden = json::object();
  for (size_t i = 1; i < s.forbidden.size(); ++i)
    if (s.forbidden[i]) forbidden[std::string(to_string(static_cast<netstack::DestClass>(i)))] = s.forbidden[i];
  return json{{"forbidden_destination", forbidden},
              {"frames_in", s.frames_in},
              {"bytes_in", s.bytes_in},
              {"frames_out", s.frames_out},
              {"bytes_out", s.bytes_out},
              {"dropped", dropped},
              {"dropped_total", s.dropped_total()},
              {"guest_errors", s.guest_errors},
              {"host_sockets", s.host_sockets},
              {"forwards", s.forwards},
              {"pumps", s.pumps},
              {"udp_flows", s.udp_flows},
              {"slirp_udp_sources", s.slirp_udp_sources},
              {"dns_udp_queries", s.dns_udp_queries},
              {"dns_truncated", s.dns_truncated},
              {"dhcp_mtu_offered", s.dhcp_mtu_offered},
              {"offload", json{{"to_fast_path", s.offload_to_fast_path},
                               {"in_software", s.offload_in_software},
                               {"segments", s.offload_segments},
                               {"super_segments_out", s.tcp.super_segments_out}}},
              {"tcp_fast", json{{"flows", s.tcp.flows},
                                {"opened", s.tcp.flows_opened},
                                {"refused", s.tcp.connect_refused},
                                {"full", s.tcp.flows_full},
                                {"bytes_in", s.tcp.bytes_in},
                                {"bytes_out", s.tcp.bytes_out},
                                {"out_of_order", s.tcp.out_of_order},
                                {"retransmits", s.tcp.retransmits},
                                {"resets_from_guest", s.tcp.resets_from_guest},
                                {"resets_to_guest", s.tcp.resets_to_guest},
                                {"syn_to_guest_rejected", s.tcp.syn_to_guest_rejected},
                                {"forward_accepted", s.tcp_forward_accepted},
                                {"forward_refused", s.tcp_forward_refused},
                                {"forward_awaited_mac", s.tcp_forward_awaited_mac},
                                {"arp_requests", s.arp_requests}}},
              {"accept_backoffs", s.accept_backoffs},
              {"guest_introductions", s.guest_introductions}};
}

Runtime::Runtime(boost::asio::io_context& io, netstack::NatConfig nat, std::string attach)
    : io_(io),
      budget_(netstack::FdBudget::from_process()),
      nat_(std::move(nat)),
      attach_(std::move(attach)),
      started_ms_(clock_.now_ms()) {
  nat_.max_tcp_flows = budget_.tcp_flows;
  nat_.max_slirp_sockets = budget_.slirp_sockets;
  nat_.max_udp_forward_flows = budget_.udp_forward_flows;
  if (budget_.limit_too_small)
    spdlog::warn("RLIMIT_NOFILE is {}: below the {} descriptors causeway's tables need; raise it (ulimit -n)",
                 budget_.nofile, netstack::FdBudget::kReservedFds + netstack::FdBudget::kMinPool);
}

Runtime::~Runtime() {
  guests_.clear();  // engines hold pointers to the proxy
  dns_tcp_.reset();
  // A confined engine that kept the directory has it as a mount point: removed through
  // its real parent (sandbox::remove_kept_directory; a plain removal otherwise).
  if (!dns_dir_.empty()) (void)sandbox::remove_kept_directory(dns_dir_);
}

boost::system::result<void, std::string> Runtime::enable_dns(const DnsSetup& setup) {
  if (!setup.tunneling) {
    nat_.slirp_dns = true;
    return {};
  }
  dns_watch_ = std::make_unique<dns::HostDnsWatch>(io_, setup.host_resolv_conf, [this](const dns::HostDnsConfig& c) {
    if (auto ec = resolver_->update_servers(c)) spdlog::warn("DNS: cannot use the new servers: {}", ec.message());
    std::string list;
    for (auto& s : c.servers) list += (list.empty() ? "" : ", ") + s.to_string();
    spdlog::info("DNS: host resolver configuration changed; now {}", list.empty() ? "no servers" : list);
    if (on_search_change_) on_search_change_(c.search);
  });
  if (auto ec = dns_watch_->start())
    return fmt::format("cannot follow {}: {} (see --host-resolv-conf)", setup.host_resolv_conf, ec.message());
  resolver_ = std::make_unique<dns::CaresResolver>(io_);
  if (auto ec = resolver_->update_servers(dns_watch_->current()))
    spdlog::warn("DNS: {}: {}", setup.host_resolv_conf, ec.message());
  if (dns_watch_->current().servers.empty())
    spdlog::warn("DNS: {} lists no nameserver yet; queries get SERVFAIL until it does", setup.host_resolv_conf);
  if (auto ec = resolver_->set_routes(setup.routes)) return fmt::format("bad --dns-route: {}", ec.message());
  dns::ProxyLimits limits;
  limits.max_in_flight = budget_.dns_in_flight;
  proxy_ = std::make_unique<dns::Proxy>(io_, clock_, *resolver_,
                                        dns::LocalZone(dns::LocalZoneAddresses::nat_defaults()), limits);
  const char* rt = std::getenv("XDG_RUNTIME_DIR");
  std::string tmpl = std::string(rt && *rt ? rt : "/tmp") + "/causeway-dns.XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    return fmt::format("cannot create a private directory in {}: {}", tmpl, std::strerror(errno));
  dns_dir_ = tmpl;
  dns_tcp_ = std::make_unique<netstack::DnsTcpFrontend>(io_, *proxy_, dns_dir_ + "/tcp.sock");
  if (auto ec = dns_tcp_->start()) return fmt::format("cannot listen on {}: {}", dns_tcp_->path(), ec.message());
  nat_.slirp_dns = false;
  return {};
}

Guest& Runtime::add_guest(std::string name, std::unique_ptr<netstack::FramePort> port,
                          const std::function<void(netstack::FramePort&, netstack::Engine&)>& start,
                          std::function<json()> port_stats) {
  Guest& g = guests_.emplace_back();
  g.name = std::move(name);
  g.port = std::move(port);
  g.engine = std::make_unique<netstack::Engine>(io_, clock_, nat_, *g.port);
  if (proxy_) {
    if (auto ec = g.engine->attach_dns(*proxy_, dns_tcp_->path()))
      spdlog::warn("DNS over TCP is unavailable to {}: {}", g.name, ec.message());
  }
  g.port_stats = std::move(port_stats);
  start(*g.port, *g.engine);
  if (guests_.size() == 1) install_forwards(*g.engine);
  return g;
}

void Runtime::remove_guest(const Guest* g) {
  const bool was_primary = !guests_.empty() && &guests_.front() == g;
  guests_.remove_if([g](const Guest& x) { return &x == g; });
  if (was_primary && !guests_.empty()) install_forwards(*guests_.front().engine);
}

netstack::Engine* Runtime::primary() { return guests_.empty() ? nullptr : guests_.front().engine.get(); }

void Runtime::install_forwards(netstack::Engine& e) {
  for (auto& f : forwards_) {
    if (auto ec = e.add_forward(f)) spdlog::error("cannot open forward {}: {}", f.describe(), ec.message());
  }
}

boost::system::result<void, std::string> Runtime::add_forwards(const std::vector<PortForward>& fs) {
  for (auto& f : fs)
    if (std::find(forwards_.begin(), forwards_.end(), f) != forwards_.end())
      return fmt::format("forward {} already exists", f.describe());
  std::vector<PortForward> done;
  if (auto* e = primary()) {
    for (auto& f : fs) {
      if (auto ec = e->add_forward(f)) {
        for (auto& d : done) (void)e->remove_forward(d);
        return fmt::format("cannot forward {} {}: {}", to_string(f.proto), f.host_endpoint(), ec.message());
      }
      done.push_back(f);
    }
  }
  forwards_.insert(forwards_.end(), fs.begin(), fs.end());
  sync_auto_settings();
  return {};
}

boost::system::result<void, std::string> Runtime::remove_forwards(const std::vector<PortForward>& fs) {
  for (auto& f : fs)
    if (std::find(forwards_.begin(), forwards_.end(), f) == forwards_.end())
      return fmt::format("no such forward: {}", f.describe());
  for (auto& f : fs) {
    if (auto* e = primary()) (void)e->remove_forward(f);
    std::erase(forwards_, f);
  }
  sync_auto_settings();
  return {};
}

void Runtime::set_auto_forwarder(portfwd::AutoForwarder* af, portfwd::PolicySettings base) {
  auto_ = af;
  auto_base_ = std::move(base);
  sync_auto_settings();
}

portfwd::PolicySettings Runtime::auto_settings() const {
  portfwd::PolicySettings s = auto_base_;
  for (auto& f : forwards_) {
    const auto proto = f.proto == netstack::Proto::kTcp ? portfwd::L4::kTcp : portfwd::L4::kUdp;
    const auto fam = f.host.ss_family == AF_INET ? portfwd::Family::kIpv4 : portfwd::Family::kIpv6;
    s.manual.insert({proto, fam, f.host_port()});
  }
  return s;
}

void Runtime::sync_auto_settings() {
  if (auto_) auto_->set_settings(auto_settings());
}

json Runtime::ports_json() const {
  json list = json::array();
  const bool active = !guests_.empty();
  for (auto& f : forwards_) {
    list.push_back(json{{"proto", std::string(to_string(f.proto))},
                        {"host", f.host_endpoint()},
                        {"guest", fmt::format("10.0.2.15:{}", f.guest_port)},
                        {"state", active ? "active" : "pending"},
                        {"origin", "manual"}});
  }
  if (auto_) {
    for (auto& i : auto_->list()) {
      json e{{"proto", i.forward.proto == portfwd::L4::kTcp ? "tcp" : "udp"},
             {"host", i.forward.host_endpoint()},
             {"guest", i.forward.guest_endpoint()},
             {"state", i.active ? "active" : "conflict"},
             {"origin", "auto"},
             {"connections", i.connections},
             {"bytes_to_guest", i.bytes_to_guest},
             {"bytes_from_guest", i.bytes_from_guest},
             {"datagrams", i.datagrams}};
      if (!i.active) e["reason"] = i.reason;
      if (!i.active && !i.hint.empty()) e["hint"] = i.hint;
      list.push_back(e);
    }
  }
  json out{{"ok", true}, {"ports", list}, {"auto_forward", auto_ != nullptr}};
  if (auto_) {
    const auto& st = auto_->stats();
    out["auto_stats"] = json{{"snapshots", st.snapshots},
                             {"opened", st.opened},
                             {"closed", st.closed},
                             {"conflicts", st.conflicts},
                             {"over_capacity", st.over_capacity}};
  }
  return out;
}

json Runtime::stats_json() const {
  json guests = json::array();
  for (auto& g : guests_) {
    guests.push_back(json{{"name", g.name},
                          {"engine", engine_stats_json(g.engine->stats())},
                          {"port", g.port_stats ? g.port_stats() : json::object()}});
  }
  json out{{"ok", true}, {"guests", guests}, {"forwards", forwards_.size()}};
  out["budget"] = budget_json(budget_);
  {
    // Refusals at the budget's caps, summed over guests: the newest request refused, counted.
    uint64_t tcp_full = 0, slirp = 0, udp_fwd = 0, fwd_refused = 0;
    for (auto& g : guests_) {
      const auto st = g.engine->stats();
      tcp_full += st.tcp.flows_full;
      slirp += st.refused_slirp_sockets;
      udp_fwd += st.refused_udp_forward_flows;
      fwd_refused += st.tcp_forward_refused;
    }
    json refused{{"tcp_flows", tcp_full},
                 {"slirp_sockets", slirp},
                 {"udp_forward_flows", udp_fwd},
                 {"fast_forward_connections", fwd_refused}};
    if (proxy_) refused["dns_in_flight"] = proxy_->stats().refused_over_capacity;
    if (dns_tcp_) refused["dns_tcp_connections"] = dns_tcp_->stats().refused;
    if (auto_) refused["auto_forwards"] = auto_->stats().over_capacity;
    out["budget"]["refused"] = refused;
  }
  if (proxy_) {
    const auto p = proxy_->stats();
    const auto r = resolver_->stats();
    const auto& t = dns_tcp_->stats();
    json servers = json::array();
    for (auto& s : dns_watch_->current().servers) servers.push_back(s.to_string());
    out["dns"] = json{{"queries", p.queries},
                      {"answers", p.answers},
                      {"local_answers", p.local_answers},
                      {"upstream_failures", p.upstream_failures},
                      {"timeouts", p.timeouts},
                      {"malformed", p.malformed},
                      {"dropped", p.dropped},
                      {"not_implemented", p.not_implemented},
                      {"refused_over_capacity", p.refused_over_capacity},
                      {"late_answers", p.late_answers},
                      {"in_flight", p.in_flight},
                      {"upstream", json{{"sent_udp", r.sent_udp}, {"sent_tcp", r.sent_tcp}, {"routed", r.routed}}},
                      {"tcp", json{{"connections", t.connections},
                                   {"queries", t.queries},
                                   {"framing_errors", t.framing_errors},
                                   {"refused", t.refused}}},
                      {"servers", servers},
                      {"host_resolv_conf", dns_watch_->path()},
                      {"reloads", dns_watch_->stats().reloads}};
  } else {
    out["dns"] = json{{"mode", "plain (libslirp forwarding to the host's first server)"}};
  }
  return out;
}

uint64_t Runtime::accept_backoffs() const {
  uint64_t n = 0;
  for (auto& g : guests_) n += g.engine->stats().accept_backoffs;
  if (auto_) n += auto_->accept_backoffs();
  if (dns_tcp_) n += dns_tcp_->stats().accept_backoffs;
  return n;
}

json Runtime::handle_control(const json& req) {
  const std::string cmd = req["cmd"].get<std::string>();
  if (cmd == "status") {
    return json{{"ok", true},
                {"version", CAUSEWAY_VERSION},
                {"pid", ::getpid()},
                {"mode", mode_},
                {"attach", attach_},
                {"guests", guests_.size()},
                {"forwards", forwards_.size()},
                {"mtu", nat_.mtu},
                {"uptime_s", (clock_.now_ms() - started_ms_) / 1000},
                {"accept_backoffs", accept_backoffs()},
                {"sandbox", sandbox::current().to_json()}};
  }
  if (cmd == "stats") return stats_json();
  if (cmd == "mirror") {
    if (!mirror_status_) return json{{"ok", false}, {"error", "not in mirrored mode (causeway netns --mode mirrored)"}};
    return json{{"ok", true}, {"mirror", mirror_status_()}};
  }
  if (cmd == "ports") return ports_json();
  if (cmd == "forward-list") {
    json list = json::array();
    const bool active = !guests_.empty();
    for (auto& f : forwards_) list.push_back(forward_json(f, active));
    return json{{"ok", true}, {"forwards", list}};
  }
  if (cmd == "forward-add" || cmd == "forward-remove") {
    auto fs = forwards_from_request(req);
    if (fs.has_error()) return json{{"ok", false}, {"error", fs.error()}};
    auto r = cmd == "forward-add" ? add_forwards(*fs) : remove_forwards(*fs);
    if (r.has_error()) return json{{"ok", false}, {"error", r.error()}};
    json names = json::array();
    for (auto& f : *fs) names.push_back(f.describe());
    return json{{"ok", true}, {cmd == "forward-add" ? "added" : "removed", names}};
  }
  return json{
      {"ok", false},
      {"error",
       fmt::format("unknown command '{}' (status, stats, ports, forward-list, forward-add, forward-remove, mirror)",
                   cmd)}};
}

}  // namespace causeway::cli
