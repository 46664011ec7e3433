// The instance daemon's exec sessions, idle rule and state; see instance_service.hpp.
#include "cli/instance_service.hpp"

#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "vmm/agent/protocol.hpp"
#include "vmm/agent/relay_client.hpp"

namespace causeway::cli {
namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

// One agent-protocol Error, then EOF: the client's session reports the text.
void refuse_with_error(asio::local::stream_protocol::socket& sock, const std::string& text) {
  std::vector<uint8_t> out;
  agent::encode_into(agent::Error{text}, out);
  boost::system::error_code ec;
  asio::write(sock, asio::buffer(out), ec);  // a few bytes into an empty socket buffer: never blocks long
  sock.shutdown(asio::socket_base::shutdown_send, ec);
  sock.close(ec);
}

bool peer_is_us_or_root(int fd) {
  ucred peer{};
  socklen_t len = sizeof peer;
  return ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 && (peer.uid == ::geteuid() || peer.uid == 0);
}

}  // namespace

InstanceService::InstanceService(asio::io_context& io, const Clock& clock, vmm::VsockHost& vsock, InstancePaths paths,
                                 int64_t idle_timeout_ms, std::function<void()> on_idle)
    : io_(io),
      clock_(clock),
      vsock_(vsock),
      paths_(std::move(paths)),
      on_idle_(std::move(on_idle)),
      acceptor_(io),
      backoff_(io),
      idle_timer_(io),
      rule_(idle_timeout_ms) {}

InstanceService::~InstanceService() {
  *alive_ = false;
  stop_accepting();
  std::error_code ec;
  std::filesystem::remove(paths_.state, ec);
}

boost::system::result<void, std::string> InstanceService::start(const json& state,
                                                                const std::set<ListenerKey>& guest_listeners) {
  if (auto r = write_state(paths_, state); r.has_error()) return r;
  // A dead daemon's socket may be left behind: we hold the instance lock, so it is stale.
  ::unlink(paths_.exec.c_str());
  boost::system::error_code ec;
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) {
    const mode_t old_mask = ::umask(077);  // 0600 from the start (the directory is 0700 too)
    acceptor_.bind(asio::local::stream_protocol::endpoint(paths_.exec.string()), ec);
    ::umask(old_mask);
  }
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fmt::format("cannot listen on {}: {}", paths_.exec.string(), ec.message());
  bound_ = true;
  started_ = true;
  late_.set_baseline(guest_listeners);
  rule_.ready(clock_.now_ms());
  accept();
  rearm();
  return {};
}

void InstanceService::stop_accepting() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  if (bound_) ::unlink(paths_.exec.c_str());
  bound_ = false;
  idle_timer_.cancel();
}

void InstanceService::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted || !bound_) return;
    if (backoff_.defer_if_exhausted(ec, "exec socket " + paths_.exec.string(), [this] { accept(); })) return;
    if (!ec) on_connection(std::move(sock));
    accept();
  });
}

void InstanceService::on_connection(asio::local::stream_protocol::socket sock) {
  if (!peer_is_us_or_root(sock.native_handle())) {
    ++stats_.refused_peers;
    boost::system::error_code ignored;
    sock.close(ignored);
    return;
  }
  if (open_ >= kMaxSessions) {
    ++stats_.over_capacity;
    refuse_with_error(sock, fmt::format("{} has {} commands running: no more now", paths_.name, open_));
    return;
  }
  // The session counts from here: a command being started keeps the VM up.
  ++open_;
  rule_.update(open_, rule_.listeners(), clock_.now_ms());
  rearm();
  auto s = std::make_shared<asio::local::stream_protocol::socket>(std::move(sock));
  std::weak_ptr<bool> alive = alive_;
  vsock_.connect(agent::kAgentExecPort, [this, s, alive](boost::system::error_code cec,
                                                         std::shared_ptr<vmm::VsockStream> stream) {
    if (alive.expired()) return;
    if (cec || !stream) {
      ++stats_.exec_failed;
      refuse_with_error(*s, fmt::format("the guest agent refused an exec session on vsock port {}: {} (a guest image "
                                        "without exec sessions? rebuild it with scripts/build-guest.sh)",
                                        agent::kAgentExecPort, cec.message()));
      session_ended();
      return;
    }
    ++stats_.exec_sessions;
    boost::system::error_code ignored;
    const int fd = s->release(ignored);
    agent::bridge_stream(io_, fd, std::move(stream), {}, [this, alive] {
      if (!alive.expired()) session_ended();
    });
  });
}

void InstanceService::session_ended() {
  if (open_ > 0) --open_;
  rule_.update(open_, rule_.listeners(), clock_.now_ms());
  rearm();
}

void InstanceService::on_listeners(const std::set<ListenerKey>& guest, const std::set<ListenerKey>& forwarded) {
  if (!started_) return;
  rule_.update(open_, late_.count(guest, forwarded), clock_.now_ms());
  rearm();
}

void InstanceService::rearm() {
  if (!bound_ || idle_fired_) return;
  idle_timer_.cancel();
  const auto deadline = rule_.deadline_ms();
  if (!deadline) return;
  const int64_t wait = std::max<int64_t>(*deadline - clock_.now_ms(), 0);
  idle_timer_.expires_after(std::chrono::milliseconds(wait));
  idle_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || idle_fired_) return;
    if (!rule_.expired(clock_.now_ms())) return rearm();  // woke a little early (ms rounding)
    idle_fired_ = true;
    if (on_idle_) on_idle_();
  });
}

json InstanceService::status_json() const {
  json j{{"exec_sessions_open", open_},           {"exec_sessions", stats_.exec_sessions},
         {"exec_failed", stats_.exec_failed},     {"refused_peers", stats_.refused_peers},
         {"over_capacity", stats_.over_capacity}, {"late_listeners", rule_.listeners()},
         {"idle_timeout_ms", rule_.timeout_ms()}};
  if (auto d = rule_.deadline_ms()) j["idle_shutdown_in_ms"] = std::max<int64_t>(*d - clock_.now_ms(), 0);
  return j;
}

}  // namespace causeway::cli
