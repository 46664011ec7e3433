// Exec sessions and users (protocol v3) with the real guest agent binary on
// the host: `causeway-agent --test-fd 3 --test-exec-listen-fd 4` runs the main
// session on fd 3 and accepts exec sessions on the listening unix socket on
// fd 4 (a vsock port in a VM), each in a forked child of the agent. The test
// plays the host with raw protocol messages on every stream.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "base/unique_fd.hpp"
#include "vmm/agent/protocol.hpp"

#ifndef CAUSEWAY_AGENT_BIN
#error "CAUSEWAY_AGENT_BIN must name the causeway-agent binary"
#endif

namespace causeway::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// One stream to the agent, spoken raw.
class Peer {
 public:
  explicit Peer(UniqueFd fd) : fd_(std::move(fd)) {}
  void send(const Message& m) {
    const auto b = encode(m);
    size_t off = 0;
    while (off < b.size()) {
      const ssize_t n = write(fd_.get(), b.data() + off, b.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  std::optional<Message> recv(std::chrono::milliseconds timeout = 10s) {
    const auto end = Clock::now() + timeout;
    for (;;) {
      if (auto m = decoder_.next()) return m;
      if (decoder_.error() || eof_) return std::nullopt;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      uint8_t buf[65536];
      const ssize_t n = read(fd_.get(), buf, sizeof buf);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      decoder_.feed(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    }
  }
  // Ready (returned), then our Hello.
  std::optional<Ready> handshake() {
    auto m = recv();
    send(Hello{});
    if (m && std::holds_alternative<Ready>(*m)) return std::get<Ready>(*m);
    return std::nullopt;
  }
  // True when the agent closed the stream within `timeout` (messages before it are dropped).
  bool closed(std::chrono::milliseconds timeout = 10s) {
    const auto end = Clock::now() + timeout;
    while (Clock::now() < end)
      if (!recv(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now())) && eof_) return true;
    return false;
  }

 private:
  UniqueFd fd_;
  Decoder decoder_{Direction::GuestToHost};
  bool eof_ = false;
};

struct Outcome {
  std::string out, err;
  std::optional<Exited> exited;
  std::vector<std::string> logs, errors;
  std::vector<ListenerAppeared> listeners;
};

// Collects until Exited (or end of stream / timeout; or, with `until`, until it returns true).
Outcome collect(Peer& p, std::chrono::milliseconds timeout = 20s,
                const std::function<bool(const Outcome&)>& until = nullptr) {
  Outcome o;
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    auto m = p.recv(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()));
    if (!m) break;
    if (auto* s = std::get_if<Stdout>(&*m)) o.out.append(s->data.begin(), s->data.end());
    if (auto* s = std::get_if<Stderr>(&*m)) o.err.append(s->data.begin(), s->data.end());
    if (auto* l = std::get_if<Log>(&*m)) o.logs.push_back(l->text);
    if (auto* e = std::get_if<Error>(&*m)) o.errors.push_back(e->text);
    if (auto* l = std::get_if<ListenerAppeared>(&*m)) o.listeners.push_back(*l);
    if (auto* x = std::get_if<Exited>(&*m)) {
      o.exited = *x;
      if (!until) break;
    }
    if (until && until(o)) break;
  }
  return o;
}

Run cmd(std::vector<std::string> argv, std::string user = "") {
  Run r;
  r.argv = std::move(argv);
  r.user = std::move(user);
  return r;
}

// The agent with its main session on fd 3 and an exec listener (unix socket) on fd 4.
class ExecAgent {
 public:
  explicit ExecAgent(std::vector<std::string> extra = {}) {
    dir_ = std::filesystem::temp_directory_path() /
           ("cw-exec-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "exec.sock").string();
    UniqueFd lis(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    if (bind(lis.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lis.get(), 16) != 0)
      throw std::runtime_error("exec listener");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    std::vector<std::string> args = {CAUSEWAY_AGENT_BIN, "--test-fd", "3", "--test-exec-listen-fd", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      const int t = fcntl(sv[1], F_DUPFD, 10), l = fcntl(lis.get(), F_DUPFD, 10);
      dup2(t, 3);
      dup2(l, 4);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(sv[1]);
    main = std::make_unique<Peer>(UniqueFd(sv[0]));
  }
  ~ExecAgent() {
    if (pid_ > 0 && !status_) {
      // Exec session children notice their stream closing (end of session) and exit.
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // A new exec session: connected, Ready received, Hello sent.
  std::unique_ptr<Peer> exec() {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return nullptr;
    auto p = std::make_unique<Peer>(std::move(fd));
    const auto r = p->handshake();
    EXPECT_TRUE(r) << "no Ready on the exec session";
    if (r) {
      EXPECT_EQ(r->version, kProtocolVersion);
    }
    return p;
  }
  [[nodiscard]] bool alive() {
    if (status_) return false;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
    return !status_;
  }
  int wait_exit(std::chrono::milliseconds timeout = 10s) {
    const auto end = Clock::now() + timeout;
    while (alive() && Clock::now() < end) std::this_thread::sleep_for(5ms);
    if (!status_) return -1;
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : 128 + WTERMSIG(*status_);
  }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] pid_t pid() const { return pid_; }

  std::unique_ptr<Peer> main;

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::string path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

NetConfig dhcp() {
  NetConfig c;
  c.dhcp = true;
  return c;
}

// The number of live children of `pid` (its exec sessions and their commands).
int children_of(pid_t pid) {
  const std::string ps = "ps -o pid= --ppid " + std::to_string(pid) + " 2>/dev/null | wc -l";
  FILE* f = popen(ps.c_str(), "r");
  if (!f) return -1;
  int n = -1;
  if (fscanf(f, "%d", &n) != 1) n = -1;
  pclose(f);
  return n;
}

TEST(AgentExecSessions, TwoRunConcurrentlyWhileTheMainSessionStaysUp) {
  ExecAgent agent;
  ASSERT_TRUE(agent.main->handshake());
  agent.main->send(dhcp());  // instance mode: no Run on the main session
  auto a = agent.exec();
  auto b = agent.exec();
  ASSERT_TRUE(a && b);
  // A waits for its stdin; B runs to completion meanwhile: the sessions are independent.
  a->send(cmd({"sh", "-c", "read x; echo \"A:$x:$$\""}));
  b->send(cmd({"sh", "-c", "echo \"B:$$\"; exit 4"}));
  const auto ob = collect(*b);
  ASSERT_TRUE(ob.exited) << ob.err;
  EXPECT_EQ(ob.exited->value, 4);
  EXPECT_TRUE(ob.out.starts_with("B:")) << ob.out;
  a->send(Stdin{{'h', 'i', '\n'}});
  const auto oa = collect(*a);
  ASSERT_TRUE(oa.exited) << oa.err;
  EXPECT_EQ(oa.exited->value, 0);
  EXPECT_TRUE(oa.out.starts_with("A:hi:")) << oa.out;
  EXPECT_NE(oa.out.substr(5), ob.out.substr(2)) << "two commands, two processes";
  // Shutdown on an exec session ends that session only.
  a->send(Shutdown{});
  b->send(Shutdown{});
  EXPECT_TRUE(a->closed());
  EXPECT_TRUE(b->closed());
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(agent.alive()) << "the main session must outlive its exec sessions";
  // A third session after the first two ended still works.
  auto c = agent.exec();
  ASSERT_TRUE(c);
  c->send(cmd({"sh", "-c", "echo third"}));
  const auto oc = collect(*c);
  ASSERT_TRUE(oc.exited);
  EXPECT_EQ(oc.out, "third\n");
  c->send(Shutdown{});
  EXPECT_TRUE(c->closed());
  // The main session's Shutdown ends the agent; the exec children were reaped.
  EXPECT_EQ(children_of(agent.pid()), 0);
  agent.main->send(Shutdown{});
  EXPECT_EQ(agent.wait_exit(), 0);
}

TEST(AgentExecSessions, TheMainSessionWithoutARunHasNoTimeout) {
  // Timeouts that would end a session with a command long before the test's wait.
  ExecAgent agent({"--shutdown-wait-ms", "100", "--netconfig-timeout-ms", "100"});
  ASSERT_TRUE(agent.main->handshake());
  agent.main->send(dhcp());
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(agent.alive());
  auto e = agent.exec();
  ASSERT_TRUE(e);
  e->send(cmd({"true"}));
  const auto o = collect(*e);
  ASSERT_TRUE(o.exited);
  // An exec session that is not shut down by the host ends itself after shutdown_wait.
  EXPECT_TRUE(e->closed(5s));
  EXPECT_TRUE(agent.alive());
  agent.main->send(Shutdown{});
  EXPECT_EQ(agent.wait_exit(), 0);
}

TEST(AgentExecSessions, NetworkMessagesOnAnExecSessionAreRefusedWithAnError) {
  ExecAgent agent;
  ASSERT_TRUE(agent.main->handshake());
  auto e = agent.exec();
  ASSERT_TRUE(e);
  e->send(dhcp());
  e->send(DnsConfig{{IpAddr::v4(10, 0, 2, 3)}, {}});
  e->send(cmd({"true"}));
  const auto o = collect(*e);
  ASSERT_TRUE(o.exited);
  ASSERT_EQ(o.errors.size(), 2u);
  EXPECT_NE(o.errors[0].find("main session"), std::string::npos) << o.errors[0];
  // No DHCP on an exec session (the main session configures the network).
  for (const auto& l : o.logs) EXPECT_EQ(l.find("DHCP"), std::string::npos) << l;
  e->send(Shutdown{});
  agent.main->send(Shutdown{});
  EXPECT_EQ(agent.wait_exit(), 0);
}

TEST(AgentExecSessions, NoExecSessionIsServedBeforeTheMainSessionsHello) {
  ExecAgent agent;
  // Connect before the main Hello: accepted by the kernel's backlog, served only after it.
  auto m = agent.main->recv();
  ASSERT_TRUE(m && std::holds_alternative<Ready>(*m));
  std::thread late([&] {
    std::this_thread::sleep_for(300ms);
    agent.main->send(Hello{});
  });
  const auto t0 = Clock::now();
  auto e = agent.exec();
  late.join();
  ASSERT_TRUE(e);
  EXPECT_GE(Clock::now() - t0, 250ms);
  e->send(Shutdown{});
  agent.main->send(Shutdown{});
  EXPECT_EQ(agent.wait_exit(), 0);
}

TEST(AgentExecSessions, DnsConfigOnTheMainSessionIsAcknowledgedInTestMode) {
  ExecAgent agent;
  ASSERT_TRUE(agent.main->handshake());
  agent.main->send(DnsConfig{{IpAddr::v4(10, 0, 2, 3)}, {"corp.example"}});
  const auto o = collect(*agent.main, 5s, [](const Outcome& x) { return !x.logs.empty(); });
  ASSERT_FALSE(o.logs.empty());
  EXPECT_NE(o.logs.back().find("dns"), std::string::npos) << o.logs.back();
  EXPECT_TRUE(o.errors.empty());
  agent.main->send(Shutdown{});
  EXPECT_EQ(agent.wait_exit(), 0);
}

uint16_t free_port() {
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

TEST(AgentExecSessions, ListenersOfAnExecSessionsCommandAreReportedOnTheMainSession) {
  if (system("command -v busybox >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "busybox missing (apt-get install busybox-static)";
  if (geteuid() != 0) GTEST_SKIP() << "the bind/listen trap needs root (CAP_SYS_ADMIN) in test mode";
  ExecAgent agent({"--test-ports"});
  ASSERT_TRUE(agent.main->handshake());
  agent.main->send(dhcp());
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  // Let the first scan pass, so what comes next is the trap's doing.
  std::this_thread::sleep_for(300ms);
  auto e = agent.exec();
  ASSERT_TRUE(e);
  e->send(cmd({"busybox", "nc", "-l", "-p", std::to_string(port)}));
  const auto t0 = Clock::now();
  const auto o = collect(*agent.main, 10s, [port](const Outcome& x) {
    for (const auto& l : x.listeners)
      if (l.port == port) return true;
    return false;
  });
  const auto detect = Clock::now() - t0;
  bool seen = false;
  for (const auto& l : o.listeners) seen = seen || l.port == port;
  ASSERT_TRUE(seen) << "no ListenerAppeared for " << port << " on the main session";
  // The trap (handed to the main agent) reports within milliseconds; the 1 s poll alone would not.
  EXPECT_LT(detect, 900ms) << "detection took " << std::chrono::duration_cast<std::chrono::milliseconds>(detect).count()
                           << " ms: did the exec session's trap reach the main agent?";
  e->send(Signal{SIGTERM});
  const auto oe = collect(*e);
  ASSERT_TRUE(oe.exited);
  e->send(Shutdown{});
  agent.main->send(Shutdown{});
  EXPECT_EQ(agent.wait_exit(), 0);
}

// ---------------------------------------------------------------- users
void write_file(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(AgentUsers, AnUnknownUserIsAnErrorAndExitStatus1) {
  const auto root = std::filesystem::temp_directory_path() / ("cw-accounts-u-" + std::to_string(getpid()));
  write_file(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  write_file(root / "etc/group", "root:x:0:\n");
  ExecAgent a2({"--test-accounts", root.string()});
  ASSERT_TRUE(a2.main->handshake());
  auto e = a2.exec();
  ASSERT_TRUE(e);
  e->send(cmd({"true"}, "mallory"));
  const auto o = collect(*e);
  ASSERT_TRUE(o.exited);
  EXPECT_EQ(o.exited->kind, Exited::Kind::Exited);
  EXPECT_EQ(o.exited->value, 1);
  ASSERT_EQ(o.errors.size(), 1u);
  EXPECT_NE(o.errors[0].find("'mallory'"), std::string::npos) << o.errors[0];
  e->send(Shutdown{});
  a2.main->send(Shutdown{});
  EXPECT_EQ(a2.wait_exit(), 0);
  std::filesystem::remove_all(root);
}

TEST(AgentUsers, TheCommandRunsAsTheUserWithItsLoginEnvironment) {
  const uid_t me = geteuid();
  // As root the agent switches to a user of the test's passwd; as anyone else it can only
  // "switch" to itself — which still exercises the lookup and the environment.
  const uint32_t uid = me == 0 ? 4242 : me;
  const uint32_t gid = me == 0 ? 4243 : getegid();
  const auto base = std::filesystem::temp_directory_path() / ("cw-accounts-" + std::to_string(getpid()));
  std::filesystem::remove_all(base);
  const auto home = base / "home/alice";
  std::filesystem::create_directories(home);
  if (me == 0) {
    ASSERT_EQ(chown(home.c_str(), uid, gid), 0);
    ASSERT_EQ(chmod(base.c_str(), 0755), 0);
  }
  write_file(base / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:" + std::to_string(uid) + ":" +
                                      std::to_string(gid) + ":Alice:" + home.string() + ":/bin/sh\n");
  write_file(base / "etc/group", "root:x:0:\nalice:x:" + std::to_string(gid) + ":\nstaff:x:4250:alice\n");
  write_file(base / "etc/wsl.conf", "[user]\ndefault = alice\n");
  write_file(base / "etc/default/locale", "LANG=C.UTF-8\n");
  {
    ExecAgent agent({"--test-accounts", base.string()});
    ASSERT_TRUE(agent.main->handshake());
    auto e = agent.exec();
    ASSERT_TRUE(e);
    // No user named: the wsl.conf default.
    e->send(cmd({"sh", "-c", "id -u; id -g; echo \"$HOME|$USER|$LOGNAME|$SHELL|$PATH|$LANG\"; pwd"}));
    const auto o = collect(*e);
    ASSERT_TRUE(o.exited) << o.err;
    EXPECT_EQ(o.exited->value, 0) << o.err;
    EXPECT_EQ(o.out, std::to_string(uid) + "\n" + std::to_string(gid) + "\n" + home.string() +
                         "|alice|alice|/bin/sh|/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games|C.UTF-8\n" +
                         home.string() + "\n");
    if (me == 0) {
      // Supplementary groups from /etc/group.
      auto g = agent.exec();
      g->send(cmd({"id", "-G"}));
      const auto og = collect(*g);
      EXPECT_EQ(og.out, std::to_string(gid) + " 4250\n");
      g->send(Shutdown{});
    }
    e->send(Shutdown{});
    agent.main->send(Shutdown{});
    EXPECT_EQ(agent.wait_exit(), 0);
  }
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace causeway::agent
