// The guest agent's reading of a distribution (on the host, pure): passwd,
// group, wsl.conf, locale and login.defs parsing; who a Run runs as and with
// what environment; e2fsck's verdicts; the managed /etc/hosts.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "vmm/agent/guest/accounts.hpp"
#include "vmm/agent/guest/rootfs.hpp"

namespace causeway::agent::guest {
namespace {

constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "# a comment\n"
    "broken line\n"
    "bad:x:notanumber:0::/:/bin/sh\n"
    "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n"
    "bob:x:1001:1001::/home/bob:\n";
constexpr const char* kGroup =
    "root:x:0:\n"
    "sudo:x:27:alice\n"
    "users:x:100:bob, alice\n"
    "alice:x:1000:\n"
    "bob:x:1001:\n";

AccountFiles files(std::string wsl = "", std::string login_defs = "", std::string locale = "") {
  AccountFiles f;
  f.have_passwd = true;
  f.passwd = kPasswd;
  f.group = kGroup;
  f.wsl_conf = std::move(wsl);
  f.login_defs = std::move(login_defs);
  f.locale = std::move(locale);
  return f;
}

Run run_as(std::string user, std::vector<std::string> env = {}, std::string cwd = "") {
  Run r;
  r.argv = {"id"};
  r.user = std::move(user);
  r.env = std::move(env);
  r.cwd = std::move(cwd);
  return r;
}

const auto kAllDirs = [](const std::string&) { return true; };
const auto kNoDirs = [](const std::string&) { return false; };

TEST(GuestAccounts, PasswdParsingSkipsCommentsAndMalformedLines) {
  const auto users = parse_passwd(kPasswd);
  ASSERT_EQ(users.size(), 4u);
  EXPECT_EQ(users[2].name, "alice");
  EXPECT_EQ(users[2].uid, 1000u);
  EXPECT_EQ(users[2].gid, 1000u);
  EXPECT_EQ(users[2].gecos, "Alice,,,");
  EXPECT_EQ(users[2].home, "/home/alice");
  EXPECT_EQ(users[2].shell, "/bin/bash");
  EXPECT_EQ(users[3].shell, "");
  EXPECT_TRUE(parse_passwd("").empty());
  EXPECT_TRUE(parse_passwd("x:x:1:1:a:b\n").empty());  // six fields
  EXPECT_EQ(parse_passwd("crlf:x:5:5::/h:/bin/sh\r\n").at(0).shell, "/bin/sh");
}

TEST(GuestAccounts, GroupParsingReadsMemberLists) {
  const auto groups = parse_group(kGroup);
  ASSERT_EQ(groups.size(), 5u);
  EXPECT_EQ(groups[1].name, "sudo");
  EXPECT_EQ(groups[1].gid, 27u);
  EXPECT_EQ(groups[1].members, std::vector<std::string>{"alice"});
  EXPECT_EQ(groups[2].members, (std::vector<std::string>{"bob", "alice"}));
  EXPECT_TRUE(groups[0].members.empty());
}

TEST(GuestAccounts, IniFileReadsWslConfSectionsCaseInsensitively) {
  const auto ini = IniFile::parse(
      "# wsl.conf\n"
      "[boot]\n"
      "systemd=true\n"
      "\n"
      "[User]\n"
      "Default = \"alice\"   # the login user\n"
      "[network]\n"
      "generateHosts = false\n"
      "generateResolvConf=No ; comment\n"
      "hostname = a#b\n"
      "junk line\n");
  EXPECT_EQ(ini.get("user", "default"), "alice");
  EXPECT_TRUE(ini.get_bool("boot", "systemd", false));
  EXPECT_FALSE(ini.get_bool("network", "generatehosts", true));
  EXPECT_FALSE(ini.get_bool("network", "generateResolvConf", true));
  EXPECT_EQ(ini.get("network", "hostname"), "a#b");  // '#' without a blank before it is data
  EXPECT_TRUE(ini.get_bool("network", "absent", true));
  EXPECT_FALSE(ini.get("boot", "default"));
  EXPECT_TRUE(IniFile::parse("[boot]\nsystemd=maybe\n").get_bool("boot", "systemd", true));  // unparsable: fallback
}

TEST(GuestAccounts, LocaleKeepsOnlyLocaleVariables) {
  EXPECT_EQ(parse_locale("# generated\nLANG=\"en_GB.UTF-8\"\nLC_TIME=C.UTF-8\nexport LANGUAGE=en_GB:en\nPATH=/evil\n"
                         "LC_ALL=\n"),
            (std::vector<std::string>{"LANG=en_GB.UTF-8", "LC_TIME=C.UTF-8", "LANGUAGE=en_GB:en"}));
  EXPECT_TRUE(parse_locale("").empty());
}

TEST(GuestAccounts, LoginDefsPathsDropTheirPrefix) {
  const char* defs =
      "# /etc/login.defs\n"
      "ENV_SUPATH\tPATH=/usr/local/sbin:/usr/sbin:/usr/bin\n"
      "ENV_PATH PATH=/usr/bin:/bin\n"
      "ENV_PATHX nope\n";
  EXPECT_EQ(login_defs_path(defs, "ENV_SUPATH"), "/usr/local/sbin:/usr/sbin:/usr/bin");
  EXPECT_EQ(login_defs_path(defs, "ENV_PATH"), "/usr/bin:/bin");
  EXPECT_FALSE(login_defs_path(defs, "ENV_HZ"));
  EXPECT_EQ(login_defs_path("ENV_PATH /opt/bin\n", "ENV_PATH"), "/opt/bin");
}

TEST(GuestLaunch, DefaultUserIsRootWithDebiansRootPath) {
  std::string err;
  const auto l = plan_launch(run_as(""), files(), kAllDirs, err);
  ASSERT_TRUE(l) << err;
  EXPECT_EQ(l->user, "root");
  EXPECT_EQ(l->uid, 0u);
  EXPECT_EQ(l->groups, std::vector<uint32_t>{0});
  EXPECT_EQ(l->cwd, "/root");
  EXPECT_EQ(env_get(l->env, "HOME"), "/root");
  EXPECT_EQ(env_get(l->env, "USER"), "root");
  EXPECT_EQ(env_get(l->env, "LOGNAME"), "root");
  EXPECT_EQ(env_get(l->env, "SHELL"), "/bin/bash");
  EXPECT_EQ(env_get(l->env, "PATH"), kRootPath);
}

TEST(GuestLaunch, WslConfDefaultUserAppliesWhenRunNamesNone) {
  std::string err;
  const auto l = plan_launch(run_as(""), files("[user]\ndefault=alice\n"), kAllDirs, err);
  ASSERT_TRUE(l) << err;
  EXPECT_EQ(l->user, "alice");
  EXPECT_EQ(l->uid, 1000u);
  EXPECT_EQ(l->gid, 1000u);
  EXPECT_EQ(l->groups, (std::vector<uint32_t>{1000, 27, 100}));
  EXPECT_EQ(l->cwd, "/home/alice");
  EXPECT_EQ(env_get(l->env, "PATH"), kUserPath);
  EXPECT_EQ(env_get(l->env, "HOME"), "/home/alice");
  // An explicit user wins over the default.
  const auto r = plan_launch(run_as("root"), files("[user]\ndefault=alice\n"), kAllDirs, err);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->uid, 0u);
}

TEST(GuestLaunch, UnknownUsersAreAnErrorNamingThemAndTheirSource) {
  std::string err;
  EXPECT_FALSE(plan_launch(run_as("mallory"), files(), kAllDirs, err));
  EXPECT_NE(err.find("'mallory'"), std::string::npos) << err;
  EXPECT_NE(err.find("/etc/passwd"), std::string::npos) << err;
  err.clear();
  EXPECT_FALSE(plan_launch(run_as(""), files("[user]\ndefault=ghost\n"), kAllDirs, err));
  EXPECT_NE(err.find("'ghost'"), std::string::npos) << err;
  EXPECT_NE(err.find("wsl.conf"), std::string::npos) << err;
}

TEST(GuestLaunch, NumericUidsMatchPasswdEntries) {
  std::string err;
  const auto l = plan_launch(run_as("1001"), files(), kAllDirs, err);
  ASSERT_TRUE(l) << err;
  EXPECT_EQ(l->user, "bob");
  EXPECT_EQ(env_get(l->env, "SHELL"), "/bin/sh");  // empty shell field
  EXPECT_FALSE(plan_launch(run_as("4242"), files(), kAllDirs, err));
}

TEST(GuestLaunch, CwdIsRunCwdElseAnExistingHomeElseRoot) {
  std::string err;
  EXPECT_EQ(plan_launch(run_as("alice", {}, "/srv"), files(), kAllDirs, err)->cwd, "/srv");
  EXPECT_EQ(plan_launch(run_as("alice"), files(), kNoDirs, err)->cwd, "/");
}

TEST(GuestLaunch, LoginDefsLocaleAndRunEnvShapeTheEnvironment) {
  std::string err;
  const auto l =
      plan_launch(run_as("alice", {"PATH=/custom", "TERM=xterm-256color", "LANG=C"}),
                  files("", "ENV_PATH PATH=/usr/bin:/bin\n", "LANG=en_US.UTF-8\nLC_TIME=C.UTF-8\n"), kAllDirs, err);
  ASSERT_TRUE(l) << err;
  EXPECT_EQ(env_get(l->env, "PATH"), "/custom");     // Run.env overrides
  EXPECT_EQ(env_get(l->env, "LANG"), "C");           // over /etc/default/locale
  EXPECT_EQ(env_get(l->env, "LC_TIME"), "C.UTF-8");  // from /etc/default/locale
  EXPECT_EQ(env_get(l->env, "TERM"), "xterm-256color");
  size_t paths = 0;
  for (const auto& e : l->env) paths += e.starts_with("PATH=");
  EXPECT_EQ(paths, 1u);
  const auto root = plan_launch(run_as(""), files("", "ENV_SUPATH PATH=/sbin:/bin\n"), kAllDirs, err);
  EXPECT_EQ(env_get(root->env, "PATH"), "/sbin:/bin");
}

TEST(GuestLaunch, AGuestWithoutPasswdRunsRootOnly) {
  AccountFiles none;
  std::string err;
  const auto l = plan_launch(run_as(""), none, kNoDirs, err);
  ASSERT_TRUE(l) << err;
  EXPECT_EQ(l->uid, 0u);
  EXPECT_EQ(env_get(l->env, "HOME"), "/root");
  EXPECT_EQ(l->cwd, "/");
  EXPECT_FALSE(plan_launch(run_as("alice"), none, kNoDirs, err));
  EXPECT_NE(err.find("no /etc/passwd"), std::string::npos);
}

int exit_status(int code) { return code << 8; }  // what waitpid reports for exit(code)

TEST(GuestRootfs, FsckExitCodesDecideWhetherToMount) {
  EXPECT_TRUE(classify_fsck(exit_status(0), "/dev/vda").ok);
  EXPECT_TRUE(classify_fsck(exit_status(1), "/dev/vda").ok);
  EXPECT_TRUE(classify_fsck(exit_status(2), "/dev/vda").ok);
  EXPECT_TRUE(classify_fsck(exit_status(127), "/dev/vda").ok);  // no e2fsck in an old image
  for (int code : {4, 8, 12, 32}) {
    const auto v = classify_fsck(exit_status(code), "/dev/vda");
    EXPECT_FALSE(v.ok) << code;
    EXPECT_NE(v.text.find("e2fsck -f"), std::string::npos) << v.text;
    EXPECT_NE(v.text.find("exit " + std::to_string(code)), std::string::npos) << v.text;
  }
  EXPECT_FALSE(classify_fsck(9 /* killed by SIGKILL */, "/dev/vda").ok);
}

// A superblock as mkfs.ext4 leaves it: magic, state, incompat features.
std::vector<uint8_t> superblock(uint16_t state, uint32_t incompat, uint16_t magic = 0xEF53) {
  std::vector<uint8_t> sb(1024);
  sb[0x38] = static_cast<uint8_t>(magic), sb[0x39] = static_cast<uint8_t>(magic >> 8);
  sb[0x3A] = static_cast<uint8_t>(state), sb[0x3B] = static_cast<uint8_t>(state >> 8);
  for (int i = 0; i < 4; ++i) sb[0x60 + static_cast<size_t>(i)] = static_cast<uint8_t>(incompat >> (8 * i));
  return sb;
}

TEST(GuestRootfs, OnlyACleanlyUnmountedExt4SkipsTheCheck) {
  constexpr uint32_t kFiletype = 0x2, kRecover = 0x4, kExtents = 0x40;
  EXPECT_EQ(ext4_needs_check(superblock(1, kFiletype | kExtents)), false);  // clean
  EXPECT_EQ(ext4_needs_check(superblock(1, kFiletype | kRecover)), true);   // killed VM: journal
  EXPECT_EQ(ext4_needs_check(superblock(0, kFiletype)), true);              // not cleanly unmounted
  EXPECT_EQ(ext4_needs_check(superblock(3, kFiletype)), true);              // errors recorded
  EXPECT_FALSE(ext4_needs_check(superblock(1, 0, 0x1234)));                 // not ext*
  EXPECT_FALSE(ext4_needs_check(std::vector<uint8_t>(100)));                // short read
}

TEST(GuestRootfs, HostsFileHasTheManagedBlockAndKeepsTheUsersLines) {
  const std::string stock =
      "127.0.0.1\tlocalhost\n"
      "127.0.1.1\tbuildhost\n"
      "::1     localhost ip6-localhost ip6-loopback\n"
      "ff02::1 ip6-allnodes\n"
      "ff02::2 ip6-allrouters\n"
      "192.168.1.5 nas  # mine\n";
  const std::string out = render_hosts(stock, "dev-box", "10.0.2.2");
  EXPECT_TRUE(out.starts_with(kHostsBegin));
  EXPECT_NE(out.find("127.0.1.1\tdev-box\n"), std::string::npos) << out;
  EXPECT_NE(out.find("10.0.2.2\thost.causeway.internal\n"), std::string::npos) << out;
  EXPECT_NE(out.find("::1\tlocalhost ip6-localhost ip6-loopback\n"), std::string::npos) << out;
  EXPECT_NE(out.find("generateHosts = false"), std::string::npos);
  EXPECT_EQ(out.find("buildhost"), std::string::npos) << out;  // the stale 127.0.1.1 line
  // The stock lines are not doubled; the user's line is kept, after the block.
  auto count = [&out](std::string_view what) {
    size_t n = 0;
    for (size_t p = out.find(what); p != std::string::npos; p = out.find(what, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("127.0.0.1"), 1u) << out;
  EXPECT_EQ(count("ip6-allnodes"), 1u) << out;
  EXPECT_EQ(count("ip6-loopback"), 1u) << out;
  EXPECT_GT(out.find("192.168.1.5 nas  # mine\n"), out.find(kHostsEnd));
  // Rewriting is stable: the old block is replaced, not kept as user lines.
  EXPECT_EQ(render_hosts(out, "dev-box", "10.0.2.2"), out);
  const std::string renamed = render_hosts(out, "other", "10.0.2.9");
  EXPECT_EQ(renamed.find("dev-box"), std::string::npos);
  EXPECT_NE(renamed.find("10.0.2.9\thost.causeway.internal"), std::string::npos);
  EXPECT_NE(renamed.find("192.168.1.5 nas"), std::string::npos);
  // A fully qualified hostname gets its short name too.
  EXPECT_NE(render_hosts("", "box.example.org", "10.0.2.2").find("127.0.1.1\tbox.example.org box\n"),
            std::string::npos);
}

}  // namespace
}  // namespace causeway::agent::guest
