#include "netstack/netns.hpp"

#include "base/fd_passing.hpp"

#include "netstack/netns_listener_source.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <thread>

namespace causeway::netstack {
namespace {

using Result = boost::system::result<UniqueFd, std::string>;
constexpr auto kChildSetupTimeout = std::chrono::seconds(10);
constexpr auto kSlaacWait = std::chrono::seconds(3);  // engine answers RS at once; this bounds a broken setup

std::string errno_text(std::string_view what) { return fmt::format("{}: {}", what, std::strerror(errno)); }

struct NlSock {
  nl_sock* sk = nl_socket_alloc();
  ~NlSock() {
    if (sk) nl_socket_free(sk);
  }
};
struct NlAddr {
  nl_addr* a = nullptr;
  ~NlAddr() {
    if (a) nl_addr_put(a);
  }
};
struct Link {
  rtnl_link* l = nullptr;
  ~Link() {
    if (l) rtnl_link_put(l);
  }
};

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

// Sets flags (and optionally MAC/MTU) on a link by name.
boost::system::result<int, std::string> change_link(nl_sock* sk, const std::string& name, bool up, const Mac* mac,
                                                    size_t mtu) {
  Link link;
  if (int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &link.l); err < 0)
    return fmt::format("netlink: cannot find link {}: {}", name, nl_geterror(err));
  Link change;
  change.l = rtnl_link_alloc();
  if (up) rtnl_link_set_flags(change.l, IFF_UP);
  NlAddr lladdr;
  if (mac) {
    lladdr.a = nl_addr_build(AF_LLC, mac->data(), mac->size());
    rtnl_link_set_addr(change.l, lladdr.a);
  }
  if (mtu) rtnl_link_set_mtu(change.l, static_cast<unsigned>(mtu));
  if (int err = rtnl_link_change(sk, link.l, change.l, 0); err < 0)
    return fmt::format("netlink: cannot configure {}: {}", name, nl_geterror(err));
  return rtnl_link_get_ifindex(link.l);
}

bool has_global_ipv6(const std::string& ifname) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) < 0) return false;
  bool found = false;
  for (auto* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6 || ifname != i->ifa_name) continue;
    const auto* a = &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr;  // SAFETY: family checked
    if (!IN6_IS_ADDR_LINKLOCAL(a)) found = true;
  }
  freeifaddrs(list);
  return found;
}

// Child → parent messages over a SOCK_SEQPACKET pair: 'T' with the tap fd
// attached, or 'E' followed by an error line.
void send_error(int sock, const std::string& text) {
  const std::string msg = "E" + text;
  (void)!::send(sock, msg.data(), msg.size(), MSG_NOSIGNAL);
}

bool send_fd(int sock, int fd) {
  const char tag = 'T';
  return send_with_fd(sock, &tag, 1, fd) == 1;
}

Result receive_tap(int sock) {
  pollfd p{sock, POLLIN, 0};
  const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(kChildSetupTimeout).count());
  if (::poll(&p, 1, ms) <= 0) return std::string("namespace setup timed out");
  char buf[512];
  UniqueFd fd;
  const ssize_t n = recv_with_fd(sock, buf, sizeof buf - 1, fd);
  if (n <= 0) return std::string("namespace setup failed (the helper process exited)");
  if (buf[0] == 'E') return std::string(buf + 1, static_cast<size_t>(n - 1));
  if (fd) return fd;
  return std::string("namespace setup sent no tap descriptor");
}

// Makes this process root of a new user namespace mapped to our own ids.
bool map_own_ids(uid_t uid, gid_t gid, std::string& err) {
  if (!write_file("/proc/self/setgroups", "deny") || !write_file("/proc/self/uid_map", fmt::format("0 {} 1", uid)) ||
      !write_file("/proc/self/gid_map", fmt::format("0 {} 1", gid))) {
    err = errno_text("cannot write the user namespace's id maps");
    return false;
  }
  return true;
}

}  // namespace

std::string render_resolv_conf(const std::vector<std::string>& nameservers, const std::vector<std::string>& search) {
  std::string out = "# written by causeway for this namespace\n";
  for (auto& ns : nameservers) out += "nameserver " + ns + "\n";
  if (!search.empty()) {
    out += "search";
    for (auto& d : search) out += " " + d;
    out += "\n";
  }
  return out;
}

bool rewrite_resolv_conf(int fd, const std::string& text) {
  // In place (same inode): the namespace sees the file through a bind mount.
  return ::ftruncate(fd, 0) == 0 && ::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size());
}

Result create_configured_tap(const TapConfig& cfg) {
  if (cfg.ifname.empty() || cfg.ifname.size() >= IFNAMSIZ) return std::string("bad interface name: " + cfg.ifname);
  UniqueFd tap(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tap) return errno_text("cannot open /dev/net/tun (is the tun module available?)");
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (cfg.vnet_hdr ? IFF_VNET_HDR : 0));
  std::strncpy(ifr.ifr_name, cfg.ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(tap.get(), TUNSETIFF, &ifr) < 0) return errno_text("cannot create tap device " + cfg.ifname);

  NlSock nl;
  if (!nl.sk) return std::string("netlink: out of memory");
  if (int err = nl_connect(nl.sk, NETLINK_ROUTE); err < 0) return fmt::format("netlink: {}", nl_geterror(err));
  if (auto r = change_link(nl.sk, "lo", true, nullptr, 0); r.has_error()) return r.error();

  // Before the link comes up: no DAD (our addresses are unique by construction)
  // and no random RS delay, so SLAAC completes within one RS/RA exchange.
  if (cfg.ipv6) {
    const std::string base = "/proc/sys/net/ipv6/conf/" + cfg.ifname + "/";
    write_file(base + "accept_dad", "0");
    write_file(base + "dad_transmits", "0");
    write_file(base + "router_solicitation_delay", "0");
    write_file(base + "accept_ra", "1");
  } else {
    write_file("/proc/sys/net/ipv6/conf/" + cfg.ifname + "/disable_ipv6", "1");
  }
  auto idx = change_link(nl.sk, cfg.ifname, false, &cfg.mac, cfg.mtu);
  if (idx.has_error()) return idx.error();
  if (auto r = change_link(nl.sk, cfg.ifname, true, nullptr, 0); r.has_error()) return r.error();

  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &cfg.address, text, sizeof text);
  NlAddr local;
  if (int err = nl_addr_parse(fmt::format("{}/{}", text, cfg.prefix_len).c_str(), AF_INET, &local.a); err < 0)
    return fmt::format("bad address: {}", nl_geterror(err));
  rtnl_addr* addr = rtnl_addr_alloc();
  rtnl_addr_set_ifindex(addr, *idx);
  rtnl_addr_set_local(addr, local.a);
  if (cfg.internal) rtnl_addr_set_scope(addr, RT_SCOPE_LINK);
  const int aerr = rtnl_addr_add(nl.sk, addr, 0);
  rtnl_addr_put(addr);
  if (aerr < 0) return fmt::format("netlink: cannot add address {}: {}", text, nl_geterror(aerr));

  if (cfg.internal) return tap;
  NlAddr dst;
  NlAddr gw;
  inet_ntop(AF_INET, &cfg.gateway, text, sizeof text);
  nl_addr_parse("0.0.0.0/0", AF_INET, &dst.a);
  nl_addr_parse(text, AF_INET, &gw.a);
  rtnl_route* route = rtnl_route_alloc();
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_dst(route, dst.a);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, *idx);
  rtnl_route_nh_set_gateway(nh, gw.a);
  rtnl_route_add_nexthop(route, nh);  // the route owns nh from here
  const int rerr = rtnl_route_add(nl.sk, route, NLM_F_CREATE);
  rtnl_route_put(route);
  if (rerr < 0) return fmt::format("netlink: cannot add default route via {}: {}", text, nl_geterror(rerr));
  return tap;
}

boost::system::result<SpawnedCommand, std::string> spawn_in_new_namespace(const TapConfig& cfg,
                                                                          const std::vector<std::string>& argv) {
  if (argv.empty()) return std::string("no command given");
  SpawnedCommand out;

  // The command's private /etc/resolv.conf.
  const char* rt = std::getenv("XDG_RUNTIME_DIR");
  std::string tmpl = std::string(rt && *rt ? rt : "/tmp") + "/causeway-resolv.XXXXXX";
  UniqueFd rfd(::mkostemp(tmpl.data(), O_CLOEXEC));  // kept open: COMMAND must not inherit it
  if (!rfd) return errno_text("cannot create a temporary resolv.conf in " + tmpl);
  out.resolv_conf_path = tmpl;
  const std::string resolv = render_resolv_conf(cfg.nameservers, cfg.search);
  (void)!::write(rfd.get(), resolv.data(), resolv.size());
  ::fchmod(rfd.get(), 0644);
  out.resolv_conf = std::move(rfd);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return errno_text("socketpair");
  UniqueFd parent_end(sv[0]);
  UniqueFd child_end(sv[1]);
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return errno_text("fork");
  if (pid == 0) {
    // Child. Only async-signal-safe-ish work until exec: we are single-threaded.
    parent_end.reset();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);
    int sock = child_end.get();
    std::string err;
    int flags = CLONE_NEWNET | CLONE_NEWNS;
    if (uid != 0) flags |= CLONE_NEWUSER;
    if (::unshare(flags) < 0) {
      send_error(sock, errno_text(uid != 0 ? "cannot create user+network namespaces (unprivileged user namespaces "
                                             "disabled? see sysctl kernel.unprivileged_userns_clone)"
                                           : "cannot create a network namespace"));
      ::_exit(125);
    }
    if (uid != 0 && !map_own_ids(uid, gid, err)) {
      send_error(sock, err);
      ::_exit(125);
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::mount(out.resolv_conf_path.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) < 0) {
      // Not fatal: the command still has a network, with the host's resolv.conf.
      std::fprintf(stderr, "causeway: warning: cannot give the namespace its own /etc/resolv.conf: %s\n",
                   std::strerror(errno));
    }
    auto tap = create_configured_tap(cfg);
    if (tap.has_error()) {
      send_error(sock, tap.error());
      ::_exit(125);
    }
    if (!send_fd(sock, tap->get())) ::_exit(125);
    tap->reset();
    char go = 0;
    if (::read(sock, &go, 1) != 1) ::_exit(125);  // causeway went away before the engine started
    if (cfg.ipv6) {
      const auto deadline = std::chrono::steady_clock::now() + kSlaacWait;
      while (!has_global_ipv6(cfg.ifname) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (!has_global_ipv6(cfg.ifname))
        std::fprintf(stderr, "causeway: warning: no IPv6 address from router advertisement yet\n");
    }
    if (cfg.trap_listeners) {
      auto trap = install_listener_trap();
      if (trap.has_error()) {
        send_error(sock, "cannot install the listener trap: " + trap.error().message());
      } else {
        send_fd(sock, trap->get());
        trap->reset();
      }
    }
    child_end.reset();
    sigset_t none;  // causeway holds some signals while it starts; COMMAND gets a clean mask
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (cfg.command_nofile_soft != 0) {
      rlimit rl{};
      if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && cfg.command_nofile_soft < rl.rlim_cur) {
        rl.rlim_cur = static_cast<rlim_t>(cfg.command_nofile_soft);
        ::setrlimit(RLIMIT_NOFILE, &rl);
      }
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "causeway: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(errno == ENOENT ? 127 : 126);
  }

  child_end.reset();
  out.pid = pid;
  auto tap = receive_tap(parent_end.get());
  if (tap.has_error()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::unlink(out.resolv_conf_path.c_str());
    return tap.error();
  }
  out.tap = std::move(*tap);
  out.control = std::move(parent_end);
  return out;
}

void release_child(SpawnedCommand& cmd) {
  char go = 1;
  (void)!::write(cmd.control.get(), &go, 1);
}

boost::system::result<UniqueFd, std::string> receive_listener_trap(int control) { return receive_tap(control); }

Result attach_to_namespace(const TapConfig& cfg, const std::string& target) {
  const bool is_pid = !target.empty() && target.find_first_not_of("0123456789") == std::string::npos;
  const std::string net_path = is_pid ? "/proc/" + target + "/ns/net" : target;
  UniqueFd netfd(::open(net_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netfd) return errno_text("cannot open network namespace " + net_path);
  UniqueFd userfd;
  if (is_pid && ::geteuid() != 0) {
    struct stat theirs {
    }, ours{};
    userfd.reset(::open(("/proc/" + target + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (userfd && ::fstat(userfd.get(), &theirs) == 0 && ::stat("/proc/self/ns/user", &ours) == 0 &&
        theirs.st_ino == ours.st_ino)
      userfd.reset();  // same user namespace: nothing to enter
  }

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return errno_text("socketpair");
  UniqueFd parent_end(sv[0]);
  UniqueFd child_end(sv[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return errno_text("fork");
  if (pid == 0) {
    parent_end.reset();
    if (userfd && ::setns(userfd.get(), CLONE_NEWUSER) < 0) {
      send_error(child_end.get(), errno_text("cannot enter the user namespace of " + target));
      ::_exit(125);
    }
    if (::setns(netfd.get(), CLONE_NEWNET) < 0) {
      send_error(child_end.get(), errno_text("cannot enter network namespace " + net_path));
      ::_exit(125);
    }
    auto tap = create_configured_tap(cfg);
    if (tap.has_error()) {
      send_error(child_end.get(), tap.error());
      ::_exit(125);
    }
    ::_exit(send_fd(child_end.get(), tap->get()) ? 0 : 125);
  }
  child_end.reset();
  auto tap = receive_tap(parent_end.get());
  ::waitpid(pid, nullptr, 0);
  return tap;
}

bool ensure_resolv_conf_bound(int root_fd, int mnt_fd, const std::string& file) {
  struct stat ours {
  }, seen{};
  if (::stat(file.c_str(), &ours) < 0) return false;
  if (::fstatat(root_fd, "etc/resolv.conf", &seen, 0) == 0 && seen.st_ino == ours.st_ino && seen.st_dev == ours.st_dev)
    return true;
  const pid_t c = ::fork();  // setns(CLONE_NEWNS) needs a single-threaded process, and we stay where we are
  if (c < 0) return false;
  if (c == 0) {
    if (::setns(mnt_fd, CLONE_NEWNS) < 0) ::_exit(1);
    ::_exit(::mount(file.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) == 0 ? 0 : 1);
  }
  int st = 0;
  ::waitpid(c, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int shell_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 1;
}

}  // namespace causeway::netstack
