// End-to-end: the test guest under QEMU (TCG), its only NIC a vhost-user
// virtio-net served by this process — vhost_user::Server + VirtioNetDevice
// in front of the real netstack::Engine, all on one io_context, as
// `causeway run` wires them. The guest (scripts/guest-image/init.sh, cw.mode=dhcp-test)
// must get its DHCP lease from the engine and fetch a file from an HTTP
// server on this host's 127.0.0.1 through the gateway alias 10.0.2.2, intact
// (size and md5 match).
//
// With --vsock the guest also gets a vhost-user-vsock device served by a
// VirtioVsockDevice; once the guest has its lease the host connects to guest
// port 1234, where nothing listens (the busybox guest has no vsock tools):
// the guest kernel's RST coming back as ECONNREFUSED proves the round trip
// (REQUEST into a guest receive buffer, RST out of its transmit queue).
//
// With --drop-after-lease the host drops QEMU's vhost-user connection as
// soon as the guest has its lease; QEMU (chardev reconnect=1) reconnects and
// replays the set-up, and the fetch must still complete.
//
// Usage: causeway_vmm_e2e --guest-dir DIR [--size BYTES] [--mtu N] [--machine q35|microvm] [--vsock]
//                         [--drop-after-lease] [--timeout S] [--keep] [--log LEVEL]
//        (--trace-frames, --external-qemu: debugging aids)
// Exit: 0 pass, 1 fail, 77 skip (no qemu-system-x86_64 or no guest image; printed loudly).
// Prints TIME lines: boot-to-lease (host clock, QEMU start → CW-LEASE on the
// console) and the transfer's host-side duration and throughput.
// Only the QEMU process this program starts is ever signalled (by PID; it
// also gets PR_SET_PDEATHSIG so it cannot outlive us).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "netstack/engine.hpp"
#include "netstack/nat_config.hpp"
#include "vmm/devices/virtio_net.hpp"
#include "vmm/devices/virtio_vsock.hpp"
#include "vmm/vhost_user/server.hpp"

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace causeway;
using Clk = std::chrono::steady_clock;

namespace {

constexpr int kSkip = 77;

std::optional<std::string> find_in_path(const std::string& exe) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const fs::path p = fs::path(dir) / exe;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return std::nullopt;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> marker(const std::string& console, const std::string& prefix) {
  size_t pos = 0;
  while ((pos = console.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || console[pos - 1] == '\n') {
      size_t end = console.find('\n', pos);
      std::string line = console.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    pos += prefix.size();
  }
  return std::nullopt;
}

std::string md5_of(const fs::path& p) {
  const std::string cmd = "md5sum '" + p.string() + "'";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return "?";
  char buf[128] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  ::pclose(f);
  std::string s(buf, n);
  return s.substr(0, s.find(' '));
}

// Just enough HTTP/1.0 to answer busybox wget: read the request head, send
// the body, close.
class HttpServer {
 public:
  HttpServer(asio::io_context& io, const std::string& body)
      : acceptor_(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), body_(body) {
    accept();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::optional<Clk::time_point> first_request, last_done;
  uint64_t bytes_sent = 0;

 private:
  struct Session {
    explicit Session(asio::ip::tcp::socket s) : sock(std::move(s)) {}
    asio::ip::tcp::socket sock;
    asio::streambuf req{8192};
    std::string head;
  };
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      auto sess = std::make_shared<Session>(std::move(s));
      asio::async_read_until(sess->sock, sess->req, "\r\n\r\n", [this, sess](boost::system::error_code rec, size_t) {
        if (rec) return;
        if (!first_request) first_request = Clk::now();
        sess->head = "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                     std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n";
        std::vector<asio::const_buffer> bufs{asio::buffer(sess->head), asio::buffer(body_)};
        asio::async_write(sess->sock, bufs, [this, sess](boost::system::error_code wec, size_t n) {
          bytes_sent += n;
          if (!wec) last_done = Clk::now();
          boost::system::error_code ignored;
          sess->sock.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
        });
      });
      accept();
    });
  }
  asio::ip::tcp::acceptor acceptor_;
  const std::string& body_;
};

pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int in = ::open("/dev/null", O_RDONLY);
  const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(in, 0);
  ::dup2(o, 1);
  ::dup2(e, 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  ::_exit(127);
}

// With --trace-frames: one line per frame each way (time, length, EtherType,
// IPv4 protocol and TCP flags), to see where time goes.
class TracingSink final : public netstack::FrameSink, public netstack::FramePort {
 public:
  TracingSink(Clk::time_point t0, bool on) : t0_(t0), on_(on) {}
  netstack::FrameSink* sink = nullptr;
  netstack::FramePort* port = nullptr;
  void on_guest_frame(std::span<const uint8_t> f) override {
    log("guest->engine", f);
    sink->on_guest_frame(f);
  }
  void send_to_guest(std::span<const uint8_t> f) override {
    log("engine->guest", f);
    port->send_to_guest(f);
  }

 private:
  void log(const char* dir, std::span<const uint8_t> f) {
    if (!on_) return;
    const double t = std::chrono::duration<double>(Clk::now() - t0_).count();
    std::string what;
    if (f.size() >= 34 && f[12] == 0x08 && f[13] == 0x00) {
      what = "ipv4 proto " + std::to_string(f[23]);
      const size_t ihl = (f[14] & 0x0f) * 4u;
      if (f[23] == 6 && f.size() >= 14 + ihl + 14) {
        const uint8_t fl = f[14 + ihl + 13];
        uint32_t seq = (uint32_t{f[14 + ihl + 4]} << 24) | (uint32_t{f[14 + ihl + 5]} << 16) |
                       (uint32_t{f[14 + ihl + 6]} << 8) | f[14 + ihl + 7];
        uint32_t ack = (uint32_t{f[14 + ihl + 8]} << 24) | (uint32_t{f[14 + ihl + 9]} << 16) |
                       (uint32_t{f[14 + ihl + 10]} << 8) | f[14 + ihl + 11];
        const uint16_t win = static_cast<uint16_t>((f[14 + ihl + 14] << 8) | f[14 + ihl + 15]);
        what += " tcp flags " + std::to_string(fl) + " seq " + std::to_string(seq) + " ack " + std::to_string(ack) +
                " win " + std::to_string(win);
      }
    } else if (f.size() >= 14) {
      what = "ethertype " + std::to_string((f[12] << 8) | f[13]);
    }
    std::printf("%9.3f %s %zu %s\n", t, dir, f.size(), what.c_str());
  }
  Clk::time_point t0_;
  bool on_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string guest_dir = "build/guest";
  size_t size = 256 * 1024;
  int timeout_s = 55;
  bool keep = false;
  bool external_qemu = false;
  bool trace_frames = false;
  int mtu = 65520;
  bool with_vsock = false;
  std::string machine = "q35";    // or microvm (virtio-mmio devices described by ACPI)
  bool drop_after_lease = false;  // reconnect check: drop QEMU's connection once the guest has its lease  // debugging:
                                  // print the command, let the user start QEMU (e.g. under gdb)
  std::string log_level = "warn";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--guest-dir")
      guest_dir = next();
    else if (a == "--size")
      size = std::stoull(next());
    else if (a == "--timeout")
      timeout_s = std::stoi(next());
    else if (a == "--keep")
      keep = true;
    else if (a == "--external-qemu")
      external_qemu = true;
    else if (a == "--trace-frames")
      trace_frames = true;
    else if (a == "--mtu")
      mtu = std::stoi(next());
    else if (a == "--vsock")
      with_vsock = true;
    else if (a == "--machine")
      machine = next();
    else if (a == "--drop-after-lease")
      drop_after_lease = true;
    else if (a == "--log")
      log_level = next();
    else {
      std::fprintf(stderr,
                   "usage: %s --guest-dir DIR [--size BYTES] [--mtu N] [--machine q35|microvm] [--vsock] "
                   "[--drop-after-lease] [--timeout S] [--keep] [--log LEVEL] [--trace-frames] [--external-qemu]\n",
                   argv[0]);
      return 2;
    }
  }
  init_logging(log_level);
  auto qemu = find_in_path("qemu-system-x86_64");
  if (!qemu) {
    std::printf("\n*** SKIP: qemu-system-x86_64 not found (apt-get install qemu-system-x86) ***\n\n");
    return kSkip;
  }
  const fs::path kernel = fs::path(guest_dir) / "vmlinuz", initrd = fs::path(guest_dir) / "initramfs.cpio.gz";
  if (!fs::exists(kernel) || !fs::exists(initrd)) {
    std::printf("\n*** SKIP: no guest image in %s (run scripts/build-guest.sh) ***\n\n", guest_dir.c_str());
    return kSkip;
  }

  char tmpl[] = "/tmp/cw-vmm-e2e.XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  const fs::path tmp = tmpl;
  const fs::path sock = tmp / "net.sock", console = tmp / "console.log";

  // The file to fetch: a token line, then printable pseudo-random text.
  std::mt19937_64 rng(static_cast<uint64_t>(::getpid()) * 2654435761u ^
                      static_cast<uint64_t>(Clk::now().time_since_epoch().count()));
  const std::string token = "cw-vmm-e2e-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000000);
  std::string body = token + "\n";
  body.reserve(size + 128);
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  while (body.size() < size) {
    uint64_t r = rng();
    for (int k = 0; k < 10 && body.size() < size; ++k, r >>= 6)
      body.push_back((body.size() % 77 == 76) ? '\n' : kAlphabet[r & 63]);
  }
  { std::ofstream(tmp / "probe.txt", std::ios::binary) << body; }
  const std::string want_sum = std::to_string(body.size()) + " " + md5_of(tmp / "probe.txt");

  asio::io_context io(1);
  SteadyClock clock;
  vmm::VirtioNetConfig dev_cfg;
  dev_cfg.mtu = static_cast<uint16_t>(mtu);
  netstack::NatConfig nat;
  nat.mtu = static_cast<size_t>(mtu);
  vmm::VirtioNetDevice dev(io, clock, dev_cfg);
  TracingSink tracer(Clk::now(), trace_frames);
  netstack::Engine engine(
      io, clock, nat,
      trace_frames ? static_cast<netstack::FramePort&>(tracer) : static_cast<netstack::FramePort&>(dev));
  tracer.sink = &engine;
  tracer.port = &dev;
  if (trace_frames) {
    dev.start(tracer);
  } else {
    dev.start(engine);
  }
  vmm::vhost_user::Server server(io, clock, dev, "vhost-user net");
  if (auto r = server.listen(sock.string()); r.has_error()) {
    std::printf("FAIL: %s\n", r.error().c_str());
    return 1;
  }
  HttpServer http(io, body);

  std::unique_ptr<vmm::VirtioVsockDevice> vsock_dev;
  std::unique_ptr<vmm::vhost_user::Server> vsock_server;
  if (with_vsock) {
    vmm::VirtioVsockConfig vc;
    vc.guest_cid = 3;
    vsock_dev = std::make_unique<vmm::VirtioVsockDevice>(io, clock, vc);
    vsock_server = std::make_unique<vmm::vhost_user::Server>(io, clock, *vsock_dev, "vhost-user vsock");
    if (auto r = vsock_server->listen((tmp / "vsock.sock").string()); r.has_error()) {
      std::printf("FAIL: %s\n", r.error().c_str());
      return 1;
    }
  }

  const std::string url = "http://10.0.2.2:" + std::to_string(http.port()) + "/probe.txt";
  const bool microvm = machine == "microvm";
  std::string append = "console=ttyS0 panic=-1 loglevel=4 cw.mode=dhcp-test cw.url=" + url;
  if (microvm) {
    // As tests/e2e/vm_serve_test.sh: without PIT/RTC calibration microvm under
    // TCG hangs early; hand the guest the TSC frequency.
    std::ifstream ci("/proc/cpuinfo");
    std::string line;
    long mhz = 2600;
    while (std::getline(ci, line))
      if (line.rfind("cpu MHz", 0) == 0) {
        mhz = std::stol(line.substr(line.find(':') + 1));
        break;
      }
    append += " tsc_early_khz=" + std::to_string(mhz * 1000);
  }
  // vectors=0 (INTx, no MSI-X) on the NIC: QEMU 7.2 under TCG segfaults in
  // msix_set_vector_notifiers when vhost-user virtio-net-pci starts with
  // MSI-X (seen here: NULL dereference under vhost_net_start).
  std::vector<std::string> cmd = {
      *qemu,
      "-accel",
      "tcg",
      "-machine",
      microvm ? "microvm,pit=on,rtc=on" : "q35",
      "-m",
      "256",
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
      "-monitor",
      "none",
      "-object",
      "memory-backend-memfd,id=mem,size=256M,share=on",
      "-numa",
      "node,memdev=mem",
      "-chardev",
      "socket,id=c0,path=" + sock.string() + ",reconnect=1",
      "-netdev",
      "vhost-user,id=n0,chardev=c0",
      "-device",
      microvm ? "virtio-net-device,netdev=n0,mrg_rxbuf=on,host_mtu=" + std::to_string(mtu)
              : "virtio-net-pci,netdev=n0,mrg_rxbuf=on,host_mtu=" + std::to_string(mtu) + ",vectors=0",
      "-kernel",
      kernel.string(),
      "-initrd",
      initrd.string(),
      "-append",
      append,
      "-serial",
      "file:" + console.string()};
  if (with_vsock) {
    // MSI-X works for vhost-user-vsock-pci (unlike virtio-net-pci, above).
    // No reconnect=1 here: with it QEMU 7.2 connects the chardev
    // asynchronously and realizes vhost-user-vsock before the connection is
    // up ("Failed to set msg fds ... vhost_backend_init failed").
    for (std::string a :
         {std::string("-chardev"), "socket,id=c1,path=" + (tmp / "vsock.sock").string(), std::string("-device"),
          std::string(microvm ? "vhost-user-vsock-device,chardev=c1" : "vhost-user-vsock-pci,chardev=c1")})
      cmd.push_back(std::move(a));
  }
  std::string joined;
  for (auto& c : cmd) joined += c + " ";
  std::printf("vmm_e2e: %s\n", joined.c_str());
  const auto t0 = Clk::now();
  std::fflush(stdout);
  const pid_t qpid = external_qemu
                         ? spawn({"/bin/sleep", std::to_string(timeout_s)}, tmp / "qemu.out", tmp / "qemu.err")
                         : spawn(cmd, tmp / "qemu.out", tmp / "qemu.err");

  std::optional<Clk::time_point> t_lease;
  int status = 0;
  bool exited = false, done = false;
  std::optional<Clk::time_point> done_at;
  uint64_t seen_features = 0, seen_protocol = 0;  // what the guest/QEMU negotiated (reset on disconnect)
  bool vsock_started = false, vsock_done = false;
  boost::system::error_code vsock_result;
  std::optional<Clk::time_point> vsock_t0, vsock_t1;
  const auto deadline = t0 + std::chrono::seconds(timeout_s);
  while (Clk::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(20));
    const std::string con = read_file(console);
    if (!t_lease && marker(con, "CW-LEASE ")) {
      t_lease = Clk::now();
      if (drop_after_lease) {
        std::printf("vmm_e2e: dropping the vhost-user connection (QEMU reconnects: reconnect=1)\n");
        server.drop_connection();
      }
    }
    if (with_vsock && t_lease && !vsock_started && vsock_dev->ready()) {
      vsock_started = true;
      vsock_t0 = Clk::now();
      vsock_dev->connect(1234, [&](boost::system::error_code ec, std::shared_ptr<vmm::VsockStream>) {
        vsock_result = ec;
        vsock_done = true;
        vsock_t1 = Clk::now();
      });
    }
    if (!done && marker(con, "CW-DONE")) {
      done = true;
      done_at = Clk::now();
    }
    if (dev.acked_features() != 0) {
      seen_features = dev.acked_features();
      seen_protocol = server.stats().protocol_features;
    }
    if (::waitpid(qpid, &status, WNOHANG) == qpid) {
      exited = true;
      break;
    }
    if (done && Clk::now() - *done_at > std::chrono::seconds(10)) break;  // poweroff should be quick
  }
  if (!exited) {
    ::kill(qpid, SIGTERM);
    for (int i = 0; i < 30 && !exited; ++i) {
      if (::waitpid(qpid, &status, WNOHANG) == qpid)
        exited = true;
      else
        ::usleep(100000);
    }
    if (!exited) {
      ::kill(qpid, SIGKILL);
      ::waitpid(qpid, &status, 0);
    }
  }
  const auto t_end = Clk::now();
  const std::string con = read_file(console);

  bool ok = true;
  std::string why;
  auto expect = [&](bool cond, const std::string& what) {
    if (!cond && ok) {
      ok = false;
      why = what;
    }
  };
  auto lease = marker(con, "CW-LEASE ");
  auto fetch = marker(con, "CW-FETCH-OK ");
  auto sum = marker(con, "CW-FETCH-SUM ");
  expect(done, "no CW-DONE marker within " + std::to_string(timeout_s) + " s");
  expect(lease && lease->rfind("CW-LEASE 10.0.2.15/", 0) == 0, "no lease 10.0.2.15: " + lease.value_or("none"));
  expect(fetch && *fetch == "CW-FETCH-OK " + token, "fetch failed: " + marker(con, "CW-FETCH").value_or("no marker"));
  expect(sum && *sum == "CW-FETCH-SUM " + want_sum,
         "body differs: " + sum.value_or("no CW-FETCH-SUM") + ", want " + want_sum);
  expect(marker(con, "CW-DONE dhcp-test result ok").has_value(), "no CW-DONE ok");
  if (with_vsock) {
    expect(vsock_started, "the vsock device never became ready (guest driver did not start its queues)");
    expect(vsock_done && vsock_result == asio::error::connection_refused,
           "vsock connect to an unused guest port: " + (vsock_done ? vsock_result.message() : "no answer"));
  }

  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  for (const char* m : {"CW-LEASE", "CW-FETCH-SUM", "CW-TIME", "CW-DONE", "CW-NET"}) {
    size_t pos = 0;
    while ((pos = con.find(m, pos)) != std::string::npos) {
      const size_t e = con.find('\n', pos);
      std::printf("  guest: %s\n", con.substr(pos, e - pos).c_str());
      pos = e == std::string::npos ? con.size() : e;
    }
  }
  if (t_lease) std::printf("vmm_e2e: TIME boot-to-lease %.3fs\n", static_cast<double>(ms(*t_lease - t0)) / 1000.0);
  // Guest side: CW-TIME lease and CW-TIME fetch are guest uptimes; between
  // them wget connects, fetches and writes the body to tmpfs.
  auto guest_time = [&](const std::string& what) -> std::optional<double> {
    auto m = marker(con, "CW-TIME " + what + " ");
    if (!m) return std::nullopt;
    return std::stod(m->substr(9 + what.size()));
  };
  if (auto tl = guest_time("lease"), tf = guest_time("fetch"); tl && tf && *tf > *tl) {
    const double secs = *tf - *tl;
    std::printf("vmm_e2e: TIME fetch %zu bytes in %.2fs = %.2f MB/s (guest clock, lease to fetched; mtu %d)\n",
                body.size(), secs, static_cast<double>(body.size()) / secs / 1e6, mtu);
  }
  const auto& s = dev.stats();
  const auto ss = server.stats();
  const auto es = engine.stats();
  std::printf(
      "vmm_e2e: device tx %lu frames (%lu in place, %lu csum completed, %lu malformed), rx %lu frames in %lu "
      "buffers (%lu backlogged, %lu dropped no-buffers, %lu not-ready), broken %lu\n",
      s.tx_frames, s.tx_zero_copy, s.tx_csum_completed, s.tx_malformed, s.rx_frames, s.rx_buffers, s.rx_backlogged,
      s.rx_drops_no_buffers, s.rx_drops_not_ready, s.broken_queue);
  std::printf(
      "vmm_e2e: vhost-user %lu connection(s), %lu messages, %lu rejected, %lu kicks, %lu interrupts, "
      "features %#lx, protocol features %#lx\n",
      ss.connections, ss.session.messages, ss.session.rejected, ss.session.kicks, ss.session.interrupts, seen_features,
      seen_protocol);
  if (with_vsock) {
    const auto vs = vsock_dev->stats();
    const auto vss = vsock_server->stats();
    std::printf(
        "vmm_e2e: vsock connect(1234): %s after %.1f ms; device rx %lu tx %lu packets, rst received %lu, "
        "malformed %lu; vhost-user %lu messages, %lu rejected\n",
        vsock_done ? vsock_result.message().c_str() : "no answer",
        vsock_t1 && vsock_t0 ? std::chrono::duration<double, std::milli>(*vsock_t1 - *vsock_t0).count() : -1.0,
        vs.rx_packets, vs.tx_packets, vs.rst_received, vs.malformed, vss.session.messages, vss.session.rejected);
  }
  std::printf("vmm_e2e: engine frames in %lu out %lu dropped %lu\n", es.frames_in, es.frames_out, es.dropped_total());
  std::printf("vmm_e2e: QEMU ran %.1fs, %s %d\n", static_cast<double>(ms(t_end - t0)) / 1000.0,
              WIFSIGNALED(status) ? "killed by signal" : "exit status",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  if (!ok) {
    std::printf("\n*** FAIL: %s ***\n--- console tail ---\n", why.c_str());
    const size_t from = con.size() > 4000 ? con.size() - 4000 : 0;
    std::printf("%s\n--- qemu stderr ---\n%s\n", con.substr(from).c_str(), read_file(tmp / "qemu.err").c_str());
  } else {
    std::printf("PASS: lease %s, fetched %zu bytes intact over vhost-user virtio-net\n", lease->c_str() + 9,
                body.size());
  }
  server.close();
  if (vsock_server) vsock_server->close();
  if (keep) {
    std::printf("vmm_e2e: kept %s\n", tmp.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(tmp, ec);
  }
  return ok ? 0 : 1;
}
