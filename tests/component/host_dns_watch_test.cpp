// HostDnsWatch on a temporary resolv.conf: in-place rewrites, rename-replace
// and symlink retargeting are all seen within 1 s, and the resolver then
// asks the new server. Two fake servers share a port on 127.0.0.2 and
// 127.0.0.3, because resolv.conf cannot name a port.
#include "dns/host_dns_watch.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "dns/cares_resolver.hpp"
#include "dns/proxy.hpp"
#include "tests/support/dns_test_support.hpp"
#include "tests/support/fake_dns_server.hpp"

namespace causeway::dns {
namespace {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using testing::Bytes;
using testing::FakeDnsServer;
using testing::make_query;
using testing::run_until;
using Ms = std::chrono::milliseconds;

void write_in_place(const fs::path& p, const std::string& text) {
  // O_TRUNC on the existing inode, like `echo ... > /etc/resolv.conf`.
  const int fd = ::open(p.c_str(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
}

void write_and_rename(const fs::path& p, const std::string& text) {
  // What NetworkManager, resolvconf and VPN clients do.
  const fs::path tmp = p.parent_path() / (p.filename().string() + ".tmp");
  write_in_place(tmp, text);
  ASSERT_EQ(std::rename(tmp.c_str(), p.c_str()), 0);
}

void retarget_symlink(const fs::path& link, const fs::path& target) {
  // ln -sf's atomic form: a new link renamed over the old one.
  const fs::path tmp = link.parent_path() / (link.filename().string() + ".new");
  fs::create_symlink(target, tmp);
  ASSERT_EQ(std::rename(tmp.c_str(), link.c_str()), 0);
}

class HostDnsWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/causeway-dns-watch-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // The same port on two loopback addresses.
    for (int attempt = 0; attempt < 20 && !(a_ && b_ && a_->ok() && b_->ok()); ++attempt) {
      a_ = std::make_unique<FakeDnsServer>(io_, asio::ip::make_address("127.0.0.2"));
      b_ = std::make_unique<FakeDnsServer>(io_, asio::ip::make_address("127.0.0.3"), a_->port());
    }
    ASSERT_TRUE(a_->ok() && b_->ok());
    a_->add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.2")});
    b_->add("www.example.test", {rrtype::kA, FakeDnsServer::a("192.0.2.3")});
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Starts a watch on `path` wired to the resolver as the engine will wire it.
  void start_watch(const fs::path& path) {
    watch_ = std::make_unique<HostDnsWatch>(io_, path.string(), [this](const HostDnsConfig& cfg) { apply(cfg); });
    ASSERT_FALSE(watch_->start());
    apply(watch_->current());
  }
  void apply(HostDnsConfig cfg) {
    for (DnsServer& s : cfg.servers) s.port = a_->port();  // the test servers' port
    ASSERT_FALSE(resolver_.update_servers(cfg));
  }

  // Which server answered www.example.test: 2 for 127.0.0.2, 3 for .3.
  int who_answers() {
    std::optional<Bytes> reply;
    proxy_.on_query(make_query("www.example.test", rrtype::kA), Transport::kUdp,
                    [&](Bytes r) { reply = std::move(r); });
    if (!run_until(
            io_, [&] { return reply.has_value(); }, Ms(2000)) ||
        reply->size() < 4)
      return -1;
    return reply->back();  // the A record's last byte
  }

  // Runs the loop until the watch reports `changes`; returns the time it took.
  Ms wait_for_changes(uint64_t changes) {
    const auto start = std::chrono::steady_clock::now();
    run_until(
        io_, [&] { return watch_->stats().changes >= changes; }, Ms(3000));
    return std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - start);
  }

  asio::io_context io_;
  SteadyClock clock_;
  fs::path dir_;
  std::unique_ptr<FakeDnsServer> a_;
  std::unique_ptr<FakeDnsServer> b_;
  CaresResolver resolver_{io_, {.try_timeout = Ms(300), .tries = 1}};
  Proxy proxy_{io_, clock_, resolver_, LocalZone{}};
  std::unique_ptr<HostDnsWatch> watch_;
};

TEST_F(HostDnsWatchTest, InPlaceRewriteSwitchesServersWithinOneSecond) {
  const fs::path conf = dir_ / "resolv.conf";
  write_in_place(conf, "nameserver 127.0.0.2\n");
  start_watch(conf);
  EXPECT_EQ(who_answers(), 2);
  write_in_place(conf, "# rewritten\nnameserver 127.0.0.3\n");
  EXPECT_LT(wait_for_changes(1), Ms(1000));
  EXPECT_EQ(watch_->current().servers.at(0).address.to_string(), "127.0.0.3");
  EXPECT_EQ(who_answers(), 3);
}

TEST_F(HostDnsWatchTest, RenameReplaceSwitchesServersWithinOneSecond) {
  const fs::path conf = dir_ / "resolv.conf";
  write_in_place(conf, "nameserver 127.0.0.2\n");
  start_watch(conf);
  EXPECT_EQ(who_answers(), 2);
  write_and_rename(conf, "nameserver 127.0.0.3\n");
  EXPECT_LT(wait_for_changes(1), Ms(1000));
  EXPECT_EQ(who_answers(), 3);
  write_and_rename(conf, "nameserver 127.0.0.2\n");  // the watch survives the replacement
  EXPECT_LT(wait_for_changes(2), Ms(1000));
  EXPECT_EQ(who_answers(), 2);
}

TEST_F(HostDnsWatchTest, FollowsSymlinkRetargetingAndTheTargetsOwnChanges) {
  // /etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf, in miniature.
  fs::create_directories(dir_ / "run");
  fs::create_directories(dir_ / "etc");
  write_in_place(dir_ / "run" / "a.conf", "nameserver 127.0.0.2\n");
  write_in_place(dir_ / "run" / "b.conf", "nameserver 127.0.0.3\n");
  const fs::path link = dir_ / "etc" / "resolv.conf";
  fs::create_symlink("../run/a.conf", link);
  start_watch(link);
  EXPECT_EQ(who_answers(), 2);
  retarget_symlink(link, "../run/b.conf");
  EXPECT_LT(wait_for_changes(1), Ms(1000));
  EXPECT_EQ(who_answers(), 3);
  // The target itself replaced in its own directory (resolved's way).
  write_and_rename(dir_ / "run" / "b.conf", "nameserver 127.0.0.2\n");
  EXPECT_LT(wait_for_changes(2), Ms(1000));
  EXPECT_EQ(who_answers(), 2);
}

TEST_F(HostDnsWatchTest, IgnoresOtherFilesAndUnchangedContent) {
  const fs::path conf = dir_ / "resolv.conf";
  write_in_place(conf, "nameserver 127.0.0.2\n");
  start_watch(conf);
  write_in_place(dir_ / "hosts", "127.0.0.1 localhost\n");
  write_in_place(conf, "nameserver 127.0.0.2\n# only a comment changed\n");
  ASSERT_TRUE(run_until(
      io_, [&] { return watch_->stats().reloads == 1; }, Ms(1000)));
  run_until(
      io_, [] { return false; }, Ms(2 * HostDnsWatch::kDebounce));  // let any stray reload happen
  EXPECT_EQ(watch_->stats().reloads, 1u);
  EXPECT_EQ(watch_->stats().changes, 0u);
}

TEST_F(HostDnsWatchTest, MissingFileMeansLoopbackUntilItAppears) {
  const fs::path conf = dir_ / "resolv.conf";
  start_watch(conf);
  EXPECT_EQ(watch_->current().servers.at(0).to_string(), "127.0.0.1:53");
  write_and_rename(conf, "nameserver 127.0.0.3\n");
  EXPECT_LT(wait_for_changes(1), Ms(1000));
  EXPECT_EQ(who_answers(), 3);
}

TEST_F(HostDnsWatchTest, StartFailsWhenTheDirectoryDoesNotExist) {
  HostDnsWatch w(io_, (dir_ / "nope" / "resolv.conf").string(), nullptr);
  EXPECT_TRUE(w.start());
}

}  // namespace
}  // namespace causeway::dns
