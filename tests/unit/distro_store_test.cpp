// vmm/distro/store: names, directories, metadata, the default, staging + commit + remove,
// and the instance lock probe — on a temporary directory, no images.
#include "vmm/distro/store.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

namespace causeway::distro {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "distro-store-test-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Sets an environment variable for the test's lifetime, restoring the old value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A finished distribution NAME made through reserve + commit, with a small "image".
void make_distro(Store& store, const std::string& name, const std::string& source = "test") {
  auto partial = store.reserve(name);
  ASSERT_TRUE(partial.has_value()) << partial.error();
  std::ofstream(*partial / Store::kImageFile) << "not really ext4";
  auto d = store.commit(*partial, name, source);
  ASSERT_TRUE(d.has_value()) << d.error();
}

TEST(DistroName, AcceptsLettersDigitsDotUnderscoreDash) {
  EXPECT_EQ(check_name("debian"), std::nullopt);
  EXPECT_EQ(check_name("Debian-12.4_x"), std::nullopt);
  EXPECT_EQ(check_name("a"), std::nullopt);
  EXPECT_EQ(check_name(std::string(32, 'x')), std::nullopt);
}

TEST(DistroName, RejectsEmptyLongLeadingDotDashAndOtherCharacters) {
  EXPECT_NE(check_name(""), std::nullopt);
  EXPECT_NE(check_name(std::string(33, 'x')), std::nullopt);
  EXPECT_NE(check_name(".hidden"), std::nullopt);
  EXPECT_NE(check_name("-rf"), std::nullopt);
  EXPECT_NE(check_name(".."), std::nullopt);
  EXPECT_NE(check_name("a/b"), std::nullopt);
  EXPECT_NE(check_name("a b"), std::nullopt);
  EXPECT_NE(check_name("caf\xc3\xa9"), std::nullopt);
  EXPECT_NE(check_name("a/b")->find("letters, digits"), std::string::npos);
}

TEST(DistroDirs, CausewayHomeWins) {
  ScopedEnv home("CAUSEWAY_HOME", "/x/y");
  const Dirs d = default_dirs();
  EXPECT_EQ(d.data, fs::path("/x/y/data"));
  EXPECT_EQ(d.runtime, fs::path("/x/y/run"));
}

TEST(DistroDirs, RootOrXdg) {
  ScopedEnv home("CAUSEWAY_HOME", nullptr);
  ScopedEnv data("XDG_DATA_HOME", "/xdg/data");
  ScopedEnv run("XDG_RUNTIME_DIR", "/xdg/run");
  const Dirs d = default_dirs();
  if (::geteuid() == 0) {
    EXPECT_EQ(d.data, fs::path("/var/lib/causeway"));
    EXPECT_EQ(d.runtime, fs::path("/run/causeway"));
  } else {
    EXPECT_EQ(d.data, fs::path("/xdg/data/causeway"));
    EXPECT_EQ(d.runtime, fs::path("/xdg/run/causeway"));
  }
}

TEST(DistroMetadata, RoundTrips) {
  Distro d;
  d.name = "deb";
  d.source = "import \"x\".tar";
  d.created = "2026-12-07T10:11:12Z";
  auto back = parse_metadata(metadata_json(d));
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_EQ(back->name, d.name);
  EXPECT_EQ(back->source, d.source);
  EXPECT_EQ(back->created, d.created);
}

TEST(DistroMetadata, RejectsGarbageAndOtherFormats) {
  EXPECT_TRUE(parse_metadata("{").has_error());
  EXPECT_TRUE(parse_metadata("[]").has_error());
  EXPECT_TRUE(parse_metadata(R"({"name":"x"})").has_error());
  auto v2 = parse_metadata(R"({"format":2,"name":"x"})");
  ASSERT_TRUE(v2.has_error());
  EXPECT_NE(v2.error().find("format 2"), std::string::npos);
}

TEST(DistroStore, EmptyStoreListsNothingAndHasNoDefault) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  auto l = store.list();
  ASSERT_TRUE(l.has_value()) << l.error();
  EXPECT_TRUE(l->empty());
  EXPECT_EQ(store.default_name(), std::nullopt);
  auto f = store.find("nope");
  ASSERT_TRUE(f.has_error());
  EXPECT_NE(f.error().find("no distribution named 'nope'"), std::string::npos);
}

TEST(DistroStore, CommitMakesTheDistroAndTheFirstOneBecomesDefault) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  make_distro(store, "one", "import one.tar");
  make_distro(store, "two");
  auto l = store.list();
  ASSERT_TRUE(l.has_value());
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[0].name, "one");
  EXPECT_EQ((*l)[0].source, "import one.tar");
  EXPECT_EQ((*l)[0].image, tmp.path() / "data/distros/one/rootfs.ext4");
  EXPECT_EQ((*l)[0].size_bytes, 15u);
  EXPECT_FALSE((*l)[0].created.empty());
  EXPECT_EQ(store.default_name(), "one");
  ASSERT_TRUE(store.set_default("two").has_value());
  EXPECT_EQ(store.default_name(), "two");
  EXPECT_TRUE(store.set_default("three").has_error());
  EXPECT_EQ(store.default_name(), "two");
}

TEST(DistroStore, ReserveRefusesAnExistingNameAndBadNames) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  make_distro(store, "deb");
  auto again = store.reserve("deb");
  ASSERT_TRUE(again.has_error());
  EXPECT_NE(again.error().find("already exists"), std::string::npos);
  EXPECT_TRUE(store.reserve("../escape").has_error());
}

TEST(DistroStore, CommitLosesARaceCleanly) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  auto a = store.reserve("deb");
  auto b = store.reserve("deb");
  ASSERT_TRUE(a.has_value() && b.has_value());
  std::ofstream(*a / Store::kImageFile) << "a";
  std::ofstream(*b / Store::kImageFile) << "b";
  ASSERT_TRUE(store.commit(*a, "deb", "a").has_value());
  auto lost = store.commit(*b, "deb", "b");
  ASSERT_TRUE(lost.has_error());
  EXPECT_NE(lost.error().find("appeared"), std::string::npos);
  EXPECT_EQ(store.find("deb")->source, "a");
}

TEST(DistroStore, StagingDirectoriesAreNotListedAndStaleOnesAreSwept) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  auto mine = store.reserve("deb");
  ASSERT_TRUE(mine.has_value());
  // A staging directory of a process that cannot exist (pid_max is at most 2^22).
  const fs::path stale = store.distros_dir() / ".partial-old-99999999-abcdef";
  fs::create_directories(stale / "sub");
  EXPECT_TRUE(store.list()->empty());
  EXPECT_EQ(store.sweep_stale_partials(), 1u);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(*mine));  // ours: this process is alive
}

TEST(DistroStore, RemoveDeletesTheDirectoryAndMovesTheDefault) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  make_distro(store, "deb");
  make_distro(store, "other");
  ASSERT_EQ(store.default_name(), "deb");
  ASSERT_TRUE(store.remove("deb").has_value());
  EXPECT_FALSE(fs::exists(store.dir_of("deb")));
  EXPECT_EQ(store.default_name(), "other") << "the remaining one becomes the default";
  EXPECT_TRUE(store.remove("deb").has_error());
  ASSERT_TRUE(store.remove("other").has_value());
  EXPECT_EQ(store.default_name(), std::nullopt);
  EXPECT_TRUE(fs::is_empty(store.distros_dir()));
}

TEST(DistroStore, ADirectoryWithoutMetadataIsStillListed) {
  TempDir tmp;
  Store store(tmp.path() / "data");
  fs::create_directories(store.dir_of("handmade"));
  auto l = store.list();
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].name, "handmade");
  EXPECT_NE((*l)[0].source.find("no distro.json"), std::string::npos);
}

TEST(DistroInstanceLock, HeldLockMeansRunning) {
  TempDir tmp;
  const fs::path run = tmp.path() / "run";
  EXPECT_FALSE(instance_running(run, "deb"));
  const fs::path lock = instance_lock_path(run, "deb");
  EXPECT_EQ(lock, run / "instances/deb/lock");
  fs::create_directories(lock.parent_path());
  { std::ofstream touch(lock); }
  EXPECT_FALSE(instance_running(run, "deb"));
  // flock locks belong to the open file description: a second open() in this process
  // conflicts with the first, as another process's would.
  const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  EXPECT_TRUE(instance_running(run, "deb"));
  ::close(fd);
  EXPECT_FALSE(instance_running(run, "deb"));
}

}  // namespace
}  // namespace causeway::distro
