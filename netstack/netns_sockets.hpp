// Sockets inside a guest's network namespace, for the engine that lives
// outside it: automatic forwarding reads the namespace's listeners and
// connects to its loopback from here; mirrored mode opens its taps and
// per-link sysctls through it.
//
// A socket belongs to the namespace it was created in, whichever namespace
// the process later uses it from. So only creation has to happen inside:
// NamespaceSocketFactory forks a helper process that enters the namespace
// (first its user namespace when we are unprivileged: setns(CLONE_NEWNET)
// needs CAP_SYS_ADMIN over the namespace, which the owner of its user
// namespace has only from inside it) and answers "socket(family, type,
// protocol)" requests with the new descriptor over SCM_RIGHTS. A request is
// one round trip of a few microseconds; the engine makes one per relayed
// connection or UDP flow, and one netlink socket for sock_diag.
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
#include <string>

#include "base/unique_fd.hpp"
#include "portfwd/forward_policy.hpp"
#include "portfwd/guest_connector.hpp"
#include "portfwd/guest_datagram.hpp"

namespace causeway::netstack {

class NamespaceSocketFactory {
 public:
  // `netns` and `userns` are paths (/proc/PID/ns/net, /run/netns/NAME);
  // `userns` may be empty (enter the network namespace only).
  static boost::system::result<std::unique_ptr<NamespaceSocketFactory>, std::string> start(const std::string& netns,
                                                                                           const std::string& userns);
  ~NamespaceSocketFactory();
  NamespaceSocketFactory(const NamespaceSocketFactory&) = delete;
  NamespaceSocketFactory& operator=(const NamespaceSocketFactory&) = delete;

  boost::system::result<UniqueFd> create(int family, int type, int protocol = 0);
  // open(2) inside the namespace: /dev/net/tun (a tap made through this
  // descriptor belongs to the namespace) or a /proc/sys/net file (which
  // shows the namespace of the process that opened it). Mirrored mode uses it.
  boost::system::result<UniqueFd> open_file(const std::string& path, int flags);

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
