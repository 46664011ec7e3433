// OutputPump (cli/output_pump.hpp): the guest command's output goes to our
// stdout without ever blocking the caller, pauses the guest at high water,
// resumes it at low water, and loses nothing.
#include "cli/output_pump.hpp"

#include <fcntl.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::cli {
namespace {

using namespace std::chrono_literals;

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    r.reset(fds[0]);
    w.reset(fds[1]);
  }
  UniqueFd r, w;
};

std::string drain(int fd, size_t want, std::chrono::milliseconds limit) {
  std::string got;
  const auto end = std::chrono::steady_clock::now() + limit;
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  char buf[65536];
  while (got.size() < want && std::chrono::steady_clock::now() < end) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0)
      got.append(buf, static_cast<size_t>(n));
    else
      ::usleep(1000);
  }
  return got;
}

// A reader that reads nothing: the pipe (64 KiB) fills, and a blocking write would hang here.
TEST(OutputPump, PushNeverBlocksAndPausesAtHighWaterThenResumesAndLosesNothing) {
  boost::asio::io_context io;
  Pipe p;
  std::vector<bool> pressure;
  OutputPump::Options o;
  o.high_water = 256 << 10;
  o.low_water = 64 << 10;
  auto pump = std::make_unique<OutputPump>(
      io.get_executor(), p.w.get(), [&](bool paused) { pressure.push_back(paused); }, o);
  std::string all;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 64; ++i) {  // 4 MiB: far beyond the pipe, as a guest flooding its stdout
    std::string chunk(64 << 10, static_cast<char>('a' + i % 26));
    chunk[0] = static_cast<char>('0' + i % 10);
    all += chunk;
    pump->push({reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "push() waited for the reader";
  ASSERT_EQ(pressure, std::vector<bool>{true}) << "paused once at high water, not resumed while nothing is read";
  EXPECT_TRUE(pump->pressured());
  // The reader catches up: everything arrives in order, and the guest is resumed.
  const std::string got = drain(p.r.get(), all.size(), 10s);
  EXPECT_EQ(got.size(), all.size());
  EXPECT_TRUE(got == all) << "output reordered or corrupted";
  ASSERT_TRUE(testing::run_until(
      io, [&] { return pressure.size() == 2; }, 3s))
      << "never resumed";
  EXPECT_FALSE(pressure[1]);
  EXPECT_FALSE(pump->pressured());
  const auto s = pump->stats();
  EXPECT_EQ(s.bytes_written, all.size());
  EXPECT_EQ(s.bytes_dropped, 0u);
  EXPECT_EQ(s.pauses, 1u);
}

TEST(OutputPump, AReaderThatGoesAwayDropsOutputAndResumesTheGuest) {
  ::signal(SIGPIPE, SIG_IGN);  // as causeway's main() does: EPIPE, not death
  boost::asio::io_context io;
  Pipe p;
  std::vector<bool> pressure;
  OutputPump::Options o;
  o.high_water = 128 << 10;
  o.low_water = 32 << 10;
  OutputPump pump(
      io.get_executor(), p.w.get(), [&](bool paused) { pressure.push_back(paused); }, o);
  const std::string chunk(256 << 10, 'x');
  pump.push({reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()});
  p.r.reset();  // the reader exits: the writer gets EPIPE
  ASSERT_TRUE(testing::run_until(
      io, [&] { return pressure.size() == 2; }, 3s))
      << "the guest stayed paused";
  pump.push({reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()});
  const auto s = pump.stats();
  EXPECT_EQ(s.bytes_written + s.bytes_dropped, 2 * chunk.size());
  EXPECT_GE(s.bytes_dropped, chunk.size());
}

}  // namespace
}  // namespace causeway::cli
