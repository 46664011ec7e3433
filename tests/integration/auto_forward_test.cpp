// Automatic forwarding of guest listeners (portfwd/forward_policy.hpp) end
// to end: a real server in a namespace, a real curl on the host.
#include <fstream>
#include <gtest/gtest.h>
#include <string>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"

namespace causeway::integration {
namespace {

using AutoForward = NetnsTest;

// A guest server bound only to 127.0.0.2 (not 127.0.0.1) is reached from the
// host's 127.0.0.1:P — relayed to 127.0.0.2:P, where it listens, not to the
// guest's 127.0.0.1:P, where nothing does.
TEST_F(AutoForward, GuestListenerOnOtherLoopbackAddressIsReachableFromHost) {
  if (auto why = missing_tool("busybox", "busybox")) GTEST_SKIP() << *why;
  if (auto why = missing_tool("curl", "curl")) GTEST_SKIP() << *why;
  TempDir dir;
  const std::string page = "served from the guest's 127.0.0.2\n";
  { std::ofstream(dir.path() / "index.html") << page; }
  const uint16_t port = pick_free_port();
  const std::string listen = "127.0.0.2:" + std::to_string(port);
  BackgroundProcess cw(netns_argv({}, {"busybox", "httpd", "-f", "-p", listen, "-h", dir.path().string()}), dir.path(),
                       "causeway");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/index.html";
  RunResult last;
  const bool got = wait_until(
      [&] {
        last = run({"curl", "-sS", "--max-time", "2", url});
        return last.status == 0 && last.out == page;
      },
      kStartTimeout, Ms(100));
  EXPECT_TRUE(got) << "host " << url << " did not get the guest's page; last curl: " << last.describe()
                   << "\ncauseway: " << cw.describe();
}

}  // namespace
}  // namespace causeway::integration
