// causeway run: boot the guest and run a command in it.
//
//   QEMU (CPU, board; KVM or TCG) ──vhost-user──► VirtioNetDevice ──► Engine (NAT, DNS proxy)
//                                 ──vhost-user──► VirtioVsockDevice ──► AgentSession (port 1024)
//                                                                  ◄── relay streams (guest port 1025)
//
// Automatic localhost forwarding: the agent reports the guest's listeners
// (ListenerAppeared/Gone); the set feeds a portfwd::AutoForwarder whose
// relays reach the guest's own loopback over vsock (agent/relay_client.hpp).
// Events are coalesced: one policy pass per engine turn, however many
// arrived. The set is capped (portfwd::GuestListenerSet, counted): the agent
// is guest code and untrusted.
//
// Sequence: listen on the vhost-user sockets → spawn QEMU → the guest agent
// connects over vsock → Ready → NetConfig (the NAT lease, static: no DHCP
// wait) → Run → Stdout/Stderr to ours, our stdin to Stdin → Exited →
// Shutdown → QEMU exits → we exit with the command's status.
//
// Timeouts (all bounded, each with an error that says what to check):
// kBootTimeout from QEMU start to the agent's connection (TCG boots take a
// few seconds; the bound catches a guest that never comes up), the agent
// session's own ready/shutdown timeouts, and kQemuExitGrace for QEMU to exit
// after the guest powers off.
//
// Mirrored mode (--mode mirrored): eth0 is the internal NAT link (link-scope
// address, no default route: DNS 10.0.2.3, the host at 10.0.2.2, forwards);
// a MirrorSyncer plans the guest's links from the host's and converges the
// guest through the agent (AgentGuestApplier, cli/mirror_vm.hpp), which makes
// one macvlan per mirrored host link (vmm/agent/guest/mirror.hpp). The first
// plan is sent right after the NetConfig, before Run, so the command starts
// with the mirrored links in place. Data path: the guest's frames are split by
// source MAC (netstack/frame_demux.hpp) — a mirrored macvlan's go to the
// MirrorLink attached when the agent reported that link, the rest (eth0) to
// the engine; MirrorLinks answer through the same virtio-net.
//
// Signals: SIGINT/SIGTERM are passed to the command in the guest; a second
// one shuts the guest down; a third stops QEMU.
//
// Thread safety: everything runs on the caller's thread (the engine thread).
#include "cli/run.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "cli/control.hpp"
#include "cli/mirror_vm.hpp"
#include "cli/output_pump.hpp"
#include "cli/runtime.hpp"
#include "netstack/frame_demux.hpp"
#include "netstack/mirror/mirror_link.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/syncer.hpp"
#include "netstack/stream_port.hpp"
#include "portfwd/auto_forwarder.hpp"
#include "portfwd/listener_set.hpp"
#include "vmm/agent/relay_client.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/devices/virtio_net.hpp"
#include "vmm/devices/virtio_vsock.hpp"
#include "vmm/machine/accel.hpp"
#include "vmm/machine/qemu_cmdline.hpp"
#include "vmm/machine/qemu_process.hpp"
#include "vmm/vhost_user/server.hpp"

namespace causeway::cli {
namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

constexpr auto kBootTimeout = std::chrono::seconds(90);  // TCG: ~4 s; a wedged boot ends here
constexpr auto kQemuExitGrace = std::chrono::seconds(5);

portfwd::Listener from_agent(const agent::Listener& l) {
  portfwd::Listener out;
  out.proto = l.proto == agent::IpProto::Tcp ? portfwd::L4::kTcp : portfwd::L4::kUdp;
  out.family = l.addr.family == 6 ? portfwd::Family::kIpv6 : portfwd::Family::kIpv4;
  std::memcpy(&out.address, l.addr.bytes.data(), l.addr.family == 6 ? 16 : 4);
  out.port = l.port;
  out.v6only = l.v6only;
  return out;
}

std::string runtime_dir() {
  const char* rt = std::getenv("XDG_RUNTIME_DIR");
  std::string tmpl = std::string(rt && *rt ? rt : "/tmp") + "/causeway-vm.XXXXXX";
  if (!::mkdtemp(tmpl.data())) return {};
  return tmpl;
}

// Restores the terminal however we leave.
class RawTerminal {
 public:
  bool enter() {
    if (::tcgetattr(0, &saved_) != 0) return false;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(0, TCSANOW, &raw) == 0;
    return active_;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

agent::NetConfig nat_lease(const netstack::NatConfig& nat, const std::vector<std::string>& search) {
  agent::NetConfig c;
  c.mtu = static_cast<uint32_t>(nat.mtu);
  c.ipv6 = nat.ipv6;  // SLAAC from the engine's router advertisements
  agent::IpAddr a{4, {}};
  std::memcpy(a.bytes.data(), &nat.guest, 4);
  c.addresses.push_back({a, 24});
  agent::IpAddr gw{4, {}};
  std::memcpy(gw.bytes.data(), &nat.gateway, 4);
  c.routes.push_back({agent::IpAddr::v4(0, 0, 0, 0), 0, gw, 0});
  agent::IpAddr dns{4, {}};
  std::memcpy(dns.bytes.data(), &nat.dns, 4);
  c.dns_servers.push_back(dns);
  // fd00::3 is not listed: it answers UDP only (see cli/main.cpp).
  c.search_domains = search;
  return c;
}

}  // namespace

boost::system::result<uint64_t, std::string> parse_memory_mib(std::string_view text) {
  using R = boost::system::result<uint64_t, std::string>;
  std::string t(text);
  for (auto& ch : t) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (t.ends_with("B")) t.pop_back();
  uint64_t mult = 1;  // MiB
  if (t.ends_with("G")) mult = 1024, t.pop_back();
  else if (t.ends_with("M")) t.pop_back();
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc{} || p != t.data() + t.size() || v == 0)
    return R(boost::system::in_place_error, "bad memory size '" + std::string(text) + "' (e.g. 512, 512M, 4G, 4GB)");
  const uint64_t mib = v * mult;
  if (mib < 128 || mib > 1024 * 1024)
    return R(boost::system::in_place_error, "memory size '" + std::string(text) + "' out of range (128M–1T)");
  return mib;
}

int run_vm(const RunOptions& o, netstack::NatConfig nat, const DnsSetup& dns,
           const std::vector<netstack::PortForward>& forwards) {
  // ---- checks that need no machine: fail fast, say what to fix ----
  const std::string guest_dir = o.guest_dir;
  machine::QemuOptions q;
  q.kernel = o.kernel.empty() ? guest_dir + "/vmlinuz" : o.kernel;
  q.initrd = o.initrd.empty() ? guest_dir + "/initramfs.cpio.gz" : o.initrd;
  if (auto r = machine::check_guest_files(q); r.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
    if (o.kernel.empty()) std::fprintf(stderr, "causeway run: build the default guest with scripts/build-guest.sh\n");
    return 1;
  }
  if (auto v = machine::check_qemu(q.qemu); v.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", v.error().c_str());
    return 1;
  }
  auto accel = machine::choose_accel(machine::probe_accel_facts(), o.accel);
  if (accel.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", accel.error().c_str());
    return 1;
  }
  if (!accel->notice.empty() && !o.quiet) std::fprintf(stderr, "causeway: %s\n", accel->notice.c_str());
  const std::string dir = runtime_dir();
  if (dir.empty()) {
    std::fprintf(stderr, "causeway run: cannot create a private directory: %s\n", std::strerror(errno));
    return 1;
  }
  struct DirCleanup {
    std::string d;
    ~DirCleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{dir};

  asio::io_context io(1);
  // Mirrored mode: the guest NIC's frames split by source MAC (eth0 → the engine,
  // a mirrored macvlan → its MirrorLink). Declared before the runtime that owns the
  // device holding a pointer to it.
  const bool mirrored = o.mode == "mirrored";
  netstack::FrameDemux demux;
  netstack::FramePort* guest_port = nullptr;
  Runtime rt(io, nat, "vm");
  if (auto r = rt.enable_dns(dns); r.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
    return 1;
  }
  if (auto r = rt.add_forwards(forwards); r.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
    return 1;
  }

  // ---- devices ----
  vmm::VirtioNetConfig ncfg;
  ncfg.mtu = static_cast<uint16_t>(std::min<size_t>(nat.mtu, 65535));
  // Copy guest transmit frames out of shared memory before checking them:
  // in place, the guest could rewrite a header between check_guest_frame and
  // libslirp's parse (check-then-use on memory it controls).
  ncfg.tx_zero_copy = false;
  std::unique_ptr<vmm::vhost_user::Server> net_server;
  std::unique_ptr<asio::local::stream_protocol::acceptor> stream_acceptor;
  const std::string net_path = dir + "/net.sock";
  if (o.vm_net == "vhost-user") {
    auto dev = std::make_unique<vmm::VirtioNetDevice>(io, rt.clock(), ncfg);
    auto* raw = dev.get();
    rt.add_guest(
        "vm (vhost-user virtio-net)", std::move(dev),
        [&demux, &guest_port, mirrored](netstack::FramePort& p, netstack::Engine& e) {
          guest_port = &p;
          demux.set_default(&e);
          static_cast<vmm::VirtioNetDevice&>(p).start(mirrored ? static_cast<netstack::FrameSink&>(demux) : e);
        },
        [raw] {
          const auto& s = raw->stats();
          return json{{"tx_frames", s.tx_frames}, {"tx_bytes", s.tx_bytes}, {"tx_malformed", s.tx_malformed},
                      {"tx_oversized", s.tx_oversized}, {"rx_frames", s.rx_frames}, {"rx_drops", s.rx_drops_no_buffers + s.rx_drops_not_ready + s.rx_drops_too_big}};
        });
    net_server = std::make_unique<vmm::vhost_user::Server>(io, rt.clock(), *raw, "vhost-user net");
    if (auto r = net_server->listen(net_path); r.has_error()) {
      std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
      return 1;
    }
    q.net = machine::NetAttachment::VhostUser;
    q.host_mtu = ncfg.mtu;
  } else {
    // --vm-net stream: the same engine over QEMU's stream netdev (for comparison).
    stream_acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(io);
    boost::system::error_code ec;
    stream_acceptor->open(asio::local::stream_protocol(), ec);
    if (!ec) stream_acceptor->bind(asio::local::stream_protocol::endpoint(net_path), ec);
    if (!ec) stream_acceptor->listen(1, ec);
    if (ec) {
      std::fprintf(stderr, "causeway run: cannot listen on %s: %s\n", net_path.c_str(), ec.message().c_str());
      return 1;
    }
    stream_acceptor->async_accept([&](boost::system::error_code aec, asio::local::stream_protocol::socket s) {
      if (aec) return;
      auto port = std::make_unique<netstack::StreamFramePort>(std::move(s), nat.mtu + netstack::kEthHeaderLen + 4,
                                                              [](const std::string& why) {
                                                                spdlog::debug("QEMU stream netdev ended: {}", why);
                                                              });
      auto* sp = port.get();
      rt.add_guest(
          "vm (stream netdev)", std::move(port),
          [&demux, &guest_port, mirrored](netstack::FramePort& p, netstack::Engine& e) {
            guest_port = &p;
            demux.set_default(&e);
            static_cast<netstack::StreamFramePort&>(p).start(mirrored ? static_cast<netstack::FrameSink&>(demux) : e);
          },
          [sp] { return json{{"frames_read", sp->stats().frames_read}, {"frames_written", sp->stats().frames_written}}; });
    });
    q.net = machine::NetAttachment::Stream;
  }
  q.net_socket = net_path;

  vmm::VirtioVsockDevice vsock(io, rt.clock(), vmm::VirtioVsockConfig{});
  vmm::vhost_user::Server vsock_server(io, rt.clock(), vsock, "vhost-user vsock");
  const std::string vsock_path = dir + "/vsock.sock";
  if (auto r = vsock_server.listen(vsock_path); r.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
    return 1;
  }
  q.vsock_socket = vsock_path;

  // ---- automatic localhost forwarding (agent listener events → host forwards → vsock relays) ----
  agent::VsockRelayConnector relay_tcp4(io, vsock, 4), relay_tcp6(io, vsock, 6);
  agent::VsockRelayDatagramChannel relay_udp4(io, vsock, 4), relay_udp6(io, vsock, 6);
  std::unique_ptr<portfwd::AutoForwarder> autofwd;
  portfwd::GuestListenerSet guest_listeners;
  bool listeners_dirty = false;
  if (o.auto_forward) {
    portfwd::PolicySettings base;
    for (int p : o.ignored_ports) base.ignored.insert(static_cast<uint16_t>(p));
    // tcp_any_v4_loopback stays false: RelayRequest carries no address and the
    // agent dials 127.0.0.1, so a guest listener on 127.0.0.2 is not forwarded
    // (a forward to 127.0.0.1, where nothing listens, would only reset).
    autofwd = std::make_unique<portfwd::AutoForwarder>(
        io, rt.clock(), portfwd::GuestSide{&relay_tcp4, &relay_tcp6, &relay_udp4, &relay_udp6}, base);
    rt.set_auto_forwarder(autofwd.get(), base);
  }
  auto listeners_changed = [&] {
    if (!autofwd || listeners_dirty) return;
    listeners_dirty = true;
    asio::post(io, [&] {
      listeners_dirty = false;
      autofwd->on_listeners(guest_listeners.listeners());
    });
  };
  std::unique_ptr<ControlServer> control;
  if (!o.control.empty()) {
    control = std::make_unique<ControlServer>(io, o.control, [&rt](const json& req) { return rt.handle_control(req); });
    if (auto r = control->start(); r.has_error()) {
      std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
      return 1;
    }
  }

  // ---- the machine ----
  q.accel = accel->accel;
  q.machine = o.machine == "microvm" ? machine::MachineType::Microvm : machine::MachineType::Q35;
  q.cpus = o.cpus;
  q.memory_mib = o.memory_mib;
  q.extra_cmdline = o.cmdline;
  q.console_log = o.console_log.empty() ? dir + "/console.log" : o.console_log;
  auto argv = machine::build_qemu_argv(q);
  if (argv.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", argv.error().c_str());
    return 1;
  }
  const std::string qemu_log = dir + "/qemu.log";
  auto qemu = machine::QemuProcess::spawn(io.get_executor(), *argv, qemu_log);
  if (qemu.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", qemu.error().c_str());
    return 1;
  }
  const auto t_start = std::chrono::steady_clock::now();

  // ---- the agent ----
  int status = 1;
  bool exited = false;
  std::string failure;
  // Declared before the session: destroyed after it, each writing out what it still holds.
  std::optional<OutputPump> out_pump, err_pump;
  std::unique_ptr<agent::AgentSession> session;
  // Mirrored mode; declared after the session, so destroyed before it.
  struct VmMirrorLink {
    netstack::Mac mac{};
    std::unique_ptr<netstack::mirror::MirrorLink> link;
  };
  std::map<std::string, VmMirrorLink> vm_links;
  // The last plan's desired state: which addresses each link's guest may use (set_addresses).
  netstack::mirror::NetState mirror_plan;
  // One MirrorLink per guest link the agent reports, registered in the demux by its MAC.
  auto attach_links = [&](const netstack::mirror::NetState& actual) {
    if (!guest_port) return;
    std::set<std::string> present;
    for (const auto& l : actual.links) {
      if (!l.mac) continue;
      present.insert(l.name);
      auto it = vm_links.find(l.name);
      if (it != vm_links.end() && it->second.mac != *l.mac) {
        demux.remove(it->second.mac);
        vm_links.erase(it);
        it = vm_links.end();
      }
      if (it != vm_links.end()) {
        it->second.link->set_mtu(l.mtu);
        continue;
      }
      netstack::mirror::MirrorLinkConfig mc;
      mc.name = l.name;
      // The plan's MAC is 02:43:57:4d + the host ifindex's low 16 bits (plan.cpp).
      mc.host_ifindex = ((*l.mac)[4] << 8) | (*l.mac)[5];
      mc.mtu = l.mtu;
      VmMirrorLink r{*l.mac, std::make_unique<netstack::mirror::MirrorLink>(io, *guest_port, mc)};
      r.link->set_addresses(netstack::mirror::link_addresses(mirror_plan, l.name));
      if (!demux.add(r.mac, *r.link)) {
        spdlog::warn("mirrored link {}: no data path (more than {} links)", l.name, netstack::FrameDemux::kMaxEntries);
        continue;
      }
      spdlog::debug("mirrored link {}: data path up (mtu {})", l.name, l.mtu);
      vm_links.emplace(l.name, std::move(r));
    }
    for (auto it = vm_links.begin(); it != vm_links.end();) {
      if (present.count(it->first)) {
        ++it;
      } else {
        demux.remove(it->second.mac);
        it = vm_links.erase(it);
      }
    }
  };
  std::unique_ptr<netstack::mirror::HostView> mirror_view;
  std::unique_ptr<AgentGuestApplier> mirror_applier;
  std::unique_ptr<netstack::mirror::MirrorSyncer> mirror_syncer;
  if (mirrored) {
    mirror_view = std::make_unique<netstack::mirror::HostView>(io, netstack::mirror::current_namespace_sockets());
    mirror_applier = std::make_unique<AgentGuestApplier>(io, [&session](const agent::MirrorApply& m) {
      if (!session) return std::make_error_code(std::errc::not_connected);
      return session->mirror_apply(m);
    });
    mirror_applier->set_on_guest_state(attach_links);
    netstack::mirror::PlanOptions po;
    po.copy_mac = false;  // 02:43:57:4d:XX:XX from the host ifindex: the guest's links on one virtio-net
    po.reserved_names = {"lo", "eth0"};
    mirror_syncer = std::make_unique<netstack::mirror::MirrorSyncer>(io, *mirror_view, *mirror_applier, po);
    mirror_syncer->set_on_plan([&vm_links, &mirror_plan](const netstack::mirror::NetState& desired) {
      mirror_plan = desired;
      for (auto& [name, r] : vm_links) r.link->set_addresses(netstack::mirror::link_addresses(desired, name));
    });
    rt.set_mode("mirrored");
    rt.set_mirror_status([&mirror_syncer, &mirror_applier, &vm_links, &demux] {
      auto j = mirror_syncer->status_json();
      const auto& c = mirror_applier->counters();
      j["vm"] = json{{"applies", c.applies},           {"reports", c.reports},
                     {"stale_reports", c.stale_reports}, {"timeouts", c.timeouts},
                     {"send_errors", c.send_errors},     {"guest_links", mirror_applier->guest_unmanaged()}};
      json dp = json::object();
      for (const auto& [name, r] : vm_links) dp[name] = netstack::mirror::to_json(r.link->stats());
      j["data_path"] = dp;
      const auto& ds = demux.stats();
      j["vm"]["demux"] = json{{"to_links", ds.to_links}, {"to_default", ds.to_default}, {"refused", ds.refused}};
      return j;
    });
  }
  asio::steady_timer boot_timer(io);
  std::unique_ptr<RawTerminal> term;
  asio::posix::stream_descriptor in(io);
  std::array<uint8_t, 16 * 1024> inbuf{};
  const bool tty = o.tty;

  auto fail = [&](std::string why) {
    if (failure.empty()) failure = std::move(why);
    (*qemu)->terminate(std::chrono::seconds(2));
  };

  std::function<void()> read_stdin = [&] {
    in.async_read_some(asio::buffer(inbuf), [&](boost::system::error_code ec, size_t n) {
      if (!session) return;
      if (ec) {
        session->close_stdin();
        return;
      }
      size_t off = 0;
      while (off < n) {
        const size_t took = session->send_stdin({inbuf.data() + off, n - off});
        if (took == 0) break;  // full: the rest is dropped only if the guest never drains (bounded queue)
        off += took;
      }
      read_stdin();
    });
  };

  agent::AgentCallbacks cb;
  cb.on_ready = [&](const agent::Ready& r) {
    boot_timer.cancel();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t_start);
    spdlog::debug("guest agent ready after {} ms (guest uptime {} ms, kernel {})", ms.count(), r.uptime_ms,
                  r.kernel_release);
    const auto search = rt.dns_watch() ? rt.dns_watch()->current().search : nat.dns_search;
    agent::NetConfig lease = nat_lease(nat, search);
    if (mirrored) {
      // The NAT link becomes internal (README, Mirrored mode): the mirrored links carry the rest.
      lease.internal = true;
      lease.ipv6 = false;
      lease.routes.clear();
    }
    if (auto ec = session->configure_network(lease)) fail("cannot send the network configuration: " + ec.message());
    if (mirror_syncer) {
      if (auto started = mirror_syncer->start(); started.has_error()) fail("mirrored mode: " + started.error());
    }
    agent::Run run;
    run.argv = o.command;
    run.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"};
    if (const char* t = std::getenv("TERM"); t && tty) run.env.push_back(std::string("TERM=") + t);
    run.tty = tty;
    if (tty) {
      winsize ws{};
      if (::ioctl(0, TIOCGWINSZ, &ws) == 0) run.rows = ws.ws_row, run.cols = ws.ws_col;
    }
    if (auto ec = session->run(run)) {
      fail("cannot start the command: " + ec.message());
      return;
    }
    // Our stdin: a terminal or a pipe/socket; anything epoll cannot watch
    // (a regular file, /dev/null) counts as empty.
    struct stat st{};
    const bool pollable = ::fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || ::isatty(0));
    boost::system::error_code aec;
    if (pollable) in.assign(::dup(0), aec);
    if (!pollable || aec) {
      session->close_stdin();
    } else {
      if (tty) {
        term = std::make_unique<RawTerminal>();
        term->enter();
      }
      read_stdin();
    }
  };
  cb.on_listener_appeared = [&](const agent::ListenerAppeared& l) {
    const uint64_t refused = guest_listeners.refused();
    if (guest_listeners.appeared(from_agent(l))) listeners_changed();
    else if (guest_listeners.refused() > refused && refused == 0)
      spdlog::warn("the guest reports more than {} listeners (or port 0); those are not forwarded",
                   portfwd::GuestListenerSet::kDefaultCap);
  };
  cb.on_listener_gone = [&](const agent::ListenerGone& l) {
    if (guest_listeners.gone(from_agent(l))) listeners_changed();
  };
  cb.on_mirror_report = [&mirror_applier](const agent::MirrorReport& r) {
    if (mirror_applier) mirror_applier->on_report(r);
  };
  // The command's output: written by threads of their own, so a slow reader of ours holds up
  // the guest's command (vsock back-pressure), never the engine (issue 13).
  auto output_pressure = [&](bool) {
    if (session) session->pause_receive((out_pump && out_pump->pressured()) || (err_pump && err_pump->pressured()));
  };
  out_pump.emplace(io.get_executor(), 1, output_pressure);
  err_pump.emplace(io.get_executor(), 2, output_pressure);
  cb.on_stdout = [&](std::span<const uint8_t> d) { out_pump->push(d); };
  cb.on_stderr = [&](std::span<const uint8_t> d) { err_pump->push(d); };
  cb.on_exited = [&](const agent::Exited& e) {
    status = e.shell_status();
    exited = true;
    session->shutdown();
  };
  cb.on_end = [&](const agent::SessionEnd& end) {
    if (mirror_applier) mirror_applier->on_session_end();
    guest_listeners.clear();  // the guest is going away: close its forwards
    listeners_changed();
    if (!end.ok() && !exited) fail(fmt::format("the guest agent session ended: {} {}", to_string(end.reason), end.detail));
    // The guest powers off; QEMU exits on its own (bounded below).
    boost::system::error_code ignored;
    in.close(ignored);
    (*qemu)->terminate(kQemuExitGrace);
  };

  vsock.listen(agent::kAgentVsockPort, [&](std::shared_ptr<vmm::VsockStream> stream) {
    if (session) {
      stream->close();  // one agent per guest
      return;
    }
    session = std::make_unique<agent::AgentSession>(io.get_executor(), std::move(stream), cb);
    session->start();
  });

  boot_timer.expires_after(kBootTimeout);
  boot_timer.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    fail(fmt::format("the guest agent did not connect within {} s", kBootTimeout.count()));
  });

  (*qemu)->async_wait([&](const machine::ExitStatus& st) {
    if (!exited && failure.empty()) failure = "QEMU exited before the command finished (" + st.describe() + ")";
    io.stop();
  });

  int interrupts = 0;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    ++interrupts;
    if (interrupts == 1 && session) session->signal(sig);
    else if (interrupts == 2 && session) session->shutdown();
    else (*qemu)->terminate(std::chrono::seconds(1));
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  io.run();
  term.reset();
  if (!failure.empty()) {
    std::fprintf(stderr, "causeway run: %s\n", failure.c_str());
    const std::string tail = machine::tail_file(q.console_log, 15);
    if (!tail.empty()) std::fprintf(stderr, "causeway run: last lines of the guest console (%s):\n%s\n", q.console_log.c_str(), tail.c_str());
    const std::string qtail = machine::tail_file(qemu_log, 5);
    if (!qtail.empty()) std::fprintf(stderr, "causeway run: QEMU said:\n%s\n", qtail.c_str());
    return exited ? status : 1;
  }
  return status;
}

}  // namespace causeway::cli
