// run_tool and find_tool (process.hpp).
#include "vmm/distro/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <sstream>

#include "base/unique_fd.hpp"

namespace causeway::distro {

namespace {

constexpr size_t kOutputTail = 4096;                  // bytes of output kept for errors
constexpr int kPollMs = 100;                          // how often `cancel` is looked at
constexpr auto kKillGrace = std::chrono::seconds(5);  // SIGTERM → SIGKILL

bool executable(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

ToolResult status_of(int wstatus) {
  ToolResult r;
  if (WIFSIGNALED(wstatus)) {
    r.signaled = true;
    r.code = WTERMSIG(wstatus);
  } else {
    r.code = WEXITSTATUS(wstatus);
  }
  return r;
}

}  // namespace

std::string ToolResult::describe() const {
  if (signaled) return "killed by signal " + std::to_string(code) + " (" + ::strsignal(code) + ")";
  return "exited with status " + std::to_string(code);
}

std::optional<std::string> find_tool(const std::string& name) {
  if (name.find('/') != std::string::npos) return executable(name) ? std::optional(name) : std::nullopt;
  const char* env = ::getenv("PATH");
  std::string path = env ? env : "/usr/bin:/bin";
  path += ":/usr/sbin:/sbin";
  std::istringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    if (executable(candidate)) return candidate;
  }
  return std::nullopt;
}

boost::system::result<ToolResult, std::string> run_tool(const std::vector<std::string>& argv,
                                                        const std::function<void(const std::string&)>& on_line,
                                                        const std::atomic<bool>* cancel) {
  auto exe = find_tool(argv.at(0));
  if (!exe) return {boost::system::in_place_error, argv[0] + ": not found"};
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {boost::system::in_place_error, std::string("pipe: ") + ::strerror(errno)};
  UniqueFd rd(fds[0]), wr(fds[1]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args[0] = exe->data();
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return {boost::system::in_place_error, std::string("fork: ") + ::strerror(errno)};
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(wr.get(), 1);
    ::dup2(wr.get(), 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  wr.reset();
  std::string tail, line;
  bool interrupted = false;
  auto term_sent = std::chrono::steady_clock::time_point{};
  for (;;) {
    if (cancel && cancel->load() && !interrupted) {
      interrupted = true;
      ::kill(pid, SIGTERM);
      term_sent = std::chrono::steady_clock::now();
    }
    if (interrupted) {
      if (std::chrono::steady_clock::now() - term_sent > kKillGrace) ::kill(pid, SIGKILL);
      // A grandchild may hold the pipe open after the tool itself is gone: stop reading then.
      int ws = 0;
      if (::waitpid(pid, &ws, WNOHANG) == pid) return {boost::system::in_place_error, std::string("interrupted")};
    }
    pollfd p{rd.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, kPollMs);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = ::read(rd.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: the tool (and whatever inherited the pipe) is done
    tail.append(buf, static_cast<size_t>(got));
    if (tail.size() > kOutputTail) tail.erase(0, tail.size() - kOutputTail);
    for (ssize_t i = 0; i < got; ++i) {
      if (buf[i] == '\n' || buf[i] == '\r') {
        if (!line.empty() && on_line) on_line(line);
        line.clear();
      } else {
        line += buf[i];
      }
    }
  }
  if (!line.empty() && on_line) on_line(line);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return {boost::system::in_place_error, std::string("waitpid: ") + ::strerror(errno)};
    if (cancel && cancel->load() && !interrupted) {
      interrupted = true;
      ::kill(pid, SIGTERM);
    }
  }
  if (interrupted || (cancel && cancel->load())) return {boost::system::in_place_error, std::string("interrupted")};
  ToolResult r = status_of(wstatus);
  r.output = std::move(tail);
  return r;
}

}  // namespace causeway::distro
