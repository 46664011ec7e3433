// vmm/distro: the sans-I/O parts of import and create — member names, the tree's rules,
// the root filesystem check, sizes, and the mmdebstrap command line.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>

#include "vmm/distro/create.hpp"
#include "vmm/distro/import.hpp"
#include "vmm/distro/rootfs_tree.hpp"

namespace causeway::distro {
namespace {

TreeEntry dir() { return TreeEntry{.kind = EntryKind::Directory, .perm = 0755}; }
TreeEntry file(uint32_t perm = 0644) { return TreeEntry{.kind = EntryKind::Regular, .perm = perm}; }
TreeEntry symlink(std::string target) {
  TreeEntry e{.kind = EntryKind::Symlink, .perm = 0777};
  e.target = std::move(target);
  return e;
}
TreeEntry hardlink(std::string target) {
  TreeEntry e{.kind = EntryKind::HardLink};
  e.target = std::move(target);
  return e;
}

TEST(MemberName, Normalizes) {
  EXPECT_EQ(*normalize_member_name("./usr//bin/"), "usr/bin");
  EXPECT_EQ(*normalize_member_name("usr/./bin"), "usr/bin");
  EXPECT_EQ(*normalize_member_name("./"), "");
  EXPECT_EQ(*normalize_member_name("."), "");
  EXPECT_EQ(*normalize_member_name("a..b/..c"), "a..b/..c");
}

TEST(MemberName, RefusesTraversalAndAbsoluteNames) {
  EXPECT_NE(normalize_member_name("../etc/passwd").error().find("path traversal"), std::string::npos);
  EXPECT_NE(normalize_member_name("etc/../../x").error().find("path traversal"), std::string::npos);
  EXPECT_NE(normalize_member_name("/etc/passwd").error().find("absolute"), std::string::npos);
  EXPECT_TRUE(normalize_member_name("").has_error());
  EXPECT_TRUE(normalize_member_name(std::string("a\0b", 3)).has_error());
}

TEST(RootfsTree, MakesMissingParentsAsRootOwnedDirectories) {
  RootfsTree t(1234);
  auto step = t.add("usr/bin/env", file(0755));
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ(step->mkdirs, (std::vector<std::string>{"usr", "usr/bin"}));
  const auto& usr = t.entries().at("usr");
  EXPECT_EQ(usr.kind, EntryKind::Directory);
  EXPECT_TRUE(usr.implicit);
  EXPECT_EQ(usr.mtime, 1234);
  EXPECT_EQ(usr.mode(), S_IFDIR | 0755u);
  EXPECT_EQ(t.entries().at("usr/bin/env").mode(), S_IFREG | 0755u);
}

TEST(RootfsTree, ALaterDirectoryMemberOnlyUpdatesMetadata) {
  RootfsTree t(0);
  ASSERT_TRUE(t.add("etc/passwd", file()).has_value());
  TreeEntry etc = dir();
  etc.perm = 0700;
  auto step = t.add("etc", etc);
  ASSERT_TRUE(step.has_value());
  EXPECT_FALSE(step->write);
  EXPECT_FALSE(step->remove_existing);
  EXPECT_EQ(t.entries().at("etc").perm, 0700u);
  EXPECT_EQ(t.entries().count("etc/passwd"), 1u);
}

TEST(RootfsTree, AFileReplacingADirectoryDropsItsChildren) {
  RootfsTree t(0);
  ASSERT_TRUE(t.add("opt/x/y", file()).has_value());
  auto step = t.add("opt/x", symlink("/elsewhere"));
  ASSERT_TRUE(step.has_value());
  EXPECT_TRUE(step->remove_existing);
  EXPECT_EQ(t.entries().count("opt/x/y"), 0u);
}

TEST(RootfsTree, RefusesWritingBelowASymlink) {
  RootfsTree t(0);
  ASSERT_TRUE(t.add("etc", symlink("/")).has_value());
  auto step = t.add("etc/passwd", file());
  ASSERT_TRUE(step.has_error());
  EXPECT_NE(step.error().find("below 'etc'"), std::string::npos);
}

TEST(RootfsTree, HardLinksResolveToTheFirstName) {
  RootfsTree t(0);
  ASSERT_TRUE(t.add("bin/a", file()).has_value());
  auto b = t.add("bin/b", hardlink("bin/a"));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->link_to, "bin/a");
  auto c = t.add("bin/c", hardlink("bin/b"));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->link_to, "bin/a");
  EXPECT_TRUE(t.add("bin/d", hardlink("bin/none")).has_error());
  EXPECT_TRUE(t.add("bin/e", hardlink("bin")).has_error());
  TreeEntry null{.kind = EntryKind::CharDevice, .perm = 0666};
  ASSERT_TRUE(t.add("dev/null", null).has_value());
  auto n = t.add("dev/null2", hardlink("dev/null"));
  ASSERT_TRUE(n.has_value());
  EXPECT_TRUE(n->link_to_node);
}

TEST(RootfsTree, TheRootMemberMustBeADirectory) {
  RootfsTree t(0);
  TreeEntry root = dir();
  root.perm = 0700;
  ASSERT_TRUE(t.add("", root).has_value());
  EXPECT_EQ(t.entries().at("").perm, 0700u);
  EXPECT_TRUE(t.add("", file()).has_error());
}

TEST(RootfsTree, KnowsARootFilesystem) {
  RootfsTree t(0);
  EXPECT_NE(t.not_a_rootfs()->find("is empty"), std::string::npos);
  ASSERT_TRUE(t.add("etc/hostname", file()).has_value());
  EXPECT_NE(t.not_a_rootfs()->find("no /bin or /usr/bin"), std::string::npos);
  ASSERT_TRUE(t.add("bin", symlink("usr/bin")).has_value());
  EXPECT_EQ(t.not_a_rootfs(), std::nullopt);
  RootfsTree u(0);
  ASSERT_TRUE(u.add("usr/bin/sh", file()).has_value());
  EXPECT_NE(u.not_a_rootfs()->find("no /etc directory"), std::string::npos);
}

TEST(RootfsTree, HintsAtATarballOfTheDirectory) {
  RootfsTree t(0);
  ASSERT_TRUE(t.add("debian/etc/hostname", file()).has_value());
  ASSERT_TRUE(t.add("debian/usr/bin/sh", file()).has_value());
  EXPECT_NE(t.not_a_rootfs()->find("tar -C debian"), std::string::npos);
}

TEST(ImageSize, Parses) {
  EXPECT_EQ(*parse_size("16G"), 16ull << 30);
  EXPECT_EQ(*parse_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("512MiB"), 512ull << 20);
  EXPECT_EQ(*parse_size("1.5g"), 3ull << 29);
  EXPECT_EQ(*parse_size("1T"), 1ull << 40);
  EXPECT_EQ(*parse_size("67108864"), 64ull << 20);
  EXPECT_TRUE(parse_size("1M").has_error());  // below the minimum
  EXPECT_TRUE(parse_size("big").has_error());
  EXPECT_TRUE(parse_size("16Q").has_error());
  EXPECT_TRUE(parse_size("-4G").has_error());
  EXPECT_TRUE(parse_size("").has_error());
}

TEST(ImageSize, Formats) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536ull << 20), "1.5 GiB");
  EXPECT_EQ(format_bytes(184ull << 20), "184 MiB");
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(Mmdebstrap, CommandLineForRootAndUnprivileged) {
  CreateOptions o;
  o.include = {"python3", "curl"};
  const auto root = mmdebstrap_argv(o, "/s/b.tar", true);
  EXPECT_EQ(root[0], "mmdebstrap");
  EXPECT_TRUE(has(root, "--mode=root"));
  EXPECT_TRUE(has(root, "--variant=minbase"));
  EXPECT_TRUE(has(root, "--format=tar"));
  EXPECT_TRUE(has(root, "--include=python3,curl"));
  EXPECT_TRUE(has(root, "deb http://deb.debian.org/debian bookworm main"));
  EXPECT_TRUE(has(root, "deb http://deb.debian.org/debian bookworm-updates main"));
  EXPECT_TRUE(has(root, "deb http://security.debian.org/debian-security bookworm-security main"));
  const auto suite_at = std::find(root.begin(), root.end(), "bookworm");
  ASSERT_NE(suite_at, root.end());
  EXPECT_EQ(*(suite_at + 1), "/s/b.tar");
  EXPECT_TRUE(has(mmdebstrap_argv(o, "/s/b.tar", false), "--mode=unshare"));
}

TEST(Mmdebstrap, MirrorAndUnstableHaveNoSecuritySuite) {
  CreateOptions o;
  o.suite = "sid";
  o.mirror = "http://mirror.example/debian";
  const auto argv = mmdebstrap_argv(o, "x.tar", true);
  EXPECT_TRUE(has(argv, "deb http://mirror.example/debian sid main"));
  for (const auto& a : argv) EXPECT_EQ(a.find("security"), std::string::npos) << a;
}

TEST(Mmdebstrap, UserGetsAHomeAndIsTheDefault) {
  CreateOptions o;
  o.user = "alice";
  const auto argv = mmdebstrap_argv(o, "x.tar", true);
  bool useradd = false, wsl_conf = false;
  for (const auto& a : argv) {
    useradd |= a.find("useradd -m -s /bin/bash alice") != std::string::npos;
    wsl_conf |= a.find("default=alice") != std::string::npos && a.find("/etc/wsl.conf") != std::string::npos;
  }
  EXPECT_TRUE(useradd);
  EXPECT_TRUE(wsl_conf);
  EXPECT_EQ(check_user_name("alice"), std::nullopt);
  EXPECT_NE(check_user_name("Alice"), std::nullopt);
  EXPECT_NE(check_user_name("a;rm -rf"), std::nullopt);
  EXPECT_NE(check_user_name("root"), std::nullopt);
}

}  // namespace
}  // namespace causeway::distro
