// Config files in .wslconfig syntax: values, warnings naming file:line, errors.
#include "cli/config.hpp"

#include <gtest/gtest.h>

namespace causeway::cli {
namespace {

TEST(Config, ReadsWslconfigKeys) {
  auto r = parse_config(
      "# comment\n[wsl2]\nmemory=4GB\nprocessors = 2\nnetworkingMode=NAT\ndnsTunneling=false\n"
      "localhostForwarding = true\n\n[experimental]\nignoredPorts = 22, 8080\nhostAddressLoopback=yes\n"
      "[causeway]\nmtu=9000\npublish=8080:80, 5353:53/udp\n",
      "cfg");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->memory, "4GB");
  EXPECT_EQ(r->processors, 2);
  EXPECT_EQ(r->networking_mode, "nat");
  EXPECT_EQ(r->dns_tunneling, false);
  EXPECT_EQ(r->localhost_forwarding, true);
  EXPECT_EQ(r->ignored_ports, (std::vector<uint16_t>{22, 8080}));
  EXPECT_EQ(r->host_address_loopback, true);
  EXPECT_EQ(r->mtu, 9000);
  EXPECT_EQ(r->publish, (std::vector<std::string>{"8080:80", "5353:53/udp"}));
  EXPECT_TRUE(r->warnings.empty());
}

TEST(Config, UnknownKeysWarnWithFileAndLine) {
  auto r = parse_config("[wsl2]\nswap=0\n[gui]\nx=1\n", "/etc/cw.conf");
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->warnings.size(), 2u);
  EXPECT_NE(r->warnings[0].find("/etc/cw.conf:2"), std::string::npos) << r->warnings[0];
  EXPECT_NE(r->warnings[0].find("swap"), std::string::npos);
  EXPECT_NE(r->warnings[1].find("/etc/cw.conf:3"), std::string::npos) << r->warnings[1];
}

TEST(Config, BadValuesAreErrorsNamingTheLine) {
  for (const char* text : {"[wsl2]\nprocessors=many\n", "[wsl2]\nnetworkingMode=bridged\n",
                           "[wsl2]\ndnsTunneling=maybe\n", "[experimental]\nignoredPorts=22,0\n",
                           "[causeway]\nmtu=100\n", "[wsl2]\nnot a key value line\n", "[wsl2\n", "memory=1GB\n"}) {
    auto r = parse_config(text, "f");
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_EQ(r.error().rfind("f:", 0), 0u) << r.error();
  }
}

TEST(Config, ExperimentalNetworkingModeIsAnAliasOfWsl2) {
  auto r = parse_config("[experimental]\nnetworkingMode=Mirrored\n", "cfg");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->networking_mode, "mirrored");
  EXPECT_TRUE(r->warnings.empty()) << r->warnings.front();
}

TEST(Config, Wsl2NetworkingModeWinsOverExperimentalWithAWarning) {
  // Either order in the file: [wsl2] wins, as in WSL.
  for (const char* text : {"[wsl2]\nnetworkingMode=nat\n[experimental]\nnetworkingMode=mirrored\n",
                           "[experimental]\nnetworkingMode=mirrored\n[wsl2]\nnetworkingMode=nat\n"}) {
    auto r = parse_config(text, "cfg");
    ASSERT_TRUE(r.has_value()) << r.error();
    EXPECT_EQ(r->networking_mode, "nat") << text;
    ASSERT_EQ(r->warnings.size(), 1u) << text;
    EXPECT_NE(r->warnings[0].find("[wsl2]"), std::string::npos) << r->warnings[0];
    EXPECT_NE(r->warnings[0].find("wins"), std::string::npos) << r->warnings[0];
  }
}

TEST(Config, ExperimentalNetworkingModeRejectsBadValues) {
  auto r = parse_config("[experimental]\nnetworkingMode=bridged\n", "f");
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().rfind("f:2", 0), 0u) << r.error();
}

TEST(Config, InstanceKeysAndTheirDefaults) {
  auto r = parse_config("[wsl2]\nvmIdleTimeout=2000\npageReporting=false\n[boot]\nsystemd=true\n", "cfg");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->vm_idle_timeout_ms, 2000);
  EXPECT_EQ(r->page_reporting, false);
  EXPECT_EQ(r->systemd, true);
  EXPECT_TRUE(r->warnings.empty());
  // Absent: nothing set; the defaults are WSL's.
  auto empty = parse_config("[wsl2]\n", "cfg");
  ASSERT_TRUE(empty.has_value());
  EXPECT_FALSE(empty->vm_idle_timeout_ms);
  EXPECT_FALSE(empty->page_reporting);
  EXPECT_FALSE(empty->systemd);
  EXPECT_EQ(kDefaultVmIdleTimeoutMs, 60000);
  EXPECT_TRUE(kDefaultPageReporting);
}

TEST(Config, NegativeIdleTimeoutMeansNeverAndBadOnesAreErrors) {
  auto r = parse_config("[wsl2]\nvmIdleTimeout = -1\n", "cfg");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->vm_idle_timeout_ms, -1);
  for (const char* text : {"[wsl2]\nvmIdleTimeout=60s\n", "[wsl2]\nvmIdleTimeout=\n", "[boot]\nsystemd=maybe\n",
                           "[wsl2]\npageReporting=2\n"}) {
    auto bad = parse_config(text, "f");
    ASSERT_FALSE(bad.has_value()) << text;
    EXPECT_NE(bad.error().find("f:2"), std::string::npos) << bad.error();
  }
  auto unknown = parse_config("[boot]\ncommand=/bin/true\n", "f");
  ASSERT_TRUE(unknown.has_value());
  ASSERT_EQ(unknown->warnings.size(), 1u);
  EXPECT_NE(unknown->warnings[0].find("[boot]"), std::string::npos);
}

TEST(Config, MissingFileIsAClearError) {
  auto r = load_config("/nonexistent/causeway.conf");
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().find("/nonexistent/causeway.conf"), std::string::npos);
}

}  // namespace
}  // namespace causeway::cli
