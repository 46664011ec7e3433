#include "netstack/mirror/host_view.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/route/rtnl.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <spdlog/spdlog.h>

namespace causeway::netstack::mirror {
namespace {

struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using Cache = std::unique_ptr<nl_cache, CacheDeleter>;

std::optional<IpAddress> to_ip(nl_addr* a) {
  if (!a) return std::nullopt;
  const int family = nl_addr_get_family(a);
  if (family != AF_INET && family != AF_INET6) return std::nullopt;
  IpAddress ip;
  ip.family = family;
  const size_t len = std::min<size_t>(nl_addr_get_len(a), family == AF_INET ? 4 : 16);
  std::memcpy(ip.bytes.data(), nl_addr_get_binary_addr(a), len);
  return ip;
}

struct RouteDeleter {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct RouteDump {
  std::vector<std::unique_ptr<rtnl_route, RouteDeleter>> routes;
  uint64_t over_cap = 0;
};

int on_route_message(nl_msg* msg, void* arg) {
  auto* dump = static_cast<RouteDump*>(arg);
  rtnl_route* r = nullptr;
  if (rtnl_route_parse(nlmsg_hdr(msg), &r) < 0 || !r) return NL_SKIP;
  if (dump->routes.size() >= kMaxReadRoutes) {
    rtnl_route_put(r);
    ++dump->over_cap;
  } else {
    dump->routes.emplace_back(r);
  }
  return NL_OK;
}

int dump_routes(nl_sock* sk, RouteDump& dump) {
  if (int err = nl_rtgen_request(sk, RTM_GETROUTE, AF_UNSPEC, NLM_F_DUMP); err < 0) return err;
  nl_cb* base = nl_socket_get_cb(sk);
  nl_cb* cb = nl_cb_clone(base);
  nl_cb_put(base);
  if (!cb) return -NLE_NOMEM;
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_route_message, &dump);
  const int err = nl_recvmsgs(sk, cb);
  nl_cb_put(cb);
  return err < 0 ? err : 0;
}

}  // namespace

void NlSockDeleter::operator()(nl_sock* sk) const { nl_socket_free(sk); }

SocketMaker current_namespace_sockets() {
  return [](int family, int type, int protocol) -> boost::system::result<UniqueFd> {
    const int fd = ::socket(family, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return boost::system::error_code(errno, boost::system::system_category());
    return UniqueFd(fd);
  };
}

boost::system::result<NlSocket, std::string> open_route_socket(const SocketMaker& make) {
  auto fd = make(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (fd.has_error()) return "cannot open a netlink socket: " + fd.error().message();
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;                                                  // nl_pid 0: the kernel picks the port
  if (::bind(fd->get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0)  // SAFETY: sockaddr_nl is a sockaddr
    return fmt::format("cannot bind a netlink socket: {}", std::strerror(errno));
  NlSocket sk(nl_socket_alloc());
  if (!sk) return std::string("netlink: out of memory");
  if (int err = nl_socket_set_fd(sk.get(), NETLINK_ROUTE, fd->get()); err < 0)
    return fmt::format("netlink: {}", nl_geterror(err));
  (void)fd->release();  // libnl closes it with the socket
  return sk;
}

boost::system::result<NetState, std::string> read_netlink_state(nl_sock* sk, ReadCounters& counters) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sk, AF_UNSPEC, &raw); err < 0)
    return fmt::format("netlink link dump: {}", nl_geterror(err));
  Cache links(raw);
  raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sk, &raw); err < 0)
    return fmt::format("netlink address dump: {}", nl_geterror(err));
  Cache addrs(raw);
  raw = nullptr;
  // Routes are dumped without libnl's cache: the cache identifies a route by
  // family, tos, table, dst and priority — not by device — so IPv6 routes to
  // the same prefix on different links (fe80::/64 on every link) would
  // collapse into one.
  RouteDump dump;
  if (int err = dump_routes(sk, dump); err < 0) return fmt::format("netlink route dump: {}", nl_geterror(err));
  counters.routes_over_cap += dump.over_cap;

  NetState st;
  std::map<int, std::string> names;
  for (nl_object* o = nl_cache_get_first(links.get()); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);  // SAFETY: a link cache holds rtnl_link objects
    if (st.links.size() >= kMaxReadLinks) {
      ++counters.links_over_cap;
      continue;
    }
    HostLink h;
    h.ifindex = rtnl_link_get_ifindex(l);
    h.name = rtnl_link_get_name(l) ? rtnl_link_get_name(l) : "";
    if (nl_addr* a = rtnl_link_get_addr(l); a && nl_addr_get_len(a) == 6) {
      MacAddress m;
      std::memcpy(m.data(), nl_addr_get_binary_addr(a), 6);
      h.mac = m;
    }
    h.mtu = rtnl_link_get_mtu(l);
    h.flags = rtnl_link_get_flags(l);
    if (const char* kind = rtnl_link_get_type(l)) h.kind = kind;
    names[h.ifindex] = h.name;
    st.links.push_back(std::move(h));
  }
  for (nl_object* o = nl_cache_get_first(addrs.get()); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);  // SAFETY: an address cache holds rtnl_addr objects
    auto name = names.find(rtnl_addr_get_ifindex(a));
    auto local = to_ip(rtnl_addr_get_local(a));
    if (name == names.end()) {
      ++counters.unknown_ifindex;
      continue;
    }
    if (!local) continue;
    if (st.addresses.size() >= kMaxReadAddresses) {
      ++counters.addresses_over_cap;
      continue;
    }
    HostAddress h;
    h.link = name->second;
    h.local = *local;
    h.peer = to_ip(rtnl_addr_get_peer(a));
    if (h.peer == h.local) h.peer.reset();
    h.prefix_len = static_cast<uint8_t>(rtnl_addr_get_prefixlen(a));
    h.broadcast = to_ip(rtnl_addr_get_broadcast(a));
    h.flags = rtnl_addr_get_flags(a);
    h.scope = static_cast<uint8_t>(rtnl_addr_get_scope(a));
    h.preferred_lifetime = rtnl_addr_get_preferred_lifetime(a);
    st.addresses.push_back(std::move(h));
  }
  for (const auto& route : dump.routes) {
    rtnl_route* r = route.get();
    HostRoute h;
    h.family = rtnl_route_get_family(r);
    if (h.family != AF_INET && h.family != AF_INET6) continue;
    h.table = rtnl_route_get_table(r);
    h.type = rtnl_route_get_type(r);
    nl_addr* dst = rtnl_route_get_dst(r);
    if (auto d = to_ip(dst)) h.dst = *d;
    h.dst.family = h.family;
    h.dst_len = static_cast<uint8_t>(dst ? nl_addr_get_prefixlen(dst) : 0);
    h.tos = rtnl_route_get_tos(r);
    h.priority = rtnl_route_get_priority(r);
    h.scope = rtnl_route_get_scope(r);
    h.protocol = rtnl_route_get_protocol(r);
    h.pref_src = to_ip(rtnl_route_get_pref_src(r));
    uint32_t mtu = 0;
    if (rtnl_route_get_metric(r, RTAX_MTU, &mtu) == 0) h.mtu = mtu;
    h.flags = rtnl_route_get_flags(r);
    const int n = rtnl_route_get_nnexthops(r);
    bool unknown = false;
    for (int i = 0; i < n; ++i) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(r, i);
      if (!nh) continue;
      const int ix = rtnl_route_nh_get_ifindex(nh);
      auto name = names.find(ix);
      if (name == names.end()) {
        unknown = ix != 0;
        continue;
      }
      NextHop x;
      x.link = name->second;
      x.gateway = to_ip(rtnl_route_nh_get_gateway(nh));
      if (!x.gateway) x.gateway = to_ip(rtnl_route_nh_get_via(nh));  // RTA_VIA: the plan drops other families
      x.flags = rtnl_route_nh_get_flags(nh);
      h.nexthops.push_back(std::move(x));
    }
    if (unknown) ++counters.unknown_ifindex;
    std::sort(h.nexthops.begin(), h.nexthops.end());
    st.routes.push_back(std::move(h));
  }
  return st;
}

HostView::HostView(boost::asio::io_context& io, SocketMaker make_socket, std::chrono::milliseconds debounce,
                   int notify_rcvbuf)
    : make_socket_(std::move(make_socket)),
      debounce_(debounce),
      notify_rcvbuf_(notify_rcvbuf),
      notify_(io),
      timer_(io) {}

HostView::~HostView() {
  boost::system::error_code ec;
  notify_.close(ec);
  timer_.cancel();
}

boost::system::result<void, std::string> HostView::start(OnChange on_change) {
  on_change_ = std::move(on_change);
  auto req = open_route_socket(make_socket_);
  if (req.has_error()) return req.error();
  request_ = std::move(*req);

  // Subscribe before the first dump, so nothing that happens in between is missed.
  auto fd = make_socket_(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (fd.has_error()) return "cannot open the netlink notification socket: " + fd.error().message();
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd->get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0)  // SAFETY: sockaddr_nl is a sockaddr
    return fmt::format("cannot bind the netlink notification socket: {}", std::strerror(errno));
  for (int group : {RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE}) {
    if (::setsockopt(fd->get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
      return fmt::format("cannot subscribe to netlink group {}: {}", group, std::strerror(errno));
  }
  (void)::setsockopt(fd->get(), SOL_SOCKET, SO_RCVBUF, &notify_rcvbuf_, sizeof notify_rcvbuf_);
  boost::system::error_code ec;
  notify_.assign(fd->release(), ec);
  if (!ec) notify_.non_blocking(true, ec);
  if (ec) return "netlink notification socket: " + ec.message();
  wait_notifications();
  for (int i = 0; i < 3 && !have_state_; ++i) read_now();  // a dump interrupted by a change is retried
  if (!have_state_) return std::string("cannot read the host's links, addresses and routes over netlink");
  return {};
}

void HostView::request_read() { arm_read(); }

void HostView::wait_notifications() {
  notify_.async_wait(boost::asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    on_notifications();
    wait_notifications();
  });
}

void HostView::on_notifications() {
  // Drain: the content does not matter, the whole state is read again.
  alignas(nlmsghdr) char buf[16384];
  for (int i = 0; i < 1024; ++i) {  // bounded: the next wait picks up the rest
    const ssize_t n = ::recv(notify_.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      ++stats_.notifications;
      continue;
    }
    if (n < 0 && errno == ENOBUFS) {
      ++stats_.overruns;  // the kernel dropped some: the full re-read below covers them
      spdlog::debug("mirror: netlink overrun on the host view; full re-read");
      continue;
    }
    break;  // EAGAIN, or an error the next wait reports again
  }
  arm_read();
}

void HostView::arm_read() {
  if (armed_) return;
  armed_ = true;
  timer_.expires_after(debounce_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    armed_ = false;
    read_now();
  });
}

void HostView::read_now() {
  ++stats_.reads;
  auto st = read_netlink_state(request_.get(), stats_.caps);
  if (st.has_error()) {
    ++stats_.read_errors;
    spdlog::debug("mirror: host read failed ({}); again in {} ms", st.error(), debounce_.count());
    arm_read();  // typically NLE_DUMP_INTR: something changed during the dump
    return;
  }
  if (have_state_ && *st == state_) return;
  state_ = std::move(*st);
  have_state_ = true;
  ++stats_.changes;
  if (on_change_) on_change_(state_);
}

}  // namespace causeway::netstack::mirror
