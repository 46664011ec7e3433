// The DNS proxy end to end (issue 5): real dnsmasq upstreams on loopback
// addresses, the real `causeway netns`, and real clients (dig, getent) in the
// namespace.
//
// Set-up of a test:
//   - one or more dnsmasq instances, each on port 53 of its own loopback
//     address (127.53.X.N, X from our PID so parallel test processes do not
//     meet; an address someone else holds is skipped). resolv.conf has no
//     ports, so distinct addresses are the only way to list several servers.
//     They serve example.test authoritatively (--auth-zone), so NS and SOA
//     are answered too; names outside example.test get REFUSED.
//   - a host resolver file in a private directory, given to causeway with
//     --host-resolv-conf; tests rewrite it (in place or by rename).
//   - `causeway netns ... -- sh -c 'echo pid $$; exec sleep 45'` in the
//     background; dig runs in its namespaces through `nsenter -t PID -n -m`
//     (network and mount namespace: the namespace's own /etc/resolv.conf),
//     and the malformed-query tests open sockets in the namespace from a
//     thread of this process that has joined it with setns(2).
//   - the proxy's counters from `causeway ctl SOCKET stats` ("dns").
// A few tests run `causeway netns -- dig|getent` directly, as a user would.
//
// "Answers exactly as the host would": every record-type test compares the
// proxied reply with the same query sent straight to the upstream from the
// host — status, flags, counts and every section, all but the id and timing.
//
// Needs root (port 53, nsenter, setns) and dnsmasq, dig, nsenter; skips
// loudly naming the Debian package otherwise. Every wait is bounded; every
// process is stopped by its PID; the temp directory goes with the test.
//
// Thread safety: gtest's main thread only (plus short-lived threads that
// join a namespace and are joined before the test continues).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/net_util.hpp"

namespace causeway::integration {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- limits ------------------------------------------------------------------

constexpr Ms kDigTimeout = 6s;                          // one dig process (its own +time bounds it first)
constexpr Ms kUpstreamStart = 3s;                       // dnsmasq answering after it was started
constexpr Ms kFollowDeadline = 1s;                      // issue 5: new servers are used within 1 s
constexpr Ms kFollowPoll = 3s;                          // how long we look before calling a switch missing
constexpr Ms kProxyDeadline = 5s;                       // dns::ProxyLimits::kQueryDeadline
constexpr Ms kServfailBound = kProxyDeadline + 1500ms;  // + dig and nsenter start-up, a busy machine
constexpr Ms kRawReplyWait = 2s;                        // the raw-socket tests wait this long for replies
constexpr int kLargeTxtRecords = 16;  // × 250-byte strings: ~4 KB, far over dig's 1232-byte EDNS size
constexpr int kServerLifetimeS = 45;  // the namespace's command; bounds a leaked namespace

// dig bounded: one try, 2 s (UDP or TCP).
const std::vector<std::string> kDigBounds = {"+time=2", "+tries=1"};

// ---- files -----------------------------------------------------------------

// Truncate and write the same inode, as `echo ... > /etc/resolv.conf` does.
void rewrite_in_place(const fs::path& p, const std::string& text) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << p << ": " << std::strerror(errno);
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  ASSERT_EQ(n, static_cast<ssize_t>(text.size())) << p;
}

// Write a new file and rename() it over the old one, as NetworkManager,
// resolvconf and VPN clients do.
void replace_by_rename(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".new";
  rewrite_in_place(tmp, text);
  ASSERT_EQ(::rename(tmp.c_str(), p.c_str()), 0) << std::strerror(errno);
}

std::string resolv_conf_text(const std::vector<std::string>& servers, const std::string& search = "") {
  std::string s = "# written by causeway's DNS integration test\n";
  if (!search.empty()) s += "search " + search + "\n";
  for (auto& ns : servers) s += "nameserver " + ns + "\n";
  return s;
}

// ---- DNS messages (just enough of RFC 1035 to build queries and read replies) --

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kFlagsQuery = 0x0100;  // QUERY, RD
constexpr uint8_t kRcodeFormErr = 1;
constexpr uint8_t kRcodeNotImp = 4;

std::string u16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string dns_header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an = 0, uint16_t ns = 0, uint16_t ar = 0) {
  return u16(id) + u16(flags) + u16(qd) + u16(an) + u16(ns) + u16(ar);
}

std::string dns_name(std::string_view dotted) {
  std::string out;
  while (!dotted.empty()) {
    const auto dot = dotted.find('.');
    const auto label = dotted.substr(0, dot);
    out += static_cast<char>(label.size());
    out += label;
    dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
  }
  return out + '\0';
}

std::string dns_question(std::string_view name, uint16_t type) { return dns_name(name) + u16(type) + u16(1); }

std::string dns_query(uint16_t id, std::string_view name, uint16_t type = kTypeA) {
  return dns_header(id, kFlagsQuery, 1) + dns_question(name, type);
}

struct ReplyHeader {
  uint16_t id = 0;
  bool qr = false;
  uint8_t rcode = 0;
  uint16_t ancount = 0;
};

std::optional<ReplyHeader> reply_header(std::string_view m) {
  if (m.size() < 12) return std::nullopt;
  auto at = [&](size_t i) {
    return static_cast<uint16_t>(static_cast<uint8_t>(m[i]) << 8 | static_cast<uint8_t>(m[i + 1]));
  };
  return ReplyHeader{at(0), (at(2) & 0x8000) != 0, static_cast<uint8_t>(at(2) & 0xf), at(6)};
}

// An A answer to a query without EDNS ends with the address (the answer is the last record).
bool answers_address(std::string_view reply, std::string_view dotted_quad) {
  in_addr a{};
  if (::inet_pton(AF_INET, std::string(dotted_quad).c_str(), &a) != 1) return false;
  const std::string_view raw(reinterpret_cast<const char*>(&a), 4);
  const auto h = reply_header(reply);
  return h && h->qr && h->rcode == 0 && h->ancount > 0 && reply.ends_with(raw);
}

// ---- dig output --------------------------------------------------------------

// One dig reply, reduced to what must match between proxied and direct.
struct DigReply {
  std::string status;                // NOERROR, NXDOMAIN, SERVFAIL…; "" when no reply came
  std::set<std::string> flags;       // qr, aa, tc, rd, ra…
  std::vector<std::string> answers;  // answer records, whitespace collapsed
  std::string canonical;             // status, flags + counts, EDNS line, every section
  bool retried_over_tcp = false;     // ";; Truncated, retrying in TCP mode."
  std::string raw;

  // The rdata of the first answer of `type` ("" if none).
  std::string rdata(std::string_view type) const {
    const std::string tag = " IN " + std::string(type) + " ";
    for (auto& a : answers)
      if (auto p = a.find(tag); p != std::string::npos) return a.substr(p + tag.size());
    return "";
  }
};

std::string collapse_spaces(const std::string& line) {
  std::istringstream in(line);
  std::string word;
  std::string out;
  while (in >> word) out += (out.empty() ? "" : " ") + word;
  return out;
}

DigReply parse_dig(const RunResult& r) {
  DigReply d;
  d.raw = r.describe();
  static const std::regex kStatus(R"(status: ([A-Z]+))");
  static const std::regex kFlags(R"(^;; flags: ([a-z ]*);)");
  std::string section;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (line.find("Truncated, retrying in TCP mode") != std::string::npos) {
      d.retried_over_tcp = true;
    } else if (line.starts_with(";; ->>HEADER<<-") && std::regex_search(line, m, kStatus)) {
      // A retry over TCP prints a second reply: the last one counts.
      d = DigReply{m[1], {}, {}, "status " + std::string(m[1]) + "\n", d.retried_over_tcp, d.raw};
      section.clear();
    } else if (line.starts_with(";; flags:")) {
      if (std::regex_search(line, m, kFlags)) {
        std::istringstream fl(m[1]);
        for (std::string f; fl >> f;) d.flags.insert(f);
      }
      d.canonical += collapse_spaces(line) + "\n";
    } else if (line.starts_with("; EDNS:")) {
      d.canonical += collapse_spaces(line) + "\n";
    } else if (line.starts_with(";; ") && line.ends_with(" SECTION:")) {
      section = line.substr(3, line.size() - 3 - 9);
      if (section != "QUESTION") d.canonical += section + "\n";
    } else if (!line.empty() && line[0] != ';' && !section.empty() && section != "QUESTION") {
      const std::string rr = collapse_spaces(line);
      d.canonical += "  " + rr + "\n";
      if (section == "ANSWER") d.answers.push_back(rr);
    }
  }
  return d;
}

// ---- upstreams: dnsmasq ------------------------------------------------------

// Hands out loopback addresses 127.53.X.N whose port 53 nobody holds now
// (X from our PID, so concurrent test processes stay apart).
class LoopbackAddresses {
 public:
  std::string next() {
    const int x = static_cast<int>(::getpid() % 250) + 1;
    while (n_ < 250) {
      const std::string ip = "127.53." + std::to_string(x) + "." + std::to_string(++n_);
      if (PortHolder(ip, 53, SOCK_DGRAM).ok() && PortHolder(ip, 53, SOCK_STREAM).ok()) return ip;
    }
    throw std::runtime_error("no free loopback address in 127.53." + std::to_string(x) + ".0/24");
  }

 private:
  int n_ = 0;
};

// The test zone every upstream serves; `extra` adds or overrides records.
std::vector<std::string> test_zone(const std::vector<std::string>& extra) {
  std::vector<std::string> z = {
      "--host-record=www.example.test,192.0.2.10,2001:db8::10",
      "--host-record=ns1.example.test,192.0.2.53",
      "--mx-host=example.test,mail.example.test,10",
      "--txt-record=txt.example.test,hello world",
      "--srv-host=_sip._tcp.example.test,sip.example.test,5060,1,2",
      "--local=/2.0.192.in-addr.arpa/",
      "--ptr-record=10.2.0.192.in-addr.arpa,www.example.test",
      "--cname=alias.example.test,www.example.test",
  };
  z.insert(z.end(), extra.begin(), extra.end());
  return z;
}

// The large TXT RRset: kLargeTxtRecords records of one 250-byte string each.
std::string large_txt_string(int i) {
  std::string s = "chunk" + std::to_string(100 + i) + "-";
  s.resize(250, static_cast<char>('a' + i % 26));
  return s;
}

std::vector<std::string> large_txt_records() {
  std::vector<std::string> out;
  for (int i = 0; i < kLargeTxtRecords; ++i) out.push_back("--txt-record=big.example.test," + large_txt_string(i));
  return out;
}

// dnsmasq in the foreground on ADDRESS:PORT, serving example.test, logging
// its queries to DIR/NAME.err.
class Dnsmasq {
 public:
  Dnsmasq(const fs::path& dir, std::string name, std::string address, std::vector<std::string> records,
          uint16_t port = 53)
      : address_(std::move(address)),
        port_(port),
        process_(argv(address_, port_, records), dir, name),
        ready_(wait_ready()) {}

  bool ready() const { return ready_; }
  const std::string& address() const { return address_; }
  uint16_t port() const { return port_; }
  std::string endpoint() const { return address_ + ":" + std::to_string(port_); }
  BackgroundProcess& process() { return process_; }

  // The same query straight from the host, for comparison.
  RunResult dig(const std::vector<std::string>& args) const {
    std::vector<std::string> a{"dig", "@" + address_, "-p", std::to_string(port_)};
    a.insert(a.end(), kDigBounds.begin(), kDigBounds.end());
    a.insert(a.end(), args.begin(), args.end());
    return run(a, kDigTimeout);
  }

 private:
  static std::vector<std::string> argv(const std::string& ip, uint16_t port, const std::vector<std::string>& records) {
    std::vector<std::string> a{"dnsmasq",
                               "--no-daemon",
                               "--no-resolv",
                               "--no-hosts",
                               "--no-poll",
                               "--pid-file",  // no value: no pid file
                               "--bind-interfaces",
                               "--listen-address=" + ip,
                               "--port=" + std::to_string(port),
                               "--auth-server=ns1.example.test," + ip,
                               "--auth-zone=example.test",
                               "--auth-soa=2024010101,hostmaster.example.test",
                               "--log-facility=-",
                               "--log-queries"};
    a.insert(a.end(), records.begin(), records.end());
    return a;
  }

  // Any reply (even REFUSED) to a UDP query means it is serving.
  bool wait_ready() {
    return wait_until(
               [&] {
                 if (!process_.running()) return true;
                 return testtools::udp_exchange(address_, port_, dns_query(0x5eed, "ready.example.test"), 100ms).ok();
               },
               kUpstreamStart) &&
           process_.running();
  }

  std::string address_;
  uint16_t port_;
  BackgroundProcess process_;
  bool ready_;
};

// ---- the namespace -----------------------------------------------------------

// `causeway netns` running a placeholder command; dig runs in its namespaces.
class DnsGuest {
 public:
  DnsGuest(const fs::path& dir, const fs::path& host_resolv_conf, std::vector<std::string> options = {})
      : control_(dir / "control.sock"),
        process_(argv(host_resolv_conf, control_, std::move(options)), dir, "causeway") {
    ready_ = process_.wait_for_output("\n", kStartTimeout);
    if (ready_) {
      std::istringstream in(process_.out());
      std::string word;
      in >> word >> pid_;
      ready_ = word == "pid" && pid_ > 0;
    }
  }

  bool ready() const { return ready_; }
  pid_t pid() const { return pid_; }
  BackgroundProcess& process() { return process_; }

  // dig ARGS... inside the namespace, bounded by kDigBounds unless ARGS say otherwise later.
  RunResult dig(const std::vector<std::string>& args) const {
    std::vector<std::string> a{"nsenter", "-t", std::to_string(pid_), "-n", "-m", "--", "dig"};
    a.insert(a.end(), kDigBounds.begin(), kDigBounds.end());
    a.insert(a.end(), args.begin(), args.end());
    return run(a, kDigTimeout);
  }

  // The proxy's counters ("dns" of `causeway ctl SOCKET stats`); {} on failure (reported).
  json dns_stats() const {
    const auto r = run(ctl_argv(control_.string(), {"stats"}));
    EXPECT_EQ(r.status, 0) << r.describe();
    const json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(j.is_object() && j.contains("dns")) << "no \"dns\" in stats:\n" << r.describe();
    return j.is_object() ? j.value("dns", json::object()) : json::object();
  }

  // The namespace's /etc/resolv.conf, read through the command's mount namespace.
  std::string resolv_conf() const { return read_file("/proc/" + std::to_string(pid_) + "/root/etc/resolv.conf"); }

 private:
  static std::vector<std::string> argv(const fs::path& resolv, const fs::path& control, std::vector<std::string> opts) {
    opts.insert(opts.begin(), {"--host-resolv-conf", resolv.string(), "--control", control.string()});
    return netns_argv(opts, {"sh", "-c", "echo pid $$; exec sleep " + std::to_string(kServerLifetimeS)});
  }

  fs::path control_;
  BackgroundProcess process_;
  bool ready_ = false;
  pid_t pid_ = -1;
};

uint64_t counter(const json& j, const char* key) { return j.value(key, uint64_t{0}); }

// Runs `f` on a thread that has joined PID's network namespace (setns(2)
// moves only the calling thread); sockets it opens live in the namespace.
template <class F>
void in_netns(pid_t pid, F&& f) {
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(ns) << path << ": " << std::strerror(errno);
  std::string error;
  std::thread t([&] {
    if (::setns(ns.get(), CLONE_NEWNET) < 0) {
      error = std::string("setns: ") + std::strerror(errno);
      return;
    }
    f();
  });
  t.join();
  ASSERT_EQ(error, "");
}

// ---- fixture -----------------------------------------------------------------

// Upstreams, a host resolver file and the namespace, all under one TempDir.
class DnsTest : public testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "needs root: dnsmasq upstreams bind port 53 on loopback addresses, and the test enters "
                      "causeway's namespace with nsenter/setns";
    if (auto why = netns_unavailable()) GTEST_SKIP() << *why;
    for (auto [tool, package] :
         {std::pair{"dnsmasq", "dnsmasq-base"}, {"dig", "bind9-dnsutils"}, {"nsenter", "util-linux"}})
      if (auto why = missing_tool(tool, package)) GTEST_SKIP() << *why;
  }

  // Starts an upstream on a fresh address; fails the test if it does not answer.
  Dnsmasq& start_upstream(std::optional<Dnsmasq>& slot, const std::string& name, std::vector<std::string> extra = {},
                          std::optional<std::string> address = std::nullopt, uint16_t port = 53) {
    slot.emplace(dir_.path(), name, address ? *address : addresses_.next(), test_zone(extra), port);
    EXPECT_TRUE(slot->ready()) << name << " (dnsmasq) did not start:\n" << slot->process().describe();
    return *slot;
  }

  fs::path resolv_path() const { return dir_.path() / "resolv.conf"; }

  void write_resolv(const std::vector<std::string>& servers, const std::string& search = "") {
    rewrite_in_place(resolv_path(), resolv_conf_text(servers, search));
  }

  // causeway netns following resolv_path(); fails the test if it does not start.
  DnsGuest& start_guest(std::vector<std::string> options = {}) {
    guest_.emplace(dir_.path(), resolv_path(), std::move(options));
    EXPECT_TRUE(guest_->ready()) << guest_->process().describe();
    return *guest_;
  }

  TempDir dir_;
  LoopbackAddresses addresses_;
  std::optional<DnsGuest> guest_;
};

// What the namespace's resolver is called on each family.
std::string dns_server(Family f) { return f == Family::kIpv4 ? "10.0.2.3" : "fd00::3"; }

// ---- record types ------------------------------------------------------------

struct RecordCase {
  const char* name;
  const char* type;
  const char* status;
  const char* rdata;  // of the first answer of `type`; "" when the answer section must be empty
};

const RecordCase kRecordCases[] = {
    {"www.example.test", "A", "NOERROR", "192.0.2.10"},
    {"www.example.test", "AAAA", "NOERROR", "2001:db8::10"},
    {"example.test", "MX", "NOERROR", "10 mail.example.test."},
    {"txt.example.test", "TXT", "NOERROR", "\"hello world\""},
    {"_sip._tcp.example.test", "SRV", "NOERROR", "1 2 5060 sip.example.test."},
    {"10.2.0.192.in-addr.arpa", "PTR", "NOERROR", "www.example.test."},
    {"alias.example.test", "CNAME", "NOERROR", "www.example.test."},
    {"example.test", "NS", "NOERROR", "ns1.example.test."},
    {"example.test", "SOA", "NOERROR", "ns1.example.test. hostmaster.example.test. 2024010101 1200 180 1209600 600"},
    {"nx.example.test", "A", "NXDOMAIN", ""},   // NXDOMAIN preserved
    {"www.example.test", "MX", "NOERROR", ""},  // NODATA preserved
};

// Every case through the proxy (`via` names the server and transport) and
// straight to the upstream; the replies must be the same.
void expect_record_cases_match(const DnsGuest& guest, const Dnsmasq& upstream, const std::vector<std::string>& via) {
  for (const auto& c : kRecordCases) {
    SCOPED_TRACE(std::string(c.name) + " " + c.type);
    std::vector<std::string> q = via;
    q.insert(q.end(), {c.name, c.type});
    const DigReply proxied = parse_dig(guest.dig(q));
    std::vector<std::string> direct_q{c.name, c.type};
    if (std::find(via.begin(), via.end(), "+tcp") != via.end()) direct_q.insert(direct_q.begin(), "+tcp");
    const DigReply direct = parse_dig(upstream.dig(direct_q));
    EXPECT_EQ(proxied.status, c.status) << proxied.raw;
    if (*c.rdata) {
      EXPECT_EQ(proxied.rdata(c.type), c.rdata) << proxied.raw;
    } else {
      EXPECT_TRUE(proxied.answers.empty()) << proxied.raw;
    }
    EXPECT_EQ(proxied.canonical, direct.canonical) << "through the proxy:\n"
                                                   << proxied.raw << "\ndirect:\n"
                                                   << direct.raw;
  }
}

class DnsOverUdp : public DnsTest, public testing::WithParamInterface<Family> {
 protected:
  Family family() const { return GetParam(); }
};

TEST_P(DnsOverUdp, EveryRecordTypeNxdomainAndNodataMatchTheUpstream) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  const json before = guest.dns_stats();

  expect_record_cases_match(guest, *up, {"@" + dns_server(family())});

  const json after = guest.dns_stats();
  const auto n = std::size(kRecordCases);
  EXPECT_EQ(counter(after, "queries") - counter(before, "queries"), n) << after.dump(2);
  EXPECT_EQ(counter(after, "answers") - counter(before, "answers"), n) << after.dump(2);
  EXPECT_EQ(counter(after, "malformed"), 0u) << after.dump(2);
}

// The upstream truncates (TC) at the guest's own EDNS size, and the proxy
// relays that as it is (RFC 7766 §5: the client retries over TCP).
TEST_P(DnsOverUdp, LargeTxtAnswerComesBackTruncated) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream", large_txt_records());
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());

  const DigReply proxied = parse_dig(guest.dig({"+ignore", "@" + dns_server(family()), "big.example.test", "TXT"}));
  const DigReply direct = parse_dig(up->dig({"+ignore", "big.example.test", "TXT"}));
  EXPECT_EQ(proxied.status, "NOERROR") << proxied.raw;
  EXPECT_TRUE(proxied.flags.contains("tc")) << proxied.raw;
  EXPECT_EQ(proxied.canonical, direct.canonical) << "through the proxy:\n"
                                                 << proxied.raw << "\ndirect:\n"
                                                 << direct.raw;
}

TEST_P(DnsOverUdp, LocalZoneAnswersHostAndGatewayWithoutAskingUpstream) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  const json before = guest.dns_stats();

  const std::string at = "@" + dns_server(family());
  struct Case {
    const char* name;
    const char* type;
    const char* rdata;
  };
  const Case cases[] = {{"host.causeway.internal", "A", "10.0.2.2"},
                        {"host.causeway.internal", "AAAA", "fd00::2"},
                        {"gateway.causeway.internal", "A", "10.0.2.2"},
                        {"gateway.causeway.internal", "AAAA", "fd00::2"}};
  for (const auto& c : cases) {
    const DigReply d = parse_dig(guest.dig({at, c.name, c.type}));
    EXPECT_EQ(d.status, "NOERROR") << d.raw;
    EXPECT_EQ(d.rdata(c.type), c.rdata) << d.raw;
  }

  const json after = guest.dns_stats();
  EXPECT_EQ(counter(after, "local_answers") - counter(before, "local_answers"), std::size(cases)) << after.dump(2);
  EXPECT_EQ(counter(after, "answers"), counter(before, "answers")) << "the upstream was asked:\n" << after.dump(2);
  EXPECT_EQ(up->process().err().find("causeway.internal"), std::string::npos) << up->process().err();
}

// A batch of bad datagrams from a UDP socket in the namespace. What each must
// get follows dns::validate_query: no header or a response → dropped, no
// reply; anything else malformed → FORMERR with the query's id; a
// well-formed query with another opcode → NOTIMP. Then a good query is
// still answered from upstream.
TEST_P(DnsOverUdp, MalformedQueriesGetFormerrOrAreDroppedAndCountedAndTheProxyKeepsAnswering) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  const json before = guest.dns_stats();

  enum class Expect { kNothing, kFormErr, kNotImp };
  struct Bad {
    const char* what;
    std::string bytes;
    Expect expect;
  };
  const std::string q = dns_question("www.example.test", kTypeA);
  std::string long_name;
  for (int i = 0; i < 5; ++i) long_name += std::string(1, 63) + std::string(63, 'x');  // 320 bytes > 255
  const std::vector<Bad> bad = {
      {"empty datagram", "", Expect::kNothing},
      {"3 bytes", "\x12\x34\x01", Expect::kNothing},
      {"11 bytes", dns_header(0xb001, kFlagsQuery, 1).substr(0, 11), Expect::kNothing},
      {"a response (QR set)", dns_header(0xb002, 0x8180, 1) + q, Expect::kNothing},
      {"no question", dns_header(0xb003, kFlagsQuery, 0), Expect::kFormErr},
      {"two questions", dns_header(0xb004, kFlagsQuery, 2) + q + q, Expect::kFormErr},
      {"label runs past the end", dns_header(0xb005, kFlagsQuery, 1) + "\x3f" + "abc", Expect::kFormErr},
      {"compression pointer to itself", dns_header(0xb006, kFlagsQuery, 1) + "\xc0\x0c" + u16(kTypeA) + u16(1),
       Expect::kFormErr},
      {"compression loop through two labels",
       // offset 12: "a" -> 16: "b" -> 12 …
       dns_header(0xb007, kFlagsQuery, 1) +
           "\x01"
           "a"
           "\xc0\x10"
           "\x01"
           "b"
           "\xc0\x0c" +
           u16(kTypeA) + u16(1),
       Expect::kFormErr},
      {"reserved label type 0x40",
       dns_header(0xb008, kFlagsQuery, 1) + "\x41" + std::string(1, 'x') + '\0' + u16(kTypeA) + u16(1),
       Expect::kFormErr},
      {"name over 255 bytes", dns_header(0xb009, kFlagsQuery, 1) + long_name + '\0' + u16(kTypeA) + u16(1),
       Expect::kFormErr},
      {"question without type and class",
       dns_header(0xb00a, kFlagsQuery, 1) + dns_name("www.example.test") + std::string(1, '\0'), Expect::kFormErr},
      {"huge record counts", dns_header(0xb00b, kFlagsQuery, 1, 0xffff, 0xffff, 0xffff) + q, Expect::kFormErr},
      // An OPT record cut after its class: TTL and RDLENGTH missing.
      {"record runs past the end",
       dns_header(0xb00c, kFlagsQuery, 1, 0, 0, 1) + q + std::string(1, '\0') + u16(41) + u16(1232) +
           std::string(3, '\0'),
       Expect::kFormErr},
      {"opcode STATUS", dns_header(0xb00d, 0x1100, 1) + q, Expect::kNotImp},
  };
  const uint16_t good_id = 0xb0ff;

  std::vector<std::string> replies;
  std::string send_error = "not sent";
  in_netns(guest.pid(), [&] {
    const auto ep = testtools::make_endpoint(dns_server(family()), 53);
    UniqueFd s(::socket(ep->family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s || ::connect(s.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) < 0) {
      send_error = std::string("socket/connect: ") + std::strerror(errno);
      return;
    }
    auto send = [&](const std::string& m) {
      if (::send(s.get(), m.data(), m.size(), 0) == static_cast<ssize_t>(m.size())) return true;
      send_error = std::string("send: ") + std::strerror(errno);
      return false;
    };
    for (const auto& b : bad)
      if (!send(b.bytes)) return;
    if (!send(dns_query(good_id, "www.example.test"))) return;
    send_error.clear();
    // Until the good answer is in (it needs an upstream round trip, so the
    // proxy's immediate FORMERR/NOTIMP replies come first), then a little more.
    auto end = Clock::now() + kRawReplyWait;
    while (Clock::now() < end) {
      pollfd p{s.get(), POLLIN, 0};
      const auto left = std::chrono::duration_cast<Ms>(end - Clock::now()).count();
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0) break;
      std::string buf(65536, '\0');
      const ssize_t n = ::recv(s.get(), buf.data(), buf.size(), 0);
      if (n < 0) continue;
      buf.resize(static_cast<size_t>(n));
      const auto h = reply_header(buf);
      if (h && h->id == good_id) end = std::min(end, Clock::now() + 100ms);
      replies.push_back(std::move(buf));
    }
  });
  ASSERT_EQ(send_error, "") << "sending from inside the namespace";

  auto reply_for = [&](uint16_t id) -> const std::string* {
    for (auto& r : replies)
      if (auto h = reply_header(r); h && h->id == id) return &r;
    return nullptr;
  };
  size_t malformed = 0;
  size_t dropped = 0;
  for (const auto& b : bad) {
    SCOPED_TRACE(b.what);
    const auto sent = reply_header(b.bytes);
    const std::string* r = sent ? reply_for(sent->id) : nullptr;
    switch (b.expect) {
      case Expect::kNothing:
        ++malformed;
        ++dropped;
        EXPECT_EQ(r, nullptr);
        break;
      case Expect::kFormErr:
        ++malformed;
        ASSERT_NE(r, nullptr) << "no reply";
        EXPECT_TRUE(reply_header(*r)->qr);
        EXPECT_EQ(reply_header(*r)->rcode, kRcodeFormErr);
        break;
      case Expect::kNotImp:
        ASSERT_NE(r, nullptr) << "no reply";
        EXPECT_EQ(reply_header(*r)->rcode, kRcodeNotImp);
        break;
    }
  }
  const std::string* good = reply_for(good_id);
  ASSERT_NE(good, nullptr) << "the good query after the batch got no answer";
  EXPECT_TRUE(answers_address(*good, "192.0.2.10"));
  EXPECT_EQ(replies.size(), bad.size() - dropped + 1) << "replies nobody asked for";

  const json after = guest.dns_stats();
  EXPECT_EQ(counter(after, "malformed") - counter(before, "malformed"), malformed) << after.dump(2);
  EXPECT_EQ(counter(after, "dropped") - counter(before, "dropped"), dropped) << after.dump(2);
  EXPECT_EQ(counter(after, "not_implemented") - counter(before, "not_implemented"), 1u) << after.dump(2);
  // And an ordinary client is served as before.
  const DigReply d = parse_dig(guest.dig({"@" + dns_server(family()), "www.example.test", "A"}));
  EXPECT_EQ(d.rdata("A"), "192.0.2.10") << d.raw;
  EXPECT_TRUE(guest.process().running()) << guest.process().describe();
}

INSTANTIATE_TEST_SUITE_P(Dns, DnsOverUdp, testing::Values(Family::kIpv4, Family::kIpv6), family_param_name);

// ---- TCP (IPv4 only: libslirp's unix forwards are IPv4-only, see
// netstack/dns_tcp_frontend.hpp; fd00::3 serves UDP) ------------------------------

using DnsOverTcp = DnsTest;

TEST_F(DnsOverTcp, EveryRecordTypeNxdomainAndNodataMatchTheUpstream) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  const json before = guest.dns_stats();

  expect_record_cases_match(guest, *up, {"+tcp", "@10.0.2.3"});

  const json after = guest.dns_stats();
  const auto n = std::size(kRecordCases);
  EXPECT_EQ(
      counter(after.value("tcp", json::object()), "queries") - counter(before.value("tcp", json::object()), "queries"),
      n)
      << after.dump(2);
  EXPECT_EQ(counter(after, "answers") - counter(before, "answers"), n) << after.dump(2);
}

// dig's own fallback: the UDP answer carries TC, dig asks again over TCP and
// gets all of it.
TEST_F(DnsOverTcp, LargeTxtTruncatedOverUdpIsAnsweredInFullOverTcp) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream", large_txt_records());
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  const json before = guest.dns_stats();

  const DigReply d = parse_dig(guest.dig({"@10.0.2.3", "big.example.test", "TXT"}));
  EXPECT_TRUE(d.retried_over_tcp) << d.raw;
  EXPECT_EQ(d.status, "NOERROR") << d.raw;
  EXPECT_FALSE(d.flags.contains("tc")) << d.raw;
  ASSERT_EQ(d.answers.size(), static_cast<size_t>(kLargeTxtRecords)) << d.raw;
  for (int i = 0; i < kLargeTxtRecords; ++i)
    EXPECT_NE(d.raw.find("\"" + large_txt_string(i) + "\""), std::string::npos) << "record " << i << " missing";
  const DigReply direct = parse_dig(up->dig({"+tcp", "big.example.test", "TXT"}));
  EXPECT_EQ(d.canonical, direct.canonical) << "through the proxy:\n" << d.raw << "\ndirect:\n" << direct.raw;

  const json after = guest.dns_stats();
  EXPECT_EQ(
      counter(after.value("tcp", json::object()), "queries") - counter(before.value("tcp", json::object()), "queries"),
      1u)
      << after.dump(2);
}

// Bad streams on the TCP side: a zero-length frame, a header-less message, a
// FORMERR-worthy one, a frame cut short. None may stop the service.
TEST_F(DnsOverTcp, MalformedStreamsDoNotStopTheProxy) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());

  auto framed = [](const std::string& m) { return u16(static_cast<uint16_t>(m.size())) + m; };
  struct Outcome {
    std::string what;
    std::string got;   // bytes read until EOF, error or timeout
    bool eof = false;  // the proxy closed the connection
  };
  std::vector<Outcome> outcomes;
  in_netns(guest.pid(), [&] {
    // Each exchange on its own connection: send, half-close, read until EOF or kRawReplyWait.
    auto exchange = [&](const std::string& what, const std::string& bytes) {
      Outcome o{what, "", false};
      const auto ep = testtools::make_endpoint("10.0.2.3", 53);
      UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      timeval tv{static_cast<time_t>(kRawReplyWait.count() / 1000), 0};
      ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) < 0) {
        o.got = std::string("connect: ") + std::strerror(errno);
        outcomes.push_back(o);
        return;
      }
      (void)!::send(s.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ::shutdown(s.get(), SHUT_WR);
      char buf[4096];
      for (;;) {
        const ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
        if (n > 0) {
          o.got.append(buf, static_cast<size_t>(n));
          continue;
        }
        o.eof = n == 0;
        break;
      }
      outcomes.push_back(o);
    };
    exchange("zero-length frame", u16(0));
    exchange("5-byte message", framed("\x12\x34\x01\x00\x00"));
    exchange("no question", framed(dns_header(0xc003, kFlagsQuery, 0)));
    exchange("frame cut short", u16(300) + dns_header(0xc004, kFlagsQuery, 1));
    exchange("good query", framed(dns_query(0xc0ff, "www.example.test")));
  });
  ASSERT_EQ(outcomes.size(), 5u);
  for (const auto& o : outcomes) EXPECT_TRUE(o.eof) << o.what << ": the proxy did not close after our half-close";
  // FORMERR for the message with no question, framed, with its id.
  ASSERT_GE(outcomes[2].got.size(), 2u + 12u) << outcomes[2].what;
  const auto formerr = reply_header(std::string_view(outcomes[2].got).substr(2));
  EXPECT_EQ(formerr->id, 0xc003);
  EXPECT_EQ(formerr->rcode, kRcodeFormErr);
  // The good one is answered, framed.
  ASSERT_GE(outcomes[4].got.size(), 2u) << outcomes[4].what;
  EXPECT_TRUE(answers_address(std::string_view(outcomes[4].got).substr(2), "192.0.2.10")) << outcomes[4].got.size();

  const json after = guest.dns_stats();
  EXPECT_GT(counter(after, "malformed"), 0u) << after.dump(2);
  const DigReply d = parse_dig(guest.dig({"+tcp", "@10.0.2.3", "www.example.test", "A"}));
  EXPECT_EQ(d.rdata("A"), "192.0.2.10") << d.raw;
}

// ---- following the host --------------------------------------------------------

using DnsFollowsHost = DnsTest;

// Two upstreams answering who.example.test differently; the host's file
// moves from the first to the second while the namespace runs.
void expect_switch_within_deadline(DnsGuest& guest, const std::function<void()>& change, const std::string& want,
                                   const Dnsmasq& second) {
  const RunResult first = guest.dig({"+short", "@10.0.2.3", "who.example.test"});
  ASSERT_EQ(first.out, "192.0.2.1\n") << first.describe();

  const auto t0 = Clock::now();
  change();
  RunResult last;
  auto switched = Clock::time_point::max();
  wait_until(
      [&] {
        last = guest.dig({"+short", "@10.0.2.3", "who.example.test"});
        if (last.out != want + "\n") return false;
        switched = Clock::now();
        return true;
      },
      kFollowPoll);
  ASSERT_NE(switched, Clock::time_point::max())
      << "still not answered by the new server after " << kFollowPoll.count() << " ms:\n"
      << last.describe();
  const auto took = std::chrono::duration_cast<Ms>(switched - t0);
  EXPECT_LE(took, kFollowDeadline) << "the new server answered only after " << took.count() << " ms";
  std::printf("[          ] new server answering %lld ms after the change (upper bound: includes dig)\n",
              static_cast<long long>(took.count()));

  // Every way in uses the new server, and stats say so.
  for (auto via :
       {std::vector<std::string>{"+short", "@fd00::3"}, std::vector<std::string>{"+short", "+tcp", "@10.0.2.3"}}) {
    via.push_back("who.example.test");
    const auto r = guest.dig(via);
    EXPECT_EQ(r.out, want + "\n") << r.describe();
  }
  const json stats = guest.dns_stats();
  EXPECT_EQ(stats.value("servers", json::array()), json::array({second.endpoint()})) << stats.dump(2);
}

TEST_F(DnsFollowsHost, InPlaceRewriteOfTheHostFileSwitchesUpstreamWithinOneSecond) {
  std::optional<Dnsmasq> a;
  std::optional<Dnsmasq> b;
  start_upstream(a, "upstream-a", {"--host-record=who.example.test,192.0.2.1"});
  start_upstream(b, "upstream-b", {"--host-record=who.example.test,192.0.2.2"});
  ASSERT_TRUE(a->ready() && b->ready());
  write_resolv({a->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  expect_switch_within_deadline(
      guest, [&] { rewrite_in_place(resolv_path(), resolv_conf_text({b->address()})); }, "192.0.2.2", *b);
}

TEST_F(DnsFollowsHost, RenameReplaceOfTheHostFileSwitchesUpstreamWithinOneSecond) {
  std::optional<Dnsmasq> a;
  std::optional<Dnsmasq> b;
  start_upstream(a, "upstream-a", {"--host-record=who.example.test,192.0.2.1"});
  start_upstream(b, "upstream-b", {"--host-record=who.example.test,192.0.2.2"});
  ASSERT_TRUE(a->ready() && b->ready());
  write_resolv({a->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  expect_switch_within_deadline(
      guest, [&] { replace_by_rename(resolv_path(), resolv_conf_text({b->address()})); }, "192.0.2.2", *b);
}

// The host's search list is the namespace's, and follows it.
TEST_F(DnsFollowsHost, SearchDomainsOfTheHostFileReachTheNamespaceResolvConfLive) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream",
                 {"--host-record=db.corp.example.test,192.0.2.21", "--host-record=db.lab.example.test,192.0.2.22"});
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()}, "corp.example.test");
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());

  std::string text = guest.resolv_conf();
  EXPECT_NE(text.find("\nsearch corp.example.test\n"), std::string::npos) << text;
  EXPECT_NE(text.find("nameserver 10.0.2.3\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("fd00::3"), std::string::npos) << "fd00::3 answers UDP only and must not be listed: " << text;
  EXPECT_EQ(guest.dig({"+search", "+short", "db"}).out, "192.0.2.21\n");

  replace_by_rename(resolv_path(), resolv_conf_text({up->address()}, "lab.example.test other.example.test"));
  const auto t0 = Clock::now();
  EXPECT_TRUE(wait_until(
      [&] {
        text = guest.resolv_conf();
        return text.find("\nsearch lab.example.test other.example.test\n") != std::string::npos;
      },
      kFollowPoll))
      << text;
  EXPECT_LE(Clock::now() - t0, kFollowDeadline);
  EXPECT_EQ(guest.dig({"+search", "+short", "db"}).out, "192.0.2.22\n");
  EXPECT_EQ(text.find("corp.example.test"), std::string::npos) << text;
}

// ---- several servers, faults ---------------------------------------------------

using DnsUpstreams = DnsTest;

TEST_F(DnsUpstreams, DnsRouteDomainIsAnsweredByItsOwnServerAndTheRestByTheHosts) {
  std::optional<Dnsmasq> main;
  std::optional<Dnsmasq> corp;
  start_upstream(main, "upstream-main", {"--host-record=who.example.test,192.0.2.1"});
  // The routed server on a port other than 53: DOMAIN=SERVER:PORT.
  start_upstream(corp, "upstream-corp",
                 {"--host-record=who.example.test,192.0.2.2", "--host-record=db.corp.example.test,192.0.2.31"},
                 std::nullopt, pick_free_port());
  ASSERT_TRUE(main->ready() && corp->ready());
  write_resolv({main->address()});
  DnsGuest& guest = start_guest({"--dns-route", "corp.example.test=" + corp->endpoint()});
  ASSERT_TRUE(guest.ready());

  // The main server knows no db.corp.example.test: only the route can answer it.
  EXPECT_EQ(parse_dig(main->dig({"db.corp.example.test"})).status, "NXDOMAIN");
  for (auto via : {std::vector<std::string>{"@10.0.2.3"}, std::vector<std::string>{"@fd00::3"},
                   std::vector<std::string>{"+tcp", "@10.0.2.3"}}) {
    SCOPED_TRACE(via.back());
    auto q = via;
    q.push_back("db.corp.example.test");
    const DigReply routed = parse_dig(guest.dig(q));
    EXPECT_EQ(routed.rdata("A"), "192.0.2.31") << routed.raw;
    q = via;
    q.push_back("who.example.test");
    const DigReply other = parse_dig(guest.dig(q));
    EXPECT_EQ(other.rdata("A"), "192.0.2.1") << "a name outside the route went to the routed server\n" << other.raw;
  }
  const json stats = guest.dns_stats();
  EXPECT_GE(counter(stats.value("upstream", json::object()), "routed"), 3u) << stats.dump(2);
  EXPECT_NE(corp->process().err().find("db.corp.example.test"), std::string::npos) << corp->process().err();
}

TEST_F(DnsUpstreams, FirstServerRefusingConnectionsFailsOverToTheSecond) {
  std::optional<Dnsmasq> up;
  const std::string dead = addresses_.next();  // nothing listens there: ICMP port unreachable
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({dead, up->address()});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  for (auto via : {std::vector<std::string>{"@10.0.2.3"}, std::vector<std::string>{"+tcp", "@10.0.2.3"}}) {
    via.insert(via.end(), {"www.example.test", "A"});
    const DigReply d = parse_dig(guest.dig(via));
    EXPECT_EQ(d.rdata("A"), "192.0.2.10") << d.raw;
  }
}

TEST_F(DnsUpstreams, KilledUpstreamGivesServfailWithinTheDeadlineAndRestartedUpstreamAnswersAgain) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  const std::string address = up->address();
  write_resolv({address});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  ASSERT_EQ(parse_dig(guest.dig({"@10.0.2.3", "www.example.test"})).rdata("A"), "192.0.2.10");

  ASSERT_EQ(up->process().stop(SIGTERM), 0) << up->process().describe();
  const json before = guest.dns_stats();
  const auto t0 = Clock::now();
  // dig waits longer than the proxy's deadline, so the proxy's own answer is seen.
  const DigReply failed = parse_dig(guest.dig({"+time=8", "@10.0.2.3", "www.example.test"}));
  const auto took = std::chrono::duration_cast<Ms>(Clock::now() - t0);
  EXPECT_EQ(failed.status, "SERVFAIL") << failed.raw;
  EXPECT_LE(took, kServfailBound) << "SERVFAIL after " << took.count() << " ms";
  std::printf("[          ] SERVFAIL %lld ms after the query\n", static_cast<long long>(took.count()));
  const json after = guest.dns_stats();
  EXPECT_EQ(counter(after, "timeouts") + counter(after, "upstream_failures") - counter(before, "timeouts") -
                counter(before, "upstream_failures"),
            1u)
      << after.dump(2);

  up.reset();
  start_upstream(up, "upstream-restarted", {}, address);
  ASSERT_TRUE(up->ready());
  DigReply again;
  EXPECT_TRUE(wait_until(
      [&] {
        again = parse_dig(guest.dig({"+time=1", "@10.0.2.3", "www.example.test"}));
        return again.rdata("A") == "192.0.2.10";
      },
      kFollowPoll))
      << again.raw;
  EXPECT_EQ(counter(guest.dns_stats(), "in_flight"), 0u);
}

// A server that takes datagrams and never answers (a VPN gone dark): the
// guest gets SERVFAIL from the proxy's deadline, not silence.
TEST_F(DnsUpstreams, SilentUpstreamGivesServfailAtTheProxyDeadline) {
  const std::string silent = addresses_.next();
  PortHolder udp(silent, 53, SOCK_DGRAM);   // bound, never read
  PortHolder tcp(silent, 53, SOCK_STREAM);  // listening, never accepted
  ASSERT_TRUE(udp.ok() && tcp.ok()) << udp.error() << tcp.error();
  write_resolv({silent});
  DnsGuest& guest = start_guest();
  ASSERT_TRUE(guest.ready());
  const json before = guest.dns_stats();

  const auto t0 = Clock::now();
  const DigReply failed = parse_dig(guest.dig({"+time=8", "@10.0.2.3", "www.example.test"}));
  const auto took = std::chrono::duration_cast<Ms>(Clock::now() - t0);
  EXPECT_EQ(failed.status, "SERVFAIL") << failed.raw;
  EXPECT_LE(took, kServfailBound) << "SERVFAIL after " << took.count() << " ms";
  std::printf("[          ] SERVFAIL %lld ms after the query\n", static_cast<long long>(took.count()));
  const json after = guest.dns_stats();
  EXPECT_EQ(counter(after, "timeouts") - counter(before, "timeouts"), 1u) << after.dump(2);
}

// ---- what a user runs ------------------------------------------------------------

using DnsInNamespace = DnsTest;

// Issue 5's "done when": the command's resolver (resolv.conf → 10.0.2.3)
// answers from the host's configured server, for dig and for glibc.
TEST_F(DnsInNamespace, CommandsResolveThroughTheNamespaceResolvConf) {
  std::optional<Dnsmasq> up;
  start_upstream(up, "upstream");
  ASSERT_TRUE(up->ready());
  write_resolv({up->address()});
  const std::vector<std::string> opts{"--host-resolv-conf", resolv_path().string()};

  std::vector<std::string> dig{"dig", "+short"};
  dig.insert(dig.end(), kDigBounds.begin(), kDigBounds.end());
  dig.emplace_back("www.example.test");
  const auto r = run(netns_argv(opts, dig), kDigTimeout);
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "192.0.2.10\n") << r.describe();

  const auto g = run(netns_argv(opts, {"getent", "ahostsv4", "www.example.test"}), kDigTimeout);
  EXPECT_EQ(g.status, 0) << g.describe();
  EXPECT_EQ(g.out.rfind("192.0.2.10 ", 0), 0u) << g.describe();
}

// --no-dns-tunneling: libslirp's own forwarder, to the first server of the
// host's resolver file.
// Plain mode is libslirp's own forwarder, which reads only /etc/resolv.conf:
// asking it to follow another file must be refused, not silently ignored
// (and the machine's real resolver must not be queried by a test).
TEST_F(DnsInNamespace, PlainModeRefusesAResolverFileItCannotFollow) {
  write_resolv({"127.53.0.1"});
  const auto r =
      run(netns_argv({"--no-dns-tunneling", "--host-resolv-conf", resolv_path().string()}, {"true"}), kDigTimeout);
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_NE(r.err.find("--host-resolv-conf"), std::string::npos) << r.describe();
}

}  // namespace
}  // namespace causeway::integration
