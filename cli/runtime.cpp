#include "cli/runtime.hpp"

#include <unistd.h>

#include <fmt/format.h>

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

json engine_stats_json(const netstack::EngineStats& s) {
  json dropped = json::object();
  for (size_t i = 1; i < s.dropped.size(); ++i)
    dropped[std::string(to_string(static_cast<netstack::FrameVerdict>(i)))] = s.dropped[i];
  return json{{"frames_in", s.frames_in},       {"bytes_in", s.bytes_in},         {"frames_out", s.frames_out},
              {"bytes_out", s.bytes_out},       {"dropped", dropped},             {"dropped_total", s.dropped_total()},
              {"guest_errors", s.guest_errors}, {"host_sockets", s.host_sockets}, {"forwards", s.forwards},
              {"pumps", s.pumps}};
}

Runtime::Runtime(boost::asio::io_context& io, netstack::NatConfig nat, std::string attach)
    : io_(io), nat_(std::move(nat)), attach_(std::move(attach)), started_ms_(clock_.now_ms()) {}

Guest& Runtime::add_guest(std::string name, std::unique_ptr<netstack::FramePort> port,
                          const std::function<void(netstack::FramePort&, netstack::Engine&)>& start,
                          std::function<json()> port_stats) {
  Guest& g = guests_.emplace_back();
  g.name = std::move(name);
  g.port = std::move(port);
  g.engine = std::make_unique<netstack::Engine>(io_, clock_, nat_, *g.port);
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
    if (auto ec = e.add_forward(f))
      spdlog::error("cannot open forward {}: {}", f.describe(), ec.message());
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
      list.push_back(e);
    }
  }
  json out{{"ok", true}, {"ports", list}, {"auto_forward", auto_ != nullptr}};
  if (auto_) {
    const auto& st = auto_->stats();
    out["auto_stats"] = json{{"snapshots", st.snapshots}, {"opened", st.opened},       {"closed", st.closed},
                             {"conflicts", st.conflicts}, {"over_capacity", st.over_capacity}};
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
  return json{{"ok", true}, {"guests", guests}, {"forwards", forwards_.size()}};
}

json Runtime::handle_control(const json& req) {
  const std::string cmd = req["cmd"].get<std::string>();
  if (cmd == "status") {
    return json{{"ok", true},
                {"version", CAUSEWAY_VERSION},
                {"pid", ::getpid()},
                {"mode", "nat"},
                {"attach", attach_},
                {"guests", guests_.size()},
                {"forwards", forwards_.size()},
                {"mtu", nat_.mtu},
                {"uptime_s", (clock_.now_ms() - started_ms_) / 1000}};
  }
  if (cmd == "stats") return stats_json();
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
  return json{{"ok", false},
              {"error", fmt::format("unknown command '{}' (status, stats, ports, forward-list, forward-add, forward-remove)",
                                    cmd)}};
}

}  // namespace causeway::cli
