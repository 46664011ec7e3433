// The request protocol between the engine and its namespace helper
// (NamespaceSocketFactory, netns_sockets.hpp), and the helper's checks.
//
// The engine confines itself after set-up (base/sandbox: no capability, a
// seccomp allowlist, an empty root). What still needs privilege over the
// guest's namespace is done by the helper, a process forked before the
// engine confines itself, which lives in the namespace and keeps only
// CAP_NET_ADMIN (and, when it guards COMMAND's resolv.conf, CAP_SYS_ADMIN and
// CAP_SYS_CHROOT for the re-bind). A compromised engine can ask it for these
// requests and nothing else, so each one is checked here before the helper
// acts:
//
//   kSocket      socket(2) in the namespace, sent back by SCM_RIGHTS: AF_INET
//                and AF_INET6 stream/datagram sockets (relays to the guest's
//                loopback), AF_NETLINK NETLINK_ROUTE (mirrored mode's dumps)
//                and NETLINK_SOCK_DIAG (listener discovery). No raw or packet
//                socket: their privilege is checked only at creation.
//   kTap         a new tap device (TUNSETIFF checks the caller's
//                CAP_NET_ADMIN), IFF_TUN_EXCL: never an existing device.
//                The descriptor comes back; closing it removes the tap.
//   kSysctl      one write of a short number to
//                /proc/sys/net/ipv6/conf/IFNAME/KEY, KEY from a fixed list
//                (a sysctl write checks the writer's privilege at write time).
//   kRoute       one rtnetlink request, sent by the helper (rtnetlink checks
//                CAP_NET_ADMIN of the sending process) and answered with the
//                kernel's acknowledgement: only RTM_NEWLINK/SETLINK on an
//                existing link, RTM_NEWADDR/DELADDR, RTM_NEWROUTE/DELROUTE,
//                with attributes from an allowlist — nothing that names
//                another namespace (IFLA_NET_NS_*, IFLA_TARGET_NETNSID) or
//                makes a device kind (IFLA_LINKINFO).
//   kResolvConf  "is COMMAND's /etc/resolv.conf still our file? bind it again
//                if not" — the process and the file were fixed when the
//                helper started; the request has no parameter.
//
// Wire format: one SOCK_SEQPACKET message per request, a RequestHeader
// followed (kRoute only) by the netlink message; one reply per request, an
// int errno (0: done) with a descriptor attached for kSocket and kTap.
//
// Thread safety: stateless functions.
#pragma once

#include <net/if.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace causeway::netstack::netns_helper {

enum class Kind : uint32_t { kSocket = 1, kTap = 2, kSysctl = 3, kRoute = 4, kResolvConf = 5 };

inline constexpr size_t kMaxRouteMessage = 4096;  // our requests are a few hundred bytes
inline constexpr uint32_t kTapVnetHdr = 1;        // RequestHeader::tap_flags

struct RequestHeader {
  Kind kind;
  int32_t family = 0, type = 0, protocol = 0;  // kSocket
  uint32_t tap_flags = 0;                      // kTap
  char ifname[IFNAMSIZ] = {};                  // kTap, kSysctl; NUL-terminated
  char key[32] = {};                           // kSysctl
  char value[16] = {};                         // kSysctl
};

// Each returns 0 when the helper may act, else the errno the engine gets
// (EPERM: refused by policy; EINVAL: malformed).
int check_socket(int family, int type, int protocol);
int check_ifname(std::string_view name);
int check_sysctl(std::string_view ifname, std::string_view key, std::string_view value);
int check_route_message(std::span<const uint8_t> msg);

// A bounded copy of a NUL-terminated field (the helper never trusts the NUL).
std::string_view field(const char* data, size_t size);

}  // namespace causeway::netstack::netns_helper
