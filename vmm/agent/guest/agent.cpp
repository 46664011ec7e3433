// The guest agent's session loop; the theory of operation is in agent.hpp.
#include "vmm/agent/guest/agent.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/netlink.h>
#include <linux/vm_sockets.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>

#include "base/fd_passing.hpp"
#include "portfwd/listener_trap.hpp"
#include "vmm/agent/guest/accounts.hpp"
#include "vmm/agent/guest/boot.hpp"
#include "vmm/agent/guest/mirror.hpp"
#include "vmm/agent/guest/netconfig.hpp"
#include "vmm/agent/guest/rootfs.hpp"

#ifndef CAUSEWAY_AGENT_VERSION
#define CAUSEWAY_AGENT_VERSION "dev"
#endif

namespace causeway::agent::guest {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// What the forked child reports through its close-on-exec pipe when it
// cannot exec: nothing arrives on success.
struct ExecFailure {
  int step;  // 0 exec, 1 chdir, 2 terminal setup, 3 user switch
  int err;
};

bool is_directory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int exit_code_for(int err) { return err == ENOENT || err == ENOTDIR ? 127 : 126; }  // the shell convention

}  // namespace

struct Agent::Child {
  pid_t pid = -1;
  bool tty = false;
  UniqueFd in;   // stdin pipe (write end) or a dup of the pty master
  UniqueFd out;  // stdout pipe (read end) or the pty master
  UniqueFd err;  // stderr pipe (read end); unused with a pty
  std::vector<uint8_t> stdin_q;
  size_t stdin_off = 0;
  bool stdin_eof = false;
  std::optional<int> status;  // waitpid() status once it exited
  Clock::time_point last_output;

  [[nodiscard]] size_t stdin_pending() const { return stdin_q.size() - stdin_off; }
  [[nodiscard]] bool output_open() const { return out.valid() || err.valid(); }
};

Agent::Agent(UniqueFd transport, AgentOptions opts) : transport_(std::move(transport)), opts_(std::move(opts)) {
  // The transport must not leak into the command, and must never block the loop.
  fcntl(transport_.get(), F_SETFD, FD_CLOEXEC);
  set_nonblocking(transport_.get());
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  sigfd_.reset(signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
  if (opts_.relay_listener || opts_.sock_diag) {
    ports_ = std::make_unique<PortService>(std::move(opts_.relay_listener), std::move(opts_.sock_diag), opts_.ports,
                                           [this](bool appeared, const Listener& l) {
                                             if (appeared)
                                               send(ListenerAppeared{l});
                                             else
                                               send(ListenerGone{l});
                                           });
    ports_->set_on_problem([this](std::string text) { error(std::move(text)); });
  }
  if (opts_.role == AgentOptions::Role::Exec) {
    net_done_ = true;  // the main session configures the network
  } else if (opts_.exec_listener) {
    fcntl(opts_.exec_listener.get(), F_SETFD, FD_CLOEXEC);
    set_nonblocking(opts_.exec_listener.get());
    int sp[2];
    if (ports_ && opts_.trap_listeners && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0) {
      trap_sink_r_.reset(sp[0]);
      trap_sink_w_.reset(sp[1]);
      // Exec sessions' sends block (never dropped: a trap descriptor closed unanswered makes its
      // processes' bind/listen fail with ENOSYS); the main agent reads without blocking.
      set_nonblocking(trap_sink_r_.get());
    }
  }
}

Agent::~Agent() = default;

// ---------------------------------------------------------------- output
void Agent::send(const Message& m) {
  if (opts_.debug) console(std::string("-> ") + std::string(name_of(type_of(m))));
  encode_into(m, out_);
  ++counters_.messages_out;
}

void Agent::log(std::string text) {
  if (opts_.debug) console(text);
  if (text.size() > kMaxTextLen) text.resize(kMaxTextLen);
  send(Log{std::move(text)});
}

void Agent::error(std::string text) {
  console(text);
  if (text.size() > kMaxTextLen) text.resize(kMaxTextLen);
  send(Error{std::move(text)});
}

void Agent::end(Outcome o, std::string why) {
  if (outcome_) return;
  outcome_ = o;
  end_reason_ = std::move(why);
  state_ = State::Done;
}

void Agent::flush_out() {
  while (out_off_ < out_.size() && transport_) {
    const ssize_t n = write(transport_.get(), out_.data() + out_off_, out_.size() - out_off_);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // EPIPE, ECONNRESET, ENOTCONN: the host is gone; nothing queued can be delivered.
    const int e = errno;
    out_.clear();
    out_off_ = 0;
    kill_command();
    end(Outcome::HostGone, std::string("transport write failed: ") + std::strerror(e));
    return;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > 64 * 1024) {
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_off_));
    out_off_ = 0;
  }
}

// ---------------------------------------------------------------- input
void Agent::on_transport_readable() {
  uint8_t buf[64 * 1024];
  const ssize_t n = read(transport_.get(), buf, sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    const int e = errno;
    transport_eof_ = true;
    kill_command();
    end(Outcome::HostGone, std::string("transport read failed: ") + std::strerror(e));
    return;
  }
  if (n == 0) {
    transport_eof_ = true;
    if (state_ == State::Exited) {
      end(Outcome::Shutdown, "host closed the stream after Exited");
    } else {
      kill_command();
      end(Outcome::HostGone,
          decoder_.buffered() ? "host closed the stream in the middle of a message" : "host closed the stream");
    }
    return;
  }
  decoder_.feed(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
  while (!outcome_) {
    auto m = decoder_.next();
    if (!m) break;
    ++counters_.messages_in;
    on_message(*m);
  }
  if (decoder_.error() && !outcome_) {
    error("malformed message from the host: " + decoder_.error().message());
    kill_command();
    end(Outcome::ProtocolError, "malformed message from the host: " + decoder_.error().message());
  }
}

void Agent::on_message(Message& m) {
  const MessageType type = type_of(m);
  if (opts_.debug) console(std::string("<- ") + std::string(name_of(type)));
  if (state_ == State::AwaitHello) {
    const auto* hello = std::get_if<Hello>(&m);
    if (!hello) {
      error("protocol: the first message must be Hello, got " + std::string(name_of(type)));
      end(Outcome::ProtocolError, "no Hello first");
    } else if (hello->version != kProtocolVersion) {
      error("protocol: the host speaks version " + std::to_string(hello->version) + ", this agent " +
            std::to_string(kProtocolVersion) + ": rebuild the guest image with the matching causeway");
      end(Outcome::ProtocolError, "protocol version mismatch");
    } else {
      state_ = State::Configuring;
      netconfig_deadline_ = Clock::now() + opts_.netconfig_timeout;
    }
    return;
  }
  Child* c = child_.get();
  const bool alive = c && !c->status;
  const bool exec_role = opts_.role == AgentOptions::Role::Exec;
  if (exec_role &&
      (type == MessageType::NetConfig || type == MessageType::MirrorApply || type == MessageType::DnsConfig)) {
    ++counters_.unexpected;
    error("protocol: " + std::string(name_of(type)) + " belongs on the main session; ignored on an exec session");
    return;
  }
  switch (type) {
    case MessageType::NetConfig: {
      const auto& cfg = std::get<NetConfig>(m);
      const NetReport rep = cfg.dhcp ? opts_.run_dhcp() : opts_.apply_net_config(cfg);
      for (const auto& line : rep.lines) rep.ok ? log(line) : error(line);
      net_done_ = true;
      net_ipv6_ = cfg.ipv6;
      break;
    }
    case MessageType::DnsConfig: {
      if (!opts_.apply_dns) {
        log("dns: test mode, not applied");
        break;
      }
      const NetReport rep = opts_.apply_dns(std::get<DnsConfig>(m), net_ipv6_);
      for (const auto& line : rep.lines) rep.ok ? log(line) : error(line);
      break;
    }
    case MessageType::Run:
      if (ran_) {
        ++counters_.unexpected;
        error("protocol: one command per session; Run ignored");
      } else {
        on_run(std::get<Run>(m));
      }
      break;
    case MessageType::Stdin: {
      auto& data = std::get<Stdin>(m).data;
      counters_.stdin_bytes += data.size();
      // Input for a command that is gone (or closed its stdin) is dropped: a normal race.
      if (alive && c->in && !c->stdin_eof) c->stdin_q.insert(c->stdin_q.end(), data.begin(), data.end());
      break;
    }
    case MessageType::StdinEof:
      if (alive && c->in && !c->stdin_eof) {
        c->stdin_eof = true;
        if (c->tty) {
          // A terminal has no half-close: EOF is the VEOF character (^D), which ends
          // a read at the start of a line in canonical mode, as at a keyboard.
          termios t{};
          const uint8_t veof = tcgetattr(c->out.get(), &t) == 0 ? t.c_cc[VEOF] : 4;
          c->stdin_q.push_back(veof);
        } else if (c->stdin_pending() == 0) {
          c->in.reset();
        }
      }
      break;
    case MessageType::Signal:
      if (alive) {
        const int signo = std::get<Signal>(m).signo;
        // With a terminal the signal goes where ^C would: the foreground job.
        pid_t target = -c->pid;
        if (c->tty) {
          const pid_t fg = tcgetpgrp(c->out.get());
          if (fg > 0) target = -fg;
        }
        if (kill(target, signo) != 0) kill(c->pid, signo);
      }
      break;
    case MessageType::Resize:
      if (alive && c->tty) {
        const auto& r = std::get<Resize>(m);
        winsize ws{};
        ws.ws_row = r.rows;
        ws.ws_col = r.cols;
        ioctl(c->out.get(), TIOCSWINSZ, &ws);
      }
      break;
    case MessageType::Shutdown:
      kill_command();
      end(Outcome::Shutdown, "host asked to shut down");
      break;
    case MessageType::MirrorApply: {
      const auto& apply = std::get<MirrorApply>(m);
      MirrorReport rep;
      if (opts_.apply_mirror) {
        rep = opts_.apply_mirror(apply);
      } else {
        rep.generation = apply.generation;
        rep.errors.push_back({"mirrored mode", "not available in this agent (test mode)"});
        rep.errors_total = 1;
      }
      if (auto ec = encode_checked(rep, out_)) {
        // The guest's own read-back state over the limits: report without it.
        rep.actual = {};
        if (auto ec2 = encode_checked(rep, out_)) {
          error("mirror: cannot encode the report: " + ec2.message());
          break;
        }
      }
      ++counters_.messages_out;
      break;
    }
    case MessageType::Hello:
    default:
      ++counters_.unexpected;
      error("protocol: unexpected " + std::string(name_of(type)));
      break;
  }
}

void Agent::configure_network_default() {
  if (net_done_) return;
  net_done_ = true;
  const NetReport rep = opts_.run_dhcp();
  for (const auto& line : rep.lines) rep.ok ? log(line) : error(line);
}

// ---------------------------------------------------------------- the command
void Agent::on_run(const Run& run) {
  ran_ = true;
  configure_network_default();  // no NetConfig came first: DHCP
  state_ = State::Running;

  // Who runs it, with what environment (accounts.hpp).
  std::optional<Launch> plan;
  std::string who_error;
  if (!opts_.accounts_root.empty()) {
    plan = plan_launch(run, read_account_files(opts_.accounts_root), is_directory, who_error);
  } else if (!run.user.empty()) {
    who_error = "user '" + run.user + "': this agent runs commands as itself (no account files; test mode)";
  }
  if (!plan && !who_error.empty()) {
    error(who_error);
    send(Exited{Exited::Kind::Exited, 1, false});
    state_ = State::Exited;
    exited_at_ = Clock::now();
    return;
  }

  auto c = std::make_unique<Child>();
  c->tty = run.tty;
  // Everything the child needs is prepared before fork(): after it, only exec and
  // async-signal-safe calls (the agent is single-threaded, but keep the habit).
  std::vector<std::string> env = plan ? plan->env : run.env;
  if (!plan) {
    if (!env_has(env, "PATH")) env.emplace_back(std::string("PATH=") + kDefaultPath);
    if (!env_has(env, "HOME")) env.emplace_back("HOME=/root");
  }
  if (run.tty && !env_has(env, "TERM")) env.emplace_back("TERM=xterm");
  // The identity switch, prepared: as root always (resets the supplementary groups);
  // otherwise (test mode as a user) only when it would change anything — and then fails.
  const bool root_agent = geteuid() == 0;
  const bool switch_user = plan && (root_agent || plan->uid != static_cast<uint32_t>(geteuid()) ||
                                    plan->gid != static_cast<uint32_t>(getegid()));
  std::vector<gid_t> groups;
  if (plan)
    for (uint32_t g : plan->groups) groups.push_back(static_cast<gid_t>(g));
  const uid_t uid = plan ? static_cast<uid_t>(plan->uid) : 0;
  const gid_t gid = plan ? static_cast<gid_t>(plan->gid) : 0;
  std::vector<std::string> candidates;
  if (run.argv[0].find('/') != std::string::npos) {
    candidates.push_back(run.argv[0]);
  } else {
    const std::string path = env_get(env, "PATH");
    size_t start = 0;
    while (start <= path.size()) {
      size_t colon = path.find(':', start);
      if (colon == std::string::npos) colon = path.size();
      std::string dir = path.substr(start, colon - start);
      if (dir.empty()) dir = ".";
      candidates.push_back(dir + "/" + run.argv[0]);
      start = colon + 1;
    }
  }
  std::vector<char*> argv_p, env_p;
  for (const auto& a : run.argv) argv_p.push_back(const_cast<char*>(a.c_str()));
  argv_p.push_back(nullptr);
  for (const auto& e : env) env_p.push_back(const_cast<char*>(e.c_str()));
  env_p.push_back(nullptr);
  const std::string cwd = plan ? plan->cwd : run.cwd.empty() ? "/" : run.cwd;

  auto spawn_failed = [&](const std::string& what) {
    const std::string text =
        "causeway-agent: cannot start " + run.argv[0] + ": " + what + ": " + std::strerror(errno) + "\n";
    send(Stderr{std::vector<uint8_t>(text.begin(), text.end())});
    send(Exited{Exited::Kind::Exited, 126, false});
    state_ = State::Exited;
    exited_at_ = Clock::now();
  };

  UniqueFd child_in, child_out, child_err;  // the child's ends
  std::string slave_name;
  if (run.tty) {
    UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    char name[128] = {};
    if (!master || grantpt(master.get()) != 0 || unlockpt(master.get()) != 0 ||
        ptsname_r(master.get(), name, sizeof name) != 0)
      return spawn_failed("pseudo-terminal");
    slave_name = name;
    if (run.rows && run.cols) {
      winsize ws{};
      ws.ws_row = run.rows;
      ws.ws_col = run.cols;
      ioctl(master.get(), TIOCSWINSZ, &ws);
    }
    c->in.reset(fcntl(master.get(), F_DUPFD_CLOEXEC, 0));
    c->out = std::move(master);
  } else {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return spawn_failed("pipe");
    child_in.reset(p[0]);
    c->in.reset(p[1]);
    if (pipe2(p, O_CLOEXEC) != 0) return spawn_failed("pipe");
    c->out.reset(p[0]);
    child_out.reset(p[1]);
    if (pipe2(p, O_CLOEXEC) != 0) return spawn_failed("pipe");
    c->err.reset(p[0]);
    child_err.reset(p[1]);
  }
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0) return spawn_failed("pipe");
  UniqueFd err_r(errpipe[0]), err_w(errpipe[1]);
  // The bind/listen trap's descriptor comes back from the child over this pair.
  UniqueFd trap_r, trap_w;
  if (opts_.trap_listeners && (ports_ || opts_.trap_sink)) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0) trap_r.reset(sp[0]), trap_w.reset(sp[1]);
  }

  const pid_t pid = fork();
  if (pid < 0) return spawn_failed("fork");
  if (pid == 0) {
    // ---- child: only async-signal-safe calls from here on
    auto fail = [&](int step, int e) {
      ExecFailure f{step, e};
      [[maybe_unused]] ssize_t w = write(err_w.get(), &f, sizeof f);
      _exit(exit_code_for(e));
    };
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    setsid();  // its own session and process group: Signal targets the group
    if (run.tty) {
      const int s = open(slave_name.c_str(), O_RDWR);  // the session leader's first tty: controlling
      if (s < 0) fail(2, errno);
      // grantpt() made the agent its owner: the user's terminal is the user's.
      if (switch_user && uid != geteuid()) fchown(s, uid, static_cast<gid_t>(-1));
      ioctl(s, TIOCSCTTY, 0);
      dup2(s, 0);
      dup2(s, 1);
      dup2(s, 2);
      if (s > 2) close(s);
    } else {
      dup2(child_in.get(), 0);
      dup2(child_out.get(), 1);
      dup2(child_err.get(), 2);
    }
    if (trap_w) {
      // Late, so nothing of our own setup is trapped; before the user switch, which drops the
      // CAP_SYS_ADMIN it needs. Without it the poll still finds listeners.
      const int trap = portfwd::install_listener_trap();
      if (trap >= 0) {
        const char tag = 'T';
        send_with_fd(trap_w.get(), &tag, 1, trap);
        close(trap);
      }
    }
    if (switch_user) {
      if (root_agent && setgroups(groups.size(), groups.data()) != 0) fail(3, errno);
      if (setgid(gid) != 0) fail(3, errno);
      if (setuid(uid) != 0) fail(3, errno);
    }
    if (chdir(cwd.c_str()) != 0) fail(1, errno);
    int best = ENOENT;
    for (const auto& cand : candidates) {
      execve(cand.c_str(), argv_p.data(), env_p.data());
      // execvp(3)'s rule: remember EACCES, keep searching past ENOENT/ENOTDIR.
      if (errno == EACCES)
        best = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR && best != EACCES)
        best = errno;
    }
    fail(0, best);
  }
  // ---- parent
  child_in.reset();
  child_out.reset();
  child_err.reset();
  err_w.reset();
  trap_w.reset();
  c->pid = pid;
  c->last_output = Clock::now();
  ExecFailure f{};
  ssize_t got;
  do {
    got = read(err_r.get(), &f, sizeof f);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof f)) {
    // The child exits 126/127 right after this; its Exited follows through the usual path.
    std::string what;
    if (f.step == 1) {
      what = "cannot change directory to " + cwd;
    } else if (f.step == 2) {
      what = "cannot open the terminal " + slave_name;
    } else if (f.step == 3) {
      what = "cannot switch to user " + (plan ? plan->user : std::string("?")) + " (uid " + std::to_string(uid) +
             ", gid " + std::to_string(gid) + ")";
    } else {
      what = "cannot run " + run.argv[0];
    }
    const std::string text = "causeway-agent: " + what + ": " + std::strerror(f.err) + "\n";
    send(Stderr{std::vector<uint8_t>(text.begin(), text.end())});
  }
  for (const UniqueFd* fd : {&c->in, &c->out, &c->err})
    if (fd->valid()) set_nonblocking(fd->get());
  if (trap_r) {
    // Sent before exec, so it is there by now (the exec-failure pipe closed at exec).
    char tag = 0;
    UniqueFd trap;
    if (recv_with_fd(trap_r.get(), &tag, 1, trap, MSG_DONTWAIT) == 1 && trap)
      hand_over_trap(std::move(trap));
    else
      log("port forwarding: the command runs without the bind/listen trap; listeners are found by polling");
  }
  child_ = std::move(c);
  if (opts_.debug) console("started pid " + std::to_string(pid));
}

void Agent::on_output(int which) {
  Child& c = *child_;
  UniqueFd& fd = which == 1 ? c.out : c.err;
  uint8_t buf[kMaxChunk];
  const ssize_t n = read(fd.get(), buf, sizeof buf);
  if (n > 0) {
    const std::span<const uint8_t> data(buf, static_cast<size_t>(n));
    encode_chunks(which == 1 ? MessageType::Stdout : MessageType::Stderr, data, out_);
    ++counters_.messages_out;
    (which == 1 ? counters_.stdout_bytes : counters_.stderr_bytes) += data.size();
    c.last_output = Clock::now();
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  // 0: all writers closed. EIO: a pty master whose slave side is closed everywhere.
  if (c.tty && fd.get() == c.out.get()) c.in.reset();  // the dup of the master goes with it
  fd.reset();
}

void Agent::on_stdin_writable() {
  Child& c = *child_;
  while (c.stdin_pending() > 0) {
    const ssize_t n = write(c.in.get(), c.stdin_q.data() + c.stdin_off, c.stdin_pending());
    if (n > 0) {
      c.stdin_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // EPIPE: the command closed its stdin; what it did not read is dropped.
    c.stdin_q.clear();
    c.stdin_off = 0;
    if (!c.tty) c.in.reset();
    return;
  }
  c.stdin_q.clear();
  c.stdin_off = 0;
  if (c.stdin_eof && !c.tty) c.in.reset();
}

void Agent::on_signalfd() {
  signalfd_siginfo si{};
  while (read(sigfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {}
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (child_ && pid == child_->pid) {
      child_->status = status;
      child_->last_output = Clock::now();  // the drain window starts at exit
    } else if (auto it = std::find(exec_pids_.begin(), exec_pids_.end(), pid); it != exec_pids_.end()) {
      exec_pids_.erase(it);
    } else {
      ++counters_.orphans_reaped;
    }
  }
}

void Agent::finish_command() {
  Child& c = *child_;
  const int st = *c.status;
  Exited e;
  if (WIFSIGNALED(st)) {
    e.kind = Exited::Kind::Signaled;
    e.value = WTERMSIG(st);
    e.core_dumped = WCOREDUMP(st);
  } else {
    e.value = WEXITSTATUS(st);
  }
  child_.reset();
  send(e);
  state_ = State::Exited;
  exited_at_ = Clock::now();
}

void Agent::kill_command() {
  if (!child_ || child_->status) return;
  kill(-child_->pid, SIGKILL);
  kill(child_->pid, SIGKILL);
}

// ---------------------------------------------------------------- exec sessions
void Agent::hand_over_trap(UniqueFd trap) {
  if (ports_) {
    ports_->add_trap(std::move(trap));
    return;
  }
  // An exec session: the main agent watches it (and reports on the main session). Should the
  // hand-over fail (the main agent gone: the VM is going down), the descriptor closes here and
  // the command's bind/listen fail (ENOSYS) — nothing else could answer them.
  const char tag = 'T';
  if (!opts_.trap_sink || send_with_fd(opts_.trap_sink.get(), &tag, 1, trap.get()) != 1)
    log("port forwarding: cannot hand the bind/listen trap to the main session: listeners are found by polling");
}

void Agent::on_trap_sink() {
  for (;;) {
    char tag = 0;
    UniqueFd trap;
    const ssize_t n = recv_with_fd(trap_sink_r_.get(), &tag, 1, trap, MSG_DONTWAIT);
    if (n <= 0) return;
    if (trap && ports_) {
      ++counters_.traps_forwarded;
      ports_->add_trap(std::move(trap));
    }
  }
}

void Agent::accept_exec() {
  for (;;) {
    UniqueFd conn(accept4(opts_.exec_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;  // EAGAIN (drained), or a transient error: the listener stays
    if (exec_pids_.size() >= opts_.max_exec_sessions) {
      ++counters_.exec_refused;
      log("exec session refused: " + std::to_string(exec_pids_.size()) + " are running (the limit)");
      continue;
    }
    const pid_t pid = fork();
    if (pid < 0) {
      error(std::string("exec session: fork: ") + std::strerror(errno));
      continue;
    }
    if (pid == 0) run_exec_child(std::move(conn));
    exec_pids_.push_back(pid);
    ++counters_.exec_sessions;
    if (opts_.debug) console("exec session in pid " + std::to_string(pid));
  }
}

void Agent::run_exec_child(UniqueFd conn) {
  // The fork of the main agent: drop everything of the main session (the transport, its
  // command's stdio, the relays and listeners, the traps — closing our copies of those
  // leaves the main agent's intact), then run one exec session and exit.
  transport_.reset();
  child_.reset();
  ports_.reset();
  sigfd_.reset();
  trap_sink_r_.reset();
  opts_.exec_listener.reset();
  out_.clear();
  int code = 1;
  try {
    AgentOptions x;
    x.role = AgentOptions::Role::Exec;
    x.agent_version = opts_.agent_version;
    x.kernel_release = opts_.kernel_release;
    x.uptime_ms = uptime_ms();
    x.hello_timeout = opts_.hello_timeout;
    x.drain_idle = opts_.drain_idle;
    x.shutdown_wait = opts_.shutdown_wait;
    x.flush_timeout = opts_.flush_timeout;
    x.debug = opts_.debug;
    x.trap_listeners = opts_.trap_listeners;
    x.trap_sink = std::move(trap_sink_w_);
    x.accounts_root = opts_.accounts_root;
    Agent session(std::move(conn), std::move(x));
    code = session.run() == Outcome::Shutdown ? 0 : 1;
  } catch (...) {
    console("exec session: unexpected exception");
  }
  _exit(code);
}

// ---------------------------------------------------------------- timers
std::optional<Agent::Clock::time_point> Agent::deadline() const {
  switch (state_) {
    case State::AwaitHello: return hello_deadline_;
    case State::Configuring:
      if (!net_done_) return netconfig_deadline_;
      return std::nullopt;
    case State::Running:
      if (child_ && child_->status && child_->output_open()) return child_->last_output + opts_.drain_idle;
      return std::nullopt;
    case State::Exited: return exited_at_ + opts_.shutdown_wait;
    case State::Done: return std::nullopt;
  }
  return std::nullopt;
}

void Agent::on_deadline() {
  switch (state_) {
    case State::AwaitHello:
      error("no Hello from the host within " + std::to_string(opts_.hello_timeout.count()) + " ms");
      end(Outcome::Timeout, "no Hello");
      break;
    case State::Configuring:
      log("no network configuration from the host within " + std::to_string(opts_.netconfig_timeout.count()) +
          " ms: trying DHCP");
      configure_network_default();
      break;
    case State::Running:
      // The command exited but something it started still holds its output open.
      child_->out.reset();
      child_->err.reset();
      child_->in.reset();
      break;
    case State::Exited:
      end(Outcome::Timeout,
          "no Shutdown from the host within " + std::to_string(opts_.shutdown_wait.count()) + " ms of Exited");
      break;
    case State::Done: break;
  }
}

// ---------------------------------------------------------------- the loop
Agent::Outcome Agent::run() {
  hello_deadline_ = Clock::now() + opts_.hello_timeout;
  send(Ready{kProtocolVersion, opts_.agent_version, opts_.kernel_release, opts_.uptime_ms});
  for (auto& line : opts_.early_logs) log(std::move(line));
  opts_.early_logs.clear();
  on_signalfd();  // zombies from before the signalfd existed
  if (ports_) ports_->start();
  std::vector<pollfd> fds;

  enum Slot { kTransport, kSignal, kOut, kErr, kIn, kExec, kTrapSink, kSlots };
  while (!outcome_) {
    flush_out();
    if (outcome_) break;
    Child* c = child_.get();
    if (c && c->status && !c->output_open()) {
      finish_command();
      continue;
    }
    fds.assign(kSlots, pollfd{-1, 0, 0});
    pollfd* p = fds.data();
    const size_t pending_out = out_.size() - out_off_;
    p[kTransport].fd = transport_.get();
    if (!transport_eof_ && !(c && c->stdin_pending() >= kMaxStdinQueue)) p[kTransport].events |= POLLIN;
    if (pending_out > 0) p[kTransport].events |= POLLOUT;
    p[kSignal].fd = sigfd_.get();
    p[kSignal].events = POLLIN;
    if (c && pending_out < kMaxOutQueue) {
      p[kOut].fd = c->out.get();
      p[kOut].events = POLLIN;
      p[kErr].fd = c->err.get();
      p[kErr].events = POLLIN;
    }
    if (c && c->in && c->stdin_pending() > 0) {
      p[kIn].fd = c->in.get();
      p[kIn].events = POLLOUT;
    }
    if (opts_.exec_listener && state_ != State::AwaitHello) {
      p[kExec].fd = opts_.exec_listener.get();
      p[kExec].events = POLLIN;
    }
    if (trap_sink_r_) {
      p[kTrapSink].fd = trap_sink_r_.get();
      p[kTrapSink].events = POLLIN;
    }
    if (ports_) ports_->add_pollfds(fds);
    p = fds.data();
    int timeout_ms = -1;
    const auto dl = deadline();
    const auto port_dl = ports_ ? ports_->deadline() : std::nullopt;
    if (port_dl) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*port_dl - Clock::now()).count();
      if (left <= 0) {
        ports_->on_deadline(Clock::now());
        continue;
      }
      timeout_ms = static_cast<int>(std::min<long long>(left, 60'000));
    }
    if (dl) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*dl - Clock::now()).count();
      if (left <= 0) {
        on_deadline();
        continue;
      }
      timeout_ms = timeout_ms < 0 ? static_cast<int>(std::min<long long>(left, 60'000))
                                  : std::min(timeout_ms, static_cast<int>(std::min<long long>(left, 60'000)));
      // Output back-pressure must not stall the drain window: it restarts while paused.
      if (state_ == State::Running && c && c->status && pending_out >= kMaxOutQueue) c->last_output = Clock::now();
    }
    const int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      error(std::string("poll: ") + std::strerror(errno));
      end(Outcome::HostGone, "poll failed");
      break;
    }
    if (p[kSignal].revents) on_signalfd();
    if (p[kTransport].revents & (POLLIN | POLLHUP | POLLERR)) on_transport_readable();
    if (outcome_) break;
    // The command's fds: output first so an exit right after writing loses nothing.
    if (child_ && p[kOut].fd >= 0 && (p[kOut].revents & (POLLIN | POLLHUP | POLLERR))) on_output(1);
    if (child_ && p[kErr].fd >= 0 && (p[kErr].revents & (POLLIN | POLLHUP | POLLERR))) on_output(2);
    if (child_ && p[kIn].fd >= 0 && p[kIn].revents) on_stdin_writable();
    // Trap descriptors before the exec listener: a session's trap is watched as soon as it is here.
    if (p[kTrapSink].fd >= 0 && p[kTrapSink].revents) on_trap_sink();
    if (p[kExec].fd >= 0 && p[kExec].revents) accept_exec();
    if (ports_) ports_->handle(std::span<const pollfd>(fds).subspan(kSlots));
  }
  // Deliver what is queued (the Exited, an Error) — bounded: the host may be gone.
  const auto flush_end = Clock::now() + opts_.flush_timeout;
  while (transport_ && out_off_ < out_.size() && Clock::now() < flush_end) {
    pollfd p{transport_.get(), POLLOUT, 0};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(flush_end - Clock::now()).count();
    if (poll(&p, 1, static_cast<int>(std::max<long long>(left, 1))) <= 0) continue;
    const size_t before = out_.size() - out_off_;
    flush_out();
    if (out_.size() - out_off_ == before && !(p.revents & POLLOUT)) break;  // POLLHUP/POLLERR
  }
  return *outcome_;
}

// ---------------------------------------------------------------- main
namespace {

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: causeway-agent                 (as PID 1 in a causeway guest: rdinit=/sbin/causeway-agent)\n"
               "       causeway-agent --test-fd N [--hello-timeout-ms MS] [--netconfig-timeout-ms MS]\n"
               "                      [--shutdown-wait-ms MS] [--test-relay-fd L] [--test-ports]\n"
               "                      [--test-exec-listen-fd M] [--test-accounts DIR] [--debug]\n"
               "                      run one session over the already-connected stream socket N and exit\n"
               "                      (no mounts, modules, network changes or power-off: for tests on a host);\n"
               "                      --test-relay-fd: serve relay streams on the listening socket L;\n"
               "                      --test-ports: report this network namespace's listeners and trap\n"
               "                      the command's bind/listen;\n"
               "                      --test-exec-listen-fd: accept exec sessions on the listening socket M;\n"
               "                      --test-accounts: resolve Run.user from DIR/etc/passwd, group, wsl.conf,\n"
               "                      login.defs, default/locale (and switch to it: needs root)\n"
               "       causeway-agent --version\n");
  std::exit(code);
}

bool parse_ms(const char* s, std::chrono::milliseconds& out) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (!end || *end || v < 1 || v > 3'600'000) return false;
  out = std::chrono::milliseconds(v);
  return true;
}

// The NETLINK_SOCK_DIAG socket listener reports read (this network namespace's).
UniqueFd open_sock_diag() { return UniqueFd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)); }

int test_main(int fd, AgentOptions opts) {
  // Emulate PID 1's view: orphans of the command come back to us.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  opts.kernel_release = kernel_release();
  opts.uptime_ms = uptime_ms();
  opts.apply_net_config = [](const NetConfig& cfg) {
    NetReport r;
    r.lines.push_back("network: test mode, not applied: " + describe(cfg, "eth0"));
    return r;
  };
  opts.run_dhcp = [] {
    NetReport r;
    r.lines.push_back("network: test mode, DHCP not run");
    return r;
  };
  Agent agent(UniqueFd(fd), std::move(opts));
  const auto outcome = agent.run();
  if (outcome != Agent::Outcome::Shutdown) console("session ended: " + agent.end_reason());
  return outcome == Agent::Outcome::Shutdown ? 0 : 1;
}

// The gateway host.causeway.internal names: the default IPv4 route's (the NAT gateway).
std::string host_alias_target(const NetConfig& cfg) {
  for (const auto& r : cfg.routes)
    if (r.prefix_len == 0 && r.dst.family == 4 && r.gateway.family == 4) return r.gateway.to_string();
  return std::string(kDefaultNatGateway);
}

NetTarget guest_net_target() {
  NetTarget t;
  t.write_resolv_conf = wsl_conf_flag("/", "network", "generateResolvConf", true);
  return t;
}

// A listening vsock socket on `port` (any CID), or an invalid fd with a log line.
UniqueFd listen_vsock(uint32_t port, const char* what, std::vector<std::string>& logs) {
  UniqueFd fd(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd.get(), 64) != 0) {
    logs.push_back(std::string(what) + ": cannot listen on vsock port " + std::to_string(port) + ": " +
                   std::strerror(errno));
    fd.reset();
  }
  return fd;
}

// PID 1 becomes the distribution's systemd; the agent goes on in the child. Returns in the
// child only. If the exec fails, PID 1 stays a plain reaper and powers off when the agent ends.
void hand_pid1_to_systemd(const std::string& systemd) {
  const pid_t agent = fork();
  if (agent < 0) {
    console(std::string("systemd: fork: ") + std::strerror(errno) + ": running without systemd");
    return;
  }
  if (agent == 0) return;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);  // ignored dispositions survive exec
  const char* argv[] = {systemd.c_str(), nullptr};
  const char* envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux", nullptr};
  execve(systemd.c_str(), const_cast<char* const*>(argv), const_cast<char* const*>(envp));
  console("systemd: cannot exec " + systemd + ": " + std::strerror(errno) + "; PID 1 only reaps now");
  for (;;) {
    const pid_t p = wait(nullptr);
    if (p == agent) stop_and_power_off(true, false);
    if (p < 0 && errno == ECHILD) stop_and_power_off(true, false);
  }
}

// Tells the host why the boot cannot go on (an Error, before any Ready), then powers off.
[[noreturn]] void boot_fatal(const BootOptions& boot, const std::string& text, bool disk_root) {
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    console("FATAL: " + text.substr(start, end - start));
    start = end + 1;
  }
  std::string err;
  UniqueFd fd = connect_host(boot, err);
  if (fd) {
    std::vector<uint8_t> bytes;
    encode_into(Error{text.size() > kMaxTextLen ? text.substr(0, kMaxTextLen) : text}, bytes);
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = write(fd.get(), bytes.data() + off, bytes.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    // Let the frame leave the virtqueue before the power goes.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  stop_and_power_off(disk_root, false);
}

[[noreturn]] void pid1_main(AgentOptions opts) {
  std::vector<std::string> early = setup_system();
  for (const auto& p : early) console(p);
  std::string cmdline;
  if (FILE* f = std::fopen("/proc/cmdline", "r")) {
    char buf[4096];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    cmdline.assign(buf, n);
    std::fclose(f);
  }
  const BootOptions boot = parse_kernel_cmdline(cmdline);
  opts.debug = opts.debug || boot.debug;
  for (const auto& w : boot.warnings) early.push_back(w);
  const uint32_t t_start = uptime_ms();
  const ModuleReport mods = load_modules();
  for (const auto& l : mods.lines) {
    console(l);
    early.push_back(l);
  }
  // A distribution's disk (rootfs.hpp): check, mount, switch root.
  bool disk_root = false;
  if (!boot.root.empty()) {
    RootResult r = switch_to_disk_root(boot.root);
    for (const auto& l : r.lines) {
      if (opts.debug) console(l);
      early.push_back(l);
    }
    if (!r.ok) boot_fatal(boot, r.fatal, false);
    disk_root = true;
  }
  const uint32_t t_root = uptime_ms();
  std::string problem;
  const std::string hostname = apply_hostname(boot.hostname, problem);
  if (!problem.empty()) early.push_back(problem);
  if (int e = set_link_up("lo")) early.push_back(std::string("cannot bring lo up: ") + std::strerror(e));
  bool systemd_pid1 = false;
  if (disk_root) {
    const bool want = boot.systemd || wsl_conf_flag("/", "boot", "systemd", false);
    const std::string systemd = want ? find_systemd("/") : std::string();
    if (want && systemd.empty()) {
      early.push_back(std::string("systemd: asked for (") + (boot.systemd ? "cw.systemd=1" : "/etc/wsl.conf [boot]") +
                      ") but the distribution has no /lib/systemd/systemd: running without it");
    } else if (want) {
      hand_pid1_to_systemd(systemd);
      systemd_pid1 = getpid() != 1;
      if (systemd_pid1) early.push_back("systemd: " + systemd + " is PID 1; the agent runs beside it");
    }
    if (!systemd_pid1)
      if (auto e = mount_cgroup2(); !e.empty()) early.push_back(e);
  }
  std::string err;
  UniqueFd fd = connect_host(boot, err);
  if (!fd) {
    console("FATAL: " + err);
    stop_and_power_off(disk_root, systemd_pid1);
  }
  const uint32_t t_connected = uptime_ms();
  early.push_back("boot: agent started at " + std::to_string(t_start) + " ms, " + std::to_string(mods.loaded) +
                  " modules loaded (" + std::to_string(mods.failed) + " failed, " + std::to_string(mods.already) +
                  " present)" + (disk_root ? ", root on " + boot.root + " at " + std::to_string(t_root) + " ms" : "") +
                  ", connected at " + std::to_string(t_connected) + " ms");
  opts.kernel_release = kernel_release();
  opts.uptime_ms = t_connected;
  opts.early_logs = std::move(early);
  opts.accounts_root = "/";
  opts.apply_net_config = [hostname](const NetConfig& cfg) {
    NetReport rep = apply_net_config(cfg, guest_net_target());
    std::string hosts_problem;
    const std::string line = write_hosts("/", hostname, host_alias_target(cfg), hosts_problem);
    if (!line.empty()) rep.lines.push_back(line);
    if (!hosts_problem.empty()) rep.ok = false, rep.lines.push_back(hosts_problem);
    return rep;
  };
  opts.run_dhcp = [hostname] {
    NetReport rep = run_dhcp(guest_net_target());
    std::string hosts_problem;
    const std::string line = write_hosts("/", hostname, kDefaultNatGateway, hosts_problem);
    if (!line.empty()) rep.lines.push_back(line);
    if (!hosts_problem.empty()) rep.ok = false, rep.lines.push_back(hosts_problem);
    return rep;
  };
  opts.apply_dns = [](const DnsConfig& d, bool ipv6) { return apply_dns_config(d, ipv6, guest_net_target()); };
  // Mirrored mode: macvlans on eth0, made when the first MirrorApply arrives.
  // shared_ptr: std::function must be copyable; the applier lives as long as the session.
  opts.apply_mirror = [applier = std::shared_ptr<MacvlanGuestApplier>()](const MirrorApply& m) mutable {
    if (!applier) {
      std::string open_error;
      applier = MacvlanGuestApplier::open(NetTarget{}.link, open_error);
      if (!applier) {
        MirrorReport rep;
        rep.generation = m.generation;
        rep.read_failed = true;
        rep.errors.push_back({"mirrored mode", open_error});
        rep.errors_total = 1;
        return rep;
      }
    }
    return apply_mirror(*applier, m);
  };
  // Automatic localhost forwarding: relays on vsock, listeners from sock_diag, the trap.
  opts.relay_listener = listen_vsock(kAgentRelayPort, "port forwarding", opts.early_logs);
  opts.sock_diag = open_sock_diag();
  if (!opts.sock_diag)
    opts.early_logs.push_back(std::string("port forwarding: no sock_diag (") + std::strerror(errno) +
                              "): guest listeners are not reported");
  opts.trap_listeners = true;
  // Exec sessions (protocol v3): more commands in this VM, from the host's other terminals.
  opts.exec_listener = listen_vsock(kAgentExecPort, "exec sessions", opts.early_logs);
  Agent agent(std::move(fd), std::move(opts));
  const auto outcome = agent.run();
  console("session ended: " + agent.end_reason() + "; powering off");
  (void)outcome;
  stop_and_power_off(disk_root, systemd_pid1);
}

}  // namespace

int agent_main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a closed transport or stdin pipe is an error code, not death
  AgentOptions opts;
  opts.agent_version = CAUSEWAY_AGENT_VERSION;
  int test_fd = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--test-fd") {
      char* end = nullptr;
      const long v = std::strtol(value(), &end, 10);
      if (!end || *end || v < 0 || v > 65535 || fcntl(static_cast<int>(v), F_GETFD) < 0) {
        std::fprintf(stderr, "causeway-agent: --test-fd needs an open file descriptor\n");
        return 2;
      }
      test_fd = static_cast<int>(v);
    } else if (a == "--hello-timeout-ms") {
      if (!parse_ms(value(), opts.hello_timeout)) usage(2);
    } else if (a == "--netconfig-timeout-ms") {
      if (!parse_ms(value(), opts.netconfig_timeout)) usage(2);
    } else if (a == "--shutdown-wait-ms") {
      if (!parse_ms(value(), opts.shutdown_wait)) usage(2);
    } else if (a == "--test-relay-fd") {
      char* end = nullptr;
      const long v = std::strtol(value(), &end, 10);
      if (!end || *end || v < 0 || v > 65535 || fcntl(static_cast<int>(v), F_GETFD) < 0) {
        std::fprintf(stderr, "causeway-agent: --test-relay-fd needs an open listening socket\n");
        return 2;
      }
      fcntl(static_cast<int>(v), F_SETFD, FD_CLOEXEC);
      opts.relay_listener.reset(static_cast<int>(v));
    } else if (a == "--test-exec-listen-fd") {
      char* end = nullptr;
      const long v = std::strtol(value(), &end, 10);
      if (!end || *end || v < 0 || v > 65535 || fcntl(static_cast<int>(v), F_GETFD) < 0) {
        std::fprintf(stderr, "causeway-agent: --test-exec-listen-fd needs an open listening socket\n");
        return 2;
      }
      opts.exec_listener.reset(static_cast<int>(v));
    } else if (a == "--test-accounts") {
      opts.accounts_root = value();
      if (opts.accounts_root.empty() || opts.accounts_root[0] != '/') {
        std::fprintf(stderr, "causeway-agent: --test-accounts needs an absolute directory\n");
        return 2;
      }
    } else if (a == "--test-ports") {
      opts.sock_diag = open_sock_diag();
      opts.trap_listeners = true;
      if (!opts.sock_diag) {
        std::fprintf(stderr, "causeway-agent: --test-ports: cannot open NETLINK_SOCK_DIAG: %s\n", std::strerror(errno));
        return 2;
      }
    } else if (a == "--debug") {
      opts.debug = true;
    } else if (a == "--version") {
      std::printf("causeway-agent %s (protocol %u)\n", CAUSEWAY_AGENT_VERSION, unsigned{kProtocolVersion});
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(0);
    } else if (getpid() == 1) {
      // The kernel passes unrecognised plain words of its command line to init: ignore them.
      continue;
    } else {
      usage(2);
    }
  }
  if (test_fd >= 0) return test_main(test_fd, std::move(opts));
  if (getpid() != 1) {
    std::fprintf(stderr,
                 "causeway-agent: this is the init of a causeway guest (kernel parameter rdinit=/sbin/causeway-agent);"
                 " to exercise it on a host, use --test-fd N\n");
    return 2;
  }
  try {
    pid1_main(std::move(opts));
  } catch (const std::exception& e) {
    console(std::string("FATAL: ") + e.what());
  } catch (...) {
    console("FATAL: unknown exception");
  }
  power_off();
}

}  // namespace causeway::agent::guest
