#include "tests/integration/harness.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "tests/support/net_util.hpp"

extern char** environ;

namespace causeway::integration {
namespace {

namespace tt = causeway::testtools;

constexpr Ms kExitGrace = 1s;          // after the child exits, how long to drain its pipes
constexpr Ms kKillReapTimeout = 5s;    // SIGKILL is quick; this only bounds a wedged kernel
constexpr Ms kConnectionTimeout = 2s;  // per connection a host server answers
constexpr Ms kTeardownGrace = 2s;      // a background process's time to exit on SIGTERM

int ms_until(Clock::time_point t) {
  const auto left = std::chrono::duration_cast<Ms>(t - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

int shell_status(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

UniqueFd open_pidfd(pid_t pid) { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

// True once `pid` (our child, not yet reaped) has exited. Does not reap it.
bool has_exited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

// The child has exited but is not reaped, so its PID still names its process
// group: end whatever it left behind in the group, then reap it.
int kill_group_and_reap(pid_t pid) {
  ::kill(-pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return shell_status(st);
}

// Ends a child that has not exited: its whole group, then reaps it.
int kill_running_and_reap(pid_t pid, int pidfd) {
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);  // in case it left its group
  pollfd p{pidfd, POLLIN, 0};
  ::poll(&p, 1, static_cast<int>(kKillReapTimeout.count()));
  return kill_group_and_reap(pid);
}

// posix_spawnp in a new process group with default signal handling; stdin
// from /dev/null; stdout/stderr onto the given descriptors. Returns 0 or an errno.
int spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, pid_t& pid) {
  if (argv.empty()) return EINVAL;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGQUIT}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int err = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return err;
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

UniqueFd open_socket(std::string_view ip, uint16_t port, int type, std::string& error, uint16_t* bound_port) {
  auto ep = tt::make_endpoint(ip, port);
  if (!ep) {
    error = "bad address " + std::string(ip);
    return {};
  }
  UniqueFd fd(::socket(ep->family(), type | SOCK_CLOEXEC, 0));
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) < 0 ||
      (type == SOCK_STREAM && ::listen(fd.get(), 16) < 0)) {
    error = "cannot bind " + tt::to_string(*ep) + ": " + std::strerror(errno);
    return {};
  }
  if (bound_port) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    sockaddr_in v4{};
    sockaddr_in6 v6{};
    if (ss.ss_family == AF_INET) {
      std::memcpy(&v4, &ss, sizeof v4);
      *bound_port = ntohs(v4.sin_port);
    } else {
      std::memcpy(&v6, &ss, sizeof v6);
      *bound_port = ntohs(v6.sin6_port);
    }
  }
  return fd;
}

// Opens a socket for a server or throws: a test cannot go on without it.
UniqueFd open_server_socket(std::string_view ip, int type, uint16_t& port) {
  std::string error;
  UniqueFd fd = open_socket(ip, 0, type, error, &port);
  if (!fd) throw std::runtime_error(error);
  return fd;
}

// Waits for POLLIN on `fd` or the wake eventfd until `end`; true if fd is readable.
bool wait_readable(int fd, int wake, Clock::time_point end) {
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
    const int n = ::poll(p, 2, ms_until(end));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || (p[1].revents & POLLIN)) return false;
    return (p[0].revents & POLLIN) != 0;
  }
}

std::string http_response(std::string_view body) {
  return "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + std::string(body);
}

}  // namespace

// ---- run -------------------------------------------------------------------

std::string RunResult::describe() const {
  std::ostringstream s;
  s << "status " << status << (timed_out ? " (killed at the timeout)" : "") << "\n--- stdout ---\n"
    << out << "\n--- stderr ---\n"
    << err;
  return s.str();
}

RunResult run(const std::vector<std::string>& argv, Ms timeout) {
  RunResult r;
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) < 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  UniqueFd out_r(out_pipe[0]);
  UniqueFd out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) < 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  UniqueFd err_r(err_pipe[0]);
  UniqueFd err_w(err_pipe[1]);

  pid_t pid = -1;
  if (int e = spawn(argv, out_w.get(), err_w.get(), pid)) {
    r.status = 127;
    r.err = "harness: cannot run " + join(argv) + ": " + std::strerror(e);
    return r;
  }
  out_w.reset();
  err_w.reset();
  UniqueFd pidfd = open_pidfd(pid);

  const auto deadline = Clock::now() + timeout;
  auto stop_reading = deadline;
  bool exited = false;
  // Until it has exited and both pipes are at EOF, or the deadline. A closed
  // fd reads as -1, which poll() skips.
  while (!exited || out_r || err_r) {
    if (Clock::now() >= stop_reading) break;
    pollfd p[3] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}, {exited ? -1 : pidfd.get(), POLLIN, 0}};
    const int n = ::poll(p, 3, ms_until(stop_reading));
    if (n < 0 && errno != EINTR) break;
    if (!exited && (p[2].revents & POLLIN)) {
      // Exited: descendants it left in its group go too, so the pipes reach EOF.
      exited = true;
      ::kill(-pid, SIGKILL);
      stop_reading = std::min(deadline, Clock::now() + kExitGrace);
    }
    struct Stream {
      UniqueFd& fd;
      std::string& text;
      short revents;
    };
    for (Stream s : {Stream{out_r, r.out, p[0].revents}, Stream{err_r, r.err, p[1].revents}}) {
      if (!(s.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t got = ::read(s.fd.get(), buf, sizeof buf);
      if (got > 0)
        s.text.append(buf, static_cast<size_t>(got));
      else if (got == 0 || errno != EINTR)
        s.fd.reset();
    }
  }
  if (!exited && !has_exited(pid)) {
    r.timed_out = true;
    r.status = kill_running_and_reap(pid, pidfd.get());
  } else {
    r.status = kill_group_and_reap(pid);
  }
  return r;
}

// ---- BackgroundProcess -----------------------------------------------------

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, const std::filesystem::path& dir,
                                     const std::string& name)
    : out_path_(dir / (name + ".out")), err_path_(dir / (name + ".err")) {
  UniqueFd out(::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  UniqueFd err(::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out || !err) throw std::system_error(errno, std::generic_category(), "open " + dir.string());
  if (int e = spawn(argv, out.get(), err.get(), pid_)) {
    const std::string msg = "harness: cannot run " + join(argv) + ": " + std::strerror(e) + "\n";
    (void)!::write(err.get(), msg.data(), msg.size());
    pid_ = -1;
    status_ = 127;
    return;
  }
  pidfd_ = open_pidfd(pid_);
}

BackgroundProcess::~BackgroundProcess() {
  // SIGTERM first: causeway cleans up (its resolv.conf, its command) only when it can.
  if (!status_ && pid_ > 0) stop(SIGTERM, kTeardownGrace);
}

void BackgroundProcess::reap_if_exited(int poll_ms) {
  if (status_) return;
  pollfd p{pidfd_.get(), POLLIN, 0};
  if (::poll(&p, 1, poll_ms) > 0 || has_exited(pid_)) status_ = kill_group_and_reap(pid_);
}

bool BackgroundProcess::running() {
  reap_if_exited(0);
  return !status_;
}

std::string BackgroundProcess::out() const { return read_file(out_path_); }
std::string BackgroundProcess::err() const { return read_file(err_path_); }

bool BackgroundProcess::wait_for_output(std::string_view needle, Ms timeout) {
  bool found = false;
  wait_until(
      [&] {
        found = out().find(needle) != std::string::npos;
        return found || !running();
      },
      timeout);
  // It may have printed the needle just before exiting.
  return found || out().find(needle) != std::string::npos;
}

std::optional<int> BackgroundProcess::wait_exit(Ms timeout) {
  const auto deadline = Clock::now() + timeout;
  do {
    reap_if_exited(ms_until(deadline));
  } while (!status_ && Clock::now() < deadline);
  return status_;
}

int BackgroundProcess::stop(int sig, Ms grace) {
  if (status_) return *status_;
  ::kill(pid_, sig);  // not reaped yet, so pid_ is still ours
  if (wait_exit(grace)) return *status_;
  status_ = kill_running_and_reap(pid_, pidfd_.get());
  return *status_;
}

std::string BackgroundProcess::describe() {
  running();
  std::ostringstream s;
  s << "pid " << pid_ << ", " << (status_ ? "exited with status " + std::to_string(*status_) : "running")
    << "\n--- stdout ---\n"
    << out() << "\n--- stderr ---\n"
    << err();
  return s.str();
}

// ---- files -----------------------------------------------------------------

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "causeway-it.XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// ---- addresses and ports ---------------------------------------------------

std::string_view loopback(Family f) { return f == Family::kIpv4 ? "127.0.0.1" : "::1"; }
std::string_view guest_gateway(Family f) { return f == Family::kIpv4 ? "10.0.2.2" : "fd00::2"; }
std::string url_host(std::string_view ip) {
  return ip.find(':') == std::string_view::npos ? std::string(ip) : "[" + std::string(ip) + "]";
}
std::string family_name(Family f) { return f == Family::kIpv4 ? "Ipv4" : "Ipv6"; }
void PrintTo(Family f, std::ostream* os) { *os << family_name(f); }

uint16_t pick_free_port() {
  constexpr int kAttempts = 50;
  for (int i = 0; i < kAttempts; ++i) {
    std::string error;
    uint16_t port = 0;
    UniqueFd first = open_socket("127.0.0.1", 0, SOCK_STREAM, error, &port);
    if (!first) continue;
    bool all_free = true;
    for (auto [ip, type] : {std::pair{"::1", SOCK_STREAM}, {"127.0.0.1", SOCK_DGRAM}, {"::1", SOCK_DGRAM}})
      all_free = all_free && open_socket(ip, port, type, error, nullptr).valid();
    if (all_free) return port;
  }
  throw std::runtime_error("no port free on both 127.0.0.1 and ::1 after many tries");
}

PortHolder::PortHolder(std::string_view ip, uint16_t port, int type) {
  fd_ = open_socket(ip, port, type, error_, nullptr);
}

// ---- HostTcpServer ---------------------------------------------------------

HostTcpServer::HostTcpServer(std::string_view ip, decltype(kServerLifetime) lifetime)
    : wake_(::eventfd(0, EFD_CLOEXEC)) {
  listener_ = open_server_socket(ip, SOCK_STREAM, port_);
  const auto end = Clock::now() + lifetime;
  thread_ = std::thread([this, end] { serve(end); });
}

HostTcpServer::~HostTcpServer() {
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void HostTcpServer::serve(Clock::time_point end) {
  while (wait_readable(listener_.get(), wake_.get(), end)) {
    UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    ++connections_;
    const auto conn_end = std::min(end, Clock::now() + kConnectionTimeout);
    std::string request;
    char buf[4096];
    auto complete = [&] {
      if (request.rfind("GET ", 0) == 0) return request.find("\r\n\r\n") != std::string::npos;
      return request.find('\n') != std::string::npos;
    };
    while (!complete() && request.size() < tt::kMaxMessage && wait_readable(conn.get(), wake_.get(), conn_end)) {
      const ssize_t n = ::recv(conn.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    const std::string reply = request.rfind("GET ", 0) == 0 ? http_response(kHttpBody) : tt::echo_reply(request);
    (void)!::send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
  }
}

// ---- HostUdpEchoServer -----------------------------------------------------

HostUdpEchoServer::HostUdpEchoServer(std::string_view ip, decltype(kServerLifetime) lifetime)
    : wake_(::eventfd(0, EFD_CLOEXEC)) {
  socket_ = open_server_socket(ip, SOCK_DGRAM, port_);
  const auto end = Clock::now() + lifetime;
  thread_ = std::thread([this, end] { serve(end); });
}

HostUdpEchoServer::~HostUdpEchoServer() {
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void HostUdpEchoServer::serve(Clock::time_point end) {
  std::string buf(tt::kMaxMessage, '\0');
  while (wait_readable(socket_.get(), wake_.get(), end)) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const ssize_t n = ::recvfrom(socket_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&peer), &len);
    if (n < 0) continue;
    ++datagrams_;
    const std::string reply = tt::echo_reply(std::string_view(buf.data(), static_cast<size_t>(n)));
    (void)!::sendto(socket_.get(), reply.data(), reply.size(), 0, reinterpret_cast<const sockaddr*>(&peer), len);
  }
}

}  // namespace causeway::integration
