#include "cli/attach_serve.hpp"

#include <signal.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "base/accept_backoff.hpp"
#include "base/log.hpp"
#include "cli/attach_steps.hpp"
#include "cli/runtime.hpp"
#include "netstack/stream_port.hpp"

namespace causeway::cli {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;
using stream = asio::local::stream_protocol;

constexpr std::string_view kWho = "causeway serve";

json stream_stats_json(const netstack::StreamStats& s) {
  return json{{"frames_read", s.frames_read},
              {"frames_written", s.frames_written},
              {"queue_drops", s.queue_drops},
              {"bad_length", s.bad_length},
              {"truncated_close", s.truncated_close}};
}

// No guest is connected yet, so a forward's host port is checked here: a
// port that is taken fails the start, not the first connection.
int probe_forwards(const std::vector<netstack::PortForward>& forwards) {
  for (auto& f : forwards) {
    if (auto ec = netstack::probe_host_port(f)) {
      std::fprintf(stderr, "causeway serve: cannot forward %s %s: %s\n", std::string(to_string(f.proto)).c_str(),
                   f.host_endpoint().c_str(), ec.message().c_str());
      return kExitFailure;
    }
  }
  return 0;
}

class ServeAttachment {
 public:
  ServeAttachment(const NetOptions& net, NetSettings s, std::string socket_path)
      : net_(net), s_(std::move(s)), path_(std::move(socket_path)), rt_(io_, s_.nat, "serve") {}

  int run();

 private:
  int listen();
  void confine();
  void accept();
  void on_connection(stream::socket sock);

  const NetOptions& net_;
  const NetSettings s_;
  const std::string path_;
  asio::io_context io_{1};
  Runtime rt_;
  stream::acceptor acceptor_{io_};
  std::unique_ptr<ControlServer> ctl_;
  int next_id_ = 1;
  AcceptBackoff accept_backoff_{io_};  // out of descriptors: pause accepts instead of spinning
  asio::signal_set signals_{io_};
};

int ServeAttachment::run() {
  if (auto r = rt_.enable_dns(s_.dns); r.has_error()) return fail_start(kWho, r.error());
  if (auto r = rt_.add_forwards(s_.forwards); r.has_error()) return fail_start(kWho, r.error());
  if (int code = listen()) return code;
  auto ctl = attach_control(rt_, net_.control);
  if (ctl.has_error()) {
    fail_start("causeway", ctl.error());
    ::unlink(path_.c_str());
    return kExitFailure;
  }
  ctl_ = std::move(*ctl);
  spdlog::info("serving QEMU stream netdev on {} (-netdev stream,id=n0,addr.type=unix,addr.path={})", path_, path_);
  accept();
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  signals_.async_wait([this](boost::system::error_code, int) { io_.stop(); });
  confine();
  io_.run();
  boost::system::error_code ec;
  acceptor_.close(ec);
  ::unlink(path_.c_str());
  return 0;
}

int ServeAttachment::listen() {
  if (::access(path_.c_str(), F_OK) == 0) {
    std::fprintf(stderr, "causeway serve: %s already exists; remove it or choose another --qemu-socket path\n",
                 path_.c_str());
    return kExitFailure;
  }
  if (auto ec = listen_unix(acceptor_, path_, asio::socket_base::max_listen_connections)) {
    std::fprintf(stderr, "causeway serve: cannot listen on %s: %s\n", path_.c_str(), ec.message().c_str());
    return kExitFailure;
  }
  return 0;
}

// Set-up is done (the QEMU socket listens, DNS and forwards are up): confine
// the process before the first guest connects. Kept: the QEMU socket's
// directory (its unlink at exit), the DNS-over-TCP socket's directory, besides
// what every attachment keeps (sandbox_policy). Each new connection's engine
// (libslirp, sockets, timers) is made inside the sandbox.
void ServeAttachment::confine() {
  auto policy = sandbox_policy(net_, "serve");
  std::error_code ec;
  policy.read_write.push_back(std::filesystem::absolute(path_, ec).lexically_normal().parent_path());
  // libslirp connects to the DNS-over-TCP socket there for each guest TCP query to 10.0.2.3.
  if (!rt_.dns_dir().empty()) policy.read_write.push_back(rt_.dns_dir());
  sandbox::confine(policy);
}

void ServeAttachment::accept() {
  acceptor_.async_accept([this](boost::system::error_code aec, stream::socket sock) {
    if (aec == asio::error::operation_aborted) return;
    if (accept_backoff_.defer_if_exhausted(aec, "QEMU socket " + path_, [this] { accept(); })) return;
    if (!aec) on_connection(std::move(sock));
    accept();
  });
}

// One QEMU connection: a guest with its own engine, gone when it closes.
void ServeAttachment::on_connection(stream::socket sock) {
  const std::string name = "qemu connection " + std::to_string(next_id_++);
  auto g = std::make_shared<const Guest*>(nullptr);
  auto port = std::make_unique<netstack::StreamFramePort>(std::move(sock), stream_max_frame(s_.nat),
                                                          [this, g, name](const std::string& why) {
                                                            spdlog::info("{} ended: {}", name, why);
                                                            rt_.remove_guest(*g);
                                                          });
  auto* sp = port.get();
  *g = &rt_.add_guest(
      name, std::move(port),
      [](netstack::FramePort& p, netstack::Engine& e) { static_cast<netstack::StreamFramePort&>(p).start(e); },
      [sp] { return stream_stats_json(sp->stats()); });
  spdlog::info("{} attached ({} guest(s))", name, rt_.guest_count());
}

}  // namespace

int attach_serve(const NetOptions& net, const std::string& qemu_socket) {
  auto s = net_settings(net);
  if (!s) return kExitUsage;
  if (int code = probe_forwards(s->forwards)) return code;
  ServeAttachment attachment(net, std::move(*s), qemu_socket);
  return attachment.run();
}

}  // namespace causeway::cli
