// causeway — user-mode networking for lightweight Linux VMs and namespaces.
//
// Composition root: parses the command line, builds the object graph, runs
// the engine's io_context on this (the engine) thread.
//
//   causeway netns [OPTIONS] -- COMMAND [ARGS...]     new namespace, run COMMAND
//   causeway netns [OPTIONS] --attach PID|PATH        serve an existing namespace
//   causeway serve --qemu-socket PATH [OPTIONS]       QEMU -netdev stream backend
//   causeway ctl PATH COMMAND [ARGS...]               talk to a running causeway
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <iostream>
#include <cstring>
#include <list>
#include <map>
#include <optional>

#include "base/accept_backoff.hpp"
#include "base/log.hpp"
#include "cli/config.hpp"
#include "cli/control.hpp"
#include "cli/run.hpp"
#include "cli/runtime.hpp"
#include "dns/host_config.hpp"
#include "netstack/listener_watch.hpp"
#include "netstack/mirror/apply.hpp"
#include "netstack/mirror/datapath.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/syncer.hpp"
#include "netstack/netns.hpp"
#include "netstack/netns_sockets.hpp"
#include "netstack/stream_port.hpp"
#include "netstack/tap_port.hpp"

namespace {

namespace asio = boost::asio;
using json = nlohmann::json;
using namespace causeway;

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

struct NetOptions {
  uint64_t command_nofile_soft = 0;  // the open-file limit before raise_nofile_limit(), for COMMAND
  int mtu = static_cast<int>(netstack::kMaxMtu);
  bool no_host_loopback = false;
  bool no_ipv6 = false;
  std::vector<std::string> publish;
  std::string control;
  std::string config;
  std::vector<std::string> dns_search;
  bool no_auto_forward = false;
  std::vector<int> ignored_ports;
  bool no_dns_tunneling = false;
  std::string host_resolv_conf = "/etc/resolv.conf";
  std::vector<std::string> dns_routes;
  std::string tcp_engine = "auto";
  bool no_offload = false;   // netns only: a tap without checksum/TSO offloads
  std::string mode = "nat";  // netns and run: nat or mirrored (--mode, networkingMode)
  std::string forward_source_ports;  // FIRST-LAST; empty: the default range
};

void add_net_options(CLI::App* app, NetOptions& o) {
  app->add_option("--mtu", o.mtu, "Link MTU (1280-65520; default 65520)")->check(CLI::Range(1280, 65520));
  app->add_flag("--no-host-loopback", o.no_host_loopback,
                "Do not let the guest reach the host's loopback through the gateway 10.0.2.2");
  app->add_flag("--no-ipv6", o.no_ipv6, "Disable IPv6 (no router advertisements, no fd00::/64)");
  app->add_option("-p,--publish", o.publish,
                  "Forward a host port to the guest: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp] (repeatable; "
                  "without HOSTIP both 127.0.0.1 and [::1])");
  app->add_option("--control", o.control, "Serve the control API on this unix socket (see `causeway ctl`)");
  app->add_option("--config", o.config, "Read settings from this file (.wslconfig syntax; see README)");
  app->add_option("--dns-search", o.dns_search, "Search domain to offer the guest (repeatable)");
  app->add_flag("--no-auto-forward", o.no_auto_forward,
                "Do not forward guest listeners to the host's localhost automatically");
  app->add_option("--host-resolv-conf", o.host_resolv_conf,
                  "Follow this resolver configuration instead of /etc/resolv.conf (default /etc/resolv.conf)");
  app->add_option("--dns-route", o.dns_routes,
                  "Send names under DOMAIN to SERVER: DOMAIN=SERVER[:PORT] (repeatable; split DNS)");
  app->add_flag("--no-dns-tunneling", o.no_dns_tunneling,
                "Plain DNS: libslirp forwards 10.0.2.3 to the host's first server (no proxy, no TCP, no live follow)");
  app->add_option("--ignore-port", o.ignored_ports, "Never forward this guest port automatically (repeatable)")
      ->check(CLI::Range(1, 65535));
  app->add_option("--tcp-engine", o.tcp_engine,
                  "auto (default: fast where the kernel allows, else slirp), fast (guest TCP connections map onto "
                  "host sockets; needs Linux 6.10+) or slirp (libslirp's TCP stack)")
      ->check(CLI::IsMember({"auto", "slirp", "fast"}));
  app->add_option("--forward-source-ports", o.forward_source_ports,
                  "FIRST-LAST: the gateway source ports the guest sees connections to -p TCP forwards come from "
                  "(default 32768-60999, round robin)")
      ->check([](const std::string& v) -> std::string {
        unsigned first = 0, last = 0;
        char dash = 0, extra = 0;
        if (std::sscanf(v.c_str(), "%u%c%u%c", &first, &dash, &last, &extra) != 3 || dash != '-' || first < 1 ||
            last > 65535 || first > last)
          return "expected FIRST-LAST with 1 <= FIRST <= LAST <= 65535, e.g. 32768-60999";
        return {};
      });
  app->add_flag("--no-offload", o.no_offload,
                "netns: no checksum/TSO offloads on the tap for the TCP fast path (every frame MTU-sized, "
                "checksummed in software)");
}

// Merges the config file under the command line; returns an error line.
// `mirrored_ok`: the subcommand has mirrored mode (netns and run; not serve).
std::optional<std::string> apply_config(NetOptions& o, CLI::App* app, bool mirrored_ok = false) {
  if (o.config.empty()) return std::nullopt;
  auto cfg = cli::load_config(o.config);
  if (cfg.has_error()) return cfg.error();
  for (auto& w : cfg->warnings) spdlog::warn("{}", w);
  if (cfg->networking_mode && *cfg->networking_mode != "nat" && !mirrored_ok)
    return o.config + ": networkingMode=" + *cfg->networking_mode + " is not supported yet here (only nat)";
  if (cfg->networking_mode && app->count("--mode") == 0) o.mode = *cfg->networking_mode;
  if (cfg->mtu && app->count("--mtu") == 0) o.mtu = *cfg->mtu;
  if (cfg->host_loopback && !o.no_host_loopback) o.no_host_loopback = !*cfg->host_loopback;
  if (cfg->ipv6 && !o.no_ipv6) o.no_ipv6 = !*cfg->ipv6;
  o.publish.insert(o.publish.begin(), cfg->publish.begin(), cfg->publish.end());
  if (cfg->localhost_forwarding && !*cfg->localhost_forwarding) o.no_auto_forward = true;
  if (cfg->dns_tunneling && !*cfg->dns_tunneling) o.no_dns_tunneling = true;
  if (cfg->host_resolv_conf && app->count("--host-resolv-conf") == 0) o.host_resolv_conf = *cfg->host_resolv_conf;
  o.dns_routes.insert(o.dns_routes.begin(), cfg->dns_routes.begin(), cfg->dns_routes.end());
  o.ignored_ports.insert(o.ignored_ports.end(), cfg->ignored_ports.begin(), cfg->ignored_ports.end());
  return std::nullopt;
}

netstack::NatConfig nat_config(const NetOptions& o) {
  netstack::NatConfig c;
  c.mtu = static_cast<size_t>(o.mtu);
  c.host_loopback = !o.no_host_loopback;
  c.ipv6 = !o.no_ipv6;
  c.dns_search = o.dns_search;
  c.tcp_fast = o.tcp_engine != "slirp";
  c.tcp_fast_explicit = o.tcp_engine == "fast";
  if (unsigned first = 0, last = 0;
      !o.forward_source_ports.empty() && std::sscanf(o.forward_source_ports.c_str(), "%u-%u", &first, &last) == 2) {
    c.forward_port_first = static_cast<uint16_t>(first);  // checked by the option's validator
    c.forward_port_last = static_cast<uint16_t>(last);
  }
  return c;
}

std::optional<cli::DnsSetup> dns_setup(const NetOptions& o) {
  if (o.no_dns_tunneling && o.host_resolv_conf != "/etc/resolv.conf") {
    std::fprintf(stderr, "causeway: --host-resolv-conf needs DNS tunneling: without it libslirp forwards to the first "
                         "server of /etc/resolv.conf and reads no other file\n");
    return std::nullopt;
  }
  if (o.no_dns_tunneling && !o.dns_routes.empty()) {
    std::fprintf(stderr, "causeway: --dns-route needs DNS tunneling (drop --no-dns-tunneling)\n");
    return std::nullopt;
  }
  cli::DnsSetup d;
  d.tunneling = !o.no_dns_tunneling;
  d.host_resolv_conf = o.host_resolv_conf;
  for (auto& r : o.dns_routes) {
    auto route = dns::parse_dns_route(r);
    if (route.has_error()) {
      std::fprintf(stderr, "causeway: bad --dns-route '%s': %s (expected DOMAIN=SERVER[:PORT])\n", r.c_str(),
                   route.error().message().c_str());
      return std::nullopt;
    }
    d.routes.push_back(*route);
  }
  return d;
}

// The host's search domains now (the namespace's resolv.conf starts with them).
std::vector<std::string> host_search(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return dns::parse_resolv_conf(ss.str()).search;
}

std::optional<std::vector<netstack::PortForward>> parse_publish(const NetOptions& o) {
  std::vector<netstack::PortForward> all;
  for (auto& spec : o.publish) {
    auto r = netstack::parse_publish_spec(spec);
    if (r.has_error()) {
      std::fprintf(stderr, "causeway: %s\n", r.error().c_str());
      return std::nullopt;
    }
    all.insert(all.end(), r->begin(), r->end());
  }
  return all;
}

json tap_stats_json(const netstack::TapStats& s) {
  return json{{"frames_read", s.frames_read},
              {"frames_written", s.frames_written},
              {"write_drops", s.write_drops},
              {"read_drops", s.read_drops},
              {"offload", s.offload},
              {"offload_frames_read", s.offload_frames_read},
              {"offload_frames_written", s.offload_frames_written}};
}

json stream_stats_json(const netstack::StreamStats& s) {
  return json{{"frames_read", s.frames_read},   {"frames_written", s.frames_written},
              {"queue_drops", s.queue_drops},   {"bad_length", s.bad_length},
              {"truncated_close", s.truncated_close}};
}

std::unique_ptr<cli::ControlServer> start_control(asio::io_context& io, cli::Runtime& rt, const std::string& path,
                                                  int& status) {
  if (path.empty()) return nullptr;
  auto ctl = std::make_unique<cli::ControlServer>(io, path, [&rt](const json& req) { return rt.handle_control(req); });
  if (auto r = ctl->start(); r.has_error()) {
    std::fprintf(stderr, "causeway: %s\n", r.error().c_str());
    status = kExitFailure;
    return nullptr;
  }
  return ctl;
}

// ---- causeway netns ----
int run_netns(NetOptions& o, const std::string& attach, const std::string& ifname, std::vector<std::string> command) {
  if (attach.empty() == command.empty()) {
    std::fprintf(stderr, "causeway netns: give either -- COMMAND [ARGS...] or --attach PID|PATH\n");
    return kExitUsage;
  }
  auto forwards = parse_publish(o);
  if (!forwards) return kExitUsage;
  const auto dns = dns_setup(o);
  if (!dns) return kExitUsage;
  const auto nat = nat_config(o);

  // Hold SIGINT/SIGTERM until our handlers are installed: a signal that
  // arrives while the tap already exists but the loop is not running yet
  // must detach cleanly, not kill us with the default action.
  sigset_t held;
  sigemptyset(&held);
  sigaddset(&held, SIGINT);
  sigaddset(&held, SIGTERM);
  sigprocmask(SIG_BLOCK, &held, nullptr);

  netstack::TapConfig tc;
  tc.ifname = ifname;
  tc.mtu = nat.mtu;
  tc.address = nat.guest;
  tc.gateway = nat.gateway;
  tc.ipv6 = nat.ipv6;
  // Offloads only help the TCP fast path (libslirp needs every frame finished
  // in software), so the tap gets a virtio-net header only when it is on.
  tc.vnet_hdr = nat.tcp_fast && !o.no_offload && netstack::TcpFastPath::available();
  const bool mirrored = o.mode == "mirrored";
  if (mirrored) {
    // The NAT tap stays as an internal link (DNS at 10.0.2.3, the host's
    // loopback at 10.0.2.2, manual forwards) without default routes and with
    // a link-scope address: the mirrored links carry the guest's traffic and
    // its global addresses are exactly the host's.
    tc.internal = true;
    tc.ipv6 = false;
  }
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET, &nat.dns, text, sizeof text);
  tc.nameservers = {text};
  // fd00::3 answers UDP only (libslirp's unix forwards, which carry DNS over
  // TCP, are IPv4-only), so it is not listed: every listed server must answer
  // both ways, or a truncated answer could not be retried over TCP.
  // Search domains: --dns-search if given, else the host's (followed live).
  const bool follow_search = nat.dns_search.empty() && dns->tunneling;
  tc.search = follow_search ? host_search(dns->host_resolv_conf) : nat.dns_search;
  const bool auto_forward = !o.no_auto_forward;
  tc.trap_listeners = auto_forward && !command.empty();
  tc.command_nofile_soft = o.command_nofile_soft;

  // Fork before anything starts threads.
  std::optional<netstack::SpawnedCommand> child;
  causeway::UniqueFd tap;
  if (!command.empty()) {
    auto s = netstack::spawn_in_new_namespace(tc, command);
    if (s.has_error()) {
      std::fprintf(stderr, "causeway netns: %s\n", s.error().c_str());
      return kExitFailure;
    }
    child.emplace(std::move(*s));
    tap = std::move(child->tap);
  } else {
    auto t = netstack::attach_to_namespace(tc, attach);
    if (t.has_error()) {
      std::fprintf(stderr, "causeway netns: %s\n", t.error().c_str());
      return kExitFailure;
    }
    tap = std::move(*t);
  }

  // Automatic forwarding reads the namespace's listeners and connects to its
  // loopback through sockets made inside it (netstack/netns_sockets.hpp).
  std::unique_ptr<netstack::NamespaceSocketFactory> factory;
  if (auto_forward || mirrored) {
    const bool is_pid = !attach.empty() && attach.find_first_not_of("0123456789") == std::string::npos;
    const std::string proc = child ? "/proc/" + std::to_string(child->pid) : (is_pid ? "/proc/" + attach : "");
    const std::string net = proc.empty() ? attach : proc + "/ns/net";
    const std::string user = (::geteuid() != 0 && !proc.empty()) ? proc + "/ns/user" : "";
    auto f = netstack::NamespaceSocketFactory::start(net, user);
    if (f.has_error() && mirrored) {
      std::fprintf(stderr, "causeway netns: mirrored mode needs sockets in the namespace: %s\n", f.error().c_str());
      if (child) {
        ::kill(child->pid, SIGKILL);
        ::waitpid(child->pid, nullptr, 0);
        ::unlink(child->resolv_conf_path.c_str());
      }
      return kExitFailure;
    }
    if (f.has_error()) {
      spdlog::warn("automatic port forwarding is off: {}", f.error());
    } else {
      factory = std::move(*f);
    }
  }

  asio::io_context io(1);
  cli::Runtime rt(io, nat, "netns");
  int status = 0;
  if (auto r = rt.enable_dns(*dns); r.has_error()) {
    std::fprintf(stderr, "causeway netns: %s\n", r.error().c_str());
    if (child) {
      ::kill(child->pid, SIGKILL);
      ::waitpid(child->pid, nullptr, 0);
      ::unlink(child->resolv_conf_path.c_str());
    }
    return kExitFailure;
  }
  if (child && follow_search) {
    rt.set_on_dns_search_change([&tc, path = child->resolv_conf_path, pid = child->pid](
                                    const std::vector<std::string>& search) {
      if (!netstack::rewrite_resolv_conf(path, netstack::render_resolv_conf(tc.nameservers, search)))
        spdlog::warn("cannot update the namespace's resolv.conf: {}", std::strerror(errno));
      netstack::ensure_resolv_conf_bound(pid, path);
    });
  }
  // A host that replaces its resolv.conf by rename drops the namespace's bind
  // mount on it (netns.hpp): look twice a second, bind again when gone.
  asio::steady_timer resolv_guard(io);
  std::function<void()> guard_resolv = [&] {
    resolv_guard.expires_after(std::chrono::milliseconds(500));
    resolv_guard.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      if (!netstack::ensure_resolv_conf_bound(child->pid, child->resolv_conf_path))
        spdlog::debug("the namespace's /etc/resolv.conf could not be bound again");
      guard_resolv();
    });
  };
  if (child) guard_resolv();
  bool tap_closed = false;
  auto port = std::make_unique<netstack::TapFramePort>(
      io, std::move(tap), nat.mtu,
      [&] {
        tap_closed = true;
        if (!child) io.stop();  // --attach: the namespace is gone
      },
      /*offload=*/tc.vnet_hdr);
  auto* tap_port = port.get();
  rt.add_guest(
      command.empty() ? "tap " + ifname + " in " + attach : "tap " + ifname + " in pid " + std::to_string(child->pid),
      std::move(port), [](netstack::FramePort& p, netstack::Engine& e) { static_cast<netstack::TapFramePort&>(p).start(e); },
      [tap_port] { return tap_stats_json(tap_port->stats()); });

  rt.primary_engine()->announce_guest(tc.mac);
  auto fail_child = [&](int code) {
    if (child) {
      ::kill(child->pid, SIGKILL);
      ::waitpid(child->pid, nullptr, 0);
      ::unlink(child->resolv_conf_path.c_str());
    }
    return code;
  };
  if (auto r = rt.add_forwards(*forwards); r.has_error()) {
    std::fprintf(stderr, "causeway netns: %s\n", r.error().c_str());
    return fail_child(kExitFailure);
  }
  auto ctl = start_control(io, rt, o.control, status);
  if (status != 0) return fail_child(status);

  // Mirrored mode: the host's links, addresses and routes follow into the
  // namespace (netstack/mirror/ control plane); each mirrored link is a tap
  // whose frames a MirrorLink carries out through host sockets bound to the
  // guest's source address (datapath.hpp).
  // Declared first: the applier's destructor reports its links removed.
  struct MirrorLinkRuntime {
    std::unique_ptr<netstack::TapFramePort> port;
    std::unique_ptr<netstack::mirror::MirrorLink> link;
  };
  std::map<std::string, MirrorLinkRuntime> mirror_links;
  // The last plan's desired state: which addresses each link's guest may use (set_addresses).
  netstack::mirror::NetState mirror_plan;
  std::unique_ptr<netstack::mirror::HostView> mirror_view;
  std::unique_ptr<netstack::mirror::NetlinkGuestApplier> mirror_applier;
  std::unique_ptr<netstack::mirror::MirrorSyncer> mirror_syncer;
  if (mirrored) {
    mirror_view = std::make_unique<netstack::mirror::HostView>(io, netstack::mirror::current_namespace_sockets());
    netstack::mirror::ApplyHooks hooks;
    hooks.on_link_created = [&io, &mirror_links, &mirror_plan](const netstack::mirror::MirroredLinkCreated& c) {
      causeway::UniqueFd fd(::fcntl(c.tap_fd, F_DUPFD_CLOEXEC, 0));
      if (!fd) {
        spdlog::warn("mirrored link {}: cannot keep its tap: {}", c.name, std::strerror(errno));
        return;
      }
      mirror_links.erase(c.name);
      MirrorLinkRuntime r;
      // The tap has a virtio-net header when hooks.vnet_hdr_taps: then the port negotiates offloads.
      r.port = std::make_unique<netstack::TapFramePort>(io, std::move(fd), 65535, [] {}, /*offload=*/true);
      netstack::mirror::MirrorLinkConfig mc;
      mc.name = c.name;
      mc.host_ifindex = c.host_ifindex;
      mc.mtu = c.mtu;
      r.link = std::make_unique<netstack::mirror::MirrorLink>(io, *r.port, mc);
      r.link->set_addresses(netstack::mirror::link_addresses(mirror_plan, c.name));
      r.port->start(*r.link);
      mirror_links.emplace(c.name, std::move(r));
      spdlog::debug("mirrored link {}: data path up (mtu {})", c.name, c.mtu);
    };
    hooks.on_link_removed = [&mirror_links](const std::string& name) { mirror_links.erase(name); };
    hooks.vnet_hdr_taps = tc.vnet_hdr;  // offloads as on the NAT tap (fast path on, no --no-offload)
    hooks.on_link_mtu = [&mirror_links](const std::string& name, uint32_t mtu) {
      if (auto it = mirror_links.find(name); it != mirror_links.end()) it->second.link->set_mtu(mtu);
    };
    auto applier = netstack::mirror::NetlinkGuestApplier::open(*factory, std::move(hooks));
    if (applier.has_error()) {
      std::fprintf(stderr, "causeway netns: mirrored mode: %s\n", applier.error().c_str());
      return fail_child(kExitFailure);
    }
    mirror_applier = std::move(*applier);
    netstack::mirror::PlanOptions po;
    po.reserved_names = {"lo", ifname};
    mirror_syncer = std::make_unique<netstack::mirror::MirrorSyncer>(io, *mirror_view, *mirror_applier, po);
    mirror_syncer->set_on_plan([&mirror_links, &mirror_plan](const netstack::mirror::NetState& desired) {
      mirror_plan = desired;
      for (auto& [name, r] : mirror_links) r.link->set_addresses(netstack::mirror::link_addresses(desired, name));
    });
    if (auto r = mirror_syncer->start(); r.has_error()) {
      std::fprintf(stderr, "causeway netns: mirrored mode: %s\n", r.error().c_str());
      return fail_child(kExitFailure);
    }
    rt.set_mode("mirrored");
    rt.set_mirror_status([&mirror_syncer, &mirror_links] {
      auto j = mirror_syncer->status_json();
      auto& dp = j["data_path"];
      dp = nlohmann::json::object();
      for (const auto& [name, r] : mirror_links) dp[name] = netstack::mirror::to_json(r.link->stats());
      return j;
    });
  }

  std::unique_ptr<netstack::NetnsConnector> tcp4, tcp6;
  std::unique_ptr<netstack::NetnsDatagramChannel> udp4, udp6;
  std::unique_ptr<portfwd::AutoForwarder> autofwd;
  std::unique_ptr<netstack::NetnsListenerSource> listeners;
  if (factory && auto_forward) {
    auto diag_sock = factory->create(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG);
    if (diag_sock.has_error()) {
      spdlog::warn("automatic port forwarding is off: cannot open sock_diag in the namespace: {}",
                   diag_sock.error().message());
    } else {
      tcp4 = std::make_unique<netstack::NetnsConnector>(io, *factory, portfwd::Family::kIpv4);
      tcp6 = std::make_unique<netstack::NetnsConnector>(io, *factory, portfwd::Family::kIpv6);
      udp4 = std::make_unique<netstack::NetnsDatagramChannel>(io, *factory, portfwd::Family::kIpv4);
      udp6 = std::make_unique<netstack::NetnsDatagramChannel>(io, *factory, portfwd::Family::kIpv6);
      portfwd::PolicySettings base;
      for (int p : o.ignored_ports) base.ignored.insert(static_cast<uint16_t>(p));
      base.host_wildcard = mirrored;  // the guest has the host's addresses: its servers answer on them
      base.tcp_any_v4_loopback = true;  // NetnsConnector dials the listener's own 127/8 address
      autofwd = std::make_unique<portfwd::AutoForwarder>(
          io, rt.clock(), portfwd::GuestSide{tcp4.get(), tcp6.get(), udp4.get(), udp6.get()}, base);
      rt.set_auto_forwarder(autofwd.get(), base);
      // With the bind/listen trap the poll is only a safety net; --attach has no trap.
      const auto poll = child ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(100);
      listeners = std::make_unique<netstack::NetnsListenerSource>(
          io, std::make_unique<portfwd::SockDiag>(std::move(*diag_sock)), causeway::UniqueFd(), poll,
          [&autofwd](const std::set<portfwd::Listener>& snap) { autofwd->on_listeners(snap); });
      listeners->start();
    }
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  if (child) signals.add(SIGCHLD);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGCHLD) {
      int st = 0;
      if (::waitpid(child->pid, &st, WNOHANG) == child->pid) {
        status = netstack::shell_status(st);
        io.stop();
        return;
      }
    } else if (child) {
      ::kill(child->pid, sig);  // the command decides; we exit when it does
    } else {
      spdlog::info("{}: detaching", sig == SIGINT ? "interrupt" : "terminated");
      io.stop();
      return;
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  sigprocmask(SIG_UNBLOCK, &held, nullptr);  // pending ones now reach the handler

  // The child sends the trap's descriptor just before it execs COMMAND.
  asio::posix::stream_descriptor control_desc(io);
  if (child) {
    release_child(*child);
    if (tc.trap_listeners) {
      control_desc.assign(child->control.get());
      control_desc.async_wait(asio::posix::descriptor_base::wait_read, [&](boost::system::error_code ec) {
        if (ec) return;
        auto trap = netstack::receive_listener_trap(child->control.get());
        if (trap.has_error()) {
          spdlog::debug("no listener trap: {} (the poll still runs)", trap.error());
        } else if (listeners) {
          listeners->set_trap(std::move(*trap));
        }
      });
    }
  }
  spdlog::debug("engine running; mtu {}", nat.mtu);
  io.run();
  if (control_desc.is_open()) (void)control_desc.release();
  if (child) {
    ::unlink(child->resolv_conf_path.c_str());
  } else if (tap_closed) {
    spdlog::info("the namespace's tap device went away; exiting");
  }
  return status;
}

// ---- causeway serve ----
int run_serve(NetOptions& o, const std::string& socket_path) {
  auto forwards = parse_publish(o);
  if (!forwards) return kExitUsage;
  const auto dns = dns_setup(o);
  if (!dns) return kExitUsage;
  const auto nat = nat_config(o);
  for (auto& f : *forwards) {
    if (auto ec = netstack::probe_host_port(f)) {
      std::fprintf(stderr, "causeway serve: cannot forward %s %s: %s\n", std::string(to_string(f.proto)).c_str(),
                   f.host_endpoint().c_str(), ec.message().c_str());
      return kExitFailure;
    }
  }
  asio::io_context io(1);
  cli::Runtime rt(io, nat, "serve");
  if (auto r = rt.enable_dns(*dns); r.has_error()) {
    std::fprintf(stderr, "causeway serve: %s\n", r.error().c_str());
    return kExitFailure;
  }
  if (auto r = rt.add_forwards(*forwards); r.has_error()) {
    std::fprintf(stderr, "causeway serve: %s\n", r.error().c_str());
    return kExitFailure;
  }

  asio::local::stream_protocol::acceptor acceptor(io);
  boost::system::error_code ec;
  if (::access(socket_path.c_str(), F_OK) == 0) {
    std::fprintf(stderr, "causeway serve: %s already exists; remove it or choose another --qemu-socket path\n",
                 socket_path.c_str());
    return kExitFailure;
  }
  acceptor.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor.bind(asio::local::stream_protocol::endpoint(socket_path), ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "causeway serve: cannot listen on %s: %s\n", socket_path.c_str(), ec.message().c_str());
    return kExitFailure;
  }
  int status = 0;
  auto ctl = start_control(io, rt, o.control, status);
  if (status != 0) {
    ::unlink(socket_path.c_str());
    return status;
  }
  spdlog::info("serving QEMU stream netdev on {} (-netdev stream,id=n0,addr.type=unix,addr.path={})", socket_path,
               socket_path);

  // Max frame on the wire: MTU + Ethernet header (+ slack for a VLAN tag QEMU may pass through).
  const size_t max_frame = nat.mtu + netstack::kEthHeaderLen + 4;
  int next_id = 1;
  AcceptBackoff accept_backoff(io);  // out of descriptors: pause accepts instead of spinning
  std::function<void()> accept = [&] {
    acceptor.async_accept([&](boost::system::error_code aec, asio::local::stream_protocol::socket sock) {
      if (aec == asio::error::operation_aborted) return;
      if (accept_backoff.defer_if_exhausted(aec, "QEMU socket " + socket_path, [&] { accept(); })) return;
      if (!aec) {
        const std::string name = "qemu connection " + std::to_string(next_id++);
        auto g = std::make_shared<const cli::Guest*>(nullptr);
        auto port = std::make_unique<netstack::StreamFramePort>(
            std::move(sock), max_frame, [&rt, g, name](const std::string& why) {
              spdlog::info("{} ended: {}", name, why);
              rt.remove_guest(*g);
            });
        auto* sp = port.get();
        *g = &rt.add_guest(
            name, std::move(port),
            [](netstack::FramePort& p, netstack::Engine& e) { static_cast<netstack::StreamFramePort&>(p).start(e); },
            [sp] { return stream_stats_json(sp->stats()); });
        spdlog::info("{} attached ({} guest(s))", name, rt.guest_count());
      }
      accept();
    });
  };
  accept();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  io.run();
  acceptor.close(ec);
  ::unlink(socket_path.c_str());
  return 0;
}

// ---- causeway run ----
int run_run(NetOptions& o, cli::RunOptions ro, std::vector<std::string> command, const std::string& memory,
            const std::string& accel, bool force_tty, CLI::App* app) {
  // Config keys for the VM; the command line wins.
  if (!o.config.empty()) {
    auto cfg = cli::load_config(o.config);
    if (cfg.has_value()) {
      if (cfg->processors && app->count("--cpus") == 0) ro.cpus = static_cast<unsigned>(*cfg->processors);
      if (cfg->memory && memory.empty()) {
        auto m = cli::parse_memory_mib(*cfg->memory);
        if (m.has_error()) return std::fprintf(stderr, "causeway run: %s: %s\n", o.config.c_str(), m.error().c_str()), kExitUsage;
        ro.memory_mib = *m;
      }
      if (cfg->kernel && ro.kernel.empty()) ro.kernel = *cfg->kernel;
      if (cfg->kernel_command_line && ro.cmdline.empty()) ro.cmdline = *cfg->kernel_command_line;
    }
  }
  if (!memory.empty()) {
    auto m = cli::parse_memory_mib(memory);
    if (m.has_error()) return std::fprintf(stderr, "causeway run: %s\n", m.error().c_str()), kExitUsage;
    ro.memory_mib = *m;
  }
  if (accel == "kvm") ro.accel = machine::AccelRequest::Kvm;
  else if (accel == "tcg") ro.accel = machine::AccelRequest::Tcg;
  // A terminal on both ends and no command: an interactive shell with a pty.
  ro.tty = force_tty || (command.empty() && ::isatty(0) && ::isatty(1));
  if (!command.empty()) ro.command = std::move(command);
  if (ro.guest_dir.empty()) {
    if (const char* g = std::getenv("CAUSEWAY_GUEST_DIR"); g && *g) {
      ro.guest_dir = g;
    } else {
      // Next to the binary: build/causeway → build/guest.
      char self[4096] = {};
      const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
      std::string exe = n > 0 ? std::string(self, static_cast<size_t>(n)) : "causeway";
      ro.guest_dir = exe.substr(0, exe.rfind('/') + 1) + "guest";
    }
  }
  auto forwards = parse_publish(o);
  if (!forwards) return kExitUsage;
  const auto dns = dns_setup(o);
  if (!dns) return kExitUsage;
  // VM default MTU 16384, not 65520: libslirp has no TCP window scaling, and
  // with 64 KiB frames the guest's 32 KiB window stalls bulk transfers until
  // libslirp's 5 s persist timer (seen in the vhost-user e2e runs).
  if (app->count("--mtu") == 0) o.mtu = 16384;
  ro.control = o.control;
  ro.mode = o.mode;
  ro.auto_forward = !o.no_auto_forward;
  ro.ignored_ports = o.ignored_ports;
  return cli::run_vm(ro, nat_config(o), *dns, *forwards);
}

// ---- causeway ctl ----
int run_ctl(const std::string& path, const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fprintf(stderr, "causeway ctl: give a command: status, stats, ports, forward-list, forward-add SPEC, "
                         "forward-remove SPEC, mirror, raw JSON\n");
    return kExitUsage;
  }
  json req;
  const std::string& cmd = args[0];
  if (cmd == "raw") {
    if (args.size() != 2) return std::fprintf(stderr, "causeway ctl: raw takes one JSON argument\n"), kExitUsage;
    try {
      req = json::parse(args[1]);
    } catch (const json::exception& e) {
      std::fprintf(stderr, "causeway ctl: bad JSON: %s\n", e.what());
      return kExitUsage;
    }
  } else if (cmd == "forward-add" || cmd == "forward-remove") {
    if (args.size() != 2)
      return std::fprintf(stderr, "causeway ctl: %s takes one spec: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]\n",
                          cmd.c_str()),
             kExitUsage;
    req = json{{"cmd", cmd}, {"spec", args[1]}};
  } else if (cmd == "status" || cmd == "stats" || cmd == "forward-list" || cmd == "ports" || cmd == "mirror") {
    req = json{{"cmd", cmd}};
  } else {
    std::fprintf(stderr, "causeway ctl: unknown command '%s'\n", cmd.c_str());
    return kExitUsage;
  }
  auto reply = cli::control_request(path, req);
  if (reply.has_error()) {
    std::fprintf(stderr, "causeway ctl: %s\n", reply.error().c_str());
    return kExitFailure;
  }
  if (!reply->value("ok", false)) {
    std::fprintf(stderr, "causeway ctl: %s\n", reply->value("error", std::string("request failed")).c_str());
    return kExitFailure;
  }
  std::cout << reply->dump(2) << "\n";
  return 0;
}

// Every relayed connection holds two descriptors and the default soft limit
// is often 1024: raise it to the hard limit once, at start, so accept loops
// meet EMFILE (base/accept_backoff.hpp) only when the system really is out.
// Failure is not fatal: the old limit still works, just lower. Returns the
// soft limit as it was, which `netns` gives back to COMMAND (0: unknown).
uint64_t raise_nofile_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  const rlim_t old = rl.rlim_cur;
  if (rl.rlim_cur >= rl.rlim_max) return old;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0)
    spdlog::debug("cannot raise the open-file limit from {}: {}", old, std::strerror(errno));
  else
    spdlog::debug("open-file limit raised from {} to {}", old, rl.rlim_max);
  return old;
}

}  // namespace

int main(int argc, char** argv) {
  // Split off "-- COMMAND ARGS" before CLI11 sees the arguments.
  std::vector<std::string> command;
  int cli_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      cli_argc = i;
      for (int j = i + 1; j < argc; ++j) command.emplace_back(argv[j]);
      break;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"causeway — user-mode networking for lightweight Linux VMs and network namespaces", "causeway"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("causeway ") + CAUSEWAY_VERSION);
  std::string log_level;
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error or off (default info; warn for `run`, whose output is the guest's)");

  NetOptions netns_opts;
  std::string attach;
  std::string ifname = "tap0";
  auto* netns = app.add_subcommand("netns", "Give a network namespace user-mode networking (like slirp4netns/pasta)");
  netns->footer("Usage: causeway netns [OPTIONS] -- COMMAND [ARGS...]\n       causeway netns [OPTIONS] --attach PID|PATH");
  add_net_options(netns, netns_opts);
  netns->add_option("--attach", attach, "Attach to an existing namespace: a PID or a path like /run/netns/NAME");
  netns->add_option("--ifname", ifname, "Name of the tap device in the namespace (default tap0)");
  netns->add_option("--mode", netns_opts.mode,
                    "nat (default) or mirrored: also mirror the host's links, addresses and routes into the namespace")
      ->check(CLI::IsMember({"nat", "mirrored"}));

  NetOptions serve_opts;
  std::string qemu_socket;
  auto* serve = app.add_subcommand("serve", "Be a QEMU network backend (-netdev stream over a unix socket)");
  serve->add_option("--qemu-socket", qemu_socket, "Unix socket path QEMU connects to")->required();
  add_net_options(serve, serve_opts);

  NetOptions run_opts;
  cli::RunOptions run_ro;
  std::string run_memory;
  std::string run_accel = "auto";
  bool run_tty = false;
  auto* run = app.add_subcommand("run", "Boot the guest and run COMMAND in it (default: an interactive shell)");
  run->footer("Usage: causeway run [OPTIONS] [-- COMMAND [ARGS...]]");
  add_net_options(run, run_opts);
  run->add_option("--cpus", run_ro.cpus, "Virtual CPUs (default 1)")->check(CLI::Range(1, 64));
  run->add_option("--memory", run_memory, "Guest memory: 512, 512M, 2G (default 512M)");
  run->add_option("--guest-dir", run_ro.guest_dir,
                  "Directory with vmlinuz and initramfs.cpio.gz (default: guest/ next to the binary, or $CAUSEWAY_GUEST_DIR)");
  run->add_option("--kernel", run_ro.kernel, "Boot this kernel instead of the default guest's");
  run->add_option("--initrd", run_ro.initrd, "Boot this initramfs instead of the default guest's");
  run->add_option("--cmdline", run_ro.cmdline, "Extra kernel command line words");
  run->add_option("--vm-net", run_ro.vm_net, "vhost-user (default: our virtio-net on guest memory) or stream (QEMU's stream netdev)")
      ->check(CLI::IsMember({"vhost-user", "stream"}));
  run->add_option("--machine", run_ro.machine, "q35 (default) or microvm")->check(CLI::IsMember({"q35", "microvm"}));
  run->add_option("--accel", run_accel, "auto (default: KVM where it really works, else TCG), kvm or tcg")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  run->add_option("--console-log", run_ro.console_log, "Keep the guest's serial console in this file");
  run->add_flag("-t,--tty", run_tty, "Give the command a terminal (default when no command is given)");
  run->add_flag("-q,--quiet", run_ro.quiet, "Do not print the accelerator notice");
  run->add_option("--mode", run_opts.mode,
                  "nat (default) or mirrored: the guest also gets the host's links, addresses and routes "
                  "(macvlans on eth0, kept in sync by the agent)")
      ->check(CLI::IsMember({"nat", "mirrored"}));

  std::string ctl_path;
  std::vector<std::string> ctl_args;
  auto* ctl = app.add_subcommand("ctl", "Query or change a running causeway through its --control socket");
  ctl->add_option("path", ctl_path, "Control socket path")->required();
  ctl->add_option("command", ctl_args, "status | stats | ports | forward-list | forward-add SPEC | forward-remove SPEC | mirror | raw JSON")
      ->expected(0, -1);

  try {
    app.parse(cli_argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "causeway: %s (see causeway --help)\n", e.what());
    return kExitUsage;
  }
  if (log_level.empty()) log_level = run->parsed() ? "warn" : "info";
  if (!causeway::init_logging(log_level)) {
    std::fprintf(stderr, "causeway: unknown --log-level '%s'\n", log_level.c_str());
    return kExitUsage;
  }
  if (!ctl->parsed()) netns_opts.command_nofile_soft = raise_nofile_limit();
  if (!command.empty() && !netns->parsed() && !run->parsed()) {
    std::fprintf(stderr, "causeway: '-- COMMAND' is only for `causeway netns` and `causeway run`\n");
    return kExitUsage;
  }
  try {
    if (netns->parsed()) {
      if (auto err = apply_config(netns_opts, netns, /*mirrored_ok=*/true)) {
        std::fprintf(stderr, "causeway: %s\n", err->c_str());
        return kExitUsage;
      }
      return run_netns(netns_opts, attach, ifname, command);
    }
    if (serve->parsed()) {
      if (auto err = apply_config(serve_opts, serve)) {
        std::fprintf(stderr, "causeway: %s\n", err->c_str());
        return kExitUsage;
      }
      return run_serve(serve_opts, qemu_socket);
    }
    if (run->parsed()) {
      // Like .wslconfig: a per-user file applies unless --config names another.
      if (run_opts.config.empty()) {
        const char* home = std::getenv("HOME");
        const std::string user_cfg = std::string(home ? home : "") + "/.config/causeway/config";
        if (home && ::access(user_cfg.c_str(), F_OK) == 0) run_opts.config = user_cfg;
      }
      if (auto err = apply_config(run_opts, run, /*mirrored_ok=*/true)) {
        std::fprintf(stderr, "causeway: %s\n", err->c_str());
        return kExitUsage;
      }
      return run_run(run_opts, run_ro, command, run_memory, run_accel, run_tty, run);
    }
    if (ctl->parsed()) return run_ctl(ctl_path, ctl_args);
  } catch (const std::exception& e) {
    // Start-up failures only: the data path does not throw.
    std::fprintf(stderr, "causeway: %s\n", e.what());
    return kExitFailure;
  }
  return kExitUsage;
}
