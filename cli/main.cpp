// causeway — user-mode networking for lightweight Linux VMs and namespaces.
//
// Composition root: parses the command line (CLI11; one definition function
// per subcommand) and dispatches to the attachment, which builds the object
// graph and runs the engine's io_context on this (the engine) thread:
//
//   causeway netns [OPTIONS] -- COMMAND [ARGS...]     new namespace, run COMMAND   (cli/attach_netns.hpp)
//   causeway netns [OPTIONS] --attach PID|PATH        serve an existing namespace  (cli/attach_netns.hpp)
//   causeway serve --qemu-socket PATH [OPTIONS]       QEMU -netdev stream backend  (cli/attach_serve.hpp)
//   causeway run [OPTIONS] [-- COMMAND [ARGS...]]     boot the guest, run COMMAND  (cli/attach_vm.hpp)
//   causeway run -d NAME [-u USER] [--cd DIR] [-- COMMAND...]
//                                                     run COMMAND in NAME's VM     (cli/instance_client.hpp)
//   causeway list | terminate NAME | shutdown         distributions' VMs           (cli/instance_command.hpp)
//   causeway instance NAME --ready-fd N (hidden)      the VM daemon run -d starts  (cli/instance_daemon.hpp)
//   causeway ctl PATH COMMAND [ARGS...]               talk to a running causeway   (cli/control.hpp)
//   causeway distro create|import|list|default|remove|export   distributions  (cli/distro_command.hpp)
//
// The steps the attachments share are in cli/attach_steps.hpp.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <filesystem>
#include <optional>
#include <set>

#include "base/log.hpp"
#include "base/sandbox/sandbox.hpp"
#include "cli/attach_netns.hpp"
#include "cli/attach_serve.hpp"
#include "cli/attach_vm.hpp"
#include "cli/config.hpp"
#include "cli/control.hpp"
#include "cli/distro_command.hpp"
#include "cli/instance_client.hpp"
#include "cli/instance_command.hpp"
#include "cli/instance_daemon.hpp"
#include "cli/net_options.hpp"
#include "vmm/distro/store.hpp"

namespace {

using json = nlohmann::json;
using namespace causeway;
using cli::kExitFailure;
using cli::kExitUsage;
using cli::NetOptions;

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
  app->add_flag("--no-sandbox", o.no_sandbox,
                "Do not confine the engine after set-up (no empty root, seccomp, capability drop): for debugging");
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

// A bad config file: the usage status.
int config_error(const std::string& err) {
  std::fprintf(stderr, "causeway: %s\n", err.c_str());
  return kExitUsage;
}

// ---- causeway netns ----
struct NetnsCommand {
  CLI::App* app = nullptr;
  NetOptions net;
  cli::NetnsOptions ns;
};

void define_netns(CLI::App& parent, NetnsCommand& c) {
  c.app = parent.add_subcommand("netns", "Give a network namespace user-mode networking (like slirp4netns/pasta)");
  auto* netns = c.app;
  netns->footer(
      "Usage: causeway netns [OPTIONS] -- COMMAND [ARGS...]\n       causeway netns [OPTIONS] --attach PID|PATH");
  add_net_options(netns, c.net);
  netns->add_option("--attach", c.ns.attach, "Attach to an existing namespace: a PID or a path like /run/netns/NAME");
  netns->add_option("--ifname", c.ns.ifname, "Name of the tap device in the namespace (default tap0)");
  netns
      ->add_option("--mode", c.net.mode,
                   "nat (default) or mirrored: also mirror the host's links, addresses and routes into the namespace")
      ->check(CLI::IsMember({"nat", "mirrored"}));
}

int run_netns(NetnsCommand& c, std::vector<std::string> command) {
  if (auto err = apply_config(c.net, c.app, /*mirrored_ok=*/true)) return config_error(*err);
  c.ns.command = std::move(command);
  return cli::attach_netns(c.net, c.ns);
}

// ---- causeway serve ----
struct ServeCommand {
  CLI::App* app = nullptr;
  NetOptions net;
  std::string qemu_socket;
};

void define_serve(CLI::App& parent, ServeCommand& c) {
  c.app = parent.add_subcommand("serve", "Be a QEMU network backend (-netdev stream over a unix socket)");
  c.app->add_option("--qemu-socket", c.qemu_socket, "Unix socket path QEMU connects to")->required();
  add_net_options(c.app, c.net);
}

int run_serve(ServeCommand& c) {
  if (auto err = apply_config(c.net, c.app)) return config_error(*err);
  return cli::attach_serve(c.net, c.qemu_socket);
}

// ---- causeway run ----
struct RunCommand {
  CLI::App* app = nullptr;
  NetOptions net;
  cli::RunOptions ro;
  std::string memory;
  std::string accel = "auto";
  bool tty = false;
  // run -d (a distribution's VM)
  std::string distro;
  // instance (the daemon)
  int ready_fd = -1;
  int64_t idle_timeout_ms = cli::kDefaultVmIdleTimeoutMs;
  bool systemd = false;
};

// The VM's options: `run` and the instance daemon (which `run -d` starts with them).
void add_vm_options(CLI::App* run, RunCommand& c) {
  auto& ro = c.ro;
  add_net_options(run, c.net);
  run->add_option("--cpus", ro.cpus, "Virtual CPUs (default 1)")->check(CLI::Range(1, 64));
  run->add_option("--memory", c.memory, "Guest memory: 512, 512M, 2G (default 512M)");
  run->add_option(
      "--guest-dir", ro.guest_dir,
      "Directory with vmlinuz and initramfs.cpio.gz (default: guest/ next to the binary, or $CAUSEWAY_GUEST_DIR)");
  run->add_option("--kernel", ro.kernel, "Boot this kernel instead of the default guest's");
  run->add_option("--initrd", ro.initrd, "Boot this initramfs instead of the default guest's");
  run->add_option("--cmdline", ro.cmdline, "Extra kernel command line words");
  run->add_option("--vm-net", ro.vm_net,
                  "vhost-user (default: our virtio-net on guest memory) or stream (QEMU's stream netdev)")
      ->check(CLI::IsMember({"vhost-user", "stream"}));
  run->add_option("--machine", ro.machine, "q35 (default) or microvm")->check(CLI::IsMember({"q35", "microvm"}));
  run->add_option("--accel", c.accel, "auto (default: KVM where it really works, else TCG), kvm or tcg")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  run->add_option("--console-log", ro.console_log, "Keep the guest's serial console in this file");
  run->add_flag("-q,--quiet", ro.quiet, "Do not print the accelerator notice");
  run->add_option("--mode", c.net.mode,
                  "nat (default) or mirrored: the guest also gets the host's links, addresses and routes "
                  "(macvlans on eth0, kept in sync by the agent)")
      ->check(CLI::IsMember({"nat", "mirrored"}));
}

void define_run(CLI::App& parent, RunCommand& c) {
  c.app = parent.add_subcommand("run", "Boot the guest and run COMMAND in it (default: an interactive shell)");
  auto* run = c.app;
  auto& ro = c.ro;
  run->footer(
      "Usage: causeway run [OPTIONS] [-- COMMAND [ARGS...]]\n"
      "       causeway run -d NAME [-u USER] [--cd DIR] [OPTIONS] [-- COMMAND [ARGS...]]");
  add_vm_options(run, c);
  run->add_flag("-t,--tty", c.tty, "Give the command a terminal (default when no command is given)");
  run->add_option("-d,--distribution", c.distro,
                  "Run in this distribution's VM, starting it if none runs (default: the default distribution, "
                  "when one is set and no --kernel/--initrd/--guest-dir/--disk or $CAUSEWAY_GUEST_DIR is given)");
  run->add_option("-u,--user", ro.user, "With -d: run as this user of the distribution (default: its default user)");
  run->add_option("--cd", ro.cwd, "With -d: the command's working directory in the guest");
  run->add_option("--disk", ro.disk, "Boot this raw ext4 image as / (virtio-blk; cw.root=/dev/vda) — for debugging");
}

// The hidden daemon of a distribution's VM; `run -d` starts it.
void define_instance(CLI::App& parent, RunCommand& c) {
  c.app = parent.add_subcommand("instance", "The VM daemon of a distribution (started by run -d)");
  c.app->group("");  // hidden from --help
  c.app->add_option("name", c.distro, "The distribution")->required();
  c.app->add_option("--ready-fd", c.ready_fd, "Write 'ready' or the error here");
  add_vm_options(c.app, c);
}

// Config keys for the VM; the command line wins. Returns an exit status on a bad value.
std::optional<int> apply_vm_config(RunCommand& c) {
  if (c.net.config.empty()) return std::nullopt;
  auto cfg = cli::load_config(c.net.config);
  if (!cfg.has_value()) return std::nullopt;
  auto& ro = c.ro;
  if (cfg->processors && c.app->count("--cpus") == 0) ro.cpus = static_cast<unsigned>(*cfg->processors);
  if (cfg->memory && c.memory.empty()) {
    auto m = cli::parse_memory_mib(*cfg->memory);
    if (m.has_error())
      return std::fprintf(stderr, "causeway run: %s: %s\n", c.net.config.c_str(), m.error().c_str()), kExitUsage;
    ro.memory_mib = *m;
  }
  if (cfg->kernel && ro.kernel.empty()) ro.kernel = *cfg->kernel;
  if (cfg->kernel_command_line && ro.cmdline.empty()) ro.cmdline = *cfg->kernel_command_line;
  if (cfg->page_reporting) ro.page_reporting = *cfg->page_reporting;
  if (cfg->vm_idle_timeout_ms) c.idle_timeout_ms = *cfg->vm_idle_timeout_ms;
  if (cfg->systemd) c.systemd = *cfg->systemd;
  return std::nullopt;
}

// $CAUSEWAY_GUEST_DIR, else next to the binary: build/causeway → build/guest.
std::string default_guest_dir() {
  if (const char* g = std::getenv("CAUSEWAY_GUEST_DIR"); g && *g) return g;
  char self[4096] = {};
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string exe = n > 0 ? std::string(self, static_cast<size_t>(n)) : "causeway";
  return exe.substr(0, exe.rfind('/') + 1) + "guest";
}

// Like .wslconfig: a per-user file applies unless --config names another
// ($CAUSEWAY_CONFIG, else ~/.config/causeway/config).
void default_config(NetOptions& net) {
  if (!net.config.empty()) return;
  if (const char* env = std::getenv("CAUSEWAY_CONFIG"); env && *env) {
    net.config = env;
    return;
  }
  const char* home = std::getenv("HOME");
  const std::string user_cfg = std::string(home ? home : "") + "/.config/causeway/config";
  if (home && ::access(user_cfg.c_str(), F_OK) == 0) net.config = user_cfg;
}

// The options given to `run -d` (CLI11's view, for cli::daemon_argv).
std::vector<cli::GivenOption> given_options(const CLI::App& app) {
  std::vector<cli::GivenOption> out;
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->count() == 0 || opt->get_lnames().empty()) continue;
    cli::GivenOption g{"--" + opt->get_lnames().front(), {}, 0};
    if (opt->get_expected_min() == 0)
      g.flag_count = opt->count();
    else
      g.values = opt->results();
    out.push_back(std::move(g));
  }
  return out;
}

// run -d NAME (or the default distribution): join or start its VM.
int run_in_distribution(RunCommand& c, std::vector<std::string> command) {
  if (c.app->count("--disk") || c.app->count("--control"))
    return std::fprintf(stderr,
                        "causeway run: --disk and --control are not for -d (a distribution's VM has its own "
                        "disk and control socket: causeway list --verbose)\n"),
           kExitUsage;
  cli::JoinOptions j;
  j.name = c.distro;
  j.run.tty = c.tty || (command.empty() && ::isatty(0) && ::isatty(1));
  j.run.argv = command.empty() ? cli::login_shell_argv() : std::move(command);
  if (const char* t = std::getenv("TERM"); t && *t) j.run.env.push_back(std::string("TERM=") + t);
  j.run.user = c.ro.user;
  j.run.cwd = c.ro.cwd;
  std::error_code ec;
  j.daemon_args = cli::daemon_argv(j.name, given_options(*c.app), std::filesystem::current_path(ec), j.vm_options);
  return cli::run_in_instance(j);
}

// The VM's settings from the config file and the options (run, instance);
// an exit status on a bad value.
std::optional<int> vm_settings(RunCommand& c, std::optional<cli::NetSettings>& settings) {
  default_config(c.net);
  if (auto err = apply_config(c.net, c.app, /*mirrored_ok=*/true)) return config_error(*err);
  if (auto code = apply_vm_config(c)) return *code;
  auto& ro = c.ro;
  if (!c.memory.empty()) {
    auto m = cli::parse_memory_mib(c.memory);
    if (m.has_error()) return std::fprintf(stderr, "causeway run: %s\n", m.error().c_str()), kExitUsage;
    ro.memory_mib = *m;
  }
  if (c.accel == "kvm")
    ro.accel = machine::AccelRequest::Kvm;
  else if (c.accel == "tcg")
    ro.accel = machine::AccelRequest::Tcg;
  if (ro.guest_dir.empty()) ro.guest_dir = default_guest_dir();
  // VM default MTU 16384, not 65520: libslirp has no TCP window scaling, and
  // with 64 KiB frames the guest's 32 KiB window stalls bulk transfers until
  // libslirp's 5 s persist timer (seen in the vhost-user e2e runs).
  if (c.app->count("--mtu") == 0) c.net.mtu = 16384;
  settings = cli::net_settings(c.net);
  if (!settings) return kExitUsage;
  ro.control = c.net.control;
  ro.mode = c.net.mode;
  ro.auto_forward = !c.net.no_auto_forward;
  ro.ignored_ports = c.net.ignored_ports;
  ro.sandbox = cli::sandbox_policy(c.net, "vm");
  return std::nullopt;
}

int run_run(RunCommand& c, std::vector<std::string> command) {
  // A distribution's VM: -d NAME, or the default distribution unless the guest is named another way
  // (an option, or $CAUSEWAY_GUEST_DIR: scripts and tests that name the busybox image keep it on a
  // machine whose user has a default distribution).
  const char* env_guest = std::getenv("CAUSEWAY_GUEST_DIR");
  const bool own_guest = c.app->count("--kernel") || c.app->count("--initrd") || c.app->count("--guest-dir") ||
                         c.app->count("--disk") || (env_guest && *env_guest);
  if (c.distro.empty() && !own_guest)
    c.distro = causeway::distro::Store(causeway::distro::default_dirs().data).default_name().value_or("");
  if (!c.distro.empty()) return run_in_distribution(c, std::move(command));
  if ((c.app->count("--user") || c.app->count("--cd")) && !c.app->count("--disk"))
    return std::fprintf(stderr, "causeway run: -u and --cd need a distribution (-d NAME) or --disk\n"), kExitUsage;
  std::optional<cli::NetSettings> settings;
  if (auto code = vm_settings(c, settings)) return *code;
  auto& ro = c.ro;
  // A terminal on both ends and no command: an interactive shell with a pty.
  ro.tty = c.tty || (command.empty() && ::isatty(0) && ::isatty(1));
  if (!ro.disk.empty()) {
    ro.guest_env = true;  // a distribution's userland: the agent computes the environment
    if (command.empty()) ro.command = cli::login_shell_argv();
  }
  if (!command.empty()) ro.command = std::move(command);
  return cli::attach_vm(ro, std::move(*settings));
}

// ---- causeway instance (hidden) ----
int run_instance(RunCommand& c) {
  std::optional<cli::NetSettings> settings;
  if (auto code = vm_settings(c, settings)) return *code;
  cli::InstanceDaemonOptions d{c.distro, c.ready_fd, c.systemd, c.idle_timeout_ms};
  return cli::run_instance_daemon(d, c.ro, std::move(*settings));
}

// ---- causeway list | terminate | shutdown ----
struct InstanceCommands {
  CLI::App *list = nullptr, *terminate = nullptr, *shutdown = nullptr;
  bool running = false, verbose = false;
  std::vector<std::string> names;
};

void define_instance_commands(CLI::App& parent, InstanceCommands& c) {
  c.list = parent.add_subcommand("list", "List the distributions and whether their VM runs (default marked *)");
  c.list->add_flag("--running", c.running, "Only those whose VM runs");
  c.list->add_flag("-v,--verbose", c.verbose, "Also the mode, daemon PID, disk use and source");
  c.terminate = parent.add_subcommand("terminate", "Power a distribution's VM off cleanly");
  c.terminate->add_option("name", c.names, "Distribution(s)")->required();
  c.shutdown = parent.add_subcommand("shutdown", "Power every running distribution's VM off cleanly");
}

// ---- causeway ctl ----
struct CtlCommand {
  CLI::App* app = nullptr;
  std::string path;
  std::vector<std::string> args;
};

void define_ctl(CLI::App& parent, CtlCommand& c) {
  c.app = parent.add_subcommand("ctl", "Query or change a running causeway through its --control socket");
  c.app->add_option("path", c.path, "Control socket path")->required();
  c.app
      ->add_option("command", c.args,
                   "status | stats | ports | forward-list | forward-add SPEC | forward-remove SPEC | mirror | raw JSON")
      ->expected(0, -1);
}

// ---- causeway ctl ----
int run_ctl(const std::string& path, const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fprintf(stderr,
                 "causeway ctl: give a command: status, stats, ports, forward-list, forward-add SPEC, "
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
// meet EMFILE (base/accept_backoff.hpp) only when the system really is out
// (sandbox::raise_nofile_limit; confine() locks it later). Returns the soft
// limit as it was, which `netns` gives back to COMMAND (0: unknown).
uint64_t raise_nofile_limit() {
  rlimit rl{};
  const uint64_t old = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0;
  const rlim_t now = causeway::sandbox::raise_nofile_limit();
  if (now != old) spdlog::debug("open-file limit raised from {} to {}", old, now);
  return old;
}

// Splits off "-- COMMAND ARGS" before CLI11 sees the arguments; returns the
// number of arguments CLI11 gets.
int split_command(int argc, char** argv, std::vector<std::string>& command) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      for (int j = i + 1; j < argc; ++j) command.emplace_back(argv[j]);
      return i;
    }
  }
  return argc;
}

struct Commands {
  NetnsCommand netns;
  ServeCommand serve;
  RunCommand run;
  RunCommand instance;
  InstanceCommands instances;
  CtlCommand ctl;
  cli::DistroCommand distro;
};

// Runs the parsed subcommand.
int dispatch(Commands& c, std::vector<std::string> command) {
  try {
    if (c.netns.app->parsed()) return run_netns(c.netns, std::move(command));
    if (c.serve.app->parsed()) return run_serve(c.serve);
    if (c.run.app->parsed()) return run_run(c.run, std::move(command));
    if (c.instance.app->parsed()) return run_instance(c.instance);
    if (c.instances.list->parsed()) return cli::list_distributions(c.instances.running, c.instances.verbose);
    if (c.instances.terminate->parsed()) return cli::terminate_instances(c.instances.names, false);
    if (c.instances.shutdown->parsed()) return cli::terminate_instances({}, true);
    if (c.ctl.app->parsed()) return run_ctl(c.ctl.path, c.ctl.args);
    if (c.distro.app->parsed()) return cli::run_distro(c.distro);
  } catch (const std::exception& e) {
    // Start-up failures only: the data path does not throw.
    std::fprintf(stderr, "causeway: %s\n", e.what());
    return kExitFailure;
  }
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> command;
  const int cli_argc = split_command(argc, argv, command);
  ::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"causeway — user-mode networking for lightweight Linux VMs and network namespaces", "causeway"};
  app.require_subcommand(1);
  // --version also says what confinement this host allows (base/sandbox).
  app.set_version_flag("--version", [] {
    return std::string("causeway ") + CAUSEWAY_VERSION + "\n" + causeway::sandbox::support_summary();
  });
  std::string log_level;
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error or off (default info; warn for `run`, whose output is the guest's)");
  Commands c;
  define_netns(app, c.netns);
  define_serve(app, c.serve);
  define_run(app, c.run);
  define_instance(app, c.instance);
  define_instance_commands(app, c.instances);
  define_ctl(app, c.ctl);
  cli::define_distro(app, c.distro);

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
  if (log_level.empty()) log_level = c.run.app->parsed() ? "warn" : "info";  // the daemon (instance) logs info
  if (!causeway::init_logging(log_level)) {
    std::fprintf(stderr, "causeway: unknown --log-level '%s'\n", log_level.c_str());
    return kExitUsage;
  }
  if (!c.ctl.app->parsed()) c.netns.net.command_nofile_soft = raise_nofile_limit();
  if (!command.empty() && !c.netns.app->parsed() && !c.run.app->parsed()) {
    std::fprintf(stderr, "causeway: '-- COMMAND' is only for `causeway netns` and `causeway run`\n");
    return kExitUsage;
  }
  return dispatch(c, std::move(command));
}
