#include "vmm/agent/guest/mirror.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "vmm/agent/guest/rtnl.hpp"

namespace causeway::agent::guest {
namespace {

namespace mirror = netstack::mirror;

// Per-link IPv6 settings written before the link comes up (see mirror.hpp).
constexpr std::pair<const char*, const char*> kLinkSysctls[] = {
    {"accept_ra", "0"}, {"accept_dad", "0"}, {"use_tempaddr", "0"}, {"addr_gen_mode", "1"}};

constexpr int kAlready = -1;

std::set<std::string> guest_link_names() {
  std::set<std::string> out;
  if (DIR* d = opendir("/sys/class/net")) {
    while (const dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.insert(e->d_name);
    closedir(d);
  }
  return out;
}

uint32_t read_mtu(const std::string& link) {
  const std::string path = "/sys/class/net/" + link + "/mtu";
  unsigned mtu = 0;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    if (std::fscanf(f, "%u", &mtu) != 1) mtu = 0;
    std::fclose(f);
  }
  return mtu;
}

// ENOENT: the file does not exist (IPv6 disabled); else 0 or errno.
int write_sysctl(const std::string& path, const char* value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno;
  const size_t n = std::strlen(value);
  return ::write(fd.get(), value, n) == static_cast<ssize_t>(n) ? 0 : errno;
}

std::string cut(std::string s) {
  if (s.size() > kMaxMirrorErrorText) s.resize(kMaxMirrorErrorText);
  return s;
}

}  // namespace

std::unique_ptr<MacvlanGuestApplier> MacvlanGuestApplier::open(std::string parent, std::string& error) {
  UniqueFd nl = open_rtnl();
  if (!nl) {
    error = std::string("cannot open an rtnetlink socket: ") + std::strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<MacvlanGuestApplier>(new MacvlanGuestApplier(std::move(parent), std::move(nl)));
}

std::optional<std::string> MacvlanGuestApplier::read_managed(mirror::NetState& out) {
  const auto present = guest_link_names();
  // A mirrored link that vanished (deleted inside the guest) takes its addresses and routes along.
  std::set<std::string> gone;
  for (const auto& l : applied_.links)
    if (!present.count(l.name)) gone.insert(l.name);
  if (!gone.empty()) {
    std::erase_if(applied_.links, [&](const mirror::HostLink& l) { return gone.count(l.name) > 0; });
    std::erase_if(applied_.addresses, [&](const mirror::HostAddress& a) { return gone.count(a.link) > 0; });
    std::erase_if(applied_.routes, [&](const mirror::HostRoute& r) {
      return std::any_of(r.nexthops.begin(), r.nexthops.end(),
                         [&](const mirror::NextHop& nh) { return gone.count(nh.link) > 0; });
    });
  }
  unmanaged_.clear();
  for (const auto& n : present)
    if (!applied_.find_link(n)) unmanaged_.insert(n);
  out = applied_;
  return std::nullopt;
}

mirror::ApplyReport MacvlanGuestApplier::apply(const std::vector<mirror::Op>& ops) {
  mirror::ApplyReport report;
  for (const auto& op : ops) {
    std::string what;
    const int r = run(op, what);
    if (r > 0) {
      report.errors.push_back(mirror::OpError{op.describe(), what.empty() ? std::strerror(r) : what});
      continue;
    }
    r == 0 ? ++report.applied : ++report.already;
    // The guest now has what the operation asked for: record it.
    switch (op.kind) {
      case mirror::OpKind::kAddLink:
      case mirror::OpKind::kSetLink: {
        std::erase_if(applied_.links, [&](const mirror::HostLink& l) { return l.name == op.link.name; });
        mirror::HostLink l = op.link;
        l.kind = "macvlan";
        l.ifindex = ifindex_of(l.name);
        applied_.links.push_back(std::move(l));
        break;
      }
      case mirror::OpKind::kRemoveLink: {
        const std::string& name = op.link.name;
        std::erase_if(applied_.links, [&](const mirror::HostLink& l) { return l.name == name; });
        std::erase_if(applied_.addresses, [&](const mirror::HostAddress& a) { return a.link == name; });
        std::erase_if(applied_.routes, [&](const mirror::HostRoute& rt) {
          return std::any_of(rt.nexthops.begin(), rt.nexthops.end(),
                             [&](const mirror::NextHop& nh) { return nh.link == name; });
        });
        break;
      }
      case mirror::OpKind::kAddAddress:
      case mirror::OpKind::kRemoveAddress:
        std::erase_if(applied_.addresses, [&](const mirror::HostAddress& a) { return a.same_as(op.address); });
        if (op.kind == mirror::OpKind::kAddAddress) applied_.addresses.push_back(op.address);
        break;
      case mirror::OpKind::kAddRoute:
      case mirror::OpKind::kRemoveRoute:
        std::erase_if(applied_.routes, [&](const mirror::HostRoute& rt) { return rt.same_as(op.route); });
        if (op.kind == mirror::OpKind::kAddRoute) applied_.routes.push_back(op.route);
        break;
    }
  }
  return report;
}

int MacvlanGuestApplier::ifindex_of(const std::string& name) const {
  return static_cast<int>(if_nametoindex(name.c_str()));
}

int MacvlanGuestApplier::run(const mirror::Op& op, std::string& what) {
  switch (op.kind) {
    case mirror::OpKind::kAddLink: return add_link(op.link, what);
    case mirror::OpKind::kSetLink: return set_link(op.link, what);
    case mirror::OpKind::kRemoveLink: {
      const int ifindex = ifindex_of(op.link.name);
      if (!ifindex) return kAlready;
      NlBuilder b(RTM_DELLINK, 0, seq_++);
      ifinfomsg ifi{};
      ifi.ifi_index = ifindex;
      b.body(ifi);
      const int e = transact(nl_.get(), b.finish());
      return e == ENODEV ? kAlready : e;
    }
    case mirror::OpKind::kAddAddress: return change_address(op.address, true);
    case mirror::OpKind::kRemoveAddress: return change_address(op.address, false);
    case mirror::OpKind::kAddRoute: return change_route(op.route, true);
    case mirror::OpKind::kRemoveRoute: return change_route(op.route, false);
  }
  return EINVAL;
}

int MacvlanGuestApplier::add_link(const mirror::HostLink& l, std::string& what) {
  if (applied_.find_link(l.name)) return set_link(l, what);
  const int parent = ifindex_of(parent_);
  if (!parent) {
    what = "no parent link " + parent_;
    return ENODEV;
  }
  // A macvlan's MTU is bounded by its parent's: raise the parent's first.
  if (l.mtu > read_mtu(parent_)) {
    NlBuilder b(RTM_NEWLINK, 0, seq_++);
    ifinfomsg ifi{};
    ifi.ifi_index = parent;
    b.body(ifi);
    b.attr_u32(IFLA_MTU, l.mtu);
    if (int e = transact(nl_.get(), b.finish())) {
      what = "cannot raise " + parent_ + "'s mtu to " + std::to_string(l.mtu) + ": " + std::strerror(e);
      return e;
    }
  }
  NlBuilder b(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq_++);
  ifinfomsg ifi{};
  b.body(ifi);
  b.attr(IFLA_IFNAME, l.name.c_str(), l.name.size() + 1);
  b.attr_u32(IFLA_LINK, static_cast<uint32_t>(parent));
  if (l.mac) b.attr(IFLA_ADDRESS, l.mac->data(), l.mac->size());
  b.attr_u32(IFLA_MTU, l.mtu);
  const size_t info = b.begin(IFLA_LINKINFO);
  b.attr(IFLA_INFO_KIND, "macvlan", 7);
  const size_t data = b.begin(IFLA_INFO_DATA);
  b.attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_PRIVATE);
  b.end(data);
  b.end(info);
  if (int e = transact(nl_.get(), b.finish())) {
    what = "cannot create macvlan " + l.name + " on " + parent_ + ": " + std::strerror(e) +
           (e == EOPNOTSUPP ? " (is macvlan.ko in the guest image?)" : "");
    return e;
  }
  for (const auto& [key, value] : kLinkSysctls) {
    const std::string path = "/proc/sys/net/ipv6/conf/" + l.name + "/" + key;
    const int e = write_sysctl(path, value);
    if (e == ENOENT) break;  // IPv6 disabled in the guest: nothing to autoconfigure
    if (e) {
      what = "cannot write " + path + ": " + std::strerror(e);
      return e;
    }
  }
  return set_link(l, what);
}

int MacvlanGuestApplier::set_link(const mirror::HostLink& l, std::string& what) {
  const int ifindex = ifindex_of(l.name);
  if (!ifindex) {
    what = "link " + l.name + " not found";
    return ENODEV;
  }
  NlBuilder b(RTM_NEWLINK, 0, seq_++);
  ifinfomsg ifi{};
  ifi.ifi_index = ifindex;
  if (l.up()) {
    ifi.ifi_flags = IFF_UP;
    ifi.ifi_change = IFF_UP;
  }
  b.body(ifi);
  if (l.mac) b.attr(IFLA_ADDRESS, l.mac->data(), l.mac->size());
  b.attr_u32(IFLA_MTU, l.mtu);
  if (int e = transact(nl_.get(), b.finish())) {
    what = "cannot set mtu " + std::to_string(l.mtu) + "/mac/up on " + l.name + ": " + std::strerror(e);
    return e;
  }
  return 0;
}

int MacvlanGuestApplier::change_address(const mirror::HostAddress& a, bool add) {
  const int ifindex = ifindex_of(a.link);
  if (!ifindex) return add ? ENODEV : kAlready;
  NlBuilder b(add ? RTM_NEWADDR : RTM_DELADDR, add ? NLM_F_CREATE | NLM_F_EXCL : 0, seq_++);
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<uint8_t>(a.local.family);
  ifa.ifa_prefixlen = a.prefix_len;
  ifa.ifa_index = static_cast<uint32_t>(ifindex);
  if (add) {
    ifa.ifa_flags = static_cast<uint8_t>(a.flags | IFA_F_NODAD);
    if (a.local.family == AF_INET) ifa.ifa_scope = a.scope;
  }
  b.body(ifa);
  b.attr(IFA_LOCAL, a.local.bytes.data(), a.local.size());
  const mirror::IpAddress& peer = a.peer ? *a.peer : a.local;
  b.attr(IFA_ADDRESS, peer.bytes.data(), peer.size());
  if (add) {
    if (a.broadcast && a.local.family == AF_INET) b.attr(IFA_BROADCAST, a.broadcast->bytes.data(), 4);
    b.attr_u32(IFA_FLAGS, a.flags | IFA_F_NODAD);
  }
  const int e = transact(nl_.get(), b.finish());
  if (add && e == EEXIST) return kAlready;
  if (!add && (e == EADDRNOTAVAIL || e == ENOENT || e == ENODEV)) return kAlready;
  return e;
}

int MacvlanGuestApplier::change_route(const mirror::HostRoute& r, bool add) {
  NlBuilder b(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? NLM_F_CREATE | NLM_F_EXCL : 0, seq_++);
  rtmsg rt{};
  rt.rtm_family = static_cast<uint8_t>(r.family);
  rt.rtm_dst_len = r.dst_len;
  rt.rtm_tos = r.tos;
  rt.rtm_table = r.table < 256 ? static_cast<uint8_t>(r.table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  rt.rtm_protocol = r.protocol;
  rt.rtm_scope = r.scope;
  rt.rtm_type = r.type;
  if (r.nexthops.size() == 1 && (r.nexthops.front().flags & RTNH_F_ONLINK)) rt.rtm_flags = RTNH_F_ONLINK;
  b.body(rt);
  b.attr_u32(RTA_TABLE, r.table);
  if (r.dst_len > 0) b.attr(RTA_DST, r.dst.bytes.data(), r.dst.size());
  b.attr_u32(RTA_PRIORITY, r.priority);
  if (r.pref_src) b.attr(RTA_PREFSRC, r.pref_src->bytes.data(), r.pref_src->size());
  if (add && r.mtu) {
    const size_t m = b.begin(RTA_METRICS);
    b.attr_u32(RTAX_MTU, r.mtu);
    b.end(m);
  }
  if (r.nexthops.size() == 1) {
    const auto& nh = r.nexthops.front();
    const int ifindex = ifindex_of(nh.link);
    if (!ifindex) return add ? ENODEV : kAlready;
    b.attr_u32(RTA_OIF, static_cast<uint32_t>(ifindex));
    if (nh.gateway) b.attr(RTA_GATEWAY, nh.gateway->bytes.data(), nh.gateway->size());
  } else if (!r.nexthops.empty()) {
    const size_t mp = b.begin(RTA_MULTIPATH);
    for (const auto& nh : r.nexthops) {
      const int ifindex = ifindex_of(nh.link);
      if (!ifindex) return add ? ENODEV : kAlready;
      const size_t at = b.size();
      rtnexthop rn{};
      rn.rtnh_flags = static_cast<unsigned char>(nh.flags & RTNH_F_ONLINK);
      rn.rtnh_ifindex = ifindex;
      b.raw(&rn, sizeof rn);
      if (nh.gateway) b.attr(RTA_GATEWAY, nh.gateway->bytes.data(), nh.gateway->size());
      rn.rtnh_len = static_cast<unsigned short>(b.size() - at);
      b.patch(at, &rn, sizeof rn);
    }
    b.end(mp);
  }
  const int e = transact(nl_.get(), b.finish());
  if (add && e == EEXIST) return kAlready;
  if (!add && (e == ESRCH || e == ENOENT || e == ENODEV)) return kAlready;
  return e;
}

MirrorReport apply_mirror(mirror::StateApplier& guest, const MirrorApply& m) {
  const mirror::ConvergeResult r = mirror::converge(guest, [&m](const std::set<std::string>&) { return m.desired; });
  MirrorReport rep;
  rep.generation = m.generation;
  rep.converged = r.converged;
  rep.read_failed = r.read_failed;
  rep.changes = static_cast<uint32_t>(r.changes);
  rep.passes = static_cast<uint16_t>(r.passes);
  for (const auto& e : r.errors) {
    if (rep.errors.size() >= kMaxMirrorErrors) break;
    rep.errors.push_back(MirrorOpError{cut(e.op), cut(e.error)});
  }
  rep.errors_total = static_cast<uint32_t>(r.errors_total);
  rep.actual = r.actual;
  // Only what hangs off a reported link: an address or route left on a link that
  // failed would make the whole report invalid (protocol.hpp, check_mirror_state).
  std::set<std::string> links;
  for (const auto& l : rep.actual.links) links.insert(l.name);
  std::erase_if(rep.actual.addresses, [&](const mirror::HostAddress& a) { return !links.count(a.link); });
  std::erase_if(rep.actual.routes, [&](const mirror::HostRoute& rt) {
    return std::any_of(rt.nexthops.begin(), rt.nexthops.end(),
                       [&](const mirror::NextHop& nh) { return !links.count(nh.link); });
  });
  for (const auto& u : r.unmanaged) {
    if (rep.unmanaged.size() >= kMaxUnmanagedLinks) break;
    if (u.size() <= kMaxLinkName) rep.unmanaged.push_back(u);
  }
  return rep;
}

}  // namespace causeway::agent::guest
