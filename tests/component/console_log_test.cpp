// ConsoleLog (vmm/machine/console_log.hpp) over a real unix socket, as QEMU's `-chardev socket`
// would write to it: the file stays under its cap, keeps the newest output, and a full disk
// (/dev/full) drops output without stalling the writer.
#include "vmm/machine/console_log.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "base/sandbox/sandbox.hpp"
#include "base/unique_fd.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::machine {
namespace {

using namespace std::chrono_literals;

struct TempDir {
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "cw-console.XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

UniqueFd connect_unix(const std::string& path) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Writes `total` bytes of numbered lines from a thread-free loop, running the io_context in
// between so the log drains the socket.
std::string feed(boost::asio::io_context& io, int fd, size_t total) {
  std::string sent;
  for (int i = 0; sent.size() < total; ++i) {
    const std::string line = "line " + std::to_string(i) + " of the guest console\n";
    sent += line;
    size_t off = 0;
    while (off < line.size()) {
      const ssize_t w = ::send(fd, line.data() + off, line.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) off += static_cast<size_t>(w);
      io.poll();
    }
  }
  return sent;
}

TEST(ConsoleLog, FileStaysUnderItsCapAndKeepsTheNewestOutput) {
  TempDir dir;
  boost::asio::io_context io;
  const std::string file = dir.path + "/console.log";
  constexpr uint64_t kCap = 64 * 1024;
  ConsoleLog log(io, dir.path + "/console.sock", file, kCap);
  ASSERT_FALSE(log.start());
  UniqueFd qemu = connect_unix(log.socket_path());
  const std::string sent = feed(io, qemu.get(), 1u << 20);  // 16 × the cap
  qemu.reset();
  testing::run_until(
      io, [&] { return log.stats().bytes_in == sent.size(); }, 5s);
  EXPECT_EQ(log.stats().bytes_in, sent.size());
  const auto size = std::filesystem::file_size(file);
  const auto older = std::filesystem::file_size(file + ".1");
  EXPECT_LE(size + older, kCap);
  EXPECT_GE(log.stats().rotations, 15u);
  // The newest bytes are at the end of FILE, right after FILE.1's.
  const std::string kept = read_all(file + ".1") + read_all(file);
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(sent.substr(sent.size() - kept.size()), kept);
}

TEST(ConsoleLog, FullDiskDropsOutputAndKeepsReading) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full to stand for a full disk";
  TempDir dir;
  boost::asio::io_context io;
  ConsoleLog log(io, dir.path + "/console.sock", "/dev/full", 64 * 1024);
  ASSERT_FALSE(log.start());
  UniqueFd qemu = connect_unix(log.socket_path());
  const std::string sent = feed(io, qemu.get(), 256 * 1024);  // returns only if the log kept reading
  testing::run_until(
      io, [&] { return log.stats().bytes_in == sent.size(); }, 5s);
  EXPECT_EQ(log.stats().bytes_in, sent.size());
  EXPECT_EQ(log.stats().bytes_written, 0u);
  EXPECT_EQ(log.stats().bytes_dropped, sent.size());
  EXPECT_GT(log.stats().write_errors, 0u);
  EXPECT_EQ(log.stats().rotations, 0u) << "a device is never renamed";
}

// The VM confines itself with its console log running (base/sandbox): rotation
// (rename, reopen) must be inside the VM mode's allowlist and kept paths, or the
// first rotation would kill the engine. The child confines as the engine does.
TEST(ConsoleLog, RotatesInsideTheVmSandbox) {
  TempDir dir;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    boost::asio::io_context io;
    const std::string file = dir.path + "/console.log";
    ConsoleLog log(io, dir.path + "/console.sock", file, 64 * 1024);
    if (log.start()) ::_exit(10);
    UniqueFd qemu = connect_unix(log.socket_path());
    sandbox::Policy policy;
    policy.mode = "vm";
    policy.read_write = {dir.path};
    (void)sandbox::confine(policy);
    const std::string sent = feed(io, qemu.get(), 256 * 1024);
    testing::run_until(
        io, [&] { return log.stats().bytes_in == sent.size(); }, 5s);
    if (log.stats().rotations < 3) ::_exit(11);
    if (std::filesystem::file_size(file) + std::filesystem::file_size(file + ".1") > 64 * 1024) ::_exit(12);
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) << "the VM's seccomp filter killed the rotation";
  ASSERT_TRUE(WIFEXITED(st)) << "status " << st;
  EXPECT_EQ(WEXITSTATUS(st), 0) << "10: no start, 11: no rotation, 12: over the cap";
}

}  // namespace
}  // namespace causeway::machine
