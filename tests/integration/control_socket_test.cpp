// The control socket's own safety (cli/control.cpp): what start-up does with
// whatever already sits at --control PATH, the socket's mode, and the
// SO_PEERCRED check on each connection.
//
// The peer-credential test needs root: it forks a child that keeps uid 0 as
// its real and filesystem uid (so the 0600 socket and the test's 0700
// directory stay reachable) but takes uid 65534 as its effective uid, which
// is what SO_PEERCRED reports. A child that dropped every uid could not even
// connect to a 0600 socket — the mode alone would refuse it, and the peer
// check would go untested.
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/guest_server.hpp"
#include "tests/integration/harness.hpp"

namespace causeway::integration {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class ControlSocketSafety : public NetnsTest {};

TEST_F(ControlSocketSafety, RegularFileAtPathSurvivesAndStartFailsNamingIt) {
  TempDir dir;
  const fs::path path = dir.path() / "notes.txt";
  { std::ofstream(path) << "precious\n"; }
  const auto r = run(netns_argv({"--control", path.string()}, {"true"}));
  EXPECT_NE(r.status, 0) << r.describe();
  EXPECT_NE(r.err.find(path.string()), std::string::npos) << "the error should name the path:\n" << r.describe();
  EXPECT_NE(r.err.find("not a socket"), std::string::npos) << r.describe();
  EXPECT_EQ(read_file(path), "precious\n") << "the file at --control PATH was removed or changed";
}

TEST_F(ControlSocketSafety, SocketIsOwnerOnlyUnderUmask000) {
  const mode_t old_mask = ::umask(0);  // the child inherits it at fork, in GuestServer's constructor
  GuestServer guest({}, GuestServer::Control::kSocket);
  ::umask(old_mask);
  ASSERT_TRUE(guest.ready()) << guest.process().describe();
  struct stat st {};
  ASSERT_EQ(::stat(guest.control_socket().c_str(), &st), 0) << std::strerror(errno);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "mode is 0" << std::oct << (st.st_mode & 07777);
}

// Child exit codes for the connection attempt below.
constexpr int kRefused = 0;     // connection closed without a reply
constexpr int kAnswered = 1;    // got a reply: the peer check did not happen
constexpr int kNoConnect = 2;   // connect() failed
constexpr int kNoIdentity = 3;  // could not take the other uid

// In a forked child: become effective uid 65534 (real and filesystem uid stay
// 0), connect to `path`, ask for status, and report what happened.
[[noreturn]] void connect_as_other_uid(const std::string& path) {
  if (::setresuid(0, kNobody, 0) != 0 || ::geteuid() != kNobody) ::_exit(kNoIdentity);
  ::setfsuid(0);
  if (::setfsuid(static_cast<uid_t>(-1)) != 0) ::_exit(kNoIdentity);  // setfsuid(-1) reads it back
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(kNoConnect);
  const std::string req = "{\"cmd\":\"status\"}\n";
  (void)::send(s, req.data(), req.size(), MSG_NOSIGNAL);
  timeval tv{3, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256];
  const ssize_t n = ::recv(s, buf, sizeof buf, 0);
  ::_exit(n > 0 ? kAnswered : kRefused);
}

TEST_F(ControlSocketSafety, PeerWithAnotherUidIsRefusedAndCounted) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "SKIPPED LOUDLY: needs root to connect as another uid (run the integration tests as root)";
  GuestServer guest({}, GuestServer::Control::kSocket);
  ASSERT_TRUE(guest.ready()) << guest.process().describe();

  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) connect_as_other_uid(guest.control_socket());
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), kRefused)
      << "child exit code " << WEXITSTATUS(wstatus) << " (1: answered, 2: could not connect, 3: could not change uid)";

  // Our own uid (root) is still served, and the refusal was counted.
  const auto status = run(ctl_argv(guest.control_socket(), {"status"}));
  ASSERT_EQ(status.status, 0) << status.describe();
  const json j = json::parse(status.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << status.out;
  EXPECT_EQ(j.value("control", json::object()).value("refused_peers", -1), 1) << status.out;
  EXPECT_NE(guest.process().err().find("refused a connection"), std::string::npos) << guest.process().describe();
}

}  // namespace
}  // namespace causeway::integration
