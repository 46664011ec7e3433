// base/sandbox: confine() in a forked child, as this user and (as root) as nobody.
//
// Each test forks; the child confines itself and does what the test needs; the parent
// reads /proc/CHILD/status while the child waits (as `ctl status` users and the e2e tests
// do), and the child's exit status or death signal. A child never runs a GoogleTest
// assertion: it reports by exit code or through a pipe.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "base/sandbox/sandbox.hpp"

namespace causeway::sandbox {
namespace {
namespace fs = std::filesystem;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Who the child is: this process's user, or (root only) nobody.
enum class As { Self, Nobody };

std::string status_line(pid_t pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.starts_with(key + ":")) return line.substr(key.size() + 1);
  return {};
}
std::string trim(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(0, 1);
  return s;
}

struct Child {
  pid_t pid = -1;
  int ready_r = -1;  // the child writes one byte once confined (or 'x' when it failed)
  int go_w = -1;     // the parent writes one byte: go on
  char confined = 0;

  // Waits (bounded) for the child's exit; returns the raw wait status.
  int finish(std::chrono::seconds bound = std::chrono::seconds(20)) {
    if (go_w >= 0) {
      [[maybe_unused]] auto w = ::write(go_w, "g", 1);
      ::close(go_w);
      go_w = -1;
    }
    const auto end = std::chrono::steady_clock::now() + bound;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > end) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "child " << pid << " did not finish in time";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (ready_r >= 0) ::close(ready_r);
    return status;
  }
};

// Forks a child that becomes `as`, confines itself with `p`, reports, waits for the
// parent's go, then runs `after` and exits with its return value.
Child spawn(As as, const Policy& p, const std::function<int()>& after) {
  int ready[2], go[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    ::close(go[1]);
    if (as == As::Nobody) {
      const passwd* pw = ::getpwnam("nobody");
      if (!pw || ::setgroups(0, nullptr) != 0 || ::setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
          ::setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0)
        ::_exit(90);
      ::prctl(PR_SET_DUMPABLE, 1);  // as after an exec: /proc/self stays ours (uid_map)
    }
    const Status s = confine(p);
    const char c = s.on() ? 'y' : (s.seccomp ? 's' : 'x');
    [[maybe_unused]] auto w = ::write(ready[1], &c, 1);
    char g = 0;
    [[maybe_unused]] auto r = ::read(go[0], &g, 1);
    ::_exit(after());
  }
  ::close(ready[1]);
  ::close(go[0]);
  Child ch{pid, ready[0], go[1]};
  [[maybe_unused]] auto r = ::read(ch.ready_r, &ch.confined, 1);
  return ch;
}

class SandboxTest : public ::testing::TestWithParam<As> {
 protected:
  void SetUp() override {
    if (GetParam() == As::Nobody && ::geteuid() != 0) GTEST_SKIP() << "needs root to become nobody";
    dir_ = fs::temp_directory_path() / ("cw-sandbox-test." + std::to_string(::getpid()));
    fs::create_directories(dir_ / "ro");
    fs::create_directories(dir_ / "rw");
    std::ofstream(dir_ / "ro" / "kept") << "kept\n";
    // nobody must reach them (the test directory is ours).
    fs::permissions(dir_, fs::perms::all);
    fs::permissions(dir_ / "ro", fs::perms::all);
    fs::permissions(dir_ / "rw", fs::perms::all);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  Policy policy() const {
    Policy p;
    p.mode = "serve";
    p.read_only = {dir_ / "ro"};
    p.read_write = {dir_ / "rw"};
    return p;
  }
  fs::path dir_;
};

TEST_P(SandboxTest, ConfinedProcessHasNoNewPrivsSeccompAndNoCapabilities) {
  Child c = spawn(GetParam(), policy(), [] { return 0; });
  ASSERT_GT(c.pid, 0);
  // Sanitizer builds apply no mount isolation ('s': seccomp and the rest, not every layer).
  EXPECT_EQ(c.confined, kSanitized ? 's' : 'y') << "confine() did not apply every layer (see the child's log)";
  EXPECT_EQ(trim(status_line(c.pid, "NoNewPrivs")), "1");
  EXPECT_EQ(trim(status_line(c.pid, "Seccomp")), "2");
  EXPECT_EQ(trim(status_line(c.pid, "CapEff")), "0000000000000000");
  EXPECT_EQ(trim(status_line(c.pid, "CapPrm")), "0000000000000000");
  EXPECT_EQ(trim(status_line(c.pid, "CapInh")), "0000000000000000");
  EXPECT_EQ(trim(status_line(c.pid, "CapAmb")), "0000000000000000");
  const int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

TEST_P(SandboxTest, ForbiddenSyscallKillsWithSigsys) {
  if (kSanitized) GTEST_SKIP() << "sanitizer build: the filter logs instead of killing";
  Child c = spawn(GetParam(), policy(), [] {
    ::syscall(SYS_ptrace, 0, 0, 0, 0);  // not on any mode's list
    return 0;
  });
  ASSERT_GT(c.pid, 0);
  const int st = c.finish();
  ASSERT_TRUE(WIFSIGNALED(st)) << "the child survived ptrace (status " << st << ")";
  EXPECT_EQ(WTERMSIG(st), SIGSYS);
}

TEST_P(SandboxTest, NewProcessesAreRefusedButThreadsStart) {
  if (kSanitized) GTEST_SKIP() << "sanitizer build: the filter logs instead of killing";
  Child threads = spawn(GetParam(), policy(), [] {
    int x = 0;
    std::thread t([&x] { x = 7; });
    t.join();
    return x == 7 ? 0 : 1;
  });
  ASSERT_GT(threads.pid, 0);
  const int st1 = threads.finish();
  EXPECT_TRUE(WIFEXITED(st1) && WEXITSTATUS(st1) == 0) << "a thread could not start (status " << st1 << ")";

  Child forks = spawn(GetParam(), policy(), [] {
    const pid_t p = ::fork();
    if (p == 0) ::_exit(0);
    return 3;  // fork returned: it must not have
  });
  ASSERT_GT(forks.pid, 0);
  const int st2 = forks.finish();
  ASSERT_TRUE(WIFSIGNALED(st2)) << "fork was allowed (status " << st2 << ")";
  EXPECT_EQ(WTERMSIG(st2), SIGSYS);
}

TEST_P(SandboxTest, EmptyRootHidesTheHostExceptKeptPaths) {
  if (kSanitized) GTEST_SKIP() << "sanitizer build: no mount isolation";
  const fs::path ro = dir_ / "ro", rw = dir_ / "rw";
  Child c = spawn(GetParam(), policy(), [ro, rw] {
    int bad = 0;
    struct stat st {};
    if (::stat("/home", &st) == 0) bad |= 1;
    if (::stat("/etc/passwd", &st) == 0) bad |= 2;
    if (::stat("/proc/self", &st) == 0) bad |= 4;
    if (::stat("/usr/bin", &st) == 0) bad |= 8;
    std::ifstream kept(ro / "kept");
    std::string line;
    if (!std::getline(kept, line) || line != "kept") bad |= 16;
    const int w = ::open((ro / "new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (w >= 0 || errno != EROFS) bad |= 32;
    const int f = ::open((rw / "new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0) bad |= 64;
    if (f >= 0) ::close(f);
    if (::open("/dev/urandom", O_RDONLY | O_CLOEXEC) < 0) bad |= 128;
    rlimit nofile{};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    if (nofile.rlim_cur != nofile.rlim_max) return 100;
    return bad;
  });
  ASSERT_GT(c.pid, 0);
  const int st = c.finish();
  ASSERT_TRUE(WIFEXITED(st)) << "status " << st;
  EXPECT_EQ(WEXITSTATUS(st), 0) << "bits: 1 /home, 2 /etc, 4 /proc, 8 /usr visible; 16 kept file unreadable; "
                                   "32 read-only dir writable; 64 read-write dir not writable; 128 no /dev/urandom; "
                                   "100 RLIMIT_NOFILE not locked";
  EXPECT_TRUE(fs::exists(rw / "new")) << "a file made in the kept read-write directory is not on the host";
}

TEST_P(SandboxTest, KeptDirectoryCanBeRemoved) {
  const fs::path rw = dir_ / "rw";
  Child c = spawn(GetParam(), policy(), [rw] {
    std::ofstream(rw / "f") << "x";
    return remove_kept_directory(rw) ? 1 : 0;
  });
  ASSERT_GT(c.pid, 0);
  const int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
  EXPECT_FALSE(fs::exists(rw)) << "remove_kept_directory left " << rw;
}

TEST_P(SandboxTest, NoSandboxAppliesNothing) {
  Policy p = policy();
  p.enabled = false;
  Child c = spawn(GetParam(), p, [] { return current().reason.find("--no-sandbox") != std::string::npos ? 0 : 1; });
  ASSERT_GT(c.pid, 0);
  EXPECT_EQ(c.confined, 'x');
  EXPECT_EQ(trim(status_line(c.pid, "NoNewPrivs")), "0");
  EXPECT_EQ(trim(status_line(c.pid, "Seccomp")), "0");
  const int st = c.finish();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

INSTANTIATE_TEST_SUITE_P(Users, SandboxTest, ::testing::Values(As::Self, As::Nobody),
                         [](const auto& tp) { return tp.param == As::Self ? "AsThisUser" : "AsNobody"; });

TEST(SandboxStatus, JsonNamesEveryLayer) {
  Status s;
  s.enabled = true;
  s.mode = "vm";
  s.no_new_privs = s.caps_dropped = s.mount_isolated = s.seccomp = s.rlimits = true;
  EXPECT_TRUE(s.on());
  const auto j = s.to_json();
  for (const char* k : {"on", "enabled", "mode", "no_new_privs", "caps_dropped", "mount_isolated", "seccomp", "rlimits",
                        "syscalls", "reason"})
    EXPECT_TRUE(j.contains(k)) << k;
  s.seccomp = false;
  EXPECT_FALSE(s.on());
}

TEST(SandboxStatus, SupportSummaryNamesSeccompAndMountIsolation) {
  const std::string s = support_summary();
  EXPECT_NE(s.find("seccomp"), std::string::npos) << s;
  EXPECT_NE(s.find("mount isolation"), std::string::npos) << s;
}

}  // namespace
}  // namespace causeway::sandbox
