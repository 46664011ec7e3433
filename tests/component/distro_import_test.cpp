// `causeway distro import/export` with the real tools: tarballs written by libarchive (every
// member kind, owners, setuid/sticky, xattrs, devices — things an unprivileged test could
// never put on disk) and by GNU tar, imported with the real mkfs.ext4, checked with the
// real debugfs and e2fsck, exported and compared with `tar -tv --numeric-owner`.
// The unprivileged path runs the causeway binary as uid/gid 65534 (setpriv) when the test
// runs as root, and is the only path when it does not. Errors: corrupt, not a root
// filesystem, traversal, existing and bad names, interrupt — one clear message each, and
// nothing left in the store.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "vmm/distro/export.hpp"
#include "vmm/distro/import.hpp"
#include "vmm/distro/process.hpp"
#include "vmm/distro/store.hpp"

namespace causeway::distro {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kTestImageSize = 256ull << 20;
constexpr int64_t kMtime = 1700000000;  // 2023-11-14, fixed so listings compare

// ---- helpers ----

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "distro-import-test-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
    ::chmod(path_.c_str(), 0755);  // the unprivileged test user must reach it
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct Member {
  std::string name;
  unsigned type = AE_IFREG;
  unsigned perm = 0644;
  int64_t uid = 0, gid = 0;
  std::string data{};      // regular files
  std::string symlink{};   // AE_IFLNK
  std::string hardlink{};  // a hard link to this earlier member
  unsigned major = 0, minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs{};
};

// Writes a pax tarball (optionally gzip'd) of `members`.
void write_tar(const fs::path& out, const std::vector<Member>& members, bool gzip = false) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  ASSERT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const auto& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_filetype(e, m.type);
    archive_entry_set_perm(e, m.perm);
    archive_entry_set_uid(e, m.uid);
    archive_entry_set_gid(e, m.gid);
    archive_entry_set_mtime(e, kMtime, 0);
    if (!m.symlink.empty()) archive_entry_set_symlink(e, m.symlink.c_str());
    if (!m.hardlink.empty()) archive_entry_set_hardlink(e, m.hardlink.c_str());
    archive_entry_set_rdevmajor(e, m.major);
    archive_entry_set_rdevminor(e, m.minor);
    for (const auto& [k, v] : m.xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    archive_entry_set_size(e, m.hardlink.empty() ? static_cast<la_int64_t>(m.data.size()) : 0);
    ASSERT_GE(archive_write_header(a, e), ARCHIVE_WARN) << archive_error_string(a);
    if (!m.data.empty() && m.hardlink.empty()) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// A small root filesystem with one member of every kind the importer must keep.
std::vector<Member> rich_rootfs() {
  // security.capability for cap_net_raw+ep (VFS_CAP_REVISION_2: magic, permitted, inheritable).
  const std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  return {
      {.name = "./", .type = AE_IFDIR, .perm = 0755},
      {.name = "./etc/", .type = AE_IFDIR, .perm = 0755},
      {.name = "./etc/passwd", .data = "root:x:0:0:root:/root:/bin/sh\n"},
      {.name = "./etc/shadow", .perm = 0640, .gid = 42, .data = "root:*:1::::::\n"},
      {.name = "./usr/", .type = AE_IFDIR, .perm = 0755},
      {.name = "./usr/bin/", .type = AE_IFDIR, .perm = 0755},
      {.name = "./usr/bin/su", .perm = 04755, .data = "#!/bin/sh\n"},
      {.name = "./usr/bin/wall", .perm = 02755, .gid = 5, .data = "w"},
      {.name = "./usr/bin/ping", .perm = 0755, .data = "p", .xattrs = {{"security.capability", cap}}},
      {.name = "./usr/bin/ping6", .hardlink = "./usr/bin/ping"},
      {.name = "./bin", .type = AE_IFLNK, .perm = 0777, .symlink = "usr/bin"},
      {.name = "./tmp/", .type = AE_IFDIR, .perm = 01777},
      {.name = "./home/", .type = AE_IFDIR, .perm = 0755},
      {.name = "./run/", .type = AE_IFDIR, .perm = 0755},
      {.name = "./home/alice/", .type = AE_IFDIR, .perm = 0700, .uid = 1000, .gid = 1000},
      {.name = "./home/alice/notes",
       .perm = 0600,
       .uid = 1000,
       .gid = 1000,
       .data = "hi",
       .xattrs = {{"user.note", "hello"}}},
      {.name = "./home/big", .uid = 100000, .gid = 200000, .data = "high ids"},
      {.name = "./dev/", .type = AE_IFDIR, .perm = 0755},
      {.name = "./dev/null", .type = AE_IFCHR, .perm = 0666, .major = 1, .minor = 3},
      {.name = "./dev/sda", .type = AE_IFBLK, .perm = 0660, .gid = 6, .major = 8, .minor = 0},
      {.name = "./dev/big", .type = AE_IFCHR, .perm = 0600, .major = 300, .minor = 70000},
      {.name = "./run/initctl", .type = AE_IFIFO, .perm = 0600},
      {.name = "./etc/name with \"quotes\" and\nnewline", .data = "odd"},
  };
}

// Runs a shell command, returns its stdout (and exit status through `status`).
std::string sh(const std::string& cmd, int* status = nullptr) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::string debugfs(const fs::path& image, const std::string& request) {
  return sh("debugfs -R '" + request + "' '" + image.string() + "' 2>/dev/null");
}

// The "Type: … Mode: …", "User: … Group: …" and device lines of `debugfs stat`, squeezed.
std::string stat_summary(const fs::path& image, const std::string& path) {
  std::istringstream in(debugfs(image, "stat \"" + path + "\""));
  std::string out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string w, prev;
    while (words >> w) {
      if (prev == "Type:" || prev == "Mode:" || prev == "User:" || prev == "Group:" || prev == "Links:")
        out += prev + w + " ";
      if (line.rfind("Device major/minor number:", 0) == 0 && prev == "number:") out += "dev=" + w + " ";
      prev = w;
    }
  }
  return out;
}

// `tar -tv --numeric-owner` lines, normalized: no "./" prefixes, sorted by name, and a hard
// link member listed like the file it names (which of the names a tar writer stores first
// is its choice; that they are one inode is checked with debugfs).
std::vector<std::string> listing(const fs::path& tarball) {
  std::istringstream in(sh("tar --numeric-owner --full-time -tvf '" + tarball.string() + "' 2>/dev/null"));
  struct Line {
    std::string mode, owner, size, when, target;
  };
  std::map<std::string, Line> by_name;
  auto strip = [](std::string n) {
    if (n.rfind("./", 0) == 0) n = n.substr(2);
    return n.empty() ? std::string(".") : n;
  };
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    Line l;
    std::string date, time, name;
    words >> l.mode >> l.owner >> l.size >> date >> time;
    l.when = date + " " + time;
    std::getline(words, name);
    name = name.substr(name.find_first_not_of(' '));
    if (l.mode[0] == 'h') {
      const auto at = name.find(" link to ");
      l.target = strip(name.substr(at + 9));
      name = name.substr(0, at);
    }
    by_name[strip(name)] = l;
  }
  std::vector<std::string> out;
  for (auto& [name, l] : by_name) {
    Line shown = l;
    if (!l.target.empty() && by_name.count(l.target)) {
      shown = by_name[l.target];
      shown.mode[0] = '-';
    }
    out.push_back(shown.mode + " " + shown.owner + " " + shown.size + " " + shown.when + " " + name);
  }
  return out;
}

bool tools_present() { return find_tool("mkfs.ext4") && find_tool("debugfs") && find_tool("e2fsck"); }

#define REQUIRE_TOOLS()                                                                            \
  do {                                                                                             \
    if (!tools_present()) GTEST_SKIP() << "SKIPPED: mkfs.ext4/debugfs/e2fsck missing (e2fsprogs)"; \
  } while (0)

class DistroImport : public ::testing::Test {
 protected:
  DistroImport() : store_(tmp_.path() / "data") {}

  Imported import_ok(const std::string& name, const fs::path& tar) {
    ImportOptions o;
    o.size_bytes = kTestImageSize;
    auto r = import_tarball(store_, name, tar, o);
    EXPECT_TRUE(r.has_value()) << (r.has_error() ? r.error() : "");
    return r.has_value() ? *r : Imported{};
  }
  std::string import_error(const std::string& name, const fs::path& tar) {
    ImportOptions o;
    o.size_bytes = kTestImageSize;
    auto r = import_tarball(store_, name, tar, o);
    EXPECT_TRUE(r.has_error());
    return r.has_error() ? r.error() : "";
  }
  // Nothing but finished distributions in the store.
  void expect_no_leftovers() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(store_.distros_dir(), ec)) {
      const std::string n = e.path().filename().string();
      EXPECT_FALSE(n.rfind(".partial-", 0) == 0) << "left behind: " << e.path();
    }
  }

  TempDir tmp_;
  Store store_;
};

// ---- tests ----

TEST_F(DistroImport, KeepsOwnersModesLinksDevicesAndXattrs) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "rich.tar.gz";
  write_tar(tar, rich_rootfs(), /*gzip=*/true);
  const Imported made = import_ok("rich", tar);
  const fs::path img = made.distro.image;
  ASSERT_TRUE(fs::exists(img));

  int fsck = -1;
  const std::string fsck_out = sh("e2fsck -fn '" + img.string() + "' 2>&1", &fsck);
  EXPECT_EQ(fsck, 0) << fsck_out;

  EXPECT_EQ(stat_summary(img, "/usr/bin/su"), "Type:regular Mode:04755 User:0 Group:0 Links:1 ");
  EXPECT_EQ(stat_summary(img, "/usr/bin/wall"), "Type:regular Mode:02755 User:0 Group:5 Links:1 ");
  EXPECT_EQ(stat_summary(img, "/etc/shadow"), "Type:regular Mode:0640 User:0 Group:42 Links:1 ");
  EXPECT_EQ(stat_summary(img, "/tmp"), "Type:directory Mode:01777 User:0 Group:0 Links:2 ");
  EXPECT_EQ(stat_summary(img, "/home/alice"), "Type:directory Mode:0700 User:1000 Group:1000 Links:2 ");
  EXPECT_EQ(stat_summary(img, "/home/big"), "Type:regular Mode:0644 User:100000 Group:200000 Links:1 ");
  EXPECT_EQ(stat_summary(img, "/usr/bin/ping"), "Type:regular Mode:0755 User:0 Group:0 Links:2 ");
  EXPECT_EQ(debugfs(img, "stat /usr/bin/ping").substr(0, 12), debugfs(img, "stat /usr/bin/ping6").substr(0, 12))
      << "a hard link is the same inode";
  EXPECT_NE(stat_summary(img, "/bin").find("Type:symlink Mode:0777"), std::string::npos);
  EXPECT_NE(debugfs(img, "stat /bin").find("Fast link dest: \"usr/bin\""), std::string::npos);
  EXPECT_EQ(stat_summary(img, "/dev/null"), "Type:character Mode:0666 User:0 Group:0 Links:1 dev=01:03 ");
  EXPECT_EQ(stat_summary(img, "/dev/sda"), "Type:block Mode:0660 User:0 Group:6 Links:1 dev=08:00 ");
  EXPECT_NE(stat_summary(img, "/run/initctl").find("Type:FIFO Mode:0600"), std::string::npos);
  const std::string caps = debugfs(img, "ea_list /usr/bin/ping");
  EXPECT_NE(caps.find("security.capability (20)"), std::string::npos) << caps;
  EXPECT_NE(debugfs(img, "ea_list /home/alice/notes").find("user.note (5) = \"hello\""), std::string::npos);
  EXPECT_NE(debugfs(img, "stat /etc/passwd").find("mtime: 0x6553f100"), std::string::npos) << "mtime 1700000000";
  // An unusual name survives (no quoting anywhere on the way).
  EXPECT_NE(debugfs(img, "ls /etc").find("quotes"), std::string::npos);
  EXPECT_EQ(store_.default_name(), "rich");
  expect_no_leftovers();
}

TEST_F(DistroImport, RoundTripsThroughExport) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "rich.tar";
  write_tar(tar, rich_rootfs());
  const Imported made = import_ok("rt", tar);
  const fs::path out = tmp_.path() / "out.tar";
  auto r = export_image(made.distro.image, out, ExportOptions{});
  ASSERT_TRUE(r.has_value()) << r.error();
  const auto before = listing(tar);
  const auto after = listing(out);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(before, after);
  // xattrs come back too (GNU tar reads libarchive's SCHILY.xattr records).
  const std::string x = sh("tar --xattrs --xattrs-include='*' -tvvf '" + out.string() + "' 2>&1");
  EXPECT_NE(x.find("security.capability"), std::string::npos) << x;
  // Re-importing the export gives the same listing again.
  const Imported again = import_ok("rt2", out);
  const fs::path out2 = tmp_.path() / "out2.tar";
  ASSERT_TRUE(export_image(again.distro.image, out2, ExportOptions{}).has_value());
  EXPECT_EQ(listing(out2), before);
  EXPECT_FALSE(fs::exists(out.string() + ".partial-" + std::to_string(::getpid())));
}

TEST_F(DistroImport, ImportsATarballMadeByGnuTar) {
  REQUIRE_TOOLS();
  if (!find_tool("tar")) GTEST_SKIP() << "SKIPPED: tar missing";
  const fs::path tree = tmp_.path() / "tree";
  fs::create_directories(tree / "etc");
  fs::create_directories(tree / "usr/bin");
  std::ofstream(tree / "etc/hostname") << "box\n";
  std::ofstream(tree / "usr/bin/tool") << "#!/bin/sh\n";
  fs::create_symlink("usr/bin", tree / "bin");
  fs::create_hard_link(tree / "usr/bin/tool", tree / "usr/bin/tool2");
  const fs::path tar = tmp_.path() / "gnu.tar.xz";
  int st = -1;
  sh("tar --numeric-owner --owner=1234 --group=5678 --mode='u+s' -C '" + tree.string() + "' -cJf '" + tar.string() +
         "' . 2>&1",
     &st);
  ASSERT_EQ(st, 0);
  const Imported made = import_ok("gnu", tar);
  EXPECT_EQ(stat_summary(made.distro.image, "/usr/bin/tool"), "Type:regular Mode:04644 User:1234 Group:5678 Links:2 ");
  const fs::path out = tmp_.path() / "gnu-out.tar";
  ASSERT_TRUE(export_image(made.distro.image, out, ExportOptions{}).has_value());
  EXPECT_EQ(listing(out), listing(tar));
}

TEST_F(DistroImport, UnprivilegedImportKeepsRootOwnership) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "rich.tar";
  write_tar(tar, rich_rootfs());
  ::chmod(tar.c_str(), 0644);
  const fs::path home = tmp_.path() / "home";
  fs::create_directories(home);
  std::string run_as;
  if (::geteuid() == 0) {
    if (!find_tool("setpriv")) GTEST_SKIP() << "SKIPPED: running as root without setpriv (util-linux): cannot drop";
    ASSERT_EQ(::chown(home.c_str(), 65534, 65534), 0);
    run_as = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  int st = -1;
  const std::string out =
      sh(run_as + "env CAUSEWAY_HOME='" + home.string() + "' '" CAUSEWAY_BIN "' distro import -q --size 256M user '" +
             tar.string() + "' 2>&1 && " + run_as + "id -u",
         &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find(::geteuid() == 0 ? "65534" : std::to_string(::geteuid())), std::string::npos) << out;
  const fs::path img = home / "data/distros/user/rootfs.ext4";
  struct stat s {};
  ASSERT_EQ(::stat(img.c_str(), &s), 0);
  if (::geteuid() == 0) {
    EXPECT_EQ(s.st_uid, 65534u) << "made by the unprivileged user";
  }
  EXPECT_EQ(stat_summary(img, "/usr/bin/su"), "Type:regular Mode:04755 User:0 Group:0 Links:1 ");
  EXPECT_EQ(stat_summary(img, "/dev/null"), "Type:character Mode:0666 User:0 Group:0 Links:1 dev=01:03 ");
  EXPECT_EQ(stat_summary(img, "/home/alice"), "Type:directory Mode:0700 User:1000 Group:1000 Links:2 ");
  EXPECT_NE(debugfs(img, "ea_list /usr/bin/ping").find("security.capability (20)"), std::string::npos);
  int fsck = -1;
  sh("e2fsck -fn '" + img.string() + "' >/dev/null 2>&1", &fsck);
  EXPECT_EQ(fsck, 0);
  // The export, unprivileged too, lists what the tarball said.
  const fs::path exported = home / "out.tar";
  sh(run_as + "env CAUSEWAY_HOME='" + home.string() + "' '" CAUSEWAY_BIN "' distro export -q user '" +
         exported.string() + "' 2>&1",
     &st);
  ASSERT_EQ(st, 0);
  EXPECT_EQ(listing(exported), listing(tar));
}

TEST_F(DistroImport, RefusesACorruptTarball) {
  REQUIRE_TOOLS();
  const fs::path good = tmp_.path() / "good.tar";
  write_tar(good, rich_rootfs());
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const fs::path cut = tmp_.path() / "cut.tar";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_NE(import_error("cut", cut).find("is corrupt or not a tarball"), std::string::npos);
  const fs::path junk = tmp_.path() / "junk.tar";
  std::ofstream(junk) << "this is not a tarball at all\n";
  EXPECT_NE(import_error("junk", junk).find("is not a tarball"), std::string::npos);
  EXPECT_NE(import_error("gone", tmp_.path() / "missing.tar").find("no such file"), std::string::npos);
  EXPECT_TRUE(store_.list()->empty());
  expect_no_leftovers();
}

TEST_F(DistroImport, RefusesWhatIsNotARootFilesystem) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "docs.tar";
  write_tar(tar, {{.name = "./README", .data = "hi"}, {.name = "./src/", .type = AE_IFDIR, .perm = 0755}});
  const std::string err = import_error("docs", tar);
  EXPECT_NE(err.find("does not look like a root filesystem: it has no /etc directory and no /bin or /usr/bin"),
            std::string::npos)
      << err;
  const fs::path wrapped = tmp_.path() / "wrapped.tar";
  write_tar(wrapped, {{.name = "rootfs/etc/", .type = AE_IFDIR, .perm = 0755},
                      {.name = "rootfs/usr/bin/", .type = AE_IFDIR, .perm = 0755}});
  EXPECT_NE(import_error("wrapped", wrapped).find("all under 'rootfs/'"), std::string::npos);
  expect_no_leftovers();
}

TEST_F(DistroImport, RefusesPathTraversal) {
  REQUIRE_TOOLS();
  auto base = rich_rootfs();
  auto dotdot = base;
  dotdot.push_back({.name = "./etc/../../escape", .data = "x"});
  const fs::path t1 = tmp_.path() / "dotdot.tar";
  write_tar(t1, dotdot);
  EXPECT_NE(import_error("t1", t1).find("path traversal"), std::string::npos);
  auto through_link = base;
  through_link.push_back({.name = "./out", .type = AE_IFLNK, .perm = 0777, .symlink = "/tmp"});
  through_link.push_back({.name = "./out/planted", .data = "x"});
  const fs::path t2 = tmp_.path() / "link.tar";
  write_tar(t2, through_link);
  EXPECT_NE(import_error("t2", t2).find("below 'out'"), std::string::npos);
  EXPECT_FALSE(fs::exists("/tmp/planted"));
  expect_no_leftovers();
}

TEST_F(DistroImport, RefusesAnExistingOrBadName) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "rich.tar";
  write_tar(tar, rich_rootfs());
  import_ok("taken", tar);
  EXPECT_NE(import_error("taken", tar).find("already exists"), std::string::npos);
  EXPECT_NE(import_error("../x", tar).find("not a valid distribution name"), std::string::npos);
  EXPECT_NE(import_error("", tar).find("cannot be empty"), std::string::npos);
  ASSERT_EQ(store_.list()->size(), 1u);
  expect_no_leftovers();
}

TEST_F(DistroImport, RefusesATooSmallImage) {
  REQUIRE_TOOLS();
  auto members = rich_rootfs();
  members.push_back({.name = "./var/big", .data = std::string(80u << 20, 'x')});
  const fs::path tar = tmp_.path() / "big.tar";
  write_tar(tar, members);
  ImportOptions o;
  o.size_bytes = kMinImageSize;
  auto r = import_tarball(store_, "big", tar, o);
  ASSERT_TRUE(r.has_error());
  EXPECT_NE(r.error().find("give a larger --size"), std::string::npos) << r.error();
  expect_no_leftovers();
}

TEST_F(DistroImport, AFullDiskGivesOneClearErrorAndLeavesNothing) {
  REQUIRE_TOOLS();
  if (::geteuid() != 0 || !find_tool("unshare"))
    GTEST_SKIP() << "SKIPPED: needs root and unshare(1) to mount a small tmpfs in a private mount namespace";
  auto members = rich_rootfs();
  members.push_back({.name = "./var/big", .data = std::string(24u << 20, 'x')});
  const fs::path tar = tmp_.path() / "big.tar";
  write_tar(tar, members);
  const fs::path home = tmp_.path() / "small";
  fs::create_directories(home);
  int st = -1;
  // 16 MiB of room for 24 MiB of files: the staging write fails with ENOSPC.
  const std::string out =
      sh("unshare -m sh -c \"mount -t tmpfs -o size=16m none '" + home.string() + "' && CAUSEWAY_HOME='" +
             home.string() + "' '" CAUSEWAY_BIN "' distro import -q --size 256M big '" + tar.string() +
             "'; echo rc=\\$?; ls -A '" + home.string() + "/data/distros'\" 2>&1",
         &st);
  EXPECT_NE(out.find("no space left on the disk of"), std::string::npos) << out;
  EXPECT_NE(out.find("rc=1"), std::string::npos) << out;
  EXPECT_EQ(out.substr(out.find("rc=1") + 4), "\n") << "left in the store: " << out;
}

TEST_F(DistroImport, AnInterruptLeavesNothing) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "rich.tar";
  write_tar(tar, rich_rootfs());
  std::atomic<bool> cancel{true};
  ImportOptions o;
  o.size_bytes = kTestImageSize;
  o.cancel = &cancel;
  auto r = import_tarball(store_, "stopped", tar, o);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error(), "interrupted");
  EXPECT_TRUE(store_.list()->empty());
  expect_no_leftovers();
}

TEST_F(DistroImport, RemoveIsRefusedWhileTheInstanceLockIsHeld) {
  REQUIRE_TOOLS();
  const fs::path tar = tmp_.path() / "rich.tar";
  write_tar(tar, rich_rootfs());
  const fs::path home = tmp_.path();  // CAUSEWAY_HOME: data/ is the store above
  import_ok("busy", tar);
  const fs::path lock = instance_lock_path(home / "run", "busy");
  fs::create_directories(lock.parent_path());
  int st = -1;
  // flock(1) holds the lock while the remove runs.
  const std::string out = sh("env CAUSEWAY_HOME='" + home.string() + "' flock '" + lock.string() +
                                 "' '" CAUSEWAY_BIN "' distro remove busy 2>&1",
                             &st);
  EXPECT_EQ(st, 1);
  EXPECT_NE(out.find("terminate it first: causeway terminate busy"), std::string::npos) << out;
  EXPECT_TRUE(store_.find("busy").has_value());
  sh("env CAUSEWAY_HOME='" + home.string() + "' '" CAUSEWAY_BIN "' distro remove busy 2>&1", &st);
  EXPECT_EQ(st, 0);
  EXPECT_TRUE(store_.find("busy").has_error());
}

}  // namespace
}  // namespace causeway::distro
