#include "netstack/netns_helper_protocol.hpp"

#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace causeway::netstack::netns_helper {
namespace {

// What mirrored mode's applier sends (apply.cpp through libnl): a link's MAC,
// MTU, queue length and flags; an address; a route with its metrics and
// next hops.
constexpr uint16_t kLinkAttrs[] = {IFLA_ADDRESS,   IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU,    IFLA_TXQLEN,
                                   IFLA_OPERSTATE, IFLA_LINKMODE,  IFLA_GROUP,  IFLA_WEIGHT, IFLA_EXT_MASK};
constexpr uint16_t kAddrAttrs[] = {IFA_ADDRESS,   IFA_LOCAL, IFA_LABEL,      IFA_BROADCAST,
                                   IFA_CACHEINFO, IFA_FLAGS, IFA_RT_PRIORITY};
constexpr uint16_t kRouteAttrs[] = {RTA_DST,     RTA_SRC,       RTA_OIF,  RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC,
                                    RTA_METRICS, RTA_MULTIPATH, RTA_FLOW, RTA_TABLE,   RTA_PREF,     RTA_VIA};

// IPv6 per-link settings mirrored mode and the NAT tap write (apply.hpp, netns.cpp).
constexpr std::string_view kSysctlKeys[] = {
    "accept_ra",    "accept_dad",    "dad_transmits", "router_solicitation_delay",
    "use_tempaddr", "addr_gen_mode", "disable_ipv6"};

template <size_t N>
bool allowed(const uint16_t (&list)[N], uint16_t type) {
  return std::find(std::begin(list), std::end(list), type) != std::end(list);
}

// Walks rtattrs in [data, data+len); every one must be in `list`.
template <size_t N>
int check_attrs(const uint8_t* data, size_t len, const uint16_t (&list)[N]) {
  while (len > 0) {
    if (len < sizeof(rtattr)) return EINVAL;
    rtattr a{};
    std::memcpy(&a, data, sizeof a);
    if (a.rta_len < sizeof(rtattr) || a.rta_len > len) return EINVAL;
    if (!allowed(list, static_cast<uint16_t>(a.rta_type & NLA_TYPE_MASK))) return EPERM;
    const size_t step = std::min<size_t>(RTA_ALIGN(a.rta_len), len);
    data += step;
    len -= step;
  }
  return 0;
}

}  // namespace

std::string_view field(const char* data, size_t size) {
  return {data, static_cast<size_t>(std::find(data, data + size, '\0') - data)};
}

int check_socket(int family, int type, int protocol) {
  const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (family == AF_INET || family == AF_INET6) {
    if (base == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP)) return 0;
    if (base == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP)) return 0;
    return EPERM;
  }
  if (family == AF_NETLINK && (base == SOCK_RAW || base == SOCK_DGRAM) &&
      (protocol == NETLINK_ROUTE || protocol == NETLINK_SOCK_DIAG))
    return 0;
  return EPERM;
}

int check_ifname(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return EINVAL;
  for (char c : name)
    if (c == '/' || c == ':' || c <= ' ' || c > '~') return EINVAL;
  return 0;
}

int check_sysctl(std::string_view ifname, std::string_view key, std::string_view value) {
  if (int e = check_ifname(ifname)) return e;
  if (std::find(std::begin(kSysctlKeys), std::end(kSysctlKeys), key) == std::end(kSysctlKeys)) return EPERM;
  if (value.empty() || value.size() > 8) return EINVAL;
  for (char c : value)
    if (c < '0' || c > '9') return EINVAL;
  return 0;
}

int check_route_message(std::span<const uint8_t> msg) {
  if (msg.size() < NLMSG_HDRLEN || msg.size() > kMaxRouteMessage) return EINVAL;
  nlmsghdr h{};
  std::memcpy(&h, msg.data(), sizeof h);
  if (h.nlmsg_len != msg.size()) return EINVAL;
  // Only change requests (no GET: dumps need no privilege, the engine reads
  // on its own socket). NLM_F_DUMP's bits mean "exclusive"/"append" on these.
  const uint8_t* body = msg.data() + NLMSG_HDRLEN;
  const size_t body_len = msg.size() - NLMSG_HDRLEN;
  switch (h.nlmsg_type) {
    case RTM_NEWLINK:
    case RTM_SETLINK: {
      if (body_len < NLMSG_ALIGN(sizeof(ifinfomsg))) return EINVAL;
      ifinfomsg ifi{};
      std::memcpy(&ifi, body, sizeof ifi);
      // An existing link, by index; no "create" (no kind can be named
      // anyway: IFLA_LINKINFO is refused).
      if (ifi.ifi_index <= 0 || (h.nlmsg_flags & NLM_F_CREATE)) return EPERM;
      return check_attrs(body + NLMSG_ALIGN(sizeof ifi), body_len - NLMSG_ALIGN(sizeof ifi), kLinkAttrs);
    }
    case RTM_NEWADDR:
    case RTM_DELADDR:
      if (body_len < NLMSG_ALIGN(sizeof(ifaddrmsg))) return EINVAL;
      return check_attrs(body + NLMSG_ALIGN(sizeof(ifaddrmsg)), body_len - NLMSG_ALIGN(sizeof(ifaddrmsg)), kAddrAttrs);
    case RTM_NEWROUTE:
    case RTM_DELROUTE:
      if (body_len < NLMSG_ALIGN(sizeof(rtmsg))) return EINVAL;
      return check_attrs(body + NLMSG_ALIGN(sizeof(rtmsg)), body_len - NLMSG_ALIGN(sizeof(rtmsg)), kRouteAttrs);
    default: return EPERM;
  }
}

}  // namespace causeway::netstack::netns_helper
