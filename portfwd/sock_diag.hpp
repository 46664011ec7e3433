// Listening sockets of a network namespace, read with NETLINK_SOCK_DIAG
// (inet_diag: linux/inet_diag.h, sock_diag(7)).
//
// One scan = four dumps (TCP and UDP, IPv4 and IPv6): TCP sockets in LISTEN,
// UDP sockets in the CLOSE state (bound, not connected). For IPv6 the kernel
// reports IPV6_V6ONLY (INET_DIAG_SKV6ONLY) for listening and unconnected
// sockets, which decides whether [::]:P is dual-stack.
//
// The netlink socket must be created inside the namespace it reports on (a
// netlink socket belongs to the namespace it was made in); the caller passes
// it in. Dumps are synchronous: a scan of an idle namespace is a few tens of
// microseconds, bounded by SO_RCVTIMEO.
//
// The message parser is sans-I/O (parse_diag_messages) so it can be tested
// and fuzzed without a kernel.
//
// Thread safety: one SockDiag per thread.
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "base/unique_fd.hpp"
#include "portfwd/listener.hpp"

namespace causeway::portfwd {

enum class DiagParse { kMore, kDone, kError };

// Parses one datagram of a dump reply; appends listeners. kDone at NLMSG_DONE.
DiagParse parse_diag_messages(std::span<const uint8_t> datagram, L4 proto, std::set<Listener>& out);

// Builds an inet_diag dump request.
std::vector<uint8_t> build_diag_request(uint8_t family, uint8_t protocol, uint32_t states, uint32_t seq);

class SockDiag {
 public:
  explicit SockDiag(UniqueFd netlink_socket);
  // Every TCP listener and bound UDP socket in the namespace.
  boost::system::result<std::set<Listener>> scan();

 private:
  boost::system::result<void> dump(uint8_t family, L4 proto, std::set<Listener>& out);
  UniqueFd sock_;
  uint32_t seq_ = 1;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(64 * 1024);
};

}  // namespace causeway::portfwd
