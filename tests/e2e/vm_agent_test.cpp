// e2e: the guest image booted under QEMU (TCG here) with the agent as PID 1,
// launched by causeway_machine and driven by AgentSession.
//
// The agent talks over its debugging transport — virtio-serial, whose
// chardev is a unix socket this test listens on — so this runs without
// causeway's vhost-user vsock device. The NIC is QEMU's own -netdev user
// (libslirp: 10.0.2.15/24, gateway 10.0.2.2 = host loopback, DNS 10.0.2.3),
// so the agent's static network configuration and its DHCP fallback are
// checked against a known-good network.
//
// Skipped (not passed) when QEMU or the guest image is missing. The image is
// taken from $CW_GUEST_DIR, else CAUSEWAY_GUEST_DIR (build/guest). CW_VM_VERBOSE=1
// prints each boot's session result, agent log and console tail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <filesystem>

#include "tests/support/fakes.hpp"
#include "vmm/agent/session.hpp"
#include "vmm/agent/socket_stream.hpp"
#include "vmm/machine/accel.hpp"
#include "vmm/machine/qemu_cmdline.hpp"
#include "vmm/machine/qemu_process.hpp"

#ifndef CAUSEWAY_GUEST_DIR
#define CAUSEWAY_GUEST_DIR "build/guest"
#endif

namespace causeway::agent {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using boost::asio::local::stream_protocol;

constexpr auto kBootBudget = 120s;  // TCG boot is 2–10 s; generous for a loaded CI machine

// Answers every HTTP request on 127.0.0.1 with `body` ("just enough HTTP/1.0").
class TinyHttpServer {
 public:
  TinyHttpServer(boost::asio::io_context& io, std::string body)
      : acceptor_(io, {boost::asio::ip::make_address("127.0.0.1"), 0}), body_(std::move(body)) {
    accept();
  }
  [[nodiscard]] uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;
      auto sock = std::make_shared<boost::asio::ip::tcp::socket>(std::move(s));
      auto buf = std::make_shared<boost::asio::streambuf>();
      boost::asio::async_read_until(*sock, *buf, "\r\n\r\n", [this, sock, buf](boost::system::error_code, size_t) {
        auto reply = std::make_shared<std::string>(
            "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body_.size()) + "\r\n\r\n" + body_);
        boost::asio::async_write(*sock, boost::asio::buffer(*reply),
                                 [sock, reply](boost::system::error_code, size_t) {});
      });
      accept();
    });
  }
  boost::asio::ip::tcp::acceptor acceptor_;
  std::string body_;
};

struct VmResult {
  std::optional<SessionEnd> end;
  std::optional<machine::ExitStatus> qemu;
  std::optional<Ready> ready;
  std::string out, err;
  std::vector<std::string> logs, errors;
  std::string console;
};

std::string why(const VmResult& r) {
  std::string s = "session: ";
  s += r.end ? std::string(to_string(r.end->reason)) + ": " + r.end->detail : "not ended";
  s += "\nqemu: " + (r.qemu ? r.qemu->describe() : std::string("running"));
  s += "\nstdout: " + r.out + "\nstderr: " + r.err + "\nagent log:";
  for (const auto& l : r.logs) s += "\n  " + l;
  for (const auto& e : r.errors) s += "\n  ERROR " + e;
  return s + "\nconsole tail:\n" + r.console;
}

class VmAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("CW_GUEST_DIR");
    guest_ = env && *env ? env : CAUSEWAY_GUEST_DIR;
    if (!fs::exists(guest_ + "/vmlinuz") || !fs::exists(guest_ + "/initramfs.cpio.gz"))
      GTEST_SKIP() << "no guest image in " << guest_ << " (scripts/build-guest.sh)";
    if (auto v = machine::check_qemu("qemu-system-x86_64"); !v) GTEST_SKIP() << v.error();
    // An image from before the agent existed (or built with --no-agent) would panic at
    // rdinit=: say so instead of failing on a stale build product.
    const std::string list =
        "gzip -dc '" + guest_ + "/initramfs.cpio.gz' | cpio -t --quiet 2>/dev/null" + " | grep -qx sbin/causeway-agent";
    if (std::system(list.c_str()) != 0)
      GTEST_SKIP() << guest_ << "/initramfs.cpio.gz has no sbin/causeway-agent: rebuild the image "
                   << "(cmake --build build --target causeway-agent && scripts/build-guest.sh)";
    char tmpl[] = "/tmp/cw-vm-agent.XXXXXX";
    tmp_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    if (!tmp_.empty() && !::testing::Test::HasFailure())
      fs::remove_all(tmp_);
    else if (!tmp_.empty())
      std::fprintf(stderr, "kept %s\n", tmp_.c_str());
  }

  // Boots the guest, runs `run` after `net` (if any), shuts down after Exited.
  VmResult boot_and_run(const agent::Run& run, std::optional<NetConfig> net,
                        machine::MachineType type = machine::MachineType::Q35) {
    VmResult res;
    const std::string sock_path = tmp_ + "/agent.sock";
    stream_protocol::acceptor acceptor(io_, stream_protocol::endpoint(sock_path));

    machine::QemuOptions o;
    const auto accel = machine::choose_accel(machine::probe_accel_facts());
    o.accel = accel ? accel->accel : machine::Accel::Tcg;
    o.machine = type;
    o.memory_mib = 256;
    o.kernel = guest_ + "/vmlinuz";
    o.initrd = guest_ + "/initramfs.cpio.gz";
    o.console_log = tmp_ + "/console.log";
    o.net = machine::NetAttachment::None;
    o.agent_serial_socket = sock_path;
    if (type == machine::MachineType::Microvm) o.tsc_khz = 2'000'000;
    const std::string nic = type == machine::MachineType::Microvm ? "virtio-net-device" : "virtio-net-pci";
    o.extra_args = {"-netdev", "user,id=n0", "-device", nic + ",netdev=n0"};
    const auto argv = machine::build_qemu_argv(o);
    EXPECT_TRUE(argv) << argv.error();
    if (!argv) return res;
    auto qemu = machine::QemuProcess::spawn(io_.get_executor(), *argv, tmp_ + "/qemu.log");
    EXPECT_TRUE(qemu) << qemu.error();
    if (!qemu) return res;
    (*qemu)->async_wait([&](const machine::ExitStatus& s) { res.qemu = s; });

    // QEMU connects to the chardev socket as it starts, long before the guest opens the
    // port: the ready timeout therefore covers the whole boot on this transport.
    std::unique_ptr<AgentSession> session;
    acceptor.async_accept([&](boost::system::error_code ec, stream_protocol::socket s) {
      ASSERT_FALSE(ec) << ec.message();
      auto stream = std::make_shared<SocketVsockStream>(std::move(s));
      AgentCallbacks cb;
      cb.on_ready = [&](const Ready& r) { res.ready = r; };
      cb.on_stdout = [&](std::span<const uint8_t> d) { res.out.append(d.begin(), d.end()); };
      cb.on_stderr = [&](std::span<const uint8_t> d) { res.err.append(d.begin(), d.end()); };
      cb.on_log = [&](std::string_view t) { res.logs.emplace_back(t); };
      cb.on_guest_error = [&](std::string_view t) { res.errors.emplace_back(t); };
      cb.on_exited = [&](const Exited&) { session->shutdown(); };
      cb.on_end = [&](const SessionEnd& e) { res.end = e; };
      AgentSessionOptions opts;
      opts.ready_timeout = kBootBudget;
      session = std::make_unique<AgentSession>(io_.get_executor(), stream, std::move(cb), opts);
      stream->start();
      session->start();
      if (net) {
        EXPECT_FALSE(session->configure_network(*net));
      }
      EXPECT_FALSE(session->run(run));
    });
    // Until the session ends and QEMU exits (the guest powers off after Shutdown).
    testing::run_until(
        io_, [&] { return res.qemu.has_value() && (res.end || !session); }, kBootBudget + 30s);
    if (!res.qemu) (*qemu)->terminate(1s);
    testing::run_until(
        io_, [&] { return res.qemu.has_value(); }, 5s);
    testing::run_until(
        io_, [&] { return res.end.has_value(); }, 2s);
    res.console = machine::tail_file(o.console_log, 40);
    if (std::getenv("CW_VM_VERBOSE")) std::fprintf(stderr, "%s\n", why(res).c_str());
    return res;
  }

  static NetConfig slirp_static() {
    NetConfig c;
    c.mtu = 1500;
    c.addresses = {{IpAddr::v4(10, 0, 2, 15), 24}};
    c.routes = {{IpAddr::v4(0, 0, 0, 0), 0, IpAddr::v4(10, 0, 2, 2), 0}};
    c.dns_servers = {IpAddr::v4(10, 0, 2, 3)};
    c.search_domains = {"cw.test"};
    return c;
  }

  boost::asio::io_context io_;
  std::string guest_;
  std::string tmp_;
};

TEST_F(VmAgentTest, StaticNetworkConfigReachesAHostServiceAndExitStatusPropagates) {
  TinyHttpServer http(io_, "hello from the host\n");
  const std::string script =
      "ip -4 addr show dev eth0; ip route; cat /etc/resolv.conf; cat /sys/class/net/eth0/mtu; "
      "wget -q -O - http://10.0.2.2:" +
      std::to_string(http.port()) +
      "/probe; "
      "echo to-stderr >&2; exit 7";
  const auto r = boot_and_run(agent::Run{{"sh", "-c", script}, {}, "/", false, 0, 0, ""}, slirp_static());
  ASSERT_TRUE(r.end) << why(r);
  EXPECT_EQ(r.end->reason, EndReason::Completed) << why(r);
  ASSERT_TRUE(r.end->exit) << why(r);
  EXPECT_EQ(r.end->exit->shell_status(), 7) << why(r);
  EXPECT_NE(r.out.find("inet 10.0.2.15/24"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("default via 10.0.2.2 dev eth0"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("nameserver 10.0.2.3"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("search cw.test"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("hello from the host"), std::string::npos) << why(r);
  EXPECT_EQ(r.err, "to-stderr\n") << why(r);
  ASSERT_TRUE(r.ready);
  EXPECT_NE(r.ready->kernel_release.find("cloud-amd64"), std::string::npos);
  EXPECT_GT(r.ready->uptime_ms, 0u);
  ASSERT_TRUE(r.qemu);
  EXPECT_TRUE(r.qemu->success()) << why(r);  // the guest powered off: QEMU exits 0
  EXPECT_TRUE(r.errors.empty()) << why(r);
}

TEST_F(VmAgentTest, DhcpFallbackAndATerminal) {
  NetConfig dhcp;
  dhcp.dhcp = true;
  agent::Run run{{"sh", "-c", "ip -4 addr show dev eth0; tty; stty size"}, {"TERM=dumb"}, "/", true, 30, 90, ""};
  const auto r = boot_and_run(run, dhcp);
  ASSERT_TRUE(r.end) << why(r);
  EXPECT_EQ(r.end->reason, EndReason::Completed) << why(r);
  ASSERT_TRUE(r.end->exit);
  EXPECT_EQ(r.end->exit->shell_status(), 0) << why(r);
  EXPECT_NE(r.out.find("inet 10.0.2.15/24"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("/dev/pts/0"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("30 90"), std::string::npos) << why(r);
}

TEST_F(VmAgentTest, MicrovmBootsTheAgentOverVirtioMmio) {
  const auto r = boot_and_run(agent::Run{{"cat", "/proc/cmdline"}, {}, "", false, 0, 0, ""}, slirp_static(),
                              machine::MachineType::Microvm);
  ASSERT_TRUE(r.end) << why(r);
  EXPECT_EQ(r.end->reason, EndReason::Completed) << why(r);
  ASSERT_TRUE(r.end->exit);
  EXPECT_EQ(r.end->exit->shell_status(), 0) << why(r);
  EXPECT_NE(r.out.find("rdinit=/sbin/causeway-agent"), std::string::npos) << why(r);
  EXPECT_NE(r.out.find("cw.agent.transport=serial"), std::string::npos) << why(r);
}

}  // namespace
}  // namespace causeway::agent
