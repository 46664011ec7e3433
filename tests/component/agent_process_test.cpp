// The real guest agent binary on the host, in its test mode
// (`causeway-agent --test-fd 3`: one session over a socketpair, no mounts,
// modules, network changes or power-off). First the test plays the host
// with raw protocol messages; then AgentSession drives it through
// SocketVsockStream — both real ends of the protocol, no VM.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/unique_fd.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/agent/protocol.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/agent/socket_stream.hpp"

#ifndef CAUSEWAY_AGENT_BIN
#error "CAUSEWAY_AGENT_BIN must name the causeway-agent binary"
#endif

namespace causeway::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

// The agent as a child process with one end of a socketpair on its fd 3.
class AgentProcess {
 public:
  explicit AgentProcess(std::vector<std::string> extra = {}) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    std::vector<std::string> args = {CAUSEWAY_AGENT_BIN, "--test-fd", "3"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(sv[1], 3);  // dup2 clears close-on-exec on fd 3
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(sv[1]);
    host_.reset(sv[0]);
  }
  ~AgentProcess() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // The host end, for handing to Asio (the process keeps the agent end).
  UniqueFd take_host_fd() { return std::move(host_); }

  void send(const Message& m) {
    const auto b = encode(m);
    send_raw(b);
  }
  void send_raw(std::span<const uint8_t> b) {
    size_t off = 0;
    while (off < b.size()) {
      const ssize_t n = write(host_.get(), b.data() + off, b.size() - off);
      if (n <= 0) return;  // the agent went away; the test's expectations say so
      off += static_cast<size_t>(n);
    }
  }
  // The next message from the agent, or nullopt at EOF / error / timeout.
  std::optional<Message> recv(std::chrono::milliseconds timeout = 10s) {
    const auto end = Clock::now() + timeout;
    for (;;) {
      if (auto m = decoder_.next()) return m;
      if (decoder_.error() || eof_) return std::nullopt;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{host_.get(), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      uint8_t buf[65536];
      const ssize_t n = read(host_.get(), buf, sizeof buf);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      decoder_.feed(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    }
  }
  // Ready, then Hello.
  Ready handshake() {
    auto m = recv();
    EXPECT_TRUE(m && std::holds_alternative<Ready>(*m));
    send(Hello{});
    return m && std::holds_alternative<Ready>(*m) ? std::get<Ready>(*m) : Ready{};
  }
  // The agent's exit code, or -1 if it did not exit within `timeout`.
  int wait_exit(std::chrono::milliseconds timeout = 10s) {
    const auto end = Clock::now() + timeout;
    while (!status_ && Clock::now() < end) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = st;
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    if (!status_) return -1;
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : 128 + WTERMSIG(*status_);
  }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  UniqueFd host_;
  Decoder decoder_{Direction::GuestToHost};
  bool eof_ = false;
  std::optional<int> status_;
};

// Reads messages until the command's output contains `needle`.
void wait_output(AgentProcess& a, std::string_view needle) {
  std::string out;
  while (out.find(needle) == std::string::npos) {
    auto m = a.recv();
    ASSERT_TRUE(m) << "no \"" << needle << "\" in: " << out;
    if (auto* s = std::get_if<Stdout>(&*m)) out.append(s->data.begin(), s->data.end());
  }
}

struct Outcome {
  std::string out, err;
  std::optional<Exited> exited;
  std::vector<std::string> logs, errors;
};

// Collects until Exited (or end of stream / timeout).
Outcome collect(AgentProcess& a, std::chrono::milliseconds timeout = 20s) {
  Outcome o;
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    auto m = a.recv(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()));
    if (!m) break;
    if (auto* s = std::get_if<Stdout>(&*m)) o.out.append(s->data.begin(), s->data.end());
    if (auto* s = std::get_if<Stderr>(&*m)) o.err.append(s->data.begin(), s->data.end());
    if (auto* l = std::get_if<Log>(&*m)) o.logs.push_back(l->text);
    if (auto* e = std::get_if<Error>(&*m)) o.errors.push_back(e->text);
    if (auto* x = std::get_if<Exited>(&*m)) {
      o.exited = *x;
      break;
    }
  }
  return o;
}

agent::Run cmd(std::vector<std::string> argv, bool tty = false) {
  return agent::Run{std::move(argv), {}, "", tty, 0, 0, ""};
}

// ---------------------------------------------------------------- raw protocol
TEST(AgentProcessTest, SendsReadyFirstWithVersionAndKernelRelease) {
  AgentProcess a;
  const Ready r = a.handshake();
  EXPECT_EQ(r.version, kProtocolVersion);
  EXPECT_FALSE(r.kernel_release.empty());
  EXPECT_FALSE(r.agent_version.empty());
  a.send(Shutdown{});
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentProcessTest, RunsTheCommandAndReportsItsExitStatus) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sh", "-c", "exit 7"}));
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->kind, Exited::Kind::Exited);
  EXPECT_EQ(o.exited->value, 7);
  a.send(Shutdown{});
  EXPECT_EQ(a.wait_exit(), 0);
}

TEST(AgentProcessTest, NoNetConfigBeforeRunMeansDhcpFirst) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"true"}));
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  ASSERT_FALSE(o.logs.empty());
  EXPECT_NE(o.logs.front().find("DHCP"), std::string::npos);
}

TEST(AgentProcessTest, StdoutAndStderrAreForwardedSeparately) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sh", "-c", "echo out; echo err >&2; echo more"}));
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.out, "out\nmore\n");
  EXPECT_EQ(o.err, "err\n");
  EXPECT_EQ(o.exited->value, 0);
}

TEST(AgentProcessTest, EnvironmentAndWorkingDirectoryAreTheRequestedOnes) {
  AgentProcess a;
  a.handshake();
  a.send(agent::Run{{"sh", "-c", "echo \"$FOO:$HOME\"; pwd"}, {"FOO=bar"}, "/tmp", false, 0, 0, ""});
  const auto o = collect(a);
  EXPECT_EQ(o.out, "bar:/root\n/tmp\n");  // HOME defaulted, PATH defaulted (sh was found)
}

TEST(AgentProcessTest, StdinIsFedAndEofClosesIt) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sh", "-c", "cat; echo done"}));
  a.send(Stdin{bytes_of("hello\n")});
  a.send(Stdin{bytes_of("world\n")});
  a.send(StdinEof{});
  const auto o = collect(a);
  EXPECT_EQ(o.out, "hello\nworld\ndone\n");
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->value, 0);
}

TEST(AgentProcessTest, LargeOutputArrivesIntactAndInOrder) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"seq", "1", "300000"}));
  const auto o = collect(a, 60s);
  ASSERT_TRUE(o.exited);
  std::string want;
  for (int i = 1; i <= 300000; ++i) want += std::to_string(i) + "\n";
  EXPECT_EQ(o.out.size(), want.size());
  EXPECT_TRUE(o.out == want);
}

TEST(AgentProcessTest, LargeInputIsCopiedThroughCat) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"cat"}));
  std::string data;
  for (int i = 0; data.size() < (2u << 20); ++i) data += "line " + std::to_string(i) + "\n";
  // Writing 2 MiB while the agent writes it back: do it from a thread, like a real host.
  std::thread writer([&] {
    for (size_t off = 0; off < data.size(); off += kMaxChunk)
      a.send(Stdin{bytes_of(std::string_view(data).substr(off, kMaxChunk))});
    a.send(StdinEof{});
  });
  const auto o = collect(a, 60s);
  writer.join();
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.out.size(), data.size());
  EXPECT_TRUE(o.out == data);
}

TEST(AgentProcessTest, TtyModeGivesAPseudoTerminalOfTheRequestedSize) {
  AgentProcess a;
  a.handshake();
  agent::Run r = cmd({"sh", "-c", "tty; stty size; test -t 0 && test -t 2 && echo all-tty"}, true);
  r.rows = 40;
  r.cols = 100;
  a.send(r);
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_NE(o.out.find("/dev/pts/"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("40 100"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("all-tty"), std::string::npos) << o.out;
  EXPECT_EQ(o.err, "");  // a terminal has one output stream
  EXPECT_EQ(o.exited->value, 0);
}

TEST(AgentProcessTest, ResizeReachesTheTerminalAsSigwinch) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sh", "-c", "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done"}, true));
  wait_output(a, "ready");
  a.send(Resize{33, 77});
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_NE(o.out.find("33 77"), std::string::npos) << o.out;
}

TEST(AgentProcessTest, StdinEofOnATerminalIsVeof) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sh", "-c", "cat >/dev/null; echo got-eof"}, true));
  a.send(Stdin{bytes_of("typed\n")});
  a.send(StdinEof{});
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_NE(o.out.find("got-eof"), std::string::npos) << o.out;
}

TEST(AgentProcessTest, SignalGoesToTheCommandsProcessGroup) {
  AgentProcess a;
  a.handshake();
  // The shell waits for sleep; TERM to the group reaches both.
  a.send(cmd({"sh", "-c", "echo started; sleep 30; echo not-reached"}));
  wait_output(a, "started");
  a.send(Signal{SIGTERM});
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->kind, Exited::Kind::Signaled);
  EXPECT_EQ(o.exited->value, SIGTERM);
  EXPECT_EQ(o.out.find("not-reached"), std::string::npos);
}

TEST(AgentProcessTest, SignalWithATerminalGoesToTheForegroundJob) {
  AgentProcess a;
  a.handshake();
  // cat itself is the foreground job (a `sh -c` would race: dash catches SIGINT under -c
  // and may act on it only after starting its next command). Its echo of our input
  // proves it is running and reading.
  a.send(cmd({"cat"}, true));
  a.send(Stdin{bytes_of("ping\n")});
  wait_output(a, "ping\r\nping");
  a.send(Signal{SIGINT});
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->shell_status(), 128 + SIGINT);
}

TEST(AgentProcessTest, MissingProgramExits127WithAReason) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"cw-no-such-program"}));
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->value, 127);
  EXPECT_NE(o.err.find("cannot run cw-no-such-program"), std::string::npos) << o.err;
}

TEST(AgentProcessTest, NonExecutableProgramExits126) {
  AgentProcess a;
  a.handshake();
  char path[] = "/tmp/cw-agent-noexec.XXXXXX";
  const int fd = mkstemp(path);  // mode 0600: not executable
  ASSERT_GE(fd, 0);
  close(fd);
  a.send(cmd({path}));
  const auto o = collect(a);
  unlink(path);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->value, 126);
  EXPECT_NE(o.err.find("Permission denied"), std::string::npos) << o.err;
}

TEST(AgentProcessTest, MissingWorkingDirectoryExits127) {
  AgentProcess a;
  a.handshake();
  a.send(agent::Run{{"true"}, {}, "/cw-no-such-dir", false, 0, 0, ""});
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->value, 127);  // ENOENT, as a shell reports it
  EXPECT_NE(o.err.find("cannot change directory to /cw-no-such-dir"), std::string::npos) << o.err;
}

TEST(AgentProcessTest, ABackgroundProcessHoldingTheOutputDoesNotDelayExited) {
  AgentProcess a;
  a.handshake();
  const auto t0 = Clock::now();
  a.send(cmd({"sh", "-c", "sleep 20 & echo bye"}));
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.out, "bye\n");
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST(AgentProcessTest, NetConfigIsAcknowledgedButNotAppliedInTestMode) {
  AgentProcess a;
  a.handshake();
  NetConfig c;
  c.addresses = {{IpAddr::v4(10, 0, 2, 15), 24}};
  c.routes = {{IpAddr::v4(0, 0, 0, 0), 0, IpAddr::v4(10, 0, 2, 2), 0}};
  a.send(c);
  a.send(cmd({"true"}));
  const auto o = collect(a);
  ASSERT_FALSE(o.logs.empty());
  EXPECT_EQ(o.logs[0], "network: test mode, not applied: eth0: 10.0.2.15/24, default via 10.0.2.2, ipv6 off");
  ASSERT_TRUE(o.exited);
}

TEST(AgentProcessTest, OnlyOneCommandPerSession) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"true"}));
  ASSERT_TRUE(collect(a).exited);
  a.send(cmd({"true"}));
  auto m = a.recv();
  ASSERT_TRUE(m && std::holds_alternative<Error>(*m));
  EXPECT_NE(std::get<Error>(*m).text.find("one command"), std::string::npos);
}

TEST(AgentProcessTest, ShutdownKillsARunningCommandAndEndsTheSession) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sleep", "30"}));
  a.send(Shutdown{});
  EXPECT_EQ(a.wait_exit(5s), 0);
}

TEST(AgentProcessTest, HostClosingTheStreamEndsTheSession) {
  AgentProcess a;
  a.handshake();
  a.send(cmd({"sleep", "30"}));
  { UniqueFd host = a.take_host_fd(); }
  EXPECT_EQ(a.wait_exit(5s), 1);
}

TEST(AgentProcessTest, MalformedHostBytesAreAnsweredWithErrorNotACrash) {
  AgentProcess a;
  a.handshake();
  const std::vector<uint8_t> junk = {0xff, 0xff, 0xff, 0x7f, 1, 0x03, 0, 0};
  a.send_raw(junk);
  std::optional<Message> m;
  while ((m = a.recv()) && !std::holds_alternative<Error>(*m)) {}
  ASSERT_TRUE(m);
  EXPECT_NE(std::get<Error>(*m).text.find("malformed"), std::string::npos);
  EXPECT_EQ(a.wait_exit(), 1);
}

TEST(AgentProcessTest, FirstMessageMustBeHello) {
  AgentProcess a;
  ASSERT_TRUE(a.recv());  // Ready
  a.send(cmd({"true"}));
  auto m = a.recv();
  ASSERT_TRUE(m && std::holds_alternative<Error>(*m));
  EXPECT_NE(std::get<Error>(*m).text.find("Hello"), std::string::npos);
  EXPECT_EQ(a.wait_exit(), 1);
}

TEST(AgentProcessTest, AnotherProtocolVersionIsRefused) {
  AgentProcess a;
  ASSERT_TRUE(a.recv());
  a.send(Hello{kProtocolVersion + 1});
  auto m = a.recv();
  ASSERT_TRUE(m && std::holds_alternative<Error>(*m));
  EXPECT_NE(std::get<Error>(*m).text.find("version"), std::string::npos);
  EXPECT_EQ(a.wait_exit(), 1);
}

TEST(AgentProcessTest, NoHelloInTimeEndsTheSession) {
  AgentProcess a({"--hello-timeout-ms", "100"});
  ASSERT_TRUE(a.recv());
  auto m = a.recv();
  ASSERT_TRUE(m && std::holds_alternative<Error>(*m));
  EXPECT_EQ(a.wait_exit(), 1);
}

TEST(AgentProcessTest, NoShutdownAfterExitedEndsTheSessionAfterTheWait) {
  AgentProcess a({"--shutdown-wait-ms", "100"});
  a.handshake();
  a.send(cmd({"true"}));
  ASSERT_TRUE(collect(a).exited);
  EXPECT_EQ(a.wait_exit(), 1);
}

TEST(AgentProcessTest, OrphansOfTheCommandAreReaped) {
  AgentProcess a;
  a.handshake();
  // The subshell's child is orphaned and re-parented to the agent (a subreaper here, PID 1
  // in the guest). It must not stay a zombie.
  a.send(cmd({"sh", "-c", "(sleep 0.2 >/dev/null 2>&1 &); echo $$"}));
  const auto o = collect(a);
  ASSERT_TRUE(o.exited);
  std::this_thread::sleep_for(600ms);
  // Count zombie children of the agent.
  const std::string ps = "ps -o stat= --ppid " + std::to_string(a.pid()) + " 2>/dev/null | grep -c Z";
  FILE* f = popen(ps.c_str(), "r");
  ASSERT_TRUE(f);
  char buf[32] = {};
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  pclose(f);
  EXPECT_EQ(std::string(buf, n), "0\n");
}

TEST(AgentProcessTest, RefusesToRunOnAHostWithoutTestMode) {
  const std::string command = std::string(CAUSEWAY_AGENT_BIN) + " >/dev/null 2>&1";
  const int st = std::system(command.c_str());
  EXPECT_EQ(WEXITSTATUS(st), 2);
}

// ---------------------------------------------------------------- AgentSession ↔ real agent
class SessionWithRealAgent : public ::testing::Test {
 protected:
  void start(AgentCallbacks extra = {}) {
    boost::asio::local::stream_protocol::socket sock(io, boost::asio::local::stream_protocol(),
                                                     agent.take_host_fd().release());
    stream = std::make_shared<SocketVsockStream>(std::move(sock));
    AgentCallbacks cb = std::move(extra);
    cb.on_ready = [this](const Ready& r) { ready = r; };
    cb.on_stdout = [this](std::span<const uint8_t> d) { out.append(d.begin(), d.end()); };
    cb.on_stderr = [this](std::span<const uint8_t> d) { err.append(d.begin(), d.end()); };
    cb.on_exited = [this](const Exited&) { session->shutdown(); };
    cb.on_end = [this](const SessionEnd& e) { ended = e; };
    session = std::make_unique<AgentSession>(io.get_executor(), stream, std::move(cb));
    stream->start();
    session->start();
  }
  bool wait_end(std::chrono::milliseconds d = 30s) {
    return testing::run_until(
        io, [this] { return ended.has_value(); }, d);
  }

  boost::asio::io_context io;
  AgentProcess agent;
  std::shared_ptr<SocketVsockStream> stream;
  std::unique_ptr<AgentSession> session;
  std::optional<Ready> ready;
  std::string out, err;
  std::optional<SessionEnd> ended;
};

TEST_F(SessionWithRealAgent, RunsACommandToItsExitStatus) {
  start();
  NetConfig c;
  c.dhcp = true;
  ASSERT_FALSE(session->configure_network(c));
  ASSERT_FALSE(session->run(agent::Run{{"sh", "-c", "echo out; echo err >&2; exit 3"}, {}, "", false, 0, 0, ""}));
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::Completed) << ended->detail;
  ASSERT_TRUE(ended->exit);
  EXPECT_EQ(ended->exit->value, 3);
  EXPECT_EQ(out, "out\n");
  EXPECT_EQ(err, "err\n");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->version, kProtocolVersion);
  EXPECT_EQ(agent.wait_exit(), 0);
}

TEST_F(SessionWithRealAgent, StdinWithBackpressureRoundTripsThroughCat) {
  std::vector<uint8_t> data(4u << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * 131) >> 3);
  size_t sent = 0;
  std::function<void()> pump;
  AgentCallbacks cb;
  cb.on_stdin_writable = [&] { pump(); };
  start(std::move(cb));
  pump = [&] {
    while (sent < data.size()) {
      const size_t n = session->send_stdin(std::span(data).subspan(sent));
      if (n == 0) return;  // resumed by on_stdin_writable
      sent += n;
    }
    session->close_stdin();
  };
  ASSERT_FALSE(session->run(agent::Run{{"cat"}, {}, "", false, 0, 0, ""}));
  pump();
  ASSERT_TRUE(wait_end(60s));
  EXPECT_EQ(ended->reason, EndReason::Completed) << ended->detail;
  EXPECT_EQ(sent, data.size());
  ASSERT_EQ(out.size(), data.size());
  EXPECT_TRUE(
      std::equal(out.begin(), out.end(), data.begin(), [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; }));
  EXPECT_GT(session->counters().write_stalls, 0u);  // the queue really did fill
}

TEST_F(SessionWithRealAgent, AnAgentThatDiesIsAClearErrorNotAHang) {
  start();
  ASSERT_FALSE(session->run(agent::Run{{"sleep", "3"}, {}, "", false, 0, 0, ""}));
  ASSERT_TRUE(testing::run_until(io, [this] { return ready.has_value(); }));
  kill(agent.pid(), SIGKILL);
  ASSERT_TRUE(wait_end(10s));
  EXPECT_EQ(ended->reason, EndReason::StreamClosed);
  EXPECT_NE(ended->detail.find("died"), std::string::npos) << ended->detail;
}

}  // namespace
}  // namespace causeway::agent
