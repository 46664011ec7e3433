// Integration-test harness: real processes, real sockets, bounded waits.
//
// What it gives a test:
//   run()              run argv (no shell), capture stdout/stderr, hard timeout
//   BackgroundProcess  start argv, output to files, poll it, stop it by PID
//   wait_until()       poll a predicate until it holds or a deadline passes
//   pick_free_port()   a port free for TCP and UDP on 127.0.0.1 and ::1
//   HostTcpServer      a tiny server on a loopback address: echo protocol
//                      (tests/support/net_util.hpp) or, for curl, HTTP/1.0
//   HostUdpEchoServer  the echo protocol over UDP
//   PortHolder         a socket that keeps a host port busy
//   TempDir            a private directory removed with everything in it
//
// Processes: every child runs in its own process group (pgid = its PID) with
// default signal dispositions. A timeout, or a child that exits and leaves
// descendants behind, ends the whole group by that id (SIGKILL) — nothing is ever
// killed by name. Children are watched through a pidfd, so the harness never
// reaps what it did not start (gtest's own children are not disturbed).
//
// Servers run on one thread each, answer one connection at a time and stop
// when destroyed or when their lifetime (kServerLifetime) ends, so a hung
// test cannot leave them listening forever.
//
// Thread safety: run() and the free functions are safe from any thread;
// BackgroundProcess and TempDir are confined to the creating thread; the
// servers' accessors (port(), connections(), datagrams()) are thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/unique_fd.hpp"

namespace causeway::integration {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

inline constexpr Ms kDefaultRunTimeout = 10s;
inline constexpr Ms kPollInterval = 10ms;
inline constexpr auto kServerLifetime = 45s;  // longer than any one test; bounds a leaked server

// ---- processes -------------------------------------------------------------

struct RunResult {
  int status = -1;         // exit code, or 128 + signal like a shell; 127 if it could not be started
  bool timed_out = false;  // the harness killed it at the deadline
  std::string out;
  std::string err;

  std::string describe() const;  // status, stdout and stderr, for assertion messages
};

// Runs argv[0] (searched in PATH) with stdin from /dev/null and waits at most `timeout`.
RunResult run(const std::vector<std::string>& argv, Ms timeout = kDefaultRunTimeout);

// A process running while the test does; stdout and stderr go to
// DIR/NAME.out and DIR/NAME.err. Destroying it stops it: SIGTERM, then
// after a grace period SIGKILL to its whole process group.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::filesystem::path& dir, const std::string& name);
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;
  ~BackgroundProcess();

  pid_t pid() const { return pid_; }
  bool running();
  std::string out() const;
  std::string err() const;

  // Polls stdout for `needle`; false if the process exits or time runs out first.
  bool wait_for_output(std::string_view needle, Ms timeout);
  // The exit status (shell-style) once it has exited within `timeout`.
  std::optional<int> wait_exit(Ms timeout);
  // Sends `sig`; after `grace` SIGKILLs the group. Returns the exit status.
  int stop(int sig, Ms grace = 5s);
  // "pid N, status S, stdout ..., stderr ..." for assertion messages.
  std::string describe();

 private:
  void reap_if_exited(int poll_ms);

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::optional<int> status_;
  std::filesystem::path out_path_;
  std::filesystem::path err_path_;
};

// ---- files -----------------------------------------------------------------

class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& p);  // "" if unreadable

// ---- polling ---------------------------------------------------------------

// Polls `pred` every `interval` until it returns true (→ true) or `timeout`
// has passed (→ false). The predicate runs at least once.
template <class Pred>
bool wait_until(Pred&& pred, Ms timeout, Ms interval = kPollInterval) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

// ---- addresses and ports ---------------------------------------------------

enum class Family { kIpv4, kIpv6 };

std::string_view loopback(Family f);        // "127.0.0.1" / "::1"
std::string_view guest_gateway(Family f);   // what the guest dials for the host's loopback: "10.0.2.2" / "fd00::2"
std::string url_host(std::string_view ip);  // "10.0.2.2" / "[fd00::2]"
std::string family_name(Family f);          // "Ipv4" / "Ipv6", for test parameter names
void PrintTo(Family f, std::ostream* os);   // gtest prints parameters with this

// A port that was free for TCP and UDP on both 127.0.0.1 and ::1 when asked
// (ports from the kernel's ephemeral range, found by binding port 0).
uint16_t pick_free_port();

// ---- host servers ----------------------------------------------------------

class HostTcpServer {
 public:
  // A request starting "GET " is answered as HTTP/1.0 with body kHttpBody;
  // any other request gets the echo protocol's reply to its first line.
  static constexpr std::string_view kHttpBody = "hello from the host loopback\n";

  explicit HostTcpServer(std::string_view ip, decltype(kServerLifetime) lifetime = kServerLifetime);
  HostTcpServer(const HostTcpServer&) = delete;
  HostTcpServer& operator=(const HostTcpServer&) = delete;
  ~HostTcpServer();

  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void serve(Clock::time_point end);

  uint16_t port_ = 0;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: the destructor's stop signal
  std::atomic<int> connections_{0};
  std::thread thread_;
};

class HostUdpEchoServer {
 public:
  explicit HostUdpEchoServer(std::string_view ip, decltype(kServerLifetime) lifetime = kServerLifetime);
  HostUdpEchoServer(const HostUdpEchoServer&) = delete;
  HostUdpEchoServer& operator=(const HostUdpEchoServer&) = delete;
  ~HostUdpEchoServer();

  uint16_t port() const { return port_; }
  int datagrams() const { return datagrams_.load(); }

 private:
  void serve(Clock::time_point end);

  uint16_t port_ = 0;
  UniqueFd socket_;
  UniqueFd wake_;
  std::atomic<int> datagrams_{0};
  std::thread thread_;
};

// Keeps ip:port busy (a listening TCP socket, or a bound UDP one) while alive.
class PortHolder {
 public:
  PortHolder(std::string_view ip, uint16_t port, int type);
  bool ok() const { return fd_.valid(); }
  const std::string& error() const { return error_; }

 private:
  UniqueFd fd_;
  std::string error_;
};

}  // namespace causeway::integration
