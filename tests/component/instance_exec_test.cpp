// The instance daemon's exec sessions without a VM: InstanceService
// (cli/instance_service.hpp) on a real exec.sock, its vsock side a fake
// VsockHost whose every connection to the exec port is the real
// causeway-agent binary in --test-fd mode (one session per process, as the
// guest agent's exec sessions are); the client either an AgentSession over
// the socket or the real `causeway run -d NAME` binary (its join path).
// Covers: the relay both ways (a command's status, stdout, stderr; 8 MiB
// each way with back-pressure), the session count and the idle rule, the
// refusal of a guest without exec sessions, state.json and exec.sock's
// life, and the client's missing-distribution error.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.hpp"
#include "base/unique_fd.hpp"
#include "cli/instance_service.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/agent/socket_stream.hpp"

namespace causeway::cli {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Each connect() to the exec port: a fresh `causeway-agent --test-fd 3`.
class AgentExecHost final : public vmm::VsockHost {
 public:
  explicit AgentExecHost(asio::io_context& io) : io_(io) {}
  ~AgentExecHost() override {
    for (pid_t p : pids_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
  }
  void listen(uint32_t, vmm::VsockAcceptHandler) override {}
  void connect(uint32_t port, vmm::VsockConnectHandler on_connect) override {
    ++connects;
    if (refuse || port != agent::kAgentExecPort) {
      asio::post(io_, [h = std::move(on_connect)] { h(asio::error::connection_refused, nullptr); });
      return;
    }
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(sv[1], 3);
      const int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, 2);  // the agent's own log lines
      ::execl(CAUSEWAY_AGENT_BIN, CAUSEWAY_AGENT_BIN, "--test-fd", "3", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(sv[1]);
    pids_.push_back(pid);
    asio::local::stream_protocol::socket sock(io_, asio::local::stream_protocol(), sv[0]);
    auto stream = std::make_shared<agent::SocketVsockStream>(std::move(sock), port);
    // The handler installs its callbacks before the first read completes.
    asio::post(io_, [h = std::move(on_connect), stream] {
      h({}, stream);
      stream->start();
    });
  }
  bool refuse = false;
  int connects = 0;

 private:
  asio::io_context& io_;
  std::vector<pid_t> pids_;
};

class InstanceExecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cw-exec.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    home_ = tmpl;
    paths_ = instance_paths(home_ / "run", "tiny");
    ASSERT_TRUE(prepare_instance_dirs(paths_));
  }
  void TearDown() override {
    service_.reset();
    std::error_code ec;
    fs::remove_all(home_, ec);
  }
  void start_service(int64_t idle_ms = 60'000) {
    service_ = std::make_unique<InstanceService>(io_, clock_, host_, paths_, idle_ms, [this] {
      ++idle_fired_;
      idle_at_ = std::chrono::steady_clock::now();
    });
    auto r = service_->start(nlohmann::json{{"distro", "tiny"}}, {});
    ASSERT_TRUE(r) << r.error();
  }
  // Runs the io_context until `done` or the deadline.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) {
      io_.restart();
      io_.run_for(10ms);
    }
    return done();
  }

  // One command through exec.sock, as the join client speaks it.
  struct Client {
    std::shared_ptr<agent::SocketVsockStream> stream;
    std::unique_ptr<agent::AgentSession> session;
    std::string out, err, guest_error;
    std::optional<agent::Exited> exited;
    std::optional<agent::SessionEnd> end;
    bool ready = false;
  };
  std::unique_ptr<Client> join(agent::Run run) {
    auto c = std::make_unique<Client>();
    UniqueFd fd = connect_unix(paths_.exec);
    EXPECT_TRUE(fd) << std::strerror(errno);
    asio::local::stream_protocol::socket sock(io_, asio::local::stream_protocol(), fd.release());
    c->stream = std::make_shared<agent::SocketVsockStream>(std::move(sock));
    agent::AgentCallbacks cb;
    Client* raw = c.get();
    cb.on_ready = [raw, run](const agent::Ready&) {
      raw->ready = true;
      EXPECT_FALSE(raw->session->run(run));
      raw->session->close_stdin();
    };
    cb.on_stdout = [raw](std::span<const uint8_t> d) { raw->out.append(d.begin(), d.end()); };
    cb.on_stderr = [raw](std::span<const uint8_t> d) { raw->err.append(d.begin(), d.end()); };
    cb.on_exited = [raw](const agent::Exited& e) {
      raw->exited = e;
      raw->session->shutdown();  // ends this exec session only
    };
    cb.on_guest_error = [raw](std::string_view t) { raw->guest_error = std::string(t); };
    cb.on_end = [raw](const agent::SessionEnd& e) {
      raw->end = e;
      raw->stream->close();  // as the client process's exit does
    };
    c->session = std::make_unique<agent::AgentSession>(io_.get_executor(), c->stream, std::move(cb));
    c->stream->start();
    c->session->start();
    return c;
  }

  asio::io_context io_;
  SteadyClock clock_;
  AgentExecHost host_{io_};
  fs::path home_;
  InstancePaths paths_;
  std::unique_ptr<InstanceService> service_;
  int idle_fired_ = 0;
  std::chrono::steady_clock::time_point idle_at_;
};

agent::Run sh(const std::string& script) {
  agent::Run r;
  r.argv = {"/bin/sh", "-c", script};
  r.env = {"PATH=/usr/bin:/bin"};
  return r;
}

TEST_F(InstanceExecTest, ACommandRunsThroughExecSockToItsStatus) {
  start_service();
  EXPECT_TRUE(fs::exists(paths_.state));
  auto c = join(sh("echo out; echo err >&2; exit 7"));
  ASSERT_TRUE(run_until([&] { return c->end.has_value(); }));
  EXPECT_TRUE(c->ready);
  ASSERT_TRUE(c->exited);
  EXPECT_EQ(c->exited->shell_status(), 7);
  EXPECT_EQ(c->out, "out\n");
  EXPECT_EQ(c->err, "err\n");
  EXPECT_TRUE(c->end->ok()) << c->end->detail;
  EXPECT_TRUE(run_until([&] { return service_->open_sessions() == 0; }));
  EXPECT_EQ(service_->stats().exec_sessions, 1u);
}

TEST_F(InstanceExecTest, SessionsAreIndependentAndCountedWhileOpen) {
  start_service();
  auto a = join(sh("read x; echo a$x"));  // waits for stdin... which is closed at once: prints "a"
  auto b = join(sh("echo b"));
  ASSERT_TRUE(run_until([&] { return a->end && b->end; }));
  EXPECT_EQ(a->out, "a\n");
  EXPECT_EQ(b->out, "b\n");
  EXPECT_TRUE(run_until([&] { return service_->open_sessions() == 0; }));
  EXPECT_EQ(service_->stats().exec_sessions, 2u);
}

TEST_F(InstanceExecTest, EightMegabytesEachWayKeepEveryByte) {
  start_service();
  // Guest → host: the client pauses its receive side now and then (back-pressure through the relay).
  auto c = join(sh("head -c 8388608 /dev/zero; exit 0"));
  int turns = 0;
  ASSERT_TRUE(run_until(
      [&] {
        if (++turns % 7 == 0) c->session->pause_receive(turns % 14 == 0);
        return c->end.has_value();
      },
      60s));
  c->session->pause_receive(false);
  EXPECT_EQ(c->out.size(), 8388608u);
  // Host → guest: stdin through the relay, counted by the command.
  auto w = std::make_unique<Client>();
  {
    UniqueFd fd = connect_unix(paths_.exec);
    ASSERT_TRUE(fd);
    asio::local::stream_protocol::socket sock(io_, asio::local::stream_protocol(), fd.release());
    w->stream = std::make_shared<agent::SocketVsockStream>(std::move(sock));
  }
  std::vector<uint8_t> chunk(64 * 1024, 'x');
  size_t sent = 0;
  constexpr size_t kTotal = 8u << 20;
  Client* raw = w.get();
  std::function<void()> pump = [&] {
    while (sent < kTotal) {
      const size_t took = raw->session->send_stdin({chunk.data(), std::min(chunk.size(), kTotal - sent)});
      if (took == 0) return;  // on_stdin_writable resumes
      sent += took;
    }
    raw->session->close_stdin();
  };
  agent::AgentCallbacks cb;
  cb.on_ready = [&, raw](const agent::Ready&) {
    EXPECT_FALSE(raw->session->run(sh("wc -c")));
    pump();
  };
  cb.on_stdin_writable = [&] { pump(); };
  cb.on_stdout = [raw](std::span<const uint8_t> d) { raw->out.append(d.begin(), d.end()); };
  cb.on_exited = [raw](const agent::Exited& e) {
    raw->exited = e;
    raw->session->shutdown();
  };
  cb.on_end = [raw](const agent::SessionEnd& e) {
    raw->end = e;
    raw->stream->close();
  };
  w->session = std::make_unique<agent::AgentSession>(io_.get_executor(), w->stream, std::move(cb));
  w->stream->start();
  w->session->start();
  ASSERT_TRUE(run_until([&] { return w->end.has_value(); }, 60s));
  EXPECT_EQ(sent, kTotal);
  EXPECT_EQ(std::stoul(w->out), kTotal) << w->out;
}

TEST_F(InstanceExecTest, AGuestWithoutExecSessionsGetsTheClientOneClearError) {
  host_.refuse = true;
  start_service();
  auto c = join(sh("true"));
  ASSERT_TRUE(run_until([&] { return c->end.has_value(); }));
  EXPECT_FALSE(c->ready);
  EXPECT_NE(c->guest_error.find("refused an exec session"), std::string::npos) << c->guest_error;
  EXPECT_TRUE(run_until([&] { return service_->open_sessions() == 0; }));
  EXPECT_EQ(service_->stats().exec_failed, 1u);
}

TEST_F(InstanceExecTest, IdleFiresOnlyWhenNoSessionHasBeenOpenForTheTimeout) {
  start_service(300);
  // A command that runs ~0.8 s: the VM is not idle meanwhile.
  auto c = join(sh("sleep 0.8; echo done"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return c->end.has_value(); }));
  EXPECT_EQ(c->out, "done\n");
  EXPECT_EQ(idle_fired_, 0);
  const auto ended = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return idle_fired_ > 0; }, 5s));
  EXPECT_GE(idle_at_ - ended, 250ms);  // a full timeout after the session, not after start
  EXPECT_GE(idle_at_ - t0, 800ms);
  EXPECT_EQ(idle_fired_, 1);
}

TEST_F(InstanceExecTest, ALateForwardedListenerKeepsTheVmUp) {
  start_service(100);
  const ListenerKey web{true, 8000};
  service_->on_listeners({web}, {web});
  EXPECT_FALSE(run_until([&] { return idle_fired_ > 0; }, 400ms));
  service_->on_listeners({}, {});
  EXPECT_TRUE(run_until([&] { return idle_fired_ > 0; }, 2s));
}

TEST_F(InstanceExecTest, StopAcceptingRemovesExecSockAndTheDestructorTheState) {
  start_service();
  ASSERT_TRUE(fs::exists(paths_.exec));
  service_->stop_accepting();
  EXPECT_FALSE(fs::exists(paths_.exec));
  EXPECT_FALSE(connect_unix(paths_.exec));
  EXPECT_TRUE(fs::exists(paths_.state));
  service_.reset();
  EXPECT_FALSE(fs::exists(paths_.state));
}

// ---- the real client binary (`causeway run -d NAME`) against the service ----

struct ChildResult {
  int status = -1;
  std::string out, err;
};

// Runs `causeway ARGS` with CAUSEWAY_HOME=home, stdin from /dev/null, while
// `io` runs on another thread; bounded.
ChildResult run_causeway(const fs::path& home, const std::vector<std::string>& args) {
  int out[2], err[2];
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("CAUSEWAY_HOME", home.c_str(), 1);
    ::setenv("CAUSEWAY_CONFIG", "/dev/null", 1);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> argv{const_cast<char*>(CAUSEWAY_BIN)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(CAUSEWAY_BIN, argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  ChildResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  const auto end = std::chrono::steady_clock::now() + 20s;
  int open_fds = 2;
  while (open_fds > 0 && std::chrono::steady_clock::now() < end) {
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int st = 0;
  if (open_fds > 0) ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

TEST_F(InstanceExecTest, TheRunClientJoinsThroughExecSock) {
  start_service();
  std::thread io_thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
  auto r = run_causeway(home_, {"run", "-d", "tiny", "--", "/bin/sh", "-c", "echo joined $TERM; echo e >&2; exit 5"});
  asio::post(io_, [this] { io_.stop(); });
  io_thread.join();
  EXPECT_EQ(r.status, 5) << r.err;
  // The client sends TERM only (the guest computes the rest): the test agent passes it through.
  EXPECT_EQ(r.out.rfind("joined", 0), 0u) << r.out;
  EXPECT_EQ(r.err, "e\n");
}

TEST_F(InstanceExecTest, TheRunClientNamesAMissingDistribution) {
  auto r = run_causeway(home_, {"run", "-d", "nope", "--", "true"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no distribution named nope"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("causeway distro create nope"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  auto bad = run_causeway(home_, {"run", "-d", "../x", "--", "true"});
  EXPECT_EQ(bad.status, 2) << bad.err;
}

}  // namespace
}  // namespace causeway::cli
