// Sockets inside a guest's network namespace, for the engine that lives
// outside it: automatic forwarding reads the namespace's listeners and
// connects to its loopback from here; mirrored mode opens its taps, writes
// per-link sysctls and sends its rtnetlink changes through it.
//
// A socket belongs to the namespace it was created in, whichever namespace
// the process later uses it from. So only creation has to happen inside:
// NamespaceSocketFactory forks a helper process that enters the namespace
// (first its user namespace when we are unprivileged: setns(CLONE_NEWNET)
// needs CAP_SYS_ADMIN over the namespace, which the owner of its user
// namespace has only from inside it) and answers requests, a new descriptor
// coming back over SCM_RIGHTS. A request is one round trip of a few
// microseconds; the engine makes one per relayed connection or UDP flow, and
// one netlink socket for sock_diag.
//
// The helper is also the engine's privilege over the namespace once the
// engine has confined itself (base/sandbox: no capability left, no fork):
// the operations the kernel checks against the *calling* process's
// capabilities — making a tap, writing a sysctl, an rtnetlink change — and
// the re-bind of COMMAND's /etc/resolv.conf (a mount in COMMAND's mount
// namespace) are requests the helper carries out. It keeps CAP_NET_ADMIN only
// (plus CAP_SYS_ADMIN and CAP_SYS_CHROOT when it guards resolv.conf), sets
// no_new_privs, and checks every request against a fixed policy
// (netns_helper_protocol.hpp: the request set, the wire format, what is
// refused). It exits when the engine's end of its socket closes, removing
// the resolv.conf file it was given first — also when the engine dies.
//
// NetnsConnector and NetnsDatagramChannel are portfwd's transport
// interfaces implemented with such sockets, reaching the guest's own
// 127.0.0.1 or ::1.
//
// Thread safety: confined to the engine executor. The factory must be
// started while the process is single-threaded (it forks).
#pragma once

#include <sys/types.h>

#include <boost/asio/generic/datagram_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/result.hpp>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "base/unique_fd.hpp"
#include "portfwd/forward_policy.hpp"
#include "portfwd/guest_connector.hpp"
#include "portfwd/guest_datagram.hpp"

namespace causeway::netstack {

// COMMAND's private /etc/resolv.conf, which the helper keeps bound (see
// netns.hpp, ensure_resolv_conf_bound) and removes when it exits.
struct ResolvConfGuard {
  pid_t pid = -1;    // COMMAND (its mount namespace and root)
  std::string file;  // the file bound on its /etc/resolv.conf
};

class NamespaceSocketFactory {
 public:
  // `netns` and `userns` are paths (/proc/PID/ns/net, /run/netns/NAME);
  // `userns` may be empty (enter the network namespace only). With a
  // `guard`, the helper answers resolv_conf_bound() and owns guard.file.
  static boost::system::result<std::unique_ptr<NamespaceSocketFactory>, std::string> start(
      const std::string& netns, const std::string& userns, const ResolvConfGuard& guard = {});
  ~NamespaceSocketFactory();
  NamespaceSocketFactory(const NamespaceSocketFactory&) = delete;
  NamespaceSocketFactory& operator=(const NamespaceSocketFactory&) = delete;

  // socket(2) in the namespace (only the kinds netns_helper_protocol.hpp allows).
  boost::system::result<UniqueFd> create(int family, int type, int protocol = 0);
  // A new tap device `name` in the namespace; closing the descriptor removes it.
  boost::system::result<UniqueFd> create_tap(const std::string& name, bool vnet_hdr);
  // Writes `value` to /proc/sys/net/ipv6/conf/IFNAME/KEY in the namespace.
  boost::system::error_code write_ipv6_sysctl(const std::string& ifname, const std::string& key,
                                              const std::string& value);
  // Sends one rtnetlink change request from the helper; the result is the
  // kernel's answer (0 or its errno).
  boost::system::error_code route_request(std::span<const uint8_t> msg);
  // true when COMMAND sees the guarded file at /etc/resolv.conf (bound again
  // if the host's replacement of its own file had detached it).
  boost::system::result<void> resolv_conf_bound();
  [[nodiscard]] pid_t helper_pid() const { return pid_; }

 private:
  boost::system::result<UniqueFd> request(const void* r, size_t len);
  NamespaceSocketFactory(pid_t pid, UniqueFd sock) : pid_(pid), sock_(std::move(sock)) {}
  pid_t pid_;
  UniqueFd sock_;
};

// Connects to the guest's loopback inside the namespace: ::1, or for IPv4
// the target's 127.0.0.0/8 address (127.0.0.1 unless the guest listens only
// on another one).
class NetnsConnector final : public portfwd::GuestConnector {
 public:
  NetnsConnector(boost::asio::io_context& io, NamespaceSocketFactory& factory, portfwd::Family family)
      : io_(io), factory_(factory), family_(family) {}
  void async_connect(const portfwd::GuestTarget& target, ConnectHandler handler) override;

 private:
  boost::asio::io_context& io_;
  NamespaceSocketFactory& factory_;
  portfwd::Family family_;
};

// UDP flows to the guest's loopback: one connected socket per flow.
class NetnsDatagramChannel final : public portfwd::GuestDatagramChannel {
 public:
  static constexpr size_t kMaxFlows = 4096;
  NetnsDatagramChannel(boost::asio::io_context& io, NamespaceSocketFactory& factory, portfwd::Family family)
      : io_(io), factory_(factory), family_(family) {}
  ~NetnsDatagramChannel() override;
  std::optional<uint16_t> open_flow(uint16_t guest_port, ReplyHandler on_reply) override;
  bool send_on_flow(uint16_t flow, std::span<const uint8_t> payload) override;
  void close_flow(uint16_t flow) override;

 private:
  struct Flow {
    explicit Flow(boost::asio::io_context& io) : sock(io) {}
    boost::asio::generic::datagram_protocol::socket sock;
    ReplyHandler on_reply;
    std::vector<uint8_t> buf = std::vector<uint8_t>(65536);
  };
  void receive(uint16_t id, const std::shared_ptr<Flow>& f);

  boost::asio::io_context& io_;
  NamespaceSocketFactory& factory_;
  portfwd::Family family_;
  std::map<uint16_t, std::shared_ptr<Flow>> flows_;
  uint16_t next_id_ = 1;
};

}  // namespace causeway::netstack
