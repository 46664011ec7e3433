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
// one shuts the guest down; a third stops QEMU (the command's side is
// CommandIo, cli/command_io.hpp, shared with the join client).
//
// Instance mode (RunOptions::instance; the daemon of a distribution's
// persistent VM, cli/instance_daemon.hpp): the same machine with a disk, but
// the main session never carries a Run. After Ready (NetConfig, mirrored
// mode) an InstanceService listens on exec.sock — each connection a command
// in the VM over its own vsock stream — and applies the idle rule; the VM is
// powered off cleanly (Shutdown on the main session: the guest syncs and
// powers off, QEMU exits) when idle, on SIGINT/SIGTERM, or on the control
// request `shutdown`. A second signal stops QEMU.
//
// DNS: when the host's resolver configuration changes (Runtime's watch), the
// guest gets a DnsConfig (resolver: the proxy; the host's search domains) on
// the main session, in both modes.
//
// Steps (attach_vm): checks that need no machine (guest files, QEMU, the
// accelerator, a private directory) → the engine and DNS → forwards (-p) →
// the guest's NIC (vhost-user virtio-net or QEMU's stream netdev) → vsock →
// the listener source (the agent's events; automatic forwarding) → control
// socket → QEMU → mirrored mode → confinement → the agent → signals → run.
//
// Confinement (base/sandbox): after QEMU is started and every listening socket
// is bound, before the output pumps' threads exist (CommandIo::install). The
// process keeps its private directory read-write (the sockets QEMU uses,
// qemu.log, the console log, removed at exit through
// sandbox::remove_kept_directory), in instance mode the instance's directory
// instead (exec.sock is bound and state.json written after Ready; the lock is
// an open descriptor), the DNS-over-TCP socket's directory, a --console-log
// file's directory read-write (ConsoleLog rotates it by rename; finish() prints
// its tail), and what sandbox_policy() keeps. QEMU, outside the sandbox, is
// watched through its pidfd and signalled by pid; mirrored mode opens its
// rtnetlink sockets after Ready, inside it.
//
// Thread safety: everything runs on the caller's thread (the engine thread).
#include "cli/attach_vm.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "base/sandbox/sandbox.hpp"
#include "base/unique_fd.hpp"
#include "cli/attach_steps.hpp"
#include "cli/command_io.hpp"
#include "cli/control.hpp"
#include "cli/instance_service.hpp"
#include "cli/mirror_vm.hpp"
#include "cli/mirrored_mode.hpp"
#include "cli/output_pump.hpp"
#include "cli/runtime.hpp"
#include "netstack/frame_demux.hpp"
#include "netstack/stream_port.hpp"
#include "portfwd/auto_forwarder.hpp"
#include "portfwd/listener_set.hpp"
#include "vmm/agent/relay_client.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/devices/virtio_net.hpp"
#include "vmm/devices/virtio_vsock.hpp"
#include "vmm/machine/accel.hpp"
#include "vmm/machine/qemu_cmdline.hpp"
#include "vmm/machine/console_log.hpp"
#include "vmm/machine/qemu_process.hpp"
#include "vmm/vhost_user/server.hpp"

namespace causeway::cli {
namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

constexpr auto kBootTimeout = std::chrono::seconds(90);  // TCG: ~4 s; a wedged boot ends here
constexpr auto kQemuExitGrace = std::chrono::seconds(5);
// QEMU killed from outside ends the agent's stream first; its exit, a moment
// later, is the better explanation, so an agent failure waits this long for it.
constexpr auto kAgentFailureGrace = std::chrono::milliseconds(500);

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
  // fd00::3 is not listed: it answers UDP only (see tap_config in cli/attach_netns.cpp).
  c.search_domains = search;
  return c;
}

// Guest text for our stderr: lines kept, other control characters and the
// tail beyond 4 KiB dropped (the agent is guest code).
std::string guest_text(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 4096)) {
    if (c == '\n' || c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f)) out.push_back(c);
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

agent::DnsConfig dns_config(const netstack::NatConfig& nat, const std::vector<std::string>& search) {
  agent::DnsConfig d;
  agent::IpAddr dns{4, {}};
  std::memcpy(dns.bytes.data(), &nat.dns, 4);
  d.servers.push_back(dns);
  d.search = search;
  return d;
}

// The Run for the command: a distribution's userland computes the environment
// from the user (TERM is ours to give); the busybox image gets PATH and HOME.
agent::Run command_run(const RunOptions& o) {
  agent::Run run;
  run.argv = o.command;
  if (!o.guest_env) run.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"};
  if (const char* t = std::getenv("TERM"); t && *t && (o.tty || o.guest_env))
    run.env.push_back(std::string("TERM=") + t);
  run.tty = o.tty;
  run.user = o.user;
  run.cwd = o.cwd;
  return run;
}

cli::ListenerKey key_of(const portfwd::Listener& l) { return {l.proto == portfwd::L4::kTcp, l.port}; }

}  // namespace

boost::system::result<uint64_t, std::string> parse_memory_mib(std::string_view text) {
  using R = boost::system::result<uint64_t, std::string>;
  std::string t(text);
  for (auto& ch : t) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (t.ends_with("B")) t.pop_back();
  uint64_t mult = 1;  // MiB
  if (t.ends_with("G"))
    mult = 1024, t.pop_back();
  else if (t.ends_with("M"))
    t.pop_back();
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc{} || p != t.data() + t.size() || v == 0)
    return R(boost::system::in_place_error, "bad memory size '" + std::string(text) + "' (e.g. 512, 512M, 4G, 4GB)");
  const uint64_t mib = v * mult;
  if (mib < 128 || mib > 1024 * 1024)
    return R(boost::system::in_place_error, "memory size '" + std::string(text) + "' out of range (128M–1T)");
  return mib;
}

namespace {

constexpr std::string_view kWho = "causeway run";

// The checks that need no machine: fail fast, say what to fix. Holds what
// they found, and the private directory (removed last, however we leave).
struct VmHost {
  machine::QemuOptions q;
  machine::AccelChoice accel;
  std::string dir;

  VmHost() = default;
  VmHost(const VmHost&) = delete;
  VmHost& operator=(const VmHost&) = delete;
  ~VmHost() {
    // A kept directory of the sandbox is a mount point in this process: removed through its parent.
    if (!dir.empty()) sandbox::remove_kept_directory(dir);
  }
};

int check_host(VmHost& h, const RunOptions& o) {
  const std::string guest_dir = o.guest_dir;
  h.q.kernel = o.kernel.empty() ? guest_dir + "/vmlinuz" : o.kernel;
  h.q.initrd = o.initrd.empty() ? guest_dir + "/initramfs.cpio.gz" : o.initrd;
  if (auto r = machine::check_guest_files(h.q); r.has_error()) {
    std::fprintf(stderr, "causeway run: %s\n", r.error().c_str());
    if (o.kernel.empty()) std::fprintf(stderr, "causeway run: build the default guest with scripts/build-guest.sh\n");
    return kExitFailure;
  }
  if (auto v = machine::check_qemu(h.q.qemu); v.has_error()) return fail_start(kWho, v.error());
  auto accel = machine::choose_accel(machine::probe_accel_facts(), o.accel);
  if (accel.has_error()) return fail_start(kWho, accel.error());
  h.accel = *accel;
  if (!h.accel.notice.empty() && o.instance)
    spdlog::info("{}", h.accel.notice);  // the daemon's log; not part of an error it relays
  else if (!h.accel.notice.empty() && !o.quiet)
    std::fprintf(stderr, "causeway: %s\n", h.accel.notice.c_str());
  if (!o.disk.empty()) {
    if (::access(o.disk.c_str(), R_OK | W_OK) != 0)
      return fail_start(kWho, fmt::format("cannot use the disk image {}: {}", o.disk, std::strerror(errno)));
    h.q.disk = machine::DiskOptions{.path = o.disk};
  }
  h.q.balloon = true;
  h.q.free_page_reporting = o.page_reporting;
  if (o.instance) {
    // The instance's own directory (RUNTIME/instances/NAME/vm), fresh: a killed daemon may have left one.
    h.dir = o.instance->paths.vm_dir.string();
    std::error_code ec;
    std::filesystem::remove_all(h.dir, ec);
    if (::mkdir(h.dir.c_str(), 0700) != 0) h.dir.clear();
  } else {
    h.dir = runtime_dir();
  }
  if (h.dir.empty()) return fail_start(kWho, std::string("cannot create a private directory: ") + std::strerror(errno));
  return 0;
}

json virtio_net_stats_json(const vmm::VirtioNetStats& s) {
  return json{{"tx_frames", s.tx_frames},
              {"tx_bytes", s.tx_bytes},
              {"tx_malformed", s.tx_malformed},
              {"tx_oversized", s.tx_oversized},
              {"rx_frames", s.rx_frames},
              {"rx_drops", s.rx_drops_no_buffers + s.rx_drops_not_ready + s.rx_drops_too_big}};
}

// The vsock device's stream cap from the process's descriptor budget (netstack/budget.hpp).
vmm::VirtioVsockConfig vsock_config(const netstack::FdBudget& b) {
  vmm::VirtioVsockConfig c;
  c.max_connections = std::min(c.max_connections, b.vsock_streams);
  return c;
}

// The machine, its devices, the agent session and the command.
class VmAttachment {
 public:
  VmAttachment(const RunOptions& o, NetSettings s, VmHost& host)
      : o_(o), s_(std::move(s)), q_(host.q), host_(host), rt_(io_, s_.nat, o.instance ? "vm instance" : "vm") {
    if (!o.instance) command_ = std::make_unique<CommandIo>(io_, command_run(o));
  }

  int run();

 private:
  int attach_nic();
  int attach_vhost_user_nic(const vmm::VirtioNetConfig& ncfg, const std::string& path);
  int attach_stream_nic(const std::string& path);
  netstack::FrameSink& nic_sink(netstack::FramePort& p, netstack::Engine& e);
  int attach_vsock();
  void attach_listener_source();
  void listeners_changed();
  int spawn_machine();
  void attach_mirrored_mode();
  json vm_mirror_status() const;
  void connect_agent();
  void watch_machine();
  agent::AgentCallbacks agent_callbacks();
  void on_agent_ready(const agent::Ready& r);
  void send_network_config();
  void on_dns_search_change(const std::vector<std::string>& search);
  void on_listener_appeared(const agent::ListenerAppeared& l);
  void on_agent_end(const agent::SessionEnd& end);
  void fail(std::string why);
  void handle_signals();
  void wait_signal();
  void confine();
  // Instance mode.
  void start_instance();
  void shutdown_vm(std::string_view why);
  json handle_instance_control(const json& req);
  void instance_listeners_changed();
  int finish();

  const RunOptions& o_;
  const NetSettings s_;
  machine::QemuOptions& q_;
  VmHost& host_;
  asio::io_context io_{1};
  const bool mirrored_ = o_.mode == "mirrored";
  // Mirrored mode: the guest NIC's frames split by source MAC (eth0 → the engine,
  // a mirrored macvlan → its MirrorLink). Declared before the runtime that owns the
  // device holding a pointer to it.
  netstack::FrameDemux demux_;
  netstack::FramePort* guest_port_ = nullptr;
  Runtime rt_;
  std::unique_ptr<vmm::vhost_user::Server> net_server_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> stream_acceptor_;
  vmm::VirtioVsockDevice vsock_{io_, rt_.clock(), vsock_config(rt_.budget())};
  vmm::vhost_user::Server vsock_server_{io_, rt_.clock(), vsock_, "vhost-user vsock"};
  // Automatic localhost forwarding: agent listener events → host forwards → vsock relays.
  agent::VsockRelayConnector relay_tcp4_{io_, vsock_, 4}, relay_tcp6_{io_, vsock_, 6};
  agent::VsockRelayDatagramChannel relay_udp4_{io_, vsock_, 4}, relay_udp6_{io_, vsock_, 6};
  std::unique_ptr<portfwd::AutoForwarder> autofwd_;
  portfwd::GuestListenerSet guest_listeners_;
  bool listeners_dirty_ = false;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<machine::QemuProcess> qemu_;
  std::unique_ptr<machine::ConsoleLog> console_;  // the serial console, size-capped (console_log.hpp)
  std::string qemu_log_;
  std::chrono::steady_clock::time_point t_start_;
  std::string failure_;
  std::string boot_error_;  // the agent's Error before Ready (e.g. the disk failed its fsck)
  RateLimitedLog guest_error_log_{5, 1000};
  bool shutting_down_ = false;  // we asked the VM to power off (instance mode, signals)
  int signals_seen_ = 0;
  // The command (declared before the session: its output pumps outlive it and
  // write out what they still hold); absent in instance mode.
  std::unique_ptr<CommandIo> command_;
  std::unique_ptr<agent::AgentSession> session_;
  // Mirrored mode; declared after the session, so destroyed before it.
  std::unique_ptr<MirroredMode> mirror_;
  AgentGuestApplier* mirror_applier_ = nullptr;  // owned by mirror_
  std::unique_ptr<InstanceService> instance_;    // instance mode, once the VM is ready
  asio::steady_timer boot_timer_{io_};
  std::string agent_failure_;  // the agent session's unexpected end, until QEMU's exit explains it or not
  asio::steady_timer agent_failure_timer_{io_};
  asio::signal_set signals_{io_};  // instance mode (CommandIo has its own)
};

int VmAttachment::run() {
  rt_.set_on_dns_search_change([this](const std::vector<std::string>& search) { on_dns_search_change(search); });
  if (auto r = rt_.enable_dns(s_.dns); r.has_error()) return fail_start(kWho, r.error());
  if (auto r = rt_.add_forwards(s_.forwards); r.has_error()) return fail_start(kWho, r.error());
  if (int code = attach_nic()) return code;
  if (int code = attach_vsock()) return code;
  attach_listener_source();
  // Instance mode: the control socket is the instance's (`causeway terminate` uses it).
  auto control = o_.instance ? attach_control(rt_, o_.instance->paths.control.string(),
                                              [this](const json& req) { return handle_instance_control(req); })
                             : attach_control(rt_, o_.control);
  if (control.has_error()) return fail_start(kWho, control.error());
  control_ = std::move(*control);
  if (int code = spawn_machine()) return code;
  if (mirrored_) attach_mirrored_mode();
  confine();  // before connect_agent(): the command's output pumps start their threads there
  connect_agent();
  watch_machine();
  handle_signals();
  io_.run();
  return finish();
}

void VmAttachment::confine() {
  sandbox::Policy p = o_.sandbox;
  p.mode = std::string(o_.instance ? "instance" : "vm") + (mirrored_ ? "-mirrored" : "");
  p.read_write.push_back(o_.instance ? o_.instance->paths.dir : std::filesystem::path(host_.dir));
  if (!o_.console_log.empty()) {
    // ConsoleLog rotates a regular file by rename (FILE -> FILE.1): its directory stays
    // writable. Anything else (a FIFO, /dev/null) is written through the open descriptor.
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path file = fs::absolute(o_.console_log, ec).lexically_normal();
    if (fs::is_regular_file(file, ec))
      p.read_write.push_back(file.parent_path());
    else
      p.read_only.push_back(file);
  }
  // libslirp connects to the DNS-over-TCP socket there for each guest TCP query to 10.0.2.3.
  if (!rt_.dns_dir().empty()) p.read_write.push_back(rt_.dns_dir());
  sandbox::confine(p);
}

// ---- the guest's NIC ----

int VmAttachment::attach_nic() {
  vmm::VirtioNetConfig ncfg;
  ncfg.mtu = static_cast<uint16_t>(std::min<size_t>(s_.nat.mtu, 65535));
  // Copy guest transmit frames out of shared memory before checking them:
  // in place, the guest could rewrite a header between check_guest_frame and
  // libslirp's parse (check-then-use on memory it controls).
  ncfg.tx_zero_copy = false;
  const std::string net_path = host_.dir + "/net.sock";
  const int code = o_.vm_net == "vhost-user" ? attach_vhost_user_nic(ncfg, net_path) : attach_stream_nic(net_path);
  q_.net_socket = net_path;
  return code;
}

// Where the NIC's frames go: the engine, or in mirrored mode the demux in
// front of it.
netstack::FrameSink& VmAttachment::nic_sink(netstack::FramePort& p, netstack::Engine& e) {
  guest_port_ = &p;
  demux_.set_default(&e);
  return mirrored_ ? static_cast<netstack::FrameSink&>(demux_) : e;
}

int VmAttachment::attach_vhost_user_nic(const vmm::VirtioNetConfig& ncfg, const std::string& path) {
  auto dev = std::make_unique<vmm::VirtioNetDevice>(io_, rt_.clock(), ncfg);
  auto* raw = dev.get();
  rt_.add_guest(
      "vm (vhost-user virtio-net)", std::move(dev),
      [this](netstack::FramePort& p, netstack::Engine& e) {
        static_cast<vmm::VirtioNetDevice&>(p).start(nic_sink(p, e));
      },
      [raw] { return virtio_net_stats_json(raw->stats()); });
  net_server_ = std::make_unique<vmm::vhost_user::Server>(io_, rt_.clock(), *raw, "vhost-user net");
  if (auto r = net_server_->listen(path); r.has_error()) return fail_start(kWho, r.error());
  q_.net = machine::NetAttachment::VhostUser;
  q_.host_mtu = ncfg.mtu;
  return 0;
}

// --vm-net stream: the same engine over QEMU's stream netdev (for comparison).
int VmAttachment::attach_stream_nic(const std::string& path) {
  stream_acceptor_ = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
  if (auto ec = listen_unix(*stream_acceptor_, path, 1)) {
    std::fprintf(stderr, "causeway run: cannot listen on %s: %s\n", path.c_str(), ec.message().c_str());
    return kExitFailure;
  }
  stream_acceptor_->async_accept([this](boost::system::error_code aec, asio::local::stream_protocol::socket s) {
    if (aec) return;
    auto port = std::make_unique<netstack::StreamFramePort>(
        std::move(s), stream_max_frame(s_.nat),
        [](const std::string& why) { spdlog::debug("QEMU stream netdev ended: {}", why); });
    auto* sp = port.get();
    rt_.add_guest(
        "vm (stream netdev)", std::move(port),
        [this](netstack::FramePort& p, netstack::Engine& e) {
          static_cast<netstack::StreamFramePort&>(p).start(nic_sink(p, e));
        },
        [sp] {
          return json{{"frames_read", sp->stats().frames_read}, {"frames_written", sp->stats().frames_written}};
        });
  });
  q_.net = machine::NetAttachment::Stream;
  return 0;
}

int VmAttachment::attach_vsock() {
  const std::string vsock_path = host_.dir + "/vsock.sock";
  if (auto r = vsock_server_.listen(vsock_path); r.has_error()) return fail_start(kWho, r.error());
  q_.vsock_socket = vsock_path;
  return 0;
}

// ---- automatic localhost forwarding ----

void VmAttachment::attach_listener_source() {
  if (!o_.auto_forward) return;
  // tcp_any_v4_loopback stays false: RelayRequest carries no address and the
  // agent dials 127.0.0.1, so a guest listener on 127.0.0.2 is not forwarded
  // (a forward to 127.0.0.1, where nothing listens, would only reset).
  autofwd_ = attach_auto_forwarder(rt_, portfwd::GuestSide{&relay_tcp4_, &relay_tcp6_, &relay_udp4_, &relay_udp6_},
                                   auto_forward_policy(o_.ignored_ports));
}

// One policy pass per engine turn, however many events arrived.
void VmAttachment::listeners_changed() {
  if (!autofwd_) return instance_listeners_changed();
  if (listeners_dirty_) return;
  listeners_dirty_ = true;
  asio::post(io_, [this] {
    listeners_dirty_ = false;
    autofwd_->on_listeners(guest_listeners_.listeners());
    instance_listeners_changed();
  });
}

void VmAttachment::on_listener_appeared(const agent::ListenerAppeared& l) {
  const uint64_t refused = guest_listeners_.refused();
  if (guest_listeners_.appeared(from_agent(l)))
    listeners_changed();
  else if (guest_listeners_.refused() > refused && refused == 0)
    spdlog::warn("the guest reports more than {} listeners (or port 0); those are not forwarded",
                 portfwd::GuestListenerSet::kDefaultCap);
}

// ---- the machine ----

int VmAttachment::spawn_machine() {
  q_.accel = host_.accel.accel;
  q_.machine = o_.machine == "microvm" ? machine::MachineType::Microvm : machine::MachineType::Q35;
  q_.cpus = o_.cpus;
  q_.memory_mib = o_.memory_mib;
  q_.extra_cmdline = o_.cmdline;
  if (o_.instance)
    q_.console_log = o_.console_log.empty() ? o_.instance->paths.console.string() : o_.console_log;
  else
    q_.console_log = o_.console_log.empty() ? host_.dir + "/console.log" : o_.console_log;
  console_ = std::make_unique<machine::ConsoleLog>(io_, host_.dir + "/console.sock", q_.console_log);
  if (auto ec = console_->start())
    return fail_start(kWho, "cannot open the guest console log " + q_.console_log + ": " + ec.message());
  q_.console_socket = console_->socket_path();
  auto argv = machine::build_qemu_argv(q_);
  if (argv.has_error()) return fail_start(kWho, argv.error());
  if (!o_.console_log.empty()) {
    // Made now, so the sandbox can keep it (QEMU opens it as it starts, maybe after confinement).
    UniqueFd touch(::open(o_.console_log.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!touch)
      return fail_start(kWho,
                        fmt::format("cannot create the console log {}: {}", o_.console_log, std::strerror(errno)));
  }
  qemu_log_ = host_.dir + "/qemu.log";
  auto qemu = machine::QemuProcess::spawn(io_.get_executor(), *argv, qemu_log_);
  if (qemu.has_error()) return fail_start(kWho, qemu.error());
  qemu_ = std::move(*qemu);
  t_start_ = std::chrono::steady_clock::now();
  return 0;
}

// ---- mirrored mode ----

// The agent converges the guest (AgentGuestApplier); each mirrored macvlan it
// reports gets a MirrorLink on the shared NIC (sync_vm_links).
void VmAttachment::attach_mirrored_mode() {
  mirror_ = std::make_unique<MirroredMode>(io_);
  auto applier = std::make_unique<AgentGuestApplier>(io_, [this](const agent::MirrorApply& m) {
    if (!session_) return std::make_error_code(std::errc::not_connected);
    return session_->mirror_apply(m);
  });
  applier->set_on_guest_state([this, &links = mirror_->links()](const netstack::mirror::NetState& actual) {
    if (guest_port_) sync_vm_links(links, demux_, *guest_port_, actual);
  });
  mirror_applier_ = applier.get();
  netstack::mirror::PlanOptions po;
  po.copy_mac = false;  // 02:43:57:4d:XX:XX from the host ifindex: the guest's links on one virtio-net
  po.reserved_names = {"lo", "eth0"};
  po.max_link_mtu = static_cast<uint32_t>(std::min<size_t>(s_.nat.mtu, 65535));  // eth0's: the macvlans' bound
  mirror_->follow(std::move(applier), po);
  mirror_->report_to(rt_, [this](json& j) { j["vm"] = vm_mirror_status(); });
}

json VmAttachment::vm_mirror_status() const {
  const auto& c = mirror_applier_->counters();
  const auto& ds = demux_.stats();
  return json{{"applies", c.applies},
              {"reports", c.reports},
              {"stale_reports", c.stale_reports},
              {"timeouts", c.timeouts},
              {"send_errors", c.send_errors},
              {"guest_links", mirror_applier_->guest_unmanaged()},
              {"demux", json{{"to_links", ds.to_links}, {"to_default", ds.to_default}, {"refused", ds.refused}}}};
}

// ---- the agent ----

void VmAttachment::connect_agent() {
  auto cb = agent_callbacks();
  vsock_.listen(agent::kAgentVsockPort, [this, cb](std::shared_ptr<vmm::VsockStream> stream) {
    if (session_) {
      stream->close();  // one agent per guest
      return;
    }
    session_ = std::make_unique<agent::AgentSession>(io_.get_executor(), std::move(stream), cb);
    session_->start();
  });
  boot_timer_.expires_after(kBootTimeout);
  boot_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    fail(fmt::format("the guest agent did not connect within {} s", kBootTimeout.count()));
  });
}

// QEMU's exit ends the run.
void VmAttachment::watch_machine() {
  qemu_->async_wait([this](const machine::ExitStatus& st) {
    const bool expected = command_ ? command_->exited() : shutting_down_;
    // A QEMU that exits on its own after the agent's stream ended (the guest's
    // PID 1 died: panic, power-off) is explained by the agent's failure; one
    // killed by a signal is the cause itself.
    if (!expected && failure_.empty() && !agent_failure_.empty() && !st.signaled) failure_ = agent_failure_;
    if (!expected && failure_.empty())
      failure_ = std::string(command_ ? "QEMU exited before the command finished" : "QEMU exited unexpectedly") + " (" +
                 st.describe() + ")";
    io_.stop();
  });
}

agent::AgentCallbacks VmAttachment::agent_callbacks() {
  agent::AgentCallbacks cb;
  cb.on_ready = [this](const agent::Ready& r) { on_agent_ready(r); };
  cb.on_listener_appeared = [this](const agent::ListenerAppeared& l) { on_listener_appeared(l); };
  cb.on_listener_gone = [this](const agent::ListenerGone& l) {
    if (guest_listeners_.gone(from_agent(l))) listeners_changed();
  };
  cb.on_mirror_report = [this](const agent::MirrorReport& r) {
    if (mirror_applier_) mirror_applier_->on_report(r);
  };
  // An Error before Ready says why the guest cannot start (finish() reports it);
  // later ones are logged, rate-limited (guest text: untrusted).
  cb.on_guest_error = [this](std::string_view text) {
    if (!session_ || !session_->ready()) {
      if (boot_error_.empty()) boot_error_ = guest_text(text);
    } else if (guest_error_log_.allow(rt_.clock().now_ms())) {
      spdlog::warn("guest agent: {}", guest_text(text));
    }
  };
  if (command_) {
    // The command's output, stdin and status (CommandIo); its end powers the guest off.
    command_->install(
        cb, [this] { return session_.get(); }, [this](const agent::Exited&) { session_->shutdown(); });
  }
  cb.on_end = [this](const agent::SessionEnd& end) { on_agent_end(end); };
  return cb;
}

void VmAttachment::on_agent_ready(const agent::Ready& r) {
  boot_timer_.cancel();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t_start_);
  spdlog::debug("guest agent ready after {} ms (guest uptime {} ms, kernel {})", ms.count(), r.uptime_ms,
                r.kernel_release);
  send_network_config();
  if (mirror_) {
    if (auto started = mirror_->start(); started.has_error()) fail("mirrored mode: " + started.error());
  }
  if (o_.instance) return start_instance();
  if (auto ec = command_->start()) fail("cannot start the command: " + ec.message());
}

// The NAT lease, static: no DHCP wait.
void VmAttachment::send_network_config() {
  const auto search = rt_.dns_watch() ? rt_.dns_watch()->current().search : s_.nat.dns_search;
  agent::NetConfig lease = nat_lease(s_.nat, search);
  if (mirrored_) {
    // The NAT link becomes internal (README, Mirrored mode): the mirrored links carry the rest.
    lease.internal = true;
    lease.ipv6 = false;
    lease.routes.clear();
  }
  if (auto ec = session_->configure_network(lease)) fail("cannot send the network configuration: " + ec.message());
}

// Live DNS: the guest's resolv.conf follows the host's search domains (the
// resolver stays the proxy). Before Ready the NetConfig carries them.
void VmAttachment::on_dns_search_change(const std::vector<std::string>& search) {
  if (!session_ || !session_->ready()) return;
  if (auto ec = session_->dns_config(dns_config(s_.nat, search)))
    spdlog::warn("cannot send the guest its new DNS search domains: {}", ec.message());
}

void VmAttachment::on_agent_end(const agent::SessionEnd& end) {
  if (mirror_applier_) mirror_applier_->on_session_end();
  guest_listeners_.clear();  // the guest is going away: close its forwards
  listeners_changed();
  const bool expected = command_ ? command_->exited() : shutting_down_;
  if (!end.ok() && !expected) {
    agent_failure_ = fmt::format("the guest agent session ended: {} {}", to_string(end.reason), end.detail);
    agent_failure_timer_.expires_after(kAgentFailureGrace);
    agent_failure_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) fail(agent_failure_);
    });
  }
  // The guest powers off; QEMU exits on its own (bounded below).
  if (command_) command_->stop();
  if (instance_) instance_->stop_accepting();
  qemu_->terminate(kQemuExitGrace);
}

void VmAttachment::fail(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
  if (instance_) instance_->stop_accepting();
  qemu_->terminate(std::chrono::seconds(2));
}

// ---- signals ----

// With a command: SIGINT/SIGTERM go to it (CommandIo); a second one shuts the
// guest down; a third stops QEMU. Instance mode: the first powers the VM off
// cleanly, a second stops QEMU.
void VmAttachment::handle_signals() {
  if (command_) {
    command_->handle_signals([this](int count) {
      if (count == 2 && session_)
        session_->shutdown();
      else
        qemu_->terminate(std::chrono::seconds(1));
    });
    return;
  }
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  wait_signal();
}

void VmAttachment::wait_signal() {
  signals_.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    // The first asks for a clean power-off; one during a power-off already asked for
    // (idle, `causeway terminate`) stops QEMU.
    if (++signals_seen_ == 1 && !shutting_down_)
      shutdown_vm(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    else
      qemu_->terminate(std::chrono::seconds(1));
    wait_signal();
  });
}

// ---- instance mode ----

// The VM is ready: exec sessions, idle shutdown and state.json, then the
// starter is told (it connects at once).
void VmAttachment::start_instance() {
  const auto& role = *o_.instance;
  instance_ = std::make_unique<InstanceService>(io_, rt_.clock(), vsock_, role.paths, role.idle_timeout_ms,
                                                [this] { shutdown_vm("idle"); });
  json state = role.state;
  state["pid"] = ::getpid();
  state["qemu_pid"] = qemu_->pid();
  state["mode"] = o_.mode;
  state["control"] = role.paths.control.string();
  std::set<ListenerKey> now;
  for (const auto& l : guest_listeners_.listeners()) now.insert(key_of(l));
  if (auto r = instance_->start(state, now); r.has_error()) return fail(r.error());
  spdlog::info("{} is ready (exec sessions on {})", role.paths.name, role.paths.exec.string());
  if (role.on_ready) role.on_ready();
}

// Clean power-off: no new sessions, Shutdown on the main session (the guest
// syncs and powers off; QEMU exits; the runtime files go when we exit).
void VmAttachment::shutdown_vm(std::string_view why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  spdlog::info("powering the VM off ({})", why);
  if (instance_) instance_->stop_accepting();
  if (session_ && session_->ready())
    session_->shutdown();
  else
    qemu_->terminate(kQemuExitGrace);
}

json VmAttachment::handle_instance_control(const json& req) {
  const std::string cmd = req.value("cmd", "");
  if (cmd == "shutdown") {
    asio::post(io_, [this] { shutdown_vm("requested"); });
    return json{{"ok", true}, {"shutting_down", true}};
  }
  if (cmd == "status") {
    json j = rt_.handle_control(req);
    j["instance"] = instance_ ? instance_->status_json() : json{{"ready", false}};
    j["instance"]["name"] = o_.instance->paths.name;
    return j;
  }
  return nullptr;  // the runtime's
}

// The idle rule's listener count: the automatically forwarded listeners
// (active forwards), against what the guest listens on.
void VmAttachment::instance_listeners_changed() {
  if (!instance_) return;
  std::set<ListenerKey> guest, forwarded;
  for (const auto& l : guest_listeners_.listeners()) guest.insert(key_of(l));
  if (autofwd_)
    for (const auto& i : autofwd_->list())
      if (i.active) forwarded.insert({i.forward.proto == portfwd::L4::kTcp, i.forward.port});
  instance_->on_listeners(guest, forwarded);
}

// ---- the end ----

int VmAttachment::finish() {
  if (command_) command_->stop();
  instance_.reset();  // exec.sock and state.json go
  if (failure_.empty()) return command_ ? command_->status() : 0;
  if (!boot_error_.empty()) {
    // The guest said why it could not start: that is the one message (the console repeats it).
    std::fprintf(stderr, "causeway run: the guest could not start: %s\n", boot_error_.c_str());
    if (!o_.disk.empty()) std::fprintf(stderr, "causeway run: (the disk image is %s)\n", o_.disk.c_str());
    return 1;
  }
  std::fprintf(stderr, "causeway run: %s\n", failure_.c_str());
  const std::string tail = machine::tail_file(q_.console_log, 15);
  if (!tail.empty())
    std::fprintf(stderr, "causeway run: last lines of the guest console (%s):\n%s\n", q_.console_log.c_str(),
                 tail.c_str());
  const std::string qtail = machine::tail_file(qemu_log_, 5);
  if (!qtail.empty()) std::fprintf(stderr, "causeway run: QEMU said:\n%s\n", qtail.c_str());
  return command_ && command_->exited() ? command_->status() : 1;
}

}  // namespace

// `$SHELL -l` through /bin/sh (every distribution has one): the agent sets
// SHELL from the user's passwd entry, as login(1) does, and a login shell reads
// /etc/profile and ~/.profile — the distribution's PATH, locale and prompt.
// (The host cannot read the guest's passwd; argv[0] "-bash" would need the
// shell's path too.) Without SHELL: /bin/sh -l.
std::vector<std::string> login_shell_argv() { return {"/bin/sh", "-c", "exec \"${SHELL:-/bin/sh}\" -l"}; }

int attach_vm(const RunOptions& o, NetSettings s) {
  VmHost host;
  if (int code = check_host(host, o)) return code;
  VmAttachment attachment(o, std::move(s), host);
  return attachment.run();
}

}  // namespace causeway::cli
