// QEMU process handling; see qemu_process.hpp.
#include "vmm/machine/qemu_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "base/unique_fd.hpp"

namespace causeway::machine {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);  // without pidfd only

// PATH lookup as execvp does it; "" if not found.
std::string find_in_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : std::string();
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t colon = p.find(':', start);
    if (colon == std::string::npos) colon = p.size();
    std::string dir = p.substr(start, colon - start);
    if (dir.empty()) dir = ".";
    const std::string cand = dir + "/" + name;
    struct stat st {};
    if (stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(cand.c_str(), X_OK) == 0) return cand;
    start = colon + 1;
  }
  return {};
}

ExitStatus decode(int status) {
  if (WIFSIGNALED(status)) return {true, WTERMSIG(status)};
  if (WIFEXITED(status)) return {false, WEXITSTATUS(status)};
  return {false, -1};
}

// fork + exec of `path` (already resolved: no PATH search after fork) with everything
// allocated before the fork. Returns pid or -errno.
pid_t fork_exec(const std::string& path, const std::vector<std::string>& argv, int out_fd, bool own_group,
                bool die_with_parent) {
  std::vector<char*> args;
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
    }
    if (own_group) setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) signal(s, SIG_DFL);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (out_fd >= 0) {
      dup2(out_fd, STDOUT_FILENO);
      dup2(out_fd, STDERR_FILENO);
    }
    // Nothing else of ours goes to QEMU: a descriptor without O_CLOEXEC (a forward's socket
    // libslirp opened, say) would stay open, and its port bound, in QEMU too.
    close_range(3, ~0U, 0);
    execv(path.c_str(), args.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (code < 0) return "exit status unknown";
  if (signaled) return "killed by signal " + std::to_string(code) + " (" + strsignal(code) + ")";
  return "exited with status " + std::to_string(code);
}

boost::system::result<QemuVersion, std::string> check_qemu(const std::string& binary,
                                                           std::chrono::milliseconds timeout) {
  const std::string path = find_in_path(binary);
  if (path.empty()) {
    if (binary.find('/') != std::string::npos) return binary + " not found or not executable";
    return binary + " not found in PATH: install QEMU (Debian: apt-get install qemu-system-x86)";
  }
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t pid = fork_exec(path, {path, "--version"}, wr.get(), false, true);
  if (pid < 0) return "cannot run " + path + ": " + std::strerror(-pid);
  wr.reset();
  std::string out;
  const auto end = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{rd.get(), POLLIN, 0};
    const int r = poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    char buf[1024];
    const ssize_t n = read(rd.get(), buf, sizeof buf);
    if (n <= 0) break;
    if (out.size() < 16 * 1024) out.append(buf, static_cast<size_t>(n));
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (timed_out) return path + " --version did not answer within " + std::to_string(timeout.count()) + " ms";
  const auto v = parse_qemu_version(out);
  if (!v) {
    const auto line = out.substr(0, out.find('\n'));
    return path + " --version printed no QEMU version (\"" + line + "\"; " + decode(status).describe() +
           "): is it QEMU? (Debian: apt-get install qemu-system-x86)";
  }
  if (*v < kMinQemuVersion)
    return "QEMU " + to_string(*v) + " at " + path + " is too old: causeway needs " + to_string(kMinQemuVersion) +
           " or newer (-netdev stream, vhost-user-vsock; Debian 12's qemu-system-x86 has 7.2)";
  return *v;
}

boost::system::result<void, std::string> check_guest_files(const QemuOptions& o) {
  auto check = [](const std::string& path, const char* what) -> std::string {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0)
      return std::string(what) + " " + path + ": " + std::strerror(errno) +
             " (build the default guest image with scripts/build-guest.sh, or pass --kernel/--initrd)";
    if (!S_ISREG(st.st_mode)) return std::string(what) + " " + path + " is not a regular file";
    if (st.st_size == 0) return std::string(what) + " " + path + " is empty (rebuild: scripts/build-guest.sh --force)";
    if (access(path.c_str(), R_OK) != 0)
      return std::string(what) + " " + path + " is not readable: " + std::strerror(errno);
    return {};
  };
  if (auto e = check(o.kernel, "guest kernel"); !e.empty()) return e;
  if (!o.initrd.empty())
    if (auto e = check(o.initrd, "guest initramfs"); !e.empty()) return e;
  return {};
}

// ---------------------------------------------------------------- QemuProcess
boost::system::result<std::unique_ptr<QemuProcess>, std::string> QemuProcess::spawn(
    boost::asio::any_io_executor ex, const std::vector<std::string>& argv, const std::string& output_log) {
  if (argv.empty()) return std::string("empty QEMU command line");
  const std::string path = find_in_path(argv[0]);
  if (path.empty()) return argv[0] + " not found: install QEMU (Debian: apt-get install qemu-system-x86)";
  UniqueFd log(open(output_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log) return "cannot create " + output_log + ": " + std::strerror(errno);
  const pid_t pid = fork_exec(path, argv, log.get(), true, true);
  if (pid < 0) return "cannot start " + argv[0] + ": " + std::strerror(-pid);
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  std::unique_ptr<QemuProcess> p(new QemuProcess(std::move(ex), pid, pidfd, output_log));
  p->watch();
  return p;
}

QemuProcess::QemuProcess(boost::asio::any_io_executor ex, pid_t pid, int pidfd, std::string output_log)
    : ex_(std::move(ex)), pid_(pid), output_log_(std::move(output_log)), poll_timer_(ex_), kill_timer_(ex_) {
  if (pidfd >= 0) pidfd_.emplace(ex_, pidfd);
}

QemuProcess::~QemuProcess() {
  *self_ = nullptr;
  on_exit_ = nullptr;  // no callbacks into an owner that is tearing down
  if (!status_) {
    kill(pid_, SIGKILL);
    reap(true);
  }
}

void QemuProcess::watch() {
  std::weak_ptr<QemuProcess*> weak = self_;
  auto on_tick = [weak](boost::system::error_code ec) {
    auto s = weak.lock();
    if (ec == boost::asio::error::operation_aborted || !s || !*s) return;
    QemuProcess& self = **s;
    self.reap(false);
    if (!self.status_) self.watch();
  };
  if (pidfd_) {
    pidfd_->async_wait(boost::asio::posix::stream_descriptor::wait_read, on_tick);
  } else {
    poll_timer_.expires_after(kPollInterval);
    poll_timer_.async_wait(on_tick);
  }
}

void QemuProcess::reap(bool block) {
  if (status_) return;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;                                            // still running
  status_ = r == pid_ ? decode(status) : ExitStatus{false, -1};  // ECHILD: reaped by someone else
  kill_timer_.cancel();
  if (pidfd_) {
    boost::system::error_code ignored;
    pidfd_->close(ignored);
  }
  if (on_exit_) {
    auto cb = std::move(on_exit_);
    on_exit_ = nullptr;
    cb(*status_);
  }
}

void QemuProcess::async_wait(std::function<void(const ExitStatus&)> on_exit) {
  if (status_) {
    boost::asio::post(ex_, [cb = std::move(on_exit), st = *status_] { cb(st); });
    return;
  }
  on_exit_ = std::move(on_exit);
}

void QemuProcess::terminate(std::chrono::milliseconds grace) {
  if (status_) return;
  kill(pid_, SIGTERM);
  std::weak_ptr<QemuProcess*> weak = self_;
  kill_timer_.expires_after(grace);
  kill_timer_.async_wait([weak](boost::system::error_code ec) {
    auto s = weak.lock();
    if (ec || !s || !*s || (*s)->status_) return;
    kill((*s)->pid_, SIGKILL);
  });
}

void QemuProcess::kill_now() {
  if (!status_) kill(pid_, SIGKILL);
}

std::string tail_file(const std::string& path, size_t max_lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<long long>(in.tellg());
  const long long from = size > 65536 ? size - 65536 : 0;
  in.seekg(from);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!data.empty() && (data.back() == '\n' || data.back() == '\r')) data.pop_back();
  size_t pos = data.size();
  for (size_t lines = 0; pos > 0; --pos) {
    if (data[pos - 1] == '\n' && ++lines == max_lines) break;
  }
  // The console carries guest bytes: keep the tail printable for a terminal.
  std::string out;
  for (char c : std::string_view(data).substr(pos)) {
    if (c == '\r') continue;  // the serial console ends lines with \r\n
    out.push_back((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? '?' : c);
  }
  return out;
}

}  // namespace causeway::machine
