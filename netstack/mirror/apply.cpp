#include "netstack/mirror/apply.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "netstack/netns_sockets.hpp"

namespace causeway::netstack::mirror {
namespace {

using VoidResult = boost::system::result<void, std::string>;
// true: the kernel changed something; false: it was already so ("exists" / "not there").
using ChangeResult = boost::system::result<bool, std::string>;

struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct RouteDeleter {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<rtnl_addr, AddrDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;

NlAddrPtr build(const IpAddress& ip, int prefix_len = -1) {
  NlAddrPtr a(nl_addr_build(ip.family, ip.bytes.data(), ip.size()));
  if (a) nl_addr_set_prefixlen(a.get(), prefix_len < 0 ? ip.max_prefix() : prefix_len);
  return a;
}

// Per-link IPv6 settings written before the link comes up (see apply.hpp).
constexpr std::pair<const char*, const char*> kLinkSysctls[] = {
    {"accept_ra", "0"}, {"accept_dad", "0"}, {"use_tempaddr", "0"}, {"addr_gen_mode", "1"}};

struct MsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
using MsgPtr = std::unique_ptr<nl_msg, MsgDeleter>;

// Sends a change request libnl built through the namespace helper (which
// holds the CAP_NET_ADMIN the kernel checks on the sender) and returns 0 or
// a libnl error, as rtnl_*_add/change/delete would. `build` is one of
// libnl's rtnl_*_build_*_request.
template <typename Build>
int send_change(NamespaceSocketFactory& ns, Build build) {
  nl_msg* raw = nullptr;
  const int built = build(&raw);
  MsgPtr msg(raw);
  if (built < 0) return built;
  nlmsghdr* h = nlmsg_hdr(msg.get());
  for (;;) {
    const auto ec = ns.route_request({reinterpret_cast<const uint8_t*>(h), h->nlmsg_len});
    if (!ec) return 0;
    // As rtnl_link_change: a kernel without RTM_NEWLINK changes takes RTM_SETLINK.
    if (ec.value() == EOPNOTSUPP && h->nlmsg_type == RTM_NEWLINK) {
      h->nlmsg_type = RTM_SETLINK;
      continue;
    }
    return -nl_syserr2nlerr(ec.value());
  }
}

}  // namespace

boost::system::result<std::unique_ptr<NetlinkGuestApplier>, std::string> NetlinkGuestApplier::open(
    NamespaceSocketFactory& ns, ApplyHooks hooks) {
  using R = boost::system::result<std::unique_ptr<NetlinkGuestApplier>, std::string>;
  auto sk = open_route_socket([&ns](int family, int type, int protocol) { return ns.create(family, type, protocol); });
  if (sk.has_error()) return R(boost::system::in_place_error, "guest namespace: " + sk.error());
  return std::unique_ptr<NetlinkGuestApplier>(new NetlinkGuestApplier(ns, std::move(*sk), std::move(hooks)));
}

NetlinkGuestApplier::~NetlinkGuestApplier() {
  for (auto& [name, tap] : taps_)
    if (hooks_.on_link_removed) hooks_.on_link_removed(name);
}

boost::system::result<NetState, std::string> NetlinkGuestApplier::read_actual() {
  auto st = read_netlink_state(sk_.get(), read_counters_);
  if (st.has_error()) return st.error();
  NetState out;
  ifindexes_.clear();
  unmanaged_.clear();
  for (auto& l : st->links) {
    ifindexes_[l.name] = l.ifindex;
    if (taps_.count(l.name)) {
      out.links.push_back(l);
    } else {
      unmanaged_.insert(l.name);
    }
  }
  for (auto& a : st->addresses)
    if (taps_.count(a.link)) out.addresses.push_back(a);
  for (auto& r : st->routes) {
    if (r.table == kTableLocal || r.type != RTN_UNICAST || r.nexthops.empty()) continue;
    const bool ours =
        std::all_of(r.nexthops.begin(), r.nexthops.end(), [&](const NextHop& nh) { return taps_.count(nh.link) > 0; });
    if (ours) out.routes.push_back(r);
  }
  return out;
}

std::optional<std::string> NetlinkGuestApplier::read_managed(NetState& out) {
  auto st = read_actual();
  if (st.has_error()) return st.error();
  out = std::move(*st);
  return std::nullopt;
}

void NetlinkGuestApplier::converge(DesiredFn desired, std::function<void(ConvergeResult)> done) {
  done(mirror::converge(*this, desired));
}

ApplyReport NetlinkGuestApplier::apply(const std::vector<Op>& ops) {
  ApplyReport report;
  for (const auto& op : ops) {
    auto r = run(op);
    if (r.has_error()) {
      report.errors.push_back(OpError{op.describe(), r.error()});
      spdlog::debug("mirror: {} failed: {}", op.describe(), r.error());
    } else if (*r) {
      ++report.applied;
    } else {
      ++report.already;
    }
  }
  return report;
}

ChangeResult NetlinkGuestApplier::run(const Op& op) {
  auto changed = [](VoidResult r) -> ChangeResult {
    if (r.has_error()) return r.error();
    return true;
  };
  switch (op.kind) {
    case OpKind::kAddLink: return changed(add_link(op.link));
    case OpKind::kSetLink: return changed(set_link(op.link));
    case OpKind::kRemoveLink: return changed(remove_link(op.link));
    case OpKind::kAddAddress: return change_address(op.address, true);
    case OpKind::kRemoveAddress: return change_address(op.address, false);
    case OpKind::kAddRoute: return change_route(op.route, true);
    case OpKind::kRemoveRoute: return change_route(op.route, false);
  }
  return std::string("unknown operation");
}

int NetlinkGuestApplier::ifindex_of(const std::string& name) {
  if (auto t = taps_.find(name); t != taps_.end()) return t->second.ifindex;
  if (auto i = ifindexes_.find(name); i != ifindexes_.end()) return i->second;
  return 0;
}

VoidResult NetlinkGuestApplier::add_link(const HostLink& l) {
  if (l.name.empty() || l.name.size() >= IFNAMSIZ) return "bad link name '" + l.name + "'";
  if (taps_.count(l.name)) return set_link(l);
  auto tun = ns_.create_tap(l.name, hooks_.vnet_hdr_taps);
  if (tun.has_error()) return fmt::format("cannot create tap {}: {}", l.name, tun.error().message());
  for (const auto& [key, value] : kLinkSysctls) {
    if (auto ec = ns_.write_ipv6_sysctl(l.name, key, value)) {
      if (ec.value() == ENOENT) break;  // IPv6 disabled in the guest: nothing to autoconfigure
      return fmt::format("cannot set net.ipv6.conf.{}.{} in the guest namespace: {}", l.name, key, ec.message());
    }
  }
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk_.get(), 0, l.name.c_str(), &raw); err < 0)
    return fmt::format("tap {} made but not found: {}", l.name, nl_geterror(err));
  LinkPtr link(raw);
  Tap tap{std::move(*tun), rtnl_link_get_ifindex(link.get())};
  const int ifindex = tap.ifindex;
  const int fd = tap.fd.get();
  taps_[l.name] = std::move(tap);
  ifindexes_[l.name] = ifindex;
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_txqlen(change.get(), kTapTxQueue);
  if (auto r = set_link(l); r.has_error()) return r;
  if (send_change(ns_, [&](nl_msg** m) { return rtnl_link_build_change_request(link.get(), change.get(), 0, m); }) < 0)
    spdlog::debug("mirror: cannot set {}'s queue length", l.name);
  if (hooks_.on_link_created) hooks_.on_link_created(MirroredLinkCreated{l.name, ifindex, fd, l.mtu, l.ifindex});
  return {};
}

VoidResult NetlinkGuestApplier::set_link(const HostLink& l) {
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk_.get(), 0, l.name.c_str(), &raw); err < 0)
    return fmt::format("link {} not found: {}", l.name, nl_geterror(err));
  LinkPtr link(raw);
  LinkPtr change(rtnl_link_alloc());
  NlAddrPtr mac;
  if (l.mac) {
    mac.reset(nl_addr_build(AF_LLC, l.mac->data(), l.mac->size()));
    rtnl_link_set_addr(change.get(), mac.get());
  }
  rtnl_link_set_mtu(change.get(), l.mtu);
  if (l.up()) rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err =
          send_change(ns_, [&](nl_msg** m) { return rtnl_link_build_change_request(link.get(), change.get(), 0, m); });
      err < 0)
    return fmt::format("cannot set mtu {}/mac/up on {}: {}", l.mtu, l.name, nl_geterror(err));
  if (hooks_.on_link_mtu) hooks_.on_link_mtu(l.name, l.mtu);
  return {};
}

VoidResult NetlinkGuestApplier::remove_link(const HostLink& l) {
  auto it = taps_.find(l.name);
  if (it == taps_.end()) return "link " + l.name + " is not one mirrored mode made";
  if (hooks_.on_link_removed) hooks_.on_link_removed(l.name);
  taps_.erase(it);  // closing the last descriptor of a non-persistent tap unregisters it
  ifindexes_.erase(l.name);
  return {};
}

ChangeResult NetlinkGuestApplier::change_address(const HostAddress& a, bool add) {
  const int ifindex = ifindex_of(a.link);
  if (!ifindex) return "no guest link " + a.link;
  AddrPtr x(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(x.get(), ifindex);
  rtnl_addr_set_family(x.get(), a.local.family);
  auto local = build(a.local);
  rtnl_addr_set_local(x.get(), local.get());
  if (a.peer) {
    auto peer = build(*a.peer);
    rtnl_addr_set_peer(x.get(), peer.get());
  }
  rtnl_addr_set_prefixlen(x.get(), a.prefix_len);
  if (add) {
    if (a.broadcast && a.local.family == AF_INET) {
      auto brd = build(*a.broadcast);
      rtnl_addr_set_broadcast(x.get(), brd.get());
    }
    rtnl_addr_set_flags(x.get(), a.flags);
    if (a.local.family == AF_INET) rtnl_addr_set_scope(x.get(), a.scope);
  }
  const int err = send_change(ns_, [&](nl_msg** m) {
    return add ? rtnl_addr_build_add_request(x.get(), 0, m) : rtnl_addr_build_delete_request(x.get(), 0, m);
  });
  if (err == 0) return true;
  if ((add && err == -NLE_EXIST) || (!add && (err == -NLE_NOADDR || err == -NLE_OBJ_NOTFOUND))) return false;
  return std::string(nl_geterror(err));
}

ChangeResult NetlinkGuestApplier::change_route(const HostRoute& r, bool add) {
  RoutePtr x(rtnl_route_alloc());
  rtnl_route_set_family(x.get(), static_cast<uint8_t>(r.family));
  rtnl_route_set_table(x.get(), r.table);
  rtnl_route_set_type(x.get(), r.type);
  auto dst = build(r.dst, r.dst_len);
  if (int err = rtnl_route_set_dst(x.get(), dst.get()); err < 0) return std::string(nl_geterror(err));
  rtnl_route_set_tos(x.get(), r.tos);
  rtnl_route_set_priority(x.get(), r.priority);
  rtnl_route_set_scope(x.get(), r.scope);
  rtnl_route_set_protocol(x.get(), r.protocol);
  if (r.pref_src) {
    auto src = build(*r.pref_src);
    rtnl_route_set_pref_src(x.get(), src.get());
  }
  if (add && r.mtu) rtnl_route_set_metric(x.get(), RTAX_MTU, r.mtu);
  for (const auto& nh : r.nexthops) {
    const int ifindex = ifindex_of(nh.link);
    if (!ifindex) return "no guest link " + nh.link;
    rtnl_nexthop* n = rtnl_route_nh_alloc();
    rtnl_route_nh_set_ifindex(n, ifindex);
    if (nh.gateway) {
      auto gw = build(*nh.gateway);
      rtnl_route_nh_set_gateway(n, gw.get());
    }
    if (nh.flags & RTNH_F_ONLINK) rtnl_route_nh_set_flags(n, RTNH_F_ONLINK);
    rtnl_route_add_nexthop(x.get(), n);  // the route owns n from here
  }
  const int err = send_change(ns_, [&](nl_msg** m) {
    return add ? rtnl_route_build_add_request(x.get(), NLM_F_EXCL, m) : rtnl_route_build_del_request(x.get(), 0, m);
  });
  if (err == 0) return true;
  if ((add && err == -NLE_EXIST) || (!add && err == -NLE_OBJ_NOTFOUND)) return false;
  return std::string(nl_geterror(err));
}

}  // namespace causeway::netstack::mirror
