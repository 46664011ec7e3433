// The guest agent's mirrored-mode applier (MacvlanGuestApplier + apply_mirror)
// against a real kernel, without a VM: each test forks a child that enters new
// network and mount namespaces (a fresh sysfs, so /sys/class/net is that
// namespace's, as in the guest), makes a veth "eth0" as the parent, converges
// to a desired state and checks the kernel's view with `ip`. Covers what the
// VM e2e test cannot easily reach: multipath, non-main tables, on-link
// gateways, peer addresses, route MTU metrics, removal. Needs root; skips
// otherwise.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>

#include "vmm/agent/guest/mirror.hpp"

namespace causeway::agent::guest {
namespace {

namespace mirror = netstack::mirror;

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

// In a child in its own namespaces: 0 when `body` returns "", else prints it and 1.
int in_namespace(const std::function<std::string()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::string why;
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
      why = "unshare failed";
    } else if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
               mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) {
      why = "cannot mount a fresh sysfs";
    } else if (system("ip link add eth0 type veth peer name peer0 && ip link set eth0 up && ip link set peer0 up "
                      "&& ip link set lo up") != 0) {
      why = "cannot make the parent veth";
    } else {
      why = body();
    }
    if (!why.empty()) std::fprintf(stderr, "%s\n", why.c_str());
    _exit(why.empty() ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

mirror::IpAddress ip(const char* t) { return *mirror::IpAddress::parse(t); }

mirror::HostLink link(const char* name, uint8_t ix, uint32_t mtu) {
  mirror::HostLink l;
  l.name = name;
  l.mac = mirror::MacAddress{0x02, 0x43, 0x57, 0x4d, 0x00, ix};
  l.mtu = mtu;
  l.flags = 1;  // IFF_UP
  return l;
}

mirror::NetState first_state() {
  mirror::NetState s;
  s.links = {link("lan0", 3, 1500), link("vpn0", 9, 1380)};
  mirror::HostAddress a;
  a.link = "lan0";
  a.local = ip("192.168.77.2");
  a.prefix_len = 24;
  a.broadcast = ip("192.168.77.255");
  mirror::HostAddress a6;
  a6.link = "lan0";
  a6.local = ip("fd77::2");
  a6.prefix_len = 64;
  mirror::HostAddress p2p;
  p2p.link = "vpn0";
  p2p.local = ip("10.8.0.2");
  p2p.peer = ip("10.8.0.1");
  p2p.prefix_len = 32;
  s.addresses = {a, a6, p2p};
  mirror::HostRoute kernel;  // what the kernel makes for the address too: "exists" is success
  kernel.family = AF_INET;
  kernel.dst = ip("192.168.77.0");
  kernel.dst_len = 24;
  kernel.scope = 253;
  kernel.protocol = 2;
  kernel.pref_src = ip("192.168.77.2");
  kernel.nexthops = {{"lan0", std::nullopt, 0}};
  mirror::HostRoute def;
  def.family = AF_INET;
  def.dst = ip("0.0.0.0");
  def.priority = 100;
  def.nexthops = {{"lan0", ip("192.168.77.1"), 0}};
  mirror::HostRoute multi;
  multi.family = AF_INET;
  multi.table = 1000;
  multi.dst = ip("10.9.0.0");
  multi.dst_len = 16;
  multi.nexthops = {{"vpn0", std::nullopt, 0}, {"lan0", ip("192.168.77.9"), 0}};
  mirror::HostRoute onlink;
  onlink.family = AF_INET;
  onlink.dst = ip("203.0.113.0");
  onlink.dst_len = 24;
  onlink.nexthops = {{"vpn0", ip("198.51.100.1"), 4}};  // RTNH_F_ONLINK
  mirror::HostRoute v6;
  v6.family = AF_INET6;
  v6.dst = ip("::");
  v6.priority = 100;
  v6.mtu = 1400;
  v6.nexthops = {{"lan0", ip("fd77::1"), 0}};
  s.routes = {kernel, def, multi, onlink, v6};
  return s;
}

std::string expect_has(const std::string& what, const std::string& out, const std::string& needle) {
  return out.find(needle) != std::string::npos ? "" : what + ": no '" + needle + "' in: " + out;
}

TEST(GuestMirrorNetns, MacvlansAddressesAndRoutesAsPlannedThenFollowAChange) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
  if (system("command -v ip >/dev/null 2>&1") != 0) GTEST_SKIP() << "ip missing (apt-get install iproute2)";
  const int rc = in_namespace([]() -> std::string {
    std::string err;
    auto applier = MacvlanGuestApplier::open("eth0", err);
    if (!applier) return err;
    MirrorApply m{1, first_state()};
    MirrorReport rep = apply_mirror(*applier, m);
    if (!rep.converged || rep.errors_total) {
      std::string e = "first: not converged:";
      for (const auto& x : rep.errors) e += " [" + x.op + ": " + x.error + "]";
      return e;
    }
    for (auto [what, out, needle] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"lan0", run("ip -d -o link show lan0"), "macvlan mode private"},
             {"lan0", run("ip -o link show lan0"), "link/ether 02:43:57:4d:00:03"},
             {"lan0", run("ip -o link show lan0"), "mtu 1500"},
             {"vpn0", run("ip -o link show vpn0"), "mtu 1380"},
             {"accept_ra", run("cat /proc/sys/net/ipv6/conf/lan0/accept_ra"), "0"},
             {"addr_gen_mode", run("cat /proc/sys/net/ipv6/conf/lan0/addr_gen_mode"), "1"},
             {"lan0 v4", run("ip -o addr show dev lan0"), "inet 192.168.77.2/24 brd 192.168.77.255"},
             {"lan0 v6", run("ip -o addr show dev lan0"), "inet6 fd77::2/64"},
             {"vpn0 p2p", run("ip -o addr show dev vpn0"), "inet 10.8.0.2 peer 10.8.0.1/32"},
             {"default", run("ip route show default"), "default via 192.168.77.1 dev lan0"},
             {"default", run("ip route show default"), "metric 100"},
             {"table 1000", run("ip route show table 1000"), "nexthop dev vpn0"},
             {"table 1000", run("ip route show table 1000"), "nexthop via 192.168.77.9 dev lan0"},
             {"onlink", run("ip route show 203.0.113.0/24"), "via 198.51.100.1 dev vpn0"},
             {"onlink", run("ip route show 203.0.113.0/24"), "onlink"},
             {"v6 default", run("ip -6 route show default"), "via fd77::1 dev lan0 metric 100"},
             {"v6 default", run("ip -6 route show default"), "mtu 1400"},
         })
      if (auto e = expect_has(what, out, needle); !e.empty()) return e;
    if (rep.actual.links.size() != 2 || rep.actual.routes.size() != 5)
      return "the report's state: " + std::to_string(rep.actual.links.size()) + " links, " +
             std::to_string(rep.actual.routes.size()) + " routes";
    bool eth0_unmanaged = false;
    for (const auto& u : rep.unmanaged) eth0_unmanaged |= u == "eth0";
    if (!eth0_unmanaged) return "eth0 is not reported as unmanaged";

    // The host changes: vpn0 goes, lan0's MTU drops, an address comes.
    MirrorApply m2{2, first_state()};
    auto& s = m2.desired;
    s.links = {link("lan0", 3, 1400)};
    std::erase_if(s.addresses, [](const auto& a) { return a.link == "vpn0"; });
    mirror::HostAddress more = s.addresses.front();
    more.local = ip("192.168.77.50");
    s.addresses.push_back(more);
    std::erase_if(s.routes, [](const auto& r) {
      return std::any_of(r.nexthops.begin(), r.nexthops.end(), [](const auto& nh) { return nh.link == "vpn0"; });
    });
    rep = apply_mirror(*applier, m2);
    if (!rep.converged || rep.errors_total) {
      std::string e = "second: not converged:";
      for (const auto& x : rep.errors) e += " [" + x.op + ": " + x.error + "]";
      return e;
    }
    if (run("ip -o link show vpn0").find("does not exist") == std::string::npos) return "vpn0 is still there";
    if (auto e = expect_has("lan0 mtu", run("ip -o link show lan0"), "mtu 1400"); !e.empty()) return e;
    if (auto e = expect_has("new address", run("ip -o addr show dev lan0"), "inet 192.168.77.50/24"); !e.empty())
      return e;
    if (auto e = expect_has("default kept", run("ip route show default"), "via 192.168.77.1 dev lan0"); !e.empty())
      return e;
    // Deleted inside the guest behind the agent's back: the next converge makes it again.
    if (system("ip link del lan0") != 0) return "cannot delete lan0";
    rep = apply_mirror(*applier, m2);
    if (!rep.converged) return "third: not converged";
    return expect_has("lan0 again", run("ip -o addr show dev lan0"), "inet 192.168.77.2/24");
  });
  EXPECT_EQ(rc, 0);
}

TEST(GuestMirrorNetns, ALinkTheKernelRefusesIsReportedAndTheRestApplies) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
  if (system("command -v ip >/dev/null 2>&1") != 0) GTEST_SKIP() << "ip missing (apt-get install iproute2)";
  const int rc = in_namespace([]() -> std::string {
    std::string err;
    auto applier = MacvlanGuestApplier::open("eth0", err);
    if (!applier) return err;
    MirrorApply m{1, first_state()};
    m.desired.links[1].mtu = 70000;  // over what the veth parent can be raised to: refused
    const MirrorReport rep = apply_mirror(*applier, m);
    if (rep.converged || rep.errors.empty()) return "a refused link was not reported";
    if (rep.errors.front().op.find("vpn0") == std::string::npos) return "error names " + rep.errors.front().op;
    return expect_has("lan0 still made", run("ip -o addr show dev lan0"), "inet 192.168.77.2/24");
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace causeway::agent::guest
