// The instance daemon and its start; see instance_daemon.hpp.
#include "cli/instance_daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "base/log.hpp"
#include "vmm/distro/store.hpp"

namespace causeway::cli {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxRelayedLines = 60;

// The daemon's end of the ready pipe: one answer, then closed.
class ReadyPipe {
 public:
  explicit ReadyPipe(int fd) : fd_(fd) {}
  ~ReadyPipe() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] bool answered() const { return fd_ < 0; }
  void ready() { answer("ready\n"); }
  void error(const std::string& text) { answer("error\n" + text + (text.ends_with('\n') ? "" : "\n")); }

 private:
  void answer(const std::string& msg) {
    if (fd_ < 0) return;
    size_t off = 0;
    while (off < msg.size()) {
      const ssize_t n = ::write(fd_, msg.data() + off, msg.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the client is gone: nobody to tell
      off += static_cast<size_t>(n);
    }
    ::close(fd_);
    fd_ = -1;
  }
  int fd_;
};

// What this daemon printed (its stderr is `log` when a client started it):
// the lines a user would have seen from `causeway run`, minus info/debug.
std::string printed_since_start(const fs::path& log) {
  std::fflush(stderr);
  struct stat err {
  }, file{};
  if (::fstat(2, &err) != 0 || ::stat(log.c_str(), &file) != 0 || err.st_ino != file.st_ino ||
      err.st_dev != file.st_dev)
    return {};
  std::ifstream f(log);
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) {
    if (line.find(": info: ") != std::string::npos || line.find(": debug: ") != std::string::npos) continue;
    lines.push_back(std::move(line));
  }
  const size_t from = lines.size() > kMaxRelayedLines ? lines.size() - kMaxRelayedLines : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) out += lines[i] + "\n";
  return out;
}

}  // namespace

int run_instance_daemon(const InstanceDaemonOptions& d, RunOptions ro, NetSettings s) {
  ReadyPipe pipe(d.ready_fd);
  auto fail = [&pipe](const std::string& why) {
    std::fprintf(stderr, "causeway run: %s\n", why.c_str());
    pipe.error("causeway run: " + why);
    return kExitFailure;
  };
  if (auto bad = distro::check_name(d.name)) return fail(*bad);
  const distro::Dirs dirs = distro::default_dirs();
  const InstancePaths paths = instance_paths(dirs.runtime, d.name);
  if (auto r = prepare_instance_dirs(paths); r.has_error()) return fail(r.error());
  // Others probe the lock for a moment (distro::instance_running): a short wait absorbs that.
  auto lock = FileLock::exclusive(paths.lock, std::chrono::seconds(2));
  if (lock.has_error())
    return fail(lock.error().held ? fmt::format("{} is already running (causeway terminate {})", d.name, d.name)
                                  : lock.error().why);
  auto found = distro::Store(dirs.data).find(d.name);
  if (found.has_error()) return fail(found.error());

  ro.disk = found->image.string();
  std::string params = "cw.hostname=" + d.name + (d.systemd ? " cw.systemd=1" : "");
  ro.cmdline = ro.cmdline.empty() ? params : params + " " + ro.cmdline;
  ro.guest_env = true;
  InstanceRole role;
  role.paths = paths;
  role.idle_timeout_ms = d.idle_timeout_ms;
  role.state = nlohmann::json{{"distro", d.name},
                              {"image", found->image.string()},
                              {"started", distro::utc_timestamp_now()},
                              {"idle_timeout_ms", d.idle_timeout_ms},
                              {"systemd", d.systemd}};
  role.on_ready = [&pipe] { pipe.ready(); };
  ro.instance = &role;
  spdlog::info("starting {} ({})", d.name, found->image.string());
  const int code = attach_vm(ro, std::move(s));
  if (!pipe.answered()) {
    std::string said = printed_since_start(paths.log);
    if (said.empty()) said = fmt::format("causeway run: the VM of {} stopped before it was ready", d.name);
    pipe.error(said);
  }
  return code;
}

// ---------------------------------------------------------------- the client's side

std::vector<std::string> daemon_argv(std::string_view name, const std::vector<GivenOption>& options,
                                     const fs::path& cwd, std::vector<std::string>& passed) {
  static const std::set<std::string, std::less<>> kNotForTheVm = {"--distribution", "--user", "--cd", "--tty",
                                                                  "--help"};
  static const std::set<std::string, std::less<>> kPaths = {"--config", "--guest-dir",   "--kernel",
                                                            "--initrd", "--console-log", "--host-resolv-conf"};
  std::vector<std::string> args{"instance", std::string(name)};
  for (const auto& o : options) {
    if (kNotForTheVm.contains(o.name)) continue;
    passed.push_back(o.name);
    for (size_t i = 0; i < o.flag_count; ++i) args.push_back(o.name);
    for (const auto& v : o.values) {
      args.push_back(o.name);
      args.push_back(kPaths.contains(o.name) && !v.empty() && v.front() != '/' ? (cwd / v).lexically_normal().string()
                                                                               : v);
    }
  }
  return args;
}

namespace {

// The child of fork(): no allocation-heavy work; report failures on the pipe.
[[noreturn]] void exec_daemon(int ready_w, int log_fd, const std::vector<std::string>& argv) {
  ::setsid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    dprintf(ready_w, "error\ncauseway run: cannot start the instance daemon: fork: %s\n", std::strerror(errno));
    ::_exit(1);
  }
  if (pid > 0) {
    dprintf(ready_w, "pid %d\n", static_cast<int>(pid));
    ::_exit(0);
  }
  const int null_fd = ::open("/dev/null", O_RDONLY);
  ::dup2(null_fd, 0);
  ::dup2(log_fd, 1);
  ::dup2(log_fd, 2);
  ::fcntl(ready_w, F_SETFD, 0);  // inherited by the daemon
  // Nothing else is: a descriptor our caller left open without O_CLOEXEC (a test harness's
  // pipe, a shell's redirection) would otherwise be held for the VM's whole life.
  if (ready_w > 3) ::close_range(3, static_cast<unsigned>(ready_w) - 1, 0);
  ::close_range(static_cast<unsigned>(ready_w) + 1, ~0U, 0);
  if (::chdir("/") != 0) ::_exit(1);
  // A caller's blocked or ignored signals must not reach the daemon.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGHUP, SIG_DFL);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  ::execv("/proc/self/exe", cargv.data());
  dprintf(ready_w, "error\ncauseway run: cannot start the instance daemon: exec /proc/self/exe: %s\n",
          std::strerror(errno));
  ::_exit(127);
}

struct ReadyReader {
  std::string got;
  pid_t pid = -1;

  // Parses "pid P\n" away; true once the answer ("ready" / "error…" + EOF) is complete.
  void take_pid() {
    if (pid >= 0 || !got.starts_with("pid ")) return;
    const size_t nl = got.find('\n');
    if (nl == std::string::npos) return;
    pid = static_cast<pid_t>(std::atoi(got.c_str() + 4));
    got.erase(0, nl + 1);
  }
  [[nodiscard]] bool ready() const { return got.starts_with("ready\n"); }
};

}  // namespace

boost::system::result<DaemonStart, std::string> start_instance_daemon(const InstancePaths& p,
                                                                      std::vector<std::string> args,
                                                                      std::chrono::milliseconds timeout,
                                                                      bool progress) {
  using R = boost::system::result<DaemonStart, std::string>;
  auto err = [](std::string s) { return R(boost::system::in_place_error, std::move(s)); };
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return err(fmt::format("cannot make a pipe: {}", std::strerror(errno)));
  UniqueFd ready_r(fds[0]), ready_w(fds[1]);
  UniqueFd log(::open(p.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!log) return err(fmt::format("cannot create {}: {}", p.log.string(), std::strerror(errno)));
  std::vector<std::string> argv{"causeway"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--ready-fd", std::to_string(ready_w.get())});
  const pid_t child = ::fork();
  if (child < 0) return err(fmt::format("cannot start the instance daemon: fork: {}", std::strerror(errno)));
  if (child == 0) exec_daemon(ready_w.get(), log.get(), argv);
  ready_w.reset();
  log.reset();
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {}

  ReadyReader rr;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const bool tty = progress && ::isatty(2);
  if (tty) std::fprintf(stderr, "Starting %s…", p.name.c_str());
  bool eof = false;
  while (!eof && !rr.ready()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{ready_r.get(), POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = ::read(ready_r.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) eof = true;
    if (got > 0) rr.got.append(buf, static_cast<size_t>(got));
    rr.take_pid();
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (rr.ready()) return DaemonStart{rr.pid};
  if (rr.got.starts_with("error\n")) return err(rr.got.substr(6));
  if (!eof) {
    // Past the bound: stop it (it may still be booting) rather than leave a VM nobody waits for.
    if (rr.pid > 0) ::kill(rr.pid, SIGTERM);
    return err(fmt::format("causeway run: {} did not start within {} s (see {})", p.name,
                           std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), p.log.string()));
  }
  return err(fmt::format("causeway run: the instance daemon of {} exited without saying why (see {})", p.name,
                         p.log.string()));
}

}  // namespace causeway::cli
