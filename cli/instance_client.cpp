// Running a command in a distribution's VM; see instance_client.hpp.
#include "cli/instance_client.hpp"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstdio>

#include <fmt/format.h>

#include "base/log.hpp"

#include "cli/command_io.hpp"
#include "cli/instance_daemon.hpp"
#include "cli/instance_paths.hpp"
#include "cli/net_options.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/agent/socket_stream.hpp"
#include "vmm/distro/store.hpp"

namespace causeway::cli {
namespace asio = boost::asio;

namespace {

constexpr auto kStartLockWait = kInstanceStartTimeout + std::chrono::seconds(10);  // another start's whole bound
constexpr auto kStopWait = std::chrono::seconds(60);  // a VM powering off (TCG: a few seconds)

void say(const std::string& line) { std::fprintf(stderr, "causeway run: %s\n", line.c_str()); }

struct SessionResult {
  bool served = false;  // Ready was received (else: retry, unless `error` says why)
  int status = kExitFailure;
  std::string error;
  std::chrono::steady_clock::time_point ready_at, exited_at;  // for --log-level debug (bench-distro.sh)
};

// One exec session over the connected socket `fd`.
SessionResult speak(UniqueFd fd, const JoinOptions& o) {
  asio::io_context io{1};
  asio::local::stream_protocol::socket sock(io, asio::local::stream_protocol(), fd.release());
  auto stream = std::make_shared<agent::SocketVsockStream>(std::move(sock));
  CommandIo cmd(io, o.run);
  std::unique_ptr<agent::AgentSession> session;
  SessionResult res;
  std::string guest_error;
  agent::AgentCallbacks cb;
  cmd.install(
      cb, [&session] { return session.get(); },
      [&io, &res](const agent::Exited&) {
        res.exited_at = std::chrono::steady_clock::now();
        io.stop();
      });
  cb.on_ready = [&res](const agent::Ready&) {
    res.served = true;
    res.ready_at = std::chrono::steady_clock::now();
  };
  cb.on_guest_error = [&guest_error](std::string_view text) {
    if (guest_error.empty()) guest_error = std::string(text);
  };
  cb.on_end = [&](const agent::SessionEnd& end) {
    if (!guest_error.empty())
      res.error = guest_error;
    else if (res.served && !cmd.exited())
      res.error = fmt::format("the session with {} ended before the command finished: {}", o.name, end.detail);
    io.stop();
  };
  session = std::make_unique<agent::AgentSession>(io.get_executor(), stream, std::move(cb));
  stream->start();
  session->start();
  // Run goes right behind Hello, without waiting for Ready: the agent reads its
  // messages in order (session.hpp), and the round trip is a join's to save.
  if (auto ec = cmd.start()) {
    res.error = "cannot start the command: " + ec.message();
    return res;
  }
  cmd.handle_signals([&session](int) { session->abort("interrupted"); });
  io.run();
  cmd.stop();
  if (cmd.exited()) res.status = cmd.status();
  return res;
}

// The VM is not answering: start it (or wait for the start in progress) and connect.
UniqueFd start_and_connect(const JoinOptions& o, const distro::Dirs& dirs, const InstancePaths& p, bool& started) {
  if (auto r = prepare_instance_dirs(p); r.has_error()) return say(r.error()), UniqueFd();
  const bool tty = ::isatty(2);
  auto start_lock = FileLock::exclusive(p.start_lock, kStartLockWait, [&] {
    if (tty) std::fprintf(stderr, "Waiting for another start of %s…\r\n", o.name.c_str());
  });
  if (start_lock.has_error()) return say(start_lock.error().why), UniqueFd();
  if (UniqueFd fd = connect_unix(p.exec)) return fd;  // someone else started it meanwhile
  auto found = distro::Store(dirs.data).find(o.name);
  if (found.has_error())
    return say(fmt::format("no distribution named {} (causeway distro list shows them; causeway distro create {} or "
                           "causeway distro import {} ROOTFS.tar makes one)",
                           o.name, o.name, o.name)),
           UniqueFd();
  if (!wait_instance_stopped(p, kStopWait))
    return say(fmt::format("{} is still shutting down after {} s (causeway terminate {})", o.name, kStopWait.count(),
                           o.name)),
           UniqueFd();
  auto daemon = start_instance_daemon(p, o.daemon_args, kInstanceStartTimeout, tty);
  if (daemon.has_error()) {
    std::fputs(daemon.error().c_str(), stderr);
    if (!daemon.error().ends_with('\n')) std::fputc('\n', stderr);
    return UniqueFd();
  }
  started = true;
  UniqueFd fd = connect_unix(p.exec);
  if (!fd) say(fmt::format("{} is running but {} does not answer: {}", o.name, p.exec.string(), std::strerror(errno)));
  return fd;
}

}  // namespace

int run_in_instance(const JoinOptions& o) {
  if (auto bad = distro::check_name(o.name)) return say(*bad), kExitUsage;
  const distro::Dirs dirs = distro::default_dirs();
  const InstancePaths p = instance_paths(dirs.runtime, o.name);
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool started = false;
    const auto t0 = std::chrono::steady_clock::now();
    UniqueFd fd = connect_unix(p.exec);
    if (!fd) fd = start_and_connect(o, dirs, p, started);
    if (!fd) return kExitFailure;
    const auto t_connected = std::chrono::steady_clock::now();
    if (!started && !o.vm_options.empty() && attempt == 0) {
      std::string names;
      for (const auto& n : o.vm_options) names += (names.empty() ? "" : ", ") + n;
      say(fmt::format(
          "{} is already running; its VM options ({}) take effect only when it starts (causeway terminate {} first)",
          o.name, names, o.name));
    }
    SessionResult r = speak(std::move(fd), o);
    if (r.served && r.exited_at.time_since_epoch().count() != 0) {
      auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
      spdlog::debug("join {}: connected in {:.1f} ms{}, Ready {:.1f} ms later, Exited {:.1f} ms after Ready", o.name,
                    ms(t_connected - t0), started ? " (started the VM)" : "", ms(r.ready_at - t_connected),
                    ms(r.exited_at - r.ready_at));
    }
    if (!r.error.empty()) return say(r.error), r.status;
    if (r.served) return r.status;
    // Ended before Ready without a word: the VM was going away as we came. Once more, via the start path.
  }
  say(fmt::format("{} did not accept the command (it may be shutting down); try again", o.name));
  return kExitFailure;
}

}  // namespace causeway::cli
