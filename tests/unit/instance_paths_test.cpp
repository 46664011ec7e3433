// The instance runtime layout and its locks (cli/instance_paths.hpp), in a
// private temporary directory: real files, real flock, no processes.
#include "cli/instance_paths.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace causeway::cli {
namespace {

namespace fs = std::filesystem;

class InstancePathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cw-paths.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path root_;
};

TEST_F(InstancePathsTest, LayoutIsUnderRuntimeInstancesName) {
  const auto p = instance_paths("/run/user/1000/causeway", "deb");
  EXPECT_EQ(p.dir, "/run/user/1000/causeway/instances/deb");
  EXPECT_EQ(p.start_lock, "/run/user/1000/causeway/instances/deb.start");
  EXPECT_EQ(p.lock, "/run/user/1000/causeway/instances/deb/lock");
  EXPECT_EQ(p.exec, "/run/user/1000/causeway/instances/deb/exec.sock");
  EXPECT_EQ(p.control, "/run/user/1000/causeway/instances/deb/control.sock");
  EXPECT_EQ(p.state, "/run/user/1000/causeway/instances/deb/state.json");
  EXPECT_EQ(p.vm_dir, "/run/user/1000/causeway/instances/deb/vm");
}

TEST_F(InstancePathsTest, PrepareMakesPrivateDirectories) {
  const auto p = instance_paths(root_ / "run", "deb");
  ASSERT_TRUE(prepare_instance_dirs(p));
  for (const auto& d : {p.runtime, p.runtime / "instances", p.dir}) {
    struct stat st {};
    ASSERT_EQ(::stat(d.c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << d;
  }
  EXPECT_EQ(instance_names(p.runtime), std::vector<std::string>{"deb"});
  // Idempotent; a group-writable runtime directory is made private again.
  ::chmod(p.runtime.c_str(), 0777);
  ASSERT_TRUE(prepare_instance_dirs(p));
  struct stat st {};
  ::stat(p.runtime.c_str(), &st);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(InstancePathsTest, TooDeepForUnixSocketsIsAClearError) {
  const auto p = instance_paths(root_ / std::string(90, 'x'), "a-distribution-name");
  auto r = prepare_instance_dirs(p);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("too deep"), std::string::npos) << r.error();
}

TEST_F(InstancePathsTest, ALockHasOneHolderAndWaitingIsBounded) {
  const auto p = instance_paths(root_ / "run", "deb");
  ASSERT_TRUE(prepare_instance_dirs(p));
  EXPECT_TRUE(wait_instance_stopped(p, std::chrono::milliseconds(0)));  // no lock file: never started
  auto a = FileLock::try_exclusive(p.lock);
  ASSERT_TRUE(a);
  EXPECT_FALSE(wait_instance_stopped(p, std::chrono::milliseconds(50)));
  auto b = FileLock::try_exclusive(p.lock);
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().held);
  auto c = FileLock::exclusive(p.lock, std::chrono::milliseconds(60));
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().held);
  a->release();
  EXPECT_TRUE(wait_instance_stopped(p, std::chrono::milliseconds(0)));
  EXPECT_TRUE(FileLock::try_exclusive(p.lock));
}

TEST_F(InstancePathsTest, StateRoundTripsAndGarbageReadsAsNone) {
  const auto p = instance_paths(root_ / "run", "deb");
  ASSERT_TRUE(prepare_instance_dirs(p));
  EXPECT_FALSE(read_state(p));
  ASSERT_TRUE(write_state(p, nlohmann::json{{"pid", 42}, {"mode", "nat"}}));
  auto s = read_state(p);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->value("pid", 0), 42);
  EXPECT_EQ(s->value("mode", ""), "nat");
  EXPECT_FALSE(fs::exists(p.state.string() + ".tmp"));
  {
    std::FILE* f = std::fopen(p.state.c_str(), "w");
    std::fputs("{not json", f);
    std::fclose(f);
  }
  EXPECT_FALSE(read_state(p));
}

TEST_F(InstancePathsTest, ConnectToNothingFails) {
  EXPECT_FALSE(connect_unix(root_ / "nothing.sock"));
  EXPECT_FALSE(connect_unix(root_ / std::string(200, 'y')));
}

}  // namespace
}  // namespace causeway::cli
