// The netns attachment confines its engine (issue 16): once set up, the
// causeway process shows NoNewPrivs 1, Seccomp 2 (filter) and no effective
// capability in /proc/PID/status — in NAT and mirrored mode, as root and as
// uid 65534, with `-- COMMAND` and with `--attach` — and still carries the
// guest's traffic (a TCP exchange with a host server through 10.0.2.2 after
// the confinement). Its namespace helper (netstack/netns_sockets.hpp), the
// only privileged part left, keeps at most CAP_NET_ADMIN, CAP_SYS_ADMIN and
// CAP_SYS_CHROOT and has no_new_privs. `ctl status` reports the sandbox on.
//
// Root runs everything; the uid 65534 cases skip (with the reason) where
// /dev/net/tun or unprivileged user namespaces are not available to it.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"
#include "tests/integration/named_netns.hpp"

namespace causeway::integration {
namespace {

struct SandboxCase {
  bool mirrored;
  bool nobody;
  bool attach;
};

std::string case_name(const testing::TestParamInfo<SandboxCase>& info) {
  const auto& c = info.param;
  return std::string(c.mirrored ? "Mirrored" : "Nat") + (c.nobody ? "Nobody" : "Root") +
         (c.attach ? "Attach" : "Command");
}

// A field of /proc/PID/status ("" if absent).
std::string status_field(pid_t pid, const std::string& key) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) != 0) continue;
    auto v = line.substr(key.size() + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return "";
}

std::vector<pid_t> children(pid_t pid) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"));
  std::vector<pid_t> out;
  for (pid_t c; in >> c;) out.push_back(c);
  return out;
}

class NetnsSandbox : public testing::TestWithParam<SandboxCase> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces for --attach; uid 65534 through setpriv)";
    if (auto why = netns_unavailable()) GTEST_SKIP() << *why;
    if (GetParam().nobody) {
      if (auto why = nobody_netns_unavailable()) GTEST_SKIP() << *why;
    }
    if (auto why = missing_tool("nsenter", "util-linux")) GTEST_SKIP() << *why;
  }

  std::vector<std::string> as_user(std::vector<std::string> argv) const {
    return GetParam().nobody ? as_nobody(argv) : argv;
  }
};

TEST_P(NetnsSandbox, EngineHasNoPrivilegeAndSeccompAfterSetUpAndStillCarriesTraffic) {
  const auto& c = GetParam();
  TempDir dir;
  ::chmod(dir.path().c_str(), 0777);  // uid 65534 makes its control socket here
  const std::string sock = (dir.path() / "ctl.sock").string();
  HostTcpServer server("127.0.0.1");
  const std::string probe = kNetprobe + " send tcp 10.0.2.2 " + std::to_string(server.port()) + " confined";

  std::vector<std::string> opts{"--control", sock};
  if (c.mirrored) opts.insert(opts.end(), {"--mode", "mirrored"});
  std::optional<NamedNetns> named;
  std::optional<BackgroundProcess> holder;  // --attach as 65534: a process owning its user and network namespace
  std::string target;
  if (c.attach && !c.nobody) {
    named.emplace("cwsbx-" + std::to_string(::getpid()));
    ASSERT_TRUE(named->ok()) << named->created().describe();
    target = named->path();
  } else if (c.attach) {
    holder.emplace(as_nobody({"unshare", "--user", "--map-root-user", "--net", "sleep", "60"}), dir.path(), "holder");
    // The holder's network namespace differs from ours once unshare has made it.
    ASSERT_TRUE(wait_until(
        [&] {
          return read_file("/proc/" + std::to_string(holder->pid()) + "/comm") == "sleep\n" || !holder->running();
        },
        kStartTimeout))
        << holder->describe();
    target = std::to_string(holder->pid());
  }
  std::vector<std::string> argv{kCauseway, "netns"};
  argv.insert(argv.end(), opts.begin(), opts.end());
  if (c.attach) {
    argv.insert(argv.end(), {"--attach", target});
  } else {
    argv.insert(argv.end(), {"--", "sh", "-c", probe + " && exec sleep 60"});
  }
  BackgroundProcess causeway(as_user(argv), dir.path(), "causeway");
  const pid_t engine = causeway.pid();

  // Confined before COMMAND runs (or, with --attach, before the loop starts).
  ASSERT_TRUE(wait_until([&] { return status_field(engine, "Seccomp") == "2" || !causeway.running(); }, kStartTimeout))
      << causeway.describe();
  ASSERT_TRUE(causeway.running()) << causeway.describe();
  EXPECT_EQ(status_field(engine, "NoNewPrivs"), "1");
  EXPECT_EQ(status_field(engine, "Seccomp"), "2");
  EXPECT_EQ(status_field(engine, "CapEff"), "0000000000000000");
  EXPECT_EQ(status_field(engine, "CapPrm"), "0000000000000000");
  const std::string cap_bnd = status_field(engine, "CapBnd");  // checked below, knowing the build

  // Traffic after the confinement: the guest reaches the host's server.
  if (c.attach) {
    const pid_t ns_pid = c.nobody ? holder->pid() : 0;
    std::vector<std::string> in_ns =
        c.nobody ? std::vector<std::string>{"nsenter", "--target", std::to_string(ns_pid), "--net"}
                 : std::vector<std::string>{"ip", "netns", "exec", "cwsbx-" + std::to_string(::getpid())};
    RunResult r;
    EXPECT_TRUE(wait_until(
        [&] {
          auto argv2 = in_ns;
          for (auto& a : probe_send("tcp", "10.0.2.2", server.port(), "confined", 500ms)) argv2.push_back(a);
          r = run(argv2);
          return r.status == 0 || !causeway.running();
        },
        kStartTimeout))
        << r.describe() << "\n"
        << causeway.describe();
    EXPECT_EQ(r.out, "echo:confined\n") << r.describe();
  } else {
    EXPECT_TRUE(wait_until([&] { return server.connections() >= 1 || !causeway.running(); }, kStartTimeout))
        << causeway.describe();
  }
  EXPECT_GE(server.connections(), 1);

  // The helper: the only privileged process left, and only just (COMMAND has
  // exec'd by now: before that its fork is a "causeway" child too).
  bool helper_seen = false;
  for (pid_t child : children(engine)) {
    if (read_file("/proc/" + std::to_string(child) + "/comm") != "causeway\n") continue;
    helper_seen = true;
    const auto eff = std::stoull(status_field(child, "CapEff"), nullptr, 16);
    constexpr unsigned long long kAllowed =
        (1ULL << 12) | (1ULL << 18) | (1ULL << 21);  // NET_ADMIN, SYS_CHROOT, SYS_ADMIN
    EXPECT_EQ(eff & ~kAllowed, 0ULL) << "helper " << child << " CapEff " << status_field(child, "CapEff");
    EXPECT_EQ(status_field(child, "NoNewPrivs"), "1") << "helper " << child;
  }
  EXPECT_TRUE(helper_seen) << "no namespace helper under " << engine;

  const auto st = run(ctl_argv(sock, {"status"}));
  ASSERT_EQ(st.status, 0) << st.describe() << "\n" << causeway.describe();
  const auto j = nlohmann::json::parse(st.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object() && j.contains("sandbox")) << st.out;
  const auto& sb = j["sandbox"];
  if (sb.value("reason", "").find("sanitizer build") != std::string::npos) {
    // ASan/UBSan builds keep /proc for LeakSanitizer (base/sandbox/sandbox.hpp): no user
    // namespace of its own, so uid 65534 cannot clear its bounding set (CAP_SETPCAP); every
    // other layer is on.
    EXPECT_TRUE(sb.value("no_new_privs", false) && sb.value("seccomp", false) && sb.value("rlimits", false))
        << sb.dump();
    if (!c.nobody) {
      EXPECT_EQ(cap_bnd, "0000000000000000");
    }
  } else {
    EXPECT_TRUE(sb.value("on", false)) << sb.dump();
    EXPECT_EQ(cap_bnd, "0000000000000000");
  }
  EXPECT_EQ(j["sandbox"].value("mode", ""), c.mirrored ? "netns-mirrored" : "netns") << j["sandbox"].dump();

  ASSERT_TRUE(causeway.running()) << causeway.describe();
  // --attach detaches (0); with COMMAND, SIGTERM goes to it and its status is ours.
  EXPECT_EQ(causeway.stop(SIGTERM), c.attach ? 0 : 128 + SIGTERM) << causeway.describe();
  EXPECT_EQ(causeway.err().find("forbidden syscall"), std::string::npos) << causeway.describe();
}

INSTANTIATE_TEST_SUITE_P(Modes, NetnsSandbox,
                         testing::Values(SandboxCase{false, false, false}, SandboxCase{false, false, true},
                                         SandboxCase{false, true, false}, SandboxCase{false, true, true},
                                         SandboxCase{true, false, false}, SandboxCase{true, false, true},
                                         SandboxCase{true, true, false}, SandboxCase{true, true, true}),
                         case_name);

// The filter the engine loads kills: forced to make a syscall outside its
// allowlist right after confinement (CAUSEWAY_SANDBOX_SELFTEST, see
// base/sandbox/sandbox.hpp), the engine dies by SIGSYS and COMMAND never runs.
TEST(NetnsSandboxFilter, ASyscallOutsideTheAllowlistKillsTheEngine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace for COMMAND)";
  if (auto why = netns_unavailable()) GTEST_SKIP() << *why;
  TempDir dir;
  const auto marker = dir.path() / "command-ran";
  BackgroundProcess causeway(
      {"env", "CAUSEWAY_SANDBOX_SELFTEST=1", kCauseway, "netns", "--", "sh", "-c", "touch '" + marker.string() + "'"},
      dir.path(), "causeway");
  const auto status = causeway.wait_exit(kStartTimeout);
  ASSERT_TRUE(status.has_value()) << "the engine survived its forbidden syscall\n" << causeway.describe();
  if (causeway.err().find("sanitizer build") != std::string::npos)
    GTEST_SKIP() << "sanitizer build: the filter logs instead of killing (LeakSanitizer needs ptrace)";
  EXPECT_EQ(*status, 128 + SIGSYS) << causeway.describe();
  EXPECT_NE(causeway.err().find("calling ptrace"), std::string::npos) << causeway.describe();
  EXPECT_FALSE(std::filesystem::exists(marker)) << "COMMAND ran after the engine died";
}

}  // namespace
}  // namespace causeway::integration
