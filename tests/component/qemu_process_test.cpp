// vmm/machine with real processes (no QEMU needed): the QEMU check against
// fake qemu scripts, spawning, reaping and stopping through the executor, and
// the console log's tail. The pure parts are in tests/unit/machine_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <fstream>

#include "tests/support/fakes.hpp"
#include "vmm/machine/qemu_cmdline.hpp"
#include "vmm/machine/qemu_process.hpp"

namespace causeway::machine {
namespace {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cw-machine-test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_script(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  chmod(path.c_str(), 0755);
}

TEST(QemuCheck, MissingBinaryNamesTheDebianPackage) {
  const auto r = check_qemu("cw-no-such-qemu-binary");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("apt-get install qemu-system-x86"), std::string::npos);
}

TEST(QemuCheck, TooOldAndNotQemuAreClearErrors) {
  TempDir d;
  write_script(d.file("old"), "echo 'QEMU emulator version 6.2.0 (Debian)'\n");
  write_script(d.file("other"), "echo 'something else'\n");
  write_script(d.file("new"), "echo 'QEMU emulator version 9.1.0'\n");
  write_script(d.file("hang"), "exec sleep 30\n");
  auto r = check_qemu(d.file("old"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("too old"), std::string::npos);
  r = check_qemu(d.file("other"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("no QEMU version"), std::string::npos);
  r = check_qemu(d.file("new"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(*r, (QemuVersion{9, 1, 0}));
  r = check_qemu(d.file("hang"), 200ms);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("did not answer"), std::string::npos);
}

TEST(QemuCheck, InstalledQemuPassesIfPresent) {
  const auto r = check_qemu("qemu-system-x86_64");
  if (!r) GTEST_SKIP() << r.error();
  EXPECT_GE(*r, kMinQemuVersion);
}

TEST(QemuCheck, GuestFilesMustExistAndBeNonEmpty) {
  TempDir d;
  QemuOptions o;
  o.kernel = d.file("vmlinuz");
  auto r = check_guest_files(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("scripts/build-guest.sh"), std::string::npos);
  std::ofstream(o.kernel) << "";
  r = check_guest_files(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("empty"), std::string::npos);
  std::ofstream(o.kernel) << "kernel";
  EXPECT_TRUE(check_guest_files(o));
  o.initrd = d.file("missing.cpio.gz");
  EXPECT_FALSE(check_guest_files(o));
}

TEST(QemuProcessTest, ExitStatusIsReportedThroughTheExecutor) {
  boost::asio::io_context io;
  TempDir d;
  auto p = QemuProcess::spawn(io.get_executor(), {"sh", "-c", "echo to-log; echo err >&2; exit 3"}, d.file("q.log"));
  ASSERT_TRUE(p) << p.error();
  std::optional<ExitStatus> st;
  (*p)->async_wait([&](const ExitStatus& s) { st = s; });
  ASSERT_TRUE(testing::run_until(io, [&] { return st.has_value(); }));
  EXPECT_FALSE(st->signaled);
  EXPECT_EQ(st->code, 3);
  EXPECT_EQ(st->describe(), "exited with status 3");
  EXPECT_FALSE((*p)->running());
  EXPECT_EQ(tail_file(d.file("q.log")), "to-log\nerr");
  // Waiting again after the exit answers at once.
  std::optional<ExitStatus> again;
  (*p)->async_wait([&](const ExitStatus& s) { again = s; });
  ASSERT_TRUE(testing::run_until(io, [&] { return again.has_value(); }));
  EXPECT_EQ(again->code, 3);
}

TEST(QemuProcessTest, TerminateEscalatesToSigkillAfterTheGrace) {
  boost::asio::io_context io;
  TempDir d;
  // Ignores SIGTERM, like a wedged process would.
  auto p = QemuProcess::spawn(io.get_executor(), {"sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"},
                              d.file("q.log"));
  ASSERT_TRUE(p) << p.error();
  std::optional<ExitStatus> st;
  (*p)->async_wait([&](const ExitStatus& s) { st = s; });
  ASSERT_TRUE(testing::run_until(io, [&] { return tail_file(d.file("q.log")) == "up"; }));
  (*p)->terminate(100ms);
  ASSERT_TRUE(testing::run_until(io, [&] { return st.has_value(); }));
  EXPECT_TRUE(st->signaled);
  EXPECT_EQ(st->code, SIGKILL);
}

TEST(QemuProcessTest, TheChildRunsInItsOwnProcessGroup) {
  boost::asio::io_context io;
  TempDir d;
  auto p = QemuProcess::spawn(io.get_executor(), {"sh", "-c", "ps -o pgid= -p $$"}, d.file("q.log"));
  ASSERT_TRUE(p) << p.error();
  std::optional<ExitStatus> st;
  (*p)->async_wait([&](const ExitStatus& s) { st = s; });
  ASSERT_TRUE(testing::run_until(io, [&] { return st.has_value(); }));
  const std::string pgid = tail_file(d.file("q.log"));
  if (pgid.empty()) GTEST_SKIP() << "no ps";
  EXPECT_EQ(std::stoi(pgid), (*p)->pid());
  EXPECT_NE(std::stoi(pgid), getpgrp());
}

TEST(QemuProcessTest, DestroyingARunningProcessKillsAndReapsIt) {
  boost::asio::io_context io;
  TempDir d;
  pid_t pid = 0;
  {
    auto p = QemuProcess::spawn(io.get_executor(), {"sleep", "30"}, d.file("q.log"));
    ASSERT_TRUE(p) << p.error();
    pid = (*p)->pid();
  }
  EXPECT_EQ(kill(pid, 0), -1);  // gone, and reaped (no zombie left to signal)
  EXPECT_EQ(errno, ESRCH);
}

TEST(QemuProcessTest, MissingBinaryIsAClearError) {
  boost::asio::io_context io;
  TempDir d;
  const auto p = QemuProcess::spawn(io.get_executor(), {"cw-no-such-qemu"}, d.file("q.log"));
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("qemu-system-x86"), std::string::npos);
}

TEST(TailFile, ReturnsTheLastLinesPrintably) {
  TempDir d;
  std::ofstream(d.file("c.log")) << "one\r\ntwo\r\nthree\x01\r\nfour\r\n\r\n";
  EXPECT_EQ(tail_file(d.file("c.log"), 2), "three?\nfour");
  EXPECT_EQ(tail_file(d.file("c.log"), 10), "one\ntwo\nthree?\nfour");
  EXPECT_EQ(tail_file(d.file("none.log")), "");
}

}  // namespace
}  // namespace causeway::machine
