#include "cli/attach_netns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "base/log.hpp"
#include "base/sandbox/sandbox.hpp"
#include "cli/attach_steps.hpp"
#include "cli/mirrored_mode.hpp"
#include "cli/runtime.hpp"
#include "dns/host_config.hpp"
#include "netstack/netns_listener_source.hpp"
#include "netstack/mirror/apply.hpp"
#include "netstack/netns.hpp"
#include "netstack/netns_sockets.hpp"
#include "netstack/tap_port.hpp"

namespace causeway::cli {
namespace {

namespace asio = boost::asio;
namespace mirror = netstack::mirror;
using json = nlohmann::json;

constexpr std::string_view kWho = "causeway netns";

json tap_stats_json(const netstack::TapStats& s) {
  return json{{"frames_read", s.frames_read},
              {"frames_written", s.frames_written},
              {"write_drops", s.write_drops},
              {"read_drops", s.read_drops},
              {"offload", s.offload},
              {"offload_frames_read", s.offload_frames_read},
              {"offload_frames_written", s.offload_frames_written}};
}

// The host's search domains now (the namespace's resolv.conf starts with them).
std::vector<std::string> host_search(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return dns::parse_resolv_conf(ss.str()).search;
}

// Search domains: --dns-search if given, else the host's (followed live).
bool follows_host_search(const NetSettings& s) { return s.nat.dns_search.empty() && s.dns.tunneling; }

netstack::TapConfig tap_config(const NetOptions& net, const NetnsOptions& o, const NetSettings& s) {
  const auto& nat = s.nat;
  netstack::TapConfig tc;
  tc.ifname = o.ifname;
  tc.mtu = nat.mtu;
  tc.address = nat.guest;
  tc.gateway = nat.gateway;
  tc.ipv6 = nat.ipv6;
  // Offloads only help the TCP fast path (libslirp needs every frame finished
  // in software), so the tap gets a virtio-net header only when it is on.
  tc.vnet_hdr = nat.tcp_fast && !net.no_offload && netstack::TcpFastPath::available();
  if (net.mode == "mirrored") {
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
  tc.search = follows_host_search(s) ? host_search(s.dns.host_resolv_conf) : nat.dns_search;
  tc.trap_listeners = !net.no_auto_forward && !o.command.empty();
  tc.command_nofile_soft = net.command_nofile_soft;
  return tc;
}

// The namespace's side: its tap, the child that runs COMMAND (none with
// --attach) and the sockets made inside it. Made before the engine: the
// child is forked before anything starts threads.
struct NamespaceSide {
  netstack::TapConfig tc;
  std::optional<netstack::SpawnedCommand> child;
  UniqueFd tap;
  std::unique_ptr<netstack::NamespaceSocketFactory> factory;
  bool factory_owns_resolv_conf = false;  // the helper removes COMMAND's resolv.conf file when it exits

  // A start-up failure after the fork: says why, and COMMAND never runs.
  int fail(std::string_view why, std::string_view who = kWho) {
    fail_start(who, why);
    if (child) {
      ::kill(child->pid, SIGKILL);
      ::waitpid(child->pid, nullptr, 0);
      ::unlink(child->resolv_conf_path.c_str());
    }
    return kExitFailure;
  }
};

// Forks the child in a new namespace with the tap, or makes the tap in the
// namespace --attach names.
int start_namespace(NamespaceSide& ns, const NetnsOptions& o) {
  if (!o.command.empty()) {
    auto s = netstack::spawn_in_new_namespace(ns.tc, o.command);
    if (s.has_error()) return fail_start(kWho, s.error());
    ns.child.emplace(std::move(*s));
    ns.tap = std::move(ns.child->tap);
    return 0;
  }
  auto t = netstack::attach_to_namespace(ns.tc, o.attach);
  if (t.has_error()) return fail_start(kWho, t.error());
  ns.tap = std::move(*t);
  return 0;
}

// The namespace helper (netstack/netns_sockets.hpp): automatic forwarding
// reads the namespace's listeners and connects to its loopback through
// sockets it makes; mirrored mode configures the namespace through it; it
// keeps COMMAND's /etc/resolv.conf bound. After confine() it is the engine's
// only privilege over the namespace.
int open_namespace_sockets(NamespaceSide& ns, const NetOptions& net, const NetnsOptions& o) {
  const bool mirrored = net.mode == "mirrored";
  if (net.no_auto_forward && !mirrored && !ns.child) return 0;
  const auto& attach = o.attach;
  const bool is_pid = !attach.empty() && attach.find_first_not_of("0123456789") == std::string::npos;
  const std::string proc = ns.child ? "/proc/" + std::to_string(ns.child->pid) : (is_pid ? "/proc/" + attach : "");
  const std::string net_ns = proc.empty() ? attach : proc + "/ns/net";
  const std::string user_ns = (::geteuid() != 0 && !proc.empty()) ? proc + "/ns/user" : "";
  netstack::ResolvConfGuard guard;
  if (ns.child) guard = {ns.child->pid, ns.child->resolv_conf_path};
  auto f = netstack::NamespaceSocketFactory::start(net_ns, user_ns, guard);
  if (f.has_error() && mirrored) return ns.fail("mirrored mode needs sockets in the namespace: " + f.error());
  if (f.has_error()) {
    spdlog::warn("the namespace helper did not start ({}): {}", f.error(),
                 net.no_auto_forward ? "the namespace's /etc/resolv.conf is not kept bound"
                                     : "automatic port forwarding is off");
  } else {
    ns.factory = std::move(*f);
    ns.factory_owns_resolv_conf = ns.child.has_value();
  }
  return 0;
}

// A mirrored link's tap appeared: its frames go to a MirrorLink of its own.
void on_mirror_tap(asio::io_context& io, MirrorLinkTable& links, const mirror::MirroredLinkCreated& c) {
  UniqueFd fd(::fcntl(c.tap_fd, F_DUPFD_CLOEXEC, 0));
  if (!fd) {
    spdlog::warn("mirrored link {}: cannot keep its tap: {}", c.name, std::strerror(errno));
    return;
  }
  links.erase(c.name);
  // The tap has a virtio-net header when hooks.vnet_hdr_taps: then the port negotiates offloads.
  auto port = std::make_unique<netstack::TapFramePort>(
      io, std::move(fd), 65535, [] {}, /*offload=*/true);
  auto* tap = port.get();
  MirrorLinkEntry e = links.make(c.name, c.host_ifindex, c.mtu, *port);
  e.port = std::move(port);
  tap->start(*e.link);
  links.insert(c.name, std::move(e));
}

// The engine side; built once the namespace exists.
class NetnsAttachment {
 public:
  NetnsAttachment(const NetOptions& net, const NetnsOptions& o, NetSettings s, NamespaceSide& ns)
      : net_(net), o_(o), s_(std::move(s)), ns_(ns), rt_(io_, s_.nat, "netns") {}

  int run(const sigset_t& held);

 private:
  void follow_host_dns();
  void guard_resolv_conf();
  void confine();
  void attach_tap();
  int attach_mirrored_mode();
  void attach_listener_source();
  void handle_signals(const sigset_t& held);
  void wait_signal();
  void on_signal(boost::system::error_code ec, int sig);
  void release_command();
  int finish();

  const NetOptions& net_;
  const NetnsOptions& o_;
  const NetSettings s_;
  NamespaceSide& ns_;
  asio::io_context io_{1};
  Runtime rt_;
  int status_ = 0;
  asio::steady_timer resolv_guard_{io_};
  bool tap_closed_ = false;
  std::unique_ptr<ControlServer> ctl_;
  std::unique_ptr<MirroredMode> mirror_;
  std::unique_ptr<netstack::NetnsConnector> tcp4_, tcp6_;
  std::unique_ptr<netstack::NetnsDatagramChannel> udp4_, udp6_;
  std::unique_ptr<portfwd::AutoForwarder> autofwd_;
  std::unique_ptr<netstack::NetnsListenerSource> listeners_;
  asio::signal_set signals_{io_};
  asio::posix::stream_descriptor control_desc_{io_};
};

int NetnsAttachment::run(const sigset_t& held) {
  if (auto r = rt_.enable_dns(s_.dns); r.has_error()) return ns_.fail(r.error());
  follow_host_dns();
  guard_resolv_conf();
  attach_tap();
  if (auto r = rt_.add_forwards(s_.forwards); r.has_error()) return ns_.fail(r.error());
  auto ctl = attach_control(rt_, net_.control);
  if (ctl.has_error()) return ns_.fail(ctl.error(), "causeway");
  ctl_ = std::move(*ctl);
  if (net_.mode == "mirrored") {
    if (int code = attach_mirrored_mode()) return code;
  }
  attach_listener_source();
  confine();
  handle_signals(held);
  release_command();
  spdlog::debug("engine running; mtu {}", s_.nat.mtu);
  io_.run();
  return finish();
}

// The namespace's resolv.conf follows the host's search domains: rewritten in
// place through the descriptor kept open (the confined engine has no path to
// it), bound again by the helper if the host's rename detached it.
void NetnsAttachment::follow_host_dns() {
  if (!ns_.child || !follows_host_search(s_)) return;
  rt_.set_on_dns_search_change([this](const std::vector<std::string>& search) {
    if (!netstack::rewrite_resolv_conf(ns_.child->resolv_conf.get(),
                                       netstack::render_resolv_conf(ns_.tc.nameservers, search)))
      spdlog::warn("cannot update the namespace's resolv.conf: {}", std::strerror(errno));
    if (ns_.factory) (void)ns_.factory->resolv_conf_bound();
  });
}

// A host that replaces its resolv.conf by rename drops the namespace's bind
// mount on it (netns.hpp): the helper looks twice a second and binds again
// when gone.
void NetnsAttachment::guard_resolv_conf() {
  if (!ns_.child || !ns_.factory_owns_resolv_conf) return;
  resolv_guard_.expires_after(std::chrono::milliseconds(500));
  resolv_guard_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    if (auto r = ns_.factory->resolv_conf_bound(); r.has_error())
      spdlog::debug("the namespace's /etc/resolv.conf could not be bound again: {}", r.error().message());
    guard_resolv_conf();
  });
}

// Set-up is done (tap, sockets, control socket, mirrored links, listener
// source) and COMMAND has not started: the engine confines itself
// (base/sandbox/sandbox.hpp) before any guest traffic is parsed. Besides what
// every attachment keeps (sandbox_policy: the resolver file's directories,
// the control socket's directory) it keeps the DNS-over-TCP socket's
// directory (libslirp connects to it for each guest connection). Everything
// privileged over the namespace is the helper's (netstack/netns_sockets.hpp);
// COMMAND's resolv.conf is rewritten through a descriptor and removed by the
// helper.
void NetnsAttachment::confine() {
  auto p = sandbox_policy(net_, net_.mode == "mirrored" ? "netns-mirrored" : "netns");
  if (!rt_.dns_dir().empty()) p.read_write.push_back(rt_.dns_dir());
  // Without the helper the engine removes COMMAND's resolv.conf file itself.
  if (ns_.child && !ns_.factory_owns_resolv_conf)
    p.read_write.push_back(std::filesystem::path(ns_.child->resolv_conf_path).parent_path());
  p.extra_syscalls = {
      "wait4",                  // COMMAND's exit status; the helper's at exit
      "ftruncate", "pwrite64",  // COMMAND's resolv.conf rewritten in place (search domains follow the host)
  };
  p.extra_ioctls = {
      TUNGETIFF,
      TUNSETVNETHDRSZ,
      TUNSETVNETLE,
      TUNSETOFFLOAD,  // mirrored links' taps, made later (TapFramePort)
      SECCOMP_IOCTL_NOTIF_RECV,
      SECCOMP_IOCTL_NOTIF_SEND,  // the listener trap (portfwd/listener_trap.hpp)
  };
  (void)sandbox::confine(p);  // it logs what it applied; `ctl status` shows it
}

// The tap is the guest's port; the engine announces the guest's MAC.
void NetnsAttachment::attach_tap() {
  auto port = std::make_unique<netstack::TapFramePort>(
      io_, std::move(ns_.tap), s_.nat.mtu,
      [this] {
        tap_closed_ = true;
        if (!ns_.child) io_.stop();  // --attach: the namespace is gone
      },
      /*offload=*/ns_.tc.vnet_hdr);
  auto* tap_port = port.get();
  rt_.add_guest(
      o_.command.empty() ? "tap " + o_.ifname + " in " + o_.attach
                         : "tap " + o_.ifname + " in pid " + std::to_string(ns_.child->pid),
      std::move(port),
      [](netstack::FramePort& p, netstack::Engine& e) { static_cast<netstack::TapFramePort&>(p).start(e); },
      [tap_port] { return tap_stats_json(tap_port->stats()); });
  rt_.primary_engine()->announce_guest(ns_.tc.mac);
}

// Mirrored mode: the host's links, addresses and routes follow into the
// namespace (netstack/mirror/ control plane); each mirrored link is a tap
// whose frames a MirrorLink carries out through host sockets bound to the
// guest's source address (mirror_link.hpp).
int NetnsAttachment::attach_mirrored_mode() {
  mirror_ = std::make_unique<MirroredMode>(io_);
  mirror::ApplyHooks hooks;
  hooks.on_link_created = [&io = io_, &links = mirror_->links()](const mirror::MirroredLinkCreated& c) {
    on_mirror_tap(io, links, c);
  };
  hooks.on_link_removed = [&links = mirror_->links()](const std::string& name) { links.erase(name); };
  hooks.vnet_hdr_taps = ns_.tc.vnet_hdr;  // offloads as on the NAT tap (fast path on, no --no-offload)
  hooks.on_link_mtu = [&links = mirror_->links()](const std::string& name, uint32_t mtu) { links.set_mtu(name, mtu); };
  auto applier = mirror::NetlinkGuestApplier::open(*ns_.factory, std::move(hooks));
  if (applier.has_error()) return ns_.fail("mirrored mode: " + applier.error());
  mirror::PlanOptions po;
  po.reserved_names = {"lo", o_.ifname};
  mirror_->follow(std::move(*applier), po);
  if (auto r = mirror_->start(); r.has_error()) return ns_.fail("mirrored mode: " + r.error());
  mirror_->report_to(rt_);
  return 0;
}

// Automatic forwarding: sock_diag in the namespace reports its listeners
// (with the bind/listen trap once COMMAND runs); relays reach them through
// sockets made inside it.
void NetnsAttachment::attach_listener_source() {
  if (!ns_.factory || net_.no_auto_forward) return;
  auto diag_sock = ns_.factory->create(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG);
  if (diag_sock.has_error()) {
    spdlog::warn("automatic port forwarding is off: cannot open sock_diag in the namespace: {}",
                 diag_sock.error().message());
    return;
  }
  auto& factory = *ns_.factory;
  tcp4_ = std::make_unique<netstack::NetnsConnector>(io_, factory, portfwd::Family::kIpv4);
  tcp6_ = std::make_unique<netstack::NetnsConnector>(io_, factory, portfwd::Family::kIpv6);
  udp4_ = std::make_unique<netstack::NetnsDatagramChannel>(io_, factory, portfwd::Family::kIpv4);
  udp6_ = std::make_unique<netstack::NetnsDatagramChannel>(io_, factory, portfwd::Family::kIpv6);
  portfwd::PolicySettings base = auto_forward_policy(net_.ignored_ports);
  base.host_wildcard = net_.mode == "mirrored";  // the guest has the host's addresses: its servers answer on them
  base.tcp_any_v4_loopback = true;               // NetnsConnector dials the listener's own 127/8 address
  autofwd_ = attach_auto_forwarder(rt_, portfwd::GuestSide{tcp4_.get(), tcp6_.get(), udp4_.get(), udp6_.get()}, base);
  // With the bind/listen trap the poll is only a safety net; --attach has no trap.
  const auto poll = ns_.child ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(100);
  listeners_ = std::make_unique<netstack::NetnsListenerSource>(
      io_, std::make_unique<portfwd::SockDiag>(std::move(*diag_sock)), UniqueFd(), poll,
      [this](const std::set<portfwd::Listener>& snap) { autofwd_->on_listeners(snap); });
  listeners_->start();
}

void NetnsAttachment::handle_signals(const sigset_t& held) {
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  if (ns_.child) signals_.add(SIGCHLD);
  wait_signal();
  sigprocmask(SIG_UNBLOCK, &held, nullptr);  // pending ones now reach the handler
}

void NetnsAttachment::wait_signal() {
  signals_.async_wait([this](boost::system::error_code ec, int sig) { on_signal(ec, sig); });
}

// COMMAND's exit ends the run; other signals go to COMMAND, which decides.
// With --attach, SIGINT/SIGTERM detach.
void NetnsAttachment::on_signal(boost::system::error_code ec, int sig) {
  if (ec) return;
  auto& child = ns_.child;
  if (sig == SIGCHLD) {
    int st = 0;
    if (::waitpid(child->pid, &st, WNOHANG) == child->pid) {
      status_ = netstack::shell_status(st);
      io_.stop();
      return;
    }
  } else if (child) {
    ::kill(child->pid, sig);  // the command decides; we exit when it does
  } else {
    spdlog::info("{}: detaching", sig == SIGINT ? "interrupt" : "terminated");
    io_.stop();
    return;
  }
  wait_signal();
}

// Lets COMMAND run. The child sends the trap's descriptor just before it
// execs COMMAND.
void NetnsAttachment::release_command() {
  auto& child = ns_.child;
  if (!child) return;
  release_child(*child);
  if (!ns_.tc.trap_listeners) return;
  control_desc_.assign(child->control.get());
  control_desc_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;
    auto trap = netstack::receive_listener_trap(ns_.child->control.get());
    if (trap.has_error()) {
      spdlog::debug("no listener trap: {} (the poll still runs)", trap.error());
    } else if (listeners_) {
      listeners_->set_trap(std::move(*trap));
    }
  });
}

int NetnsAttachment::finish() {
  if (control_desc_.is_open()) (void)control_desc_.release();
  if (ns_.child) {
    if (!ns_.factory_owns_resolv_conf) ::unlink(ns_.child->resolv_conf_path.c_str());
  } else if (tap_closed_) {
    spdlog::info("the namespace's tap device went away; exiting");
  }
  return status_;
}

}  // namespace

int attach_netns(const NetOptions& net, const NetnsOptions& o) {
  if (o.attach.empty() == o.command.empty()) {
    std::fprintf(stderr, "causeway netns: give either -- COMMAND [ARGS...] or --attach PID|PATH\n");
    return kExitUsage;
  }
  auto s = net_settings(net);
  if (!s) return kExitUsage;

  // Hold SIGINT/SIGTERM until our handlers are installed: a signal that
  // arrives while the tap already exists but the loop is not running yet
  // must detach cleanly, not kill us with the default action.
  sigset_t held;
  sigemptyset(&held);
  sigaddset(&held, SIGINT);
  sigaddset(&held, SIGTERM);
  sigprocmask(SIG_BLOCK, &held, nullptr);

  NamespaceSide ns;
  ns.tc = tap_config(net, o, *s);
  // Fork before anything starts threads.
  if (int code = start_namespace(ns, o)) return code;
  if (int code = open_namespace_sockets(ns, net, o)) return code;
  NetnsAttachment attachment(net, o, std::move(*s), ns);
  return attachment.run(held);
}

}  // namespace causeway::cli
