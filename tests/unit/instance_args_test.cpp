// What `run -d` passes to a new VM's daemon (cli/instance_daemon.hpp:
// daemon_argv) and the default command of a distribution (login_shell_argv).
#include <gtest/gtest.h>

#include "cli/attach_vm.hpp"
#include "cli/instance_daemon.hpp"

namespace causeway::cli {
namespace {

TEST(DaemonArgv, VmOptionsPassAndTheCommandsOwnDoNot) {
  std::vector<std::string> passed;
  const auto args = daemon_argv("deb",
                                {{"--distribution", {"deb"}, 0},
                                 {"--user", {"alice"}, 0},
                                 {"--cd", {"/srv"}, 0},
                                 {"--tty", {}, 1},
                                 {"--memory", {"2G"}, 0},
                                 {"--publish", {"8080:80", "5353:53/udp"}, 0},
                                 {"--quiet", {}, 1},
                                 {"--mode", {"mirrored"}, 0}},
                                "/home/u", passed);
  EXPECT_EQ(args, (std::vector<std::string>{"instance", "deb", "--memory", "2G", "--publish", "8080:80", "--publish",
                                            "5353:53/udp", "--quiet", "--mode", "mirrored"}));
  EXPECT_EQ(passed, (std::vector<std::string>{"--memory", "--publish", "--quiet", "--mode"}));
}

TEST(DaemonArgv, RelativePathsBecomeAbsoluteForADaemonThatRunsInRoot) {
  std::vector<std::string> passed;
  const auto args = daemon_argv("deb",
                                {{"--config", {"cfg/causeway.conf"}, 0},
                                 {"--guest-dir", {"../build/guest"}, 0},
                                 {"--kernel", {"/boot/vmlinuz"}, 0},
                                 {"--host-resolv-conf", {"./resolv.conf"}, 0},
                                 {"--dns-search", {"corp.example"}, 0}},
                                "/home/u/src", passed);
  EXPECT_EQ(args,
            (std::vector<std::string>{"instance", "deb", "--config", "/home/u/src/cfg/causeway.conf", "--guest-dir",
                                      "/home/u/build/guest", "--kernel", "/boot/vmlinuz", "--host-resolv-conf",
                                      "/home/u/src/resolv.conf", "--dns-search", "corp.example"}));
}

TEST(DaemonArgv, NothingGivenIsJustTheName) {
  std::vector<std::string> passed;
  EXPECT_EQ(daemon_argv("x", {}, "/", passed), (std::vector<std::string>{"instance", "x"}));
  EXPECT_TRUE(passed.empty());
}

TEST(LoginShell, IsTheUsersShellAsALoginShellThroughBinSh) {
  const auto argv = login_shell_argv();
  ASSERT_EQ(argv.size(), 3u);
  EXPECT_EQ(argv[0], "/bin/sh");
  EXPECT_EQ(argv[1], "-c");
  EXPECT_NE(argv[2].find("${SHELL:-/bin/sh}"), std::string::npos);
  EXPECT_NE(argv[2].find(" -l"), std::string::npos);
  EXPECT_EQ(argv[2].rfind("exec ", 0), 0u);  // the shell replaces sh: its status is the command's
}

}  // namespace
}  // namespace causeway::cli
