// vhost_user::Server: a vhost-user back-end endpoint on a unix socket, serving
// one VirtioDevice to one front-end (QEMU) at a time.
//
// QEMU is normally the socket client:
//   -chardev socket,id=c0,path=PATH[,reconnect=1] -netdev vhost-user,id=n0,chardev=c0
//   -chardev socket,id=c1,path=PATH2 -device vhost-user-vsock-pci,chardev=c1
// so the server listens (listen()). For `-chardev socket,server=on,wait=off`
// it connects instead (connect()); serve() takes any connected socket
// (tests use a socketpair).
//
// Theory of operation
// -------------------
// Reading: wait for the socket to be readable, then recvmsg() exactly what
// the MessageAssembler asks for (the rest of a 12-byte header, then the rest
// of the payload), so descriptors (SCM_RIGHTS) are never read along with a
// later message's bytes. Each whole message goes to the connection's Session
// (the protocol state machine); its reply is written back at once — QEMU
// waits for replies synchronously, so the socket's send buffer is always
// empty enough for our few hundred bytes. A frame error, a protocol error,
// EOF or a failed write ends the connection.
//
// Reconnect: when a connection ends, its Session goes with it: queues are
// detached, the device is reset (its host-side state dropped: vsock streams
// reset, net rx backlog cleared) and guest memory unmapped. The listener
// keeps accepting; QEMU's `reconnect=1` chardev reconnects and replays the
// whole set-up, which a fresh Session answers from scratch. A connection
// that arrives while one is active replaces it (the old one is usually a
// half-dead socket from a QEMU that restarted; counted). QEMU 7.2 can use
// reconnect=1 for -netdev vhost-user but not for vhost-user-vsock, which it
// realizes before an asynchronously reconnecting chardev is up.
//
// Thread safety: confined to the executor of the io_context given at
// construction; the device is driven there too.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/accept_backoff.hpp"
#include "base/clock.hpp"
#include "vmm/vhost_user/session.hpp"
#include "vmm/virtio_device.hpp"

namespace causeway::vmm::vhost_user {

struct ServerStats {
  uint64_t connections = 0;      // front-ends served
  uint64_t replaced = 0;         // connections dropped for a newer one
  uint64_t disconnects = 0;      // connections ended (any reason)
  uint64_t frame_errors = 0;     // malformed framing (connection closed)
  uint64_t protocol_errors = 0;  // refused requests that closed the connection
  SessionStats session;          // totals over all sessions (current one included)
  bool connected = false;
  uint64_t acked_features = 0;     // current session's
  uint64_t protocol_features = 0;  // current session's
};

class Server {
 public:
  // `name` prefixes log lines ("vhost-user net").
  Server(boost::asio::io_context& io, const Clock& clock, VirtioDevice& device, std::string name);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens at `path`. A stale socket file (nothing accepting on it) is
  // replaced; any other existing file is an error, as is a live socket.
  boost::system::result<void, std::string> listen(const std::string& path);
  // Connects to a front-end listening at `path` and serves it.
  boost::system::result<void, std::string> connect(const std::string& path);
  // Serves an already-connected socket.
  void serve(boost::asio::local::stream_protocol::socket socket);
  // Stops listening (removing the socket file) and ends the connection.
  void close();
  // Ends the current connection (the device is reset) but keeps listening:
  // a front-end with `reconnect=N` on its chardev comes back and replays
  // the set-up.
  void drop_connection() { end("dropped by the host"); }

  // Runs on connect (true) and disconnect (false).
  void set_on_connection_change(std::function<void(bool connected)> cb) { on_change_ = std::move(cb); }

  [[nodiscard]] bool connected() const { return conn_ != nullptr; }
  [[nodiscard]] ServerStats stats() const;
  // Ring statistics of the current session (nullptr if none or out of range).
  [[nodiscard]] const VirtqueueStats* queue_stats(size_t i) const;

 private:
  struct Connection;
  void accept_next();
  void read_some(Connection& c);
  void on_readable(Connection& c);
  void end(const std::string& why);

  boost::asio::io_context& io_;
  const Clock& clock_;
  VirtioDevice& device_;
  std::string name_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  AcceptBackoff backoff_{io_};  // out of descriptors: pause accepts instead of spinning
  std::string path_;
  std::unique_ptr<Connection> conn_;
  std::function<void(bool)> on_change_;
  ServerStats stats_;
  SessionStats past_sessions_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::vmm::vhost_user
