// Raw rtnetlink requests and the configuration sequence; see netconfig.hpp.
#include "vmm/agent/guest/netconfig.hpp"

#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "base/unique_fd.hpp"
#include "vmm/agent/guest/rtnl.hpp"

namespace causeway::agent::guest {
namespace {

size_t addr_len(const IpAddr& a) { return a.family == 4 ? 4 : 16; }
uint8_t af(const IpAddr& a) { return a.family == 4 ? AF_INET : AF_INET6; }

bool write_file(const std::string& path, std::string_view text) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return false;
  return write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

std::string prefix_text(const IpAddr& a, uint8_t len) { return a.to_string() + "/" + std::to_string(len); }

}  // namespace

// ---------------------------------------------------------------- builders
std::vector<uint8_t> build_link_request(uint32_t seq, int ifindex, bool up, uint32_t mtu) {
  NlBuilder b(RTM_NEWLINK, 0, seq);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = up ? IFF_UP : 0;
  ifi.ifi_change = IFF_UP;
  b.body(ifi);
  if (mtu > 0) b.attr_u32(IFLA_MTU, mtu);
  return b.finish();
}

std::vector<uint8_t> build_address_request(uint32_t seq, int ifindex, const NetAddress& a, uint8_t scope) {
  NlBuilder b(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq);
  ifaddrmsg ifa{};
  ifa.ifa_family = af(a.addr);
  ifa.ifa_prefixlen = a.prefix_len;
  // Duplicate address detection would hold an IPv6 address "tentative" for a second or
  // more; the host assigned it and nobody else is on this link.
  ifa.ifa_flags = a.addr.family == 6 ? IFA_F_NODAD : 0;
  ifa.ifa_scope = scope;
  ifa.ifa_index = static_cast<uint32_t>(ifindex);
  b.body(ifa);
  b.attr(IFA_LOCAL, a.addr.bytes.data(), addr_len(a.addr));
  b.attr(IFA_ADDRESS, a.addr.bytes.data(), addr_len(a.addr));
  return b.finish();
}

std::vector<uint8_t> build_route_request(uint32_t seq, int ifindex, const NetRoute& r) {
  NlBuilder b(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq);
  rtmsg rt{};
  rt.rtm_family = af(r.dst);
  rt.rtm_dst_len = r.prefix_len;
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_BOOT;
  rt.rtm_scope = r.gateway.none() ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  rt.rtm_type = RTN_UNICAST;
  b.body(rt);
  if (r.prefix_len > 0) b.attr(RTA_DST, r.dst.bytes.data(), addr_len(r.dst));
  if (!r.gateway.none()) b.attr(RTA_GATEWAY, r.gateway.bytes.data(), addr_len(r.gateway));
  b.attr_u32(RTA_OIF, static_cast<uint32_t>(ifindex));
  if (r.metric > 0) b.attr_u32(RTA_PRIORITY, r.metric);
  return b.finish();
}

std::string render_resolv_conf(const NetConfig& cfg) {
  if (cfg.dns_servers.empty() && cfg.search_domains.empty()) return {};
  std::string out = "# written by causeway-agent from the host's network configuration\n";
  if (!cfg.search_domains.empty()) {
    out += "search";
    for (const auto& d : cfg.search_domains) out += " " + d;  // validated: no spaces or newlines
    out += "\n";
  }
  size_t n = 0;
  for (const auto& s : cfg.dns_servers) {
    if (s.family == 6 && !cfg.ipv6) continue;  // unreachable with IPv6 off
    // resolv.conf(5): MAXNS (3) servers are used; more would be silently ignored.
    if (n++ == 3) break;
    out += "nameserver " + s.to_string() + "\n";
  }
  return out;
}

std::string describe(const NetConfig& cfg, std::string_view link) {
  std::string out(link);
  out += ":";
  if (cfg.dhcp) return out + " dhcp";
  const char* sep = " ";
  for (const auto& a : cfg.addresses) {
    out += sep + prefix_text(a.addr, a.prefix_len);
    sep = ", ";
  }
  for (const auto& r : cfg.routes) {
    out += sep;
    out += r.prefix_len == 0 ? std::string("default") : prefix_text(r.dst, r.prefix_len);
    out += r.gateway.none() ? std::string(" on-link") : " via " + r.gateway.to_string();
    sep = ", ";
  }
  if (!cfg.dns_servers.empty()) {
    out += sep + std::string("dns");
    for (const auto& d : cfg.dns_servers) out += " " + d.to_string();
  }
  out += cfg.mtu ? ", mtu " + std::to_string(cfg.mtu) : std::string();
  out += cfg.ipv6 ? ", ipv6 on" : ", ipv6 off";
  if (cfg.internal) out += ", internal";
  return out;
}

// ---------------------------------------------------------------- I/O shell
int set_link_up(std::string_view link) {
  const unsigned idx = if_nametoindex(std::string(link).c_str());
  if (idx == 0) return errno ? errno : ENODEV;
  UniqueFd nl = open_rtnl();
  if (!nl) return errno;
  return transact(nl.get(), build_link_request(1, static_cast<int>(idx), true, 0));
}

NetReport apply_net_config(const NetConfig& cfg, const NetTarget& target) {
  NetReport rep;
  auto fail = [&](std::string line) {
    rep.ok = false;
    rep.lines.push_back(std::move(line));
  };
  // 1. The link: virtio-net binds asynchronously after insmod.
  const std::string link = target.link;
  const auto deadline = std::chrono::steady_clock::now() + target.link_wait;
  unsigned idx = 0;
  while ((idx = if_nametoindex(link.c_str())) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (idx == 0) {
    fail("network: no link " + link + " after " + std::to_string(target.link_wait.count()) + " ms");
    return rep;
  }
  const int ifindex = static_cast<int>(idx);
  UniqueFd nl = open_rtnl();
  if (!nl) {
    fail(std::string("network: rtnetlink socket: ") + std::strerror(errno));
    return rep;
  }
  uint32_t seq = 1;

  // 2. IPv6 on/off (before the link goes up, so no link-local address appears).
  if (!cfg.ipv6) {
    const std::string path = "/proc/sys/net/ipv6/conf/" + link + "/disable_ipv6";
    if (access(path.c_str(), F_OK) == 0 && !write_file(path, "1\n"))
      fail("network: cannot disable IPv6 (" + path + "): " + std::strerror(errno));
  }

  // 3. MTU and up.
  if (int e = transact(nl.get(), build_link_request(seq++, ifindex, true, cfg.mtu)))
    fail("network: set " + link + " up" + (cfg.mtu ? " mtu " + std::to_string(cfg.mtu) : "") + ": " + std::strerror(e));

  // 4. Addresses.
  for (const auto& a : cfg.addresses) {
    if (a.addr.family == 6 && !cfg.ipv6) continue;
    if (int e = transact(nl.get(),
                         build_address_request(seq++, ifindex, a, cfg.internal ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE)))
      fail("network: address " + prefix_text(a.addr, a.prefix_len) + ": " + std::strerror(e));
  }
  // 5. Routes.
  for (const auto& r : cfg.routes) {
    if (r.dst.family == 6 && !cfg.ipv6) continue;
    if (int e = transact(nl.get(), build_route_request(seq++, ifindex, r)))
      fail("network: route " + prefix_text(r.dst, r.prefix_len) +
           (r.gateway.none() ? "" : " via " + r.gateway.to_string()) + ": " + std::strerror(e));
  }
  // 6. DNS.
  const std::string resolv = render_resolv_conf(cfg);
  if (!resolv.empty()) {
    const std::string tmp = target.resolv_conf + ".tmp";
    if (!write_file(tmp, resolv) || rename(tmp.c_str(), target.resolv_conf.c_str()) != 0)
      fail("network: cannot write " + target.resolv_conf + ": " + std::strerror(errno));
  }
  rep.lines.insert(rep.lines.begin(), "network: " + describe(cfg, link) + (rep.ok ? "" : " (with errors)"));
  return rep;
}

NetReport run_dhcp(const NetTarget& target, std::chrono::seconds timeout) {
  NetReport rep;
  const auto deadline = std::chrono::steady_clock::now() + target.link_wait;
  while (if_nametoindex(target.link.c_str()) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (access("/sbin/udhcpc", X_OK) != 0 && access("/bin/busybox", X_OK) != 0) {
    rep.ok = false;
    rep.lines.push_back("network: DHCP fallback impossible: no /sbin/udhcpc or /bin/busybox in the image");
    return rep;
  }
  // Same invocation as scripts/guest-image/init.sh: -q quit after the lease, -n fail without one,
  // -t 5 -T 1 five discovers a second apart, -O mtu ask for option 26.
  const char* argv[] = {"/bin/busybox", "udhcpc", "-i", target.link.c_str(),  "-f",   "-q", "-n", "-t", "5", "-T", "1",
                        "-O",           "mtu",    "-s", "/etc/udhcpc.script", nullptr};
  const pid_t pid = fork();
  if (pid < 0) {
    rep.ok = false;
    rep.lines.push_back(std::string("network: fork for udhcpc: ") + std::strerror(errno));
    return rep;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  const auto end = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() >= end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      rep.ok = false;
      rep.lines.push_back("network: DHCP on " + target.link + " timed out after " + std::to_string(timeout.count()) +
                          " s");
      return rep;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    rep.ok = false;
    rep.lines.push_back("network: DHCP on " + target.link + " got no lease (udhcpc status " +
                        std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")");
    return rep;
  }
  rep.lines.push_back("network: " + target.link + " configured by DHCP");
  return rep;
}

}  // namespace causeway::agent::guest
