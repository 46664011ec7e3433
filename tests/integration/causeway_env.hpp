// The programs under test and the machine they run on: paths to causeway and
// causeway-netprobe (compile definitions from CMake), command-line builders,
// and the reasons a test has to skip here — each names what to install or
// change, because a silent skip looks just like a pass.
//
// Thread safety: free functions with no shared state.
#pragma once

#include <sys/types.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.hpp"

namespace causeway::integration {

inline const std::string kCauseway = CAUSEWAY_BINARY;
inline const std::string kNetprobe = CAUSEWAY_NETPROBE;
inline constexpr uid_t kNobody = 65534;    // Debian's nobody/nogroup
inline constexpr Ms kGuestIoTimeout = 3s;  // one request/reply from the guest or the host
inline constexpr Ms kStartTimeout = 5s;    // a background causeway or guest server getting ready

// causeway netns OPTIONS... -- COMMAND...
std::vector<std::string> netns_argv(std::vector<std::string> options, const std::vector<std::string>& command);
// causeway ctl SOCKET ARGS...
std::vector<std::string> ctl_argv(const std::string& socket, const std::vector<std::string>& args);
// setpriv to uid/gid 65534 with no supplementary groups and a clean environment.
std::vector<std::string> as_nobody(const std::vector<std::string>& argv);
// causeway-netprobe send PROTO IP PORT MESSAGE --timeout-ms N
std::vector<std::string> probe_send(std::string_view proto, std::string_view ip, uint16_t port,
                                    std::string_view message, Ms timeout = kGuestIoTimeout);

// nullopt if `tool` is in PATH; else a skip message naming the Debian package.
std::optional<std::string> missing_tool(std::string_view tool, std::string_view debian_package);
// nullopt if this process can run `causeway netns`; else why not and what to do.
std::optional<std::string> netns_unavailable();
// nullopt if uid 65534 can run `causeway netns` (tested as that user through setpriv).
std::optional<std::string> nobody_netns_unavailable();

// Fixtures for tests that create namespaces: they skip, loudly, where that is impossible.
class NetnsTest : public testing::Test {
 protected:
  void SetUp() override {
    if (auto why = netns_unavailable()) GTEST_SKIP() << *why;
  }
};

class NetnsFamilyTest : public testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    if (auto why = netns_unavailable()) GTEST_SKIP() << *why;
  }
  Family family() const { return GetParam(); }
};

inline std::string family_param_name(const testing::TestParamInfo<Family>& info) { return family_name(info.param); }

}  // namespace causeway::integration
