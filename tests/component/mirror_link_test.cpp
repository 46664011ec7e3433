// Mirrored mode's data path (netstack/mirror/mirror_link) against a simulated
// guest link: the test writes the guest's frames and reads what the link
// sends back through a FakeFramePort; the far ends are real sockets on this
// test's own network namespace. Mirrored mode binds host sockets to the
// guest's source, which must be a host address, and refuses loopback sources
// and destinations (issue 13): so each test runs in a private namespace
// (CLONE_NEWNET as root, inside a user namespace otherwise) whose lo carries
// the guest's planned addresses (192.0.2.2, 2001:db8::2 on "test0"; 192.0.2.77
// on "other0") and a far end that is not planned (198.51.100.1,
// 2001:db8:1::1), standing for a host on the LAN.
#include "netstack/mirror/mirror_link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "base/byte_order.hpp"
#include "base/unique_fd.hpp"
#include "netstack/packet.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::netstack::mirror {
namespace {

using namespace std::chrono_literals;
const Mac kGuestMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const Mac kOurMac = kMirrorRouterMac;

using wire::load_be16;
using wire::store_be16;

std::vector<uint8_t> eth(const Mac& dst, uint16_t type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> f(kEthHeaderLen + payload.size());
  std::copy(dst.begin(), dst.end(), f.begin());
  std::copy(kGuestMac.begin(), kGuestMac.end(), f.begin() + 6);
  store_be16(f.data() + 12, type);
  std::copy(payload.begin(), payload.end(), f.begin() + kEthHeaderLen);
  return f;
}

std::vector<uint8_t> arp_request(const char* sender, const char* target) {
  std::vector<uint8_t> a(28, 0);
  store_be16(a.data(), 1);
  store_be16(a.data() + 2, kEtherTypeIpv4);
  a[4] = 6, a[5] = 4;
  store_be16(a.data() + 6, 1);
  std::copy(kGuestMac.begin(), kGuestMac.end(), a.begin() + 8);
  inet_pton(AF_INET, sender, a.data() + 14);
  inet_pton(AF_INET, target, a.data() + 24);
  const Mac bcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  return eth(bcast, kEtherTypeArp, a);
}

std::vector<uint8_t> ipv4(const char* src, const char* dst, uint8_t proto, std::span<const uint8_t> l4) {
  std::vector<uint8_t> ip(20 + l4.size(), 0);
  ip[0] = 0x45;
  store_be16(ip.data() + 2, static_cast<uint16_t>(ip.size()));
  ip[8] = 64;
  ip[9] = proto;
  inet_pton(AF_INET, src, ip.data() + 12);
  inet_pton(AF_INET, dst, ip.data() + 16);
  store_be16(ip.data() + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip.data(), 20}))));
  std::copy(l4.begin(), l4.end(), ip.begin() + 20);
  return eth(kOurMac, kEtherTypeIpv4, ip);
}

std::vector<uint8_t> ipv6(const char* src, const char* dst, uint8_t next, uint8_t hops, std::vector<uint8_t> l4,
                          size_t csum_at) {
  std::vector<uint8_t> ip(40 + l4.size(), 0);
  ip[0] = 0x60;
  store_be16(ip.data() + 4, static_cast<uint16_t>(l4.size()));
  ip[6] = next;
  ip[7] = hops;
  inet_pton(AF_INET6, src, ip.data() + 8);
  inet_pton(AF_INET6, dst, ip.data() + 24);
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, ip.data() + 8, 32);
  store_be16(pseudo + 34, static_cast<uint16_t>(l4.size()));
  pseudo[39] = next;
  store_be16(l4.data() + csum_at, static_cast<uint16_t>(~checksum_fold(checksum_add(l4, checksum_add({pseudo, 40})))));
  std::copy(l4.begin(), l4.end(), ip.begin() + 40);
  Mac dmac = kOurMac;
  if (ip[24] == 0xff) dmac = Mac{0x33, 0x33, ip[36], ip[37], ip[38], ip[39]};
  return eth(dmac, kEtherTypeIpv6, ip);
}

std::vector<uint8_t> tcp_syn(uint16_t sport, uint16_t dport, uint8_t flags = 0x02) {
  std::vector<uint8_t> t(20, 0);
  store_be16(t.data(), sport);
  store_be16(t.data() + 2, dport);
  t[4] = 0, t[7] = 100;  // seq 100
  t[12] = 5 << 4;
  t[13] = flags;
  store_be16(t.data() + 14, 65535);
  return t;
}

// A real UDP socket on `ip` that echoes what it gets and remembers who sent it.
struct UdpEcho {
  explicit UdpEcho(const char* ip) {
    fd.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a.sin_addr);
    ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t l = sizeof a;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &l);
    port = ntohs(a.sin_port);
    timeval tv{3, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  // Receives one datagram, echoes it; returns the sender.
  std::optional<sockaddr_in> echo_one() {
    char buf[2048];
    sockaddr_in from{};
    socklen_t fl = sizeof from;
    const ssize_t n = ::recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 0) return std::nullopt;
    ::sendto(fd.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), fl);
    return from;
  }
  UniqueFd fd;
  uint16_t port = 0;
};

constexpr const char* kGuest4 = "192.0.2.2";      // planned for test0
constexpr const char* kGuest6 = "2001:db8::2";    // planned for test0
constexpr const char* kOther4 = "192.0.2.77";     // planned for other0
constexpr const char* kOther6 = "2001:db8:9::9";  // planned for other0
constexpr const char* kFar4 = "198.51.100.1";     // not planned: a peer beyond the link
constexpr const char* kFar6 = "2001:db8:1::1";

// Moves this process to a network namespace of its own (ctest runs each test in its own
// process) with lo up and carrying the addresses above; ping sockets open to every group there
// (net.ipv4.ping_group_range is "1 0", nobody, on hosts without systemd's default). Returns why
// not, or "".
std::string enter_test_namespace() {
  if (::unshare(::geteuid() == 0 ? CLONE_NEWNET : CLONE_NEWUSER | CLONE_NEWNET) != 0)
    return std::string("unshare: ") + std::strerror(errno) + " (run as root, or allow user namespaces)";
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strcpy(ifr.ifr_name, "lo");
  if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return "SIOCGIFFLAGS lo";
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return "SIOCSIFFLAGS lo";
  int alias = 0;
  for (const char* a : {kGuest4, kOther4, kFar4}) {
    ifreq r{};
    std::snprintf(r.ifr_name, sizeof r.ifr_name, "lo:%d", ++alias);
    auto* sin = reinterpret_cast<sockaddr_in*>(&r.ifr_addr);
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, a, &sin->sin_addr);
    if (::ioctl(s.get(), SIOCSIFADDR, &r) != 0) return std::string("SIOCSIFADDR ") + a + ": " + std::strerror(errno);
  }
  UniqueFd s6(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  struct {  // struct in6_ifreq (linux/ipv6.h, which clashes with netinet/in.h)
    in6_addr addr;
    uint32_t prefixlen;
    int ifindex;
  } r6{};
  r6.prefixlen = 128;
  r6.ifindex = static_cast<int>(if_nametoindex("lo"));
  for (const char* a : {kGuest6, kOther6, kFar6}) {
    inet_pton(AF_INET6, a, &r6.addr);
    if (!s6 || ::ioctl(s6.get(), SIOCSIFADDR, &r6) != 0)
      return std::string("SIOCSIFADDR ") + a + ": " + std::strerror(errno);
  }
  // The kernel finishes an IPv6 address (DAD, skipped on lo) from a work queue: until then it is
  // tentative and bind() fails. Poll until every one binds.
  for (const char* a : {kGuest6, kOther6, kFar6}) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &sa.sin6_addr);
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (;;) {
      UniqueFd probe(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (::bind(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) break;
      if (std::chrono::steady_clock::now() > deadline) return std::string(a) + " stayed tentative";
      std::this_thread::yield();
    }
  }
  UniqueFd r(::open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC));
  const char range[] = "0 2147483647";
  if (r) (void)!::write(r.get(), range, sizeof range - 1);
  return "";
}

// The plan's addresses: test0's are the guest's, other0's another link's.
NetState test_plan() {
  NetState st;
  auto add = [&](const char* link, const char* ip, uint8_t len) {
    HostAddress h;
    h.link = link;
    h.local = *IpAddress::parse(ip);
    h.prefix_len = len;
    st.addresses.push_back(h);
  };
  add("test0", kGuest4, 24);
  add("test0", kGuest6, 64);
  add("other0", kOther4, 24);
  add("other0", kOther6, 64);
  return st;
}

in_addr a4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a;
}

class MirrorLinkTest : public ::testing::Test {
 protected:
  void make(MirrorLinkConfig c = {}) {
    c.name = "test0";
    c.mtu = 1500;
    link = std::make_unique<MirrorLink>(io, port, c);
    link->set_addresses(link_addresses(test_plan(), "test0"));
  }
  void SetUp() override {
    if (auto why = enter_test_namespace(); !why.empty()) GTEST_SKIP() << "no private network namespace: " << why;
    make();
  }
  // Runs the loop until a frame the link sent matches; returns it.
  std::optional<std::vector<uint8_t>> expect(const std::function<bool(const std::vector<uint8_t>&)>& pred,
                                             std::chrono::milliseconds d = 3s) {
    std::optional<std::vector<uint8_t>> got;
    testing::run_until(
        io,
        [&] {
          for (auto it = port.frames.begin(); it != port.frames.end(); ++it) {
            if (pred(*it)) {
              got = *it;
              port.frames.erase(it);
              return true;
            }
          }
          return false;
        },
        d);
    return got;
  }

  boost::asio::io_context io;
  testing::FakeFramePort port;
  std::unique_ptr<MirrorLink> link;
};

TEST_F(MirrorLinkTest, AnswersArpForAnyAddressButNeverProbesOrAnnouncements) {
  link->on_guest_frame(arp_request("192.0.2.10", "192.0.2.1"));
  ASSERT_EQ(port.frames.size(), 1u);
  const auto& r = port.frames[0];
  ASSERT_EQ(r.size(), kEthHeaderLen + 28);
  EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), r.begin())) << "to the asking MAC";
  EXPECT_EQ(load_be16(r.data() + 12), kEtherTypeArp);
  const uint8_t* a = r.data() + kEthHeaderLen;
  EXPECT_EQ(load_be16(a + 6), 2) << "an ARP reply";
  EXPECT_TRUE(std::equal(kOurMac.begin(), kOurMac.end(), a + 8)) << "the target is behind our MAC";
  char spa[16];
  inet_ntop(AF_INET, a + 14, spa, sizeof spa);
  EXPECT_STREQ(spa, "192.0.2.1");
  port.frames.clear();
  link->on_guest_frame(arp_request("0.0.0.0", "192.0.2.10"));     // RFC 5227 probe
  link->on_guest_frame(arp_request("192.0.2.10", "192.0.2.10"));  // announcement
  EXPECT_TRUE(port.frames.empty()) << "the guest's own address is never claimed";
  EXPECT_EQ(link->stats().arp_replies, 1u);
}

TEST_F(MirrorLinkTest, AnswersNeighborSolicitationWithAValidAdvertisement) {
  std::vector<uint8_t> ns(24 + 8, 0);
  ns[0] = 135;
  inet_pton(AF_INET6, "fe80::1", ns.data() + 8);
  ns[24] = 1, ns[25] = 1;
  std::copy(kGuestMac.begin(), kGuestMac.end(), ns.begin() + 26);
  link->on_guest_frame(ipv6("2001:db8::10", "ff02::1:ff00:1", 58, 255, ns, 2));
  ASSERT_EQ(port.frames.size(), 1u);
  auto& r = port.frames[0];
  ASSERT_EQ(r.size(), kEthHeaderLen + 40 + 32);
  const uint8_t* ip = r.data() + kEthHeaderLen;
  const uint8_t* na = ip + 40;
  EXPECT_EQ(na[0], 136);
  EXPECT_EQ(na[4], 0xe0) << "router, solicited, override";
  EXPECT_EQ(ip[7], 255) << "hop limit 255 (RFC 4861 §7.1.2)";
  EXPECT_TRUE(std::equal(kOurMac.begin(), kOurMac.end(), na + 26));
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, ip + 8, 32);
  store_be16(pseudo + 34, 32);
  pseudo[39] = 58;
  EXPECT_EQ(checksum_fold(checksum_add({na, 32}, checksum_add({pseudo, 40}))), 0xffff) << "checksum verifies";
  port.frames.clear();
  link->on_guest_frame(ipv6("::", "ff02::1:ff00:10", 58, 255, ns, 2));          // DAD
  link->on_guest_frame(ipv6("2001:db8::10", "ff02::1:ff00:1", 58, 64, ns, 2));  // hop limit not 255: forged
  EXPECT_TRUE(port.frames.empty());
}

TEST_F(MirrorLinkTest, UdpLeavesFromTheGuestsOwnAddressAndPortAndRepliesComeBack) {
  UdpEcho echo(kFar4);
  const std::string msg = "hello mirrored";
  link->on_guest_frame(build_udp4(kGuestMac, kOurMac, a4(kGuest4), 47001, a4(kFar4), echo.port,
                                  {reinterpret_cast<const uint8_t*>(msg.data()), msg.size()}));
  auto from = echo.echo_one();
  ASSERT_TRUE(from) << "the datagram never reached the host socket";
  EXPECT_EQ(ntohs(from->sin_port), 47001) << "the guest's source port is kept when the host does not use it";
  auto reply = expect([](const auto& f) { return f.size() > 42 && load_be16(f.data() + 12) == kEtherTypeIpv4; });
  ASSERT_TRUE(reply);
  auto u = parse_udp4(*reply);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->dst_port, 47001);
  EXPECT_EQ(u->src_port, echo.port);
  EXPECT_EQ(std::string(u->payload.begin(), u->payload.end()), msg);
  EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), reply->begin()));
  const auto s = link->stats();
  EXPECT_EQ(s.udp_out, 1u);
  EXPECT_EQ(s.udp_in, 1u);
  EXPECT_EQ(s.udp_flows, 1u);
}

TEST_F(MirrorLinkTest, UdpFlowsAreCappedOldestFirst) {
  MirrorLinkConfig c;
  c.max_udp_flows = 4;
  make(c);
  UdpEcho echo(kFar4);
  const uint8_t one = 1;
  for (uint16_t p = 0; p < 10; ++p)
    link->on_guest_frame(
        build_udp4(kGuestMac, kOurMac, a4(kGuest4), static_cast<uint16_t>(47100 + p), a4(kFar4), echo.port, {&one, 1}));
  const auto s = link->stats();
  EXPECT_EQ(s.udp_flows, 4u);
  EXPECT_EQ(s.udp_evicted, 6u);
  EXPECT_EQ(s.udp_out, 10u);
}

TEST_F(MirrorLinkTest, TcpConnectsFromTheGuestsSourceAddress) {
  if (!TcpFastPath::available()) GTEST_SKIP() << "this kernel has no TCP SO_PEEK_OFF (Linux 6.10+)";
  UniqueFd srv(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr = a4(kFar4);
  ASSERT_EQ(::bind(srv.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(srv.get(), 4), 0);
  socklen_t l = sizeof a;
  ::getsockname(srv.get(), reinterpret_cast<sockaddr*>(&a), &l);
  link->on_guest_frame(ipv4(kGuest4, kFar4, 6, tcp_syn(40000, ntohs(a.sin_port))));
  auto synack = expect([](const auto& f) {
    auto s = parse_tcp_segment(f);
    return s && (s->flags & 0x12) == 0x12;
  });
  ASSERT_TRUE(synack) << "no SYN-ACK";
  sockaddr_in peer{};
  socklen_t pl = sizeof peer;
  UniqueFd c(::accept(srv.get(), reinterpret_cast<sockaddr*>(&peer), &pl));
  ASSERT_TRUE(c);
  char text[16];
  inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
  EXPECT_STREQ(text, kGuest4) << "the host socket is bound to the guest's source address";
}

// A tap with offloads (hooks.vnet_hdr_taps) hands the link 64 KiB TCP super-segments: taken whole
// by the fast path (one send), never cut into MTU frames; a header that lies is dropped, counted.
TEST_F(MirrorLinkTest, TcpSuperSegmentFromATapWithOffloadsIsTakenWhole) {
  if (!TcpFastPath::available()) GTEST_SKIP() << "this kernel has no TCP SO_PEEK_OFF (Linux 6.10+)";
  UniqueFd srv(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr = a4(kFar4);
  ASSERT_EQ(::bind(srv.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(srv.get(), 4), 0);
  socklen_t l = sizeof a;
  ::getsockname(srv.get(), reinterpret_cast<sockaddr*>(&a), &l);
  const uint16_t port_no = ntohs(a.sin_port);
  link->on_guest_frame(ipv4(kGuest4, kFar4, 6, tcp_syn(40010, port_no)));
  auto synack = expect([](const auto& f) {
    auto s = parse_tcp_segment(f);
    return s && (s->flags & 0x12) == 0x12;
  });
  ASSERT_TRUE(synack) << "no SYN-ACK";
  const uint32_t their_seq = parse_tcp_segment(*synack)->seq;
  UniqueFd c(::accept(srv.get(), nullptr, nullptr));
  ASSERT_TRUE(c);
  auto segment = [&](uint8_t flags, std::span<const uint8_t> payload) {
    std::vector<uint8_t> t(20 + payload.size(), 0);
    store_be16(t.data(), 40010);
    store_be16(t.data() + 2, port_no);
    t[7] = 101;  // seq 101: after the SYN
    const uint32_t ack = their_seq + 1;
    t[8] = static_cast<uint8_t>(ack >> 24), t[9] = static_cast<uint8_t>(ack >> 16);
    t[10] = static_cast<uint8_t>(ack >> 8), t[11] = static_cast<uint8_t>(ack);
    t[12] = 5 << 4;
    t[13] = flags;
    store_be16(t.data() + 14, 65535);
    std::copy(payload.begin(), payload.end(), t.begin() + 20);
    return ipv4(kGuest4, kFar4, 6, t);
  };
  link->on_guest_frame(segment(0x10, {}));  // the handshake's ACK
  std::vector<uint8_t> data(3 * 1448);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  VnetHdr h;
  h.flags = kVnetFNeedsCsum;
  h.gso_type = kVnetGsoTcp4;
  h.gso_size = 1448;
  h.hdr_len = kEthHeaderLen + 20 + 20;
  h.csum_start = kEthHeaderLen + 20;
  h.csum_offset = 16;
  const auto super = segment(0x18, data);
  ASSERT_GT(super.size(), 1500u + kEthHeaderLen) << "larger than one MTU frame, as TSO makes them";
  VnetHdr liar = h;
  liar.csum_start = static_cast<uint16_t>(super.size() + 10);  // outside the frame
  link->on_guest_offload_frame(super, liar);
  EXPECT_EQ(link->stats().dropped_bad_offload, 1u);
  link->on_guest_offload_frame(super, h);
  EXPECT_EQ(link->stats().offload_to_fast_path, 1u);
  EXPECT_EQ(link->stats().offload_in_software, 0u);
  std::vector<uint8_t> got;
  testing::run_until(
      io,
      [&] {
        uint8_t buf[8192];
        const ssize_t n = ::recv(c.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.insert(got.end(), buf, buf + n);
        return got.size() >= data.size();
      },
      3s);
  EXPECT_EQ(got, data) << "the host peer gets the super-segment's bytes, once, in order";
}

TEST_F(MirrorLinkTest, SegmentOfNoFlowIsReset) {
  link->on_guest_frame(ipv4(kGuest4, kFar4, 6, tcp_syn(40001, 9, 0x10 /* ACK */)));
  auto rst = expect([](const auto& f) {
    auto s = parse_tcp_segment(f);
    return s && (s->flags & 0x04);
  });
  ASSERT_TRUE(rst) << "RFC 9293 §3.10.7.1: a segment for no connection gets RST";
  port.frames.clear();
  link->on_guest_frame(ipv4(kGuest4, kFar4, 6, tcp_syn(40001, 9, 0x04 /* RST */)));
  EXPECT_TRUE(port.frames.empty()) << "an RST is never answered";
}

TEST_F(MirrorLinkTest, EchoGoesThroughAPingSocketAndKeepsTheGuestsIdentifier) {
  UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (!probe) GTEST_SKIP() << "ping sockets not allowed here (net.ipv4.ping_group_range): " << std::strerror(errno);
  std::vector<uint8_t> icmp(8 + 16, 0xab);
  icmp[0] = 8, icmp[1] = 0;
  store_be16(icmp.data() + 2, 0);
  store_be16(icmp.data() + 4, 0x4242);
  store_be16(icmp.data() + 6, 7);
  store_be16(icmp.data() + 2, static_cast<uint16_t>(~checksum_fold(checksum_add(icmp))));
  link->on_guest_frame(ipv4(kGuest4, kFar4, 1, icmp));
  auto reply = expect([](const auto& f) { return f.size() >= 42 && f[23] == 1 && f[34] == 0; });
  ASSERT_TRUE(reply) << "no echo reply";
  const uint8_t* r = reply->data() + kEthHeaderLen + 20;
  EXPECT_EQ(load_be16(r + 4), 0x4242) << "the guest's identifier";
  EXPECT_EQ(load_be16(r + 6), 7) << "the sequence number";
  EXPECT_EQ(checksum_fold(checksum_add({r, reply->size() - kEthHeaderLen - 20})), 0xffff);
  EXPECT_EQ(checksum_fold(checksum_add({reply->data() + kEthHeaderLen, 20})), 0xffff) << "IPv4 header checksum";
  EXPECT_EQ(link->stats().ping_in, 1u);
}

TEST_F(MirrorLinkTest, FramesForAnotherMacAreNotOurs) {
  auto f = arp_request("192.0.2.10", "192.0.2.1");
  const Mac other{0x02, 0, 0, 0, 0, 9};
  std::copy(other.begin(), other.end(), f.begin());
  link->on_guest_frame(f);
  EXPECT_TRUE(port.frames.empty());
  EXPECT_EQ(link->stats().dropped_not_for_us, 1u);
}

// A hostile guest: truncated and random headers of every kind; nothing may
// crash or read out of bounds (the ASan build runs this), and the link still
// answers a clean request afterwards.
TEST_F(MirrorLinkTest, SurvivesHostileFrames) {
  std::mt19937 rng(20261122);
  const std::vector<std::vector<uint8_t>> seeds = {
      arp_request("192.0.2.10", "192.0.2.1"),
      ipv4(kGuest4, kFar4, 6, tcp_syn(40002, 9)),
      ipv4(kGuest4, kFar4, 17, std::vector<uint8_t>(12, 1)),
      ipv4(kGuest4, kFar4, 1, std::vector<uint8_t>(12, 8)),
      ipv6("2001:db8::10", "ff02::1:ff00:1", 58, 255, std::vector<uint8_t>(32, 135), 2),
  };
  for (int i = 0; i < 5000; ++i) {
    const auto& seed = seeds[rng() % seeds.size()];
    auto f = seed;
    const int mode = static_cast<int>(rng() % 3);
    if (mode == 0) {
      f.resize(rng() % f.size());  // truncated anywhere
    } else {
      for (int k = 0; k < 4; ++k) f[kEthHeaderLen + rng() % (f.size() - kEthHeaderLen)] = static_cast<uint8_t>(rng());
      if (mode == 2) f.resize(f.size() + rng() % 64, static_cast<uint8_t>(rng()));
    }
    if (f.size() >= 6) std::copy(kOurMac.begin(), kOurMac.end(), f.begin());
    // Addresses stay the seed's (the test namespace's, or link-local/multicast for NDP): a mutated
    // frame must not make the link open sockets toward real hosts from a real address.
    const uint16_t et = load_be16(seed.data() + 12);
    if (et != kEtherTypeArp) {
      const size_t from = kEthHeaderLen + (et == kEtherTypeIpv4 ? 12 : 8);
      const size_t to = kEthHeaderLen + (et == kEtherTypeIpv4 ? 20 : 40);
      for (size_t b = from; b < to && b < f.size(); ++b) f[b] = seed[b];
    }
    link->on_guest_frame(f);
  }
  testing::run_until(
      io, [] { return false; }, 50ms);
  port.frames.clear();
  link->on_guest_frame(arp_request("192.0.2.10", "192.0.2.1"));
  ASSERT_EQ(port.frames.size(), 1u) << "still answering after the flood";
  const auto s = link->stats();
  EXPECT_GT(s.dropped_malformed + s.dropped_unsupported + s.dropped_not_for_us + s.dropped_fragment, 0u);
}

// ---- issue 13: sources and destinations the plan does not allow ----

// A TCP listener and a UDP socket on `ip`, to tell whether anything the guest sent reached it.
struct Target {
  explicit Target(const std::string& ip) {
    const int family = ip.find(':') == std::string::npos ? AF_INET : AF_INET6;
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
      UniqueFd fd(::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      sockaddr_storage ss{};
      socklen_t len = 0;
      if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
        len = sizeof *a;
      } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
        len = sizeof *a;
      }
      EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << ip << ": " << std::strerror(errno);
      if (type == SOCK_STREAM) {
        EXPECT_EQ(::listen(fd.get(), 8), 0);
      }
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
      const uint16_t p = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                 : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
      (type == SOCK_STREAM ? tcp_port : udp_port) = p;
      (type == SOCK_STREAM ? tcp : udp) = std::move(fd);
    }
  }
  // Sticky: run_until asks twice, and the first look takes what arrived.
  bool reached() {
    if (seen) return true;
    UniqueFd c(::accept4(tcp.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char b[64];
    seen = c.valid() || ::recv(udp.get(), b, sizeof b, MSG_DONTWAIT) >= 0;
    return seen;
  }
  bool seen = false;
  UniqueFd tcp, udp;
  uint16_t tcp_port = 0, udp_port = 0;
};

std::vector<uint8_t> frame_for(const std::string& src, const std::string& dst, uint8_t proto, std::vector<uint8_t> l4) {
  if (src.find(':') == std::string::npos) return ipv4(src.c_str(), dst.c_str(), proto, l4);
  const size_t csum_at = proto == 6 ? 16 : proto == 17 ? 6 : 2;
  return ipv6(src.c_str(), dst.c_str(), proto, 64, std::move(l4), csum_at);
}

std::vector<uint8_t> udp_dgram(uint16_t sport, uint16_t dport) {
  std::vector<uint8_t> u(8 + 4, 0x5a);
  store_be16(u.data(), sport);
  store_be16(u.data() + 2, dport);
  store_be16(u.data() + 4, static_cast<uint16_t>(u.size()));
  store_be16(u.data() + 6, 0);
  return u;
}

std::vector<uint8_t> echo_req(bool v4) {
  std::vector<uint8_t> e(16, 0xab);
  e[0] = v4 ? 8 : 128;
  e[1] = 0;
  store_be16(e.data() + 2, 0);
  store_be16(e.data() + 4, 0x4343);
  if (v4) store_be16(e.data() + 2, static_cast<uint16_t>(~checksum_fold(checksum_add(e))));
  return e;
}

struct SrcDst {
  std::string src, dst;
};

// Sends a SYN, a UDP datagram and an echo request for each case (the ports of `targets` where one
// listens on the destination), through the plain path, and an offloaded SYN through the offload
// path; then lets the loop run.
void send_all(MirrorLink& link, boost::asio::io_context& io, const std::vector<SrcDst>& cases,
              const std::map<std::string, Target*>& targets) {
  uint16_t sport = 41000;
  for (const auto& c : cases) {
    const Target* t = targets.count(c.dst) ? targets.at(c.dst) : nullptr;
    const bool v4 = c.src.find(':') == std::string::npos;
    link.on_guest_frame(frame_for(c.src, c.dst, 6, tcp_syn(sport++, t ? t->tcp_port : 9)));
    link.on_guest_frame(frame_for(c.src, c.dst, 17, udp_dgram(sport++, t ? t->udp_port : 9)));
    link.on_guest_frame(frame_for(c.src, c.dst, v4 ? 1 : 58, echo_req(v4)));
    VnetHdr h;
    h.flags = kVnetFNeedsCsum;
    h.csum_start = static_cast<uint16_t>(kEthHeaderLen + (v4 ? 20 : 40));
    h.csum_offset = 16;
    link.on_guest_offload_frame(frame_for(c.src, c.dst, 6, tcp_syn(sport++, t ? t->tcp_port : 9)), h);
  }
  testing::run_until(
      io, [] { return false; }, 200ms);
}

TEST_F(MirrorLinkTest, SourcesNotPlannedForTheLinkGetNothing) {
  Target far4(kFar4), far6(kFar6), lo4("127.0.0.1"), lo6("::1");
  const std::map<std::string, Target*> targets{{kFar4, &far4}, {kFar6, &far6}, {"127.0.0.1", &lo4}, {"::1", &lo6}};
  // Another link's address, the unspecified and loopback addresses (to a peer and to loopback).
  const std::vector<SrcDst> cases{
      {kOther4, kFar4}, {"0.0.0.0", kFar4}, {"127.0.0.1", kFar4}, {"127.0.0.1", "127.0.0.1"}, {kOther6, kFar6},
      {"::", kFar6},    {"::1", kFar6},     {"::1", "::1"},       {"::ffff:127.0.0.1", kFar6}};
  send_all(*link, io, cases, targets);
  for (auto* t : {&far4, &far6, &lo4, &lo6}) EXPECT_FALSE(t->reached()) << "a host socket was reached";
  EXPECT_TRUE(port.frames.empty()) << "a refused source is not answered";
  const auto s = link->stats();
  EXPECT_EQ(s.dropped_forbidden_source, 4 * cases.size());
  EXPECT_EQ(s.tcp.flows_opened, 0u);
  EXPECT_EQ(s.udp_flows_opened, 0u);
  EXPECT_EQ(s.ping_out, 0u);
  EXPECT_EQ(to_json(s)["dropped"]["forbidden_source"].get<uint64_t>(), 4 * cases.size());
}

TEST_F(MirrorLinkTest, ForbiddenDestinationsAreRefusedFromAPlannedSource) {
  Target lo4("127.0.0.1"), lo6("::1"), own4(kGuest4), own6(kGuest6), other4(kOther4), other6(kOther6);
  const std::map<std::string, Target*> targets{{"127.0.0.1", &lo4}, {"::1", &lo6},      {kGuest4, &own4},
                                               {kGuest6, &own6},    {kOther4, &other4}, {kOther6, &other6},
                                               {"0.0.0.0", &lo4},   {"::", &lo6},       {"::ffff:127.0.0.1", &lo4}};
  // Loopback and unspecified in every form, the host's own (planned) addresses on this and another
  // link, and this link's IPv4 broadcast.
  const std::vector<SrcDst> cases{
      {kGuest4, "127.0.0.1"},   {kGuest4, "127.3.2.1"}, {kGuest4, "0.0.0.0"}, {kGuest4, kGuest4},
      {kGuest4, kOther4},       {kGuest6, "::1"},       {kGuest6, "::"},      {kGuest6, "::ffff:127.0.0.1"},
      {kGuest6, "::127.0.0.1"}, {kGuest6, kGuest6},     {kGuest6, kOther6},   {kGuest4, "192.0.2.255"}};
  send_all(*link, io, cases, targets);
  for (auto* t : {&lo4, &lo6, &own4, &own6, &other4, &other6})
    EXPECT_FALSE(t->reached()) << "a host socket was reached";
  const auto s = link->stats();
  EXPECT_EQ(s.dropped_forbidden_destination, 4 * cases.size());
  EXPECT_EQ(s.dropped_forbidden_source, 0u);
  EXPECT_EQ(s.tcp.flows_opened, 0u);
  EXPECT_EQ(s.udp_flows_opened, 0u);
  EXPECT_EQ(s.ping_out, 0u);
  size_t rsts = 0, other = 0;
  for (const auto& f : port.frames) {
    auto seg = parse_tcp_segment(f);
    if (seg && seg->flags == 0x14) {
      ++rsts;
    } else {
      ++other;
    }
  }
  EXPECT_EQ(rsts, 2 * (cases.size() - 1)) << "each SYN (plain and offloaded) gets RST, but not to a broadcast";
  EXPECT_EQ(other, 0u) << "UDP and echo are dropped without an answer";
}

TEST_F(MirrorLinkTest, UntilThePlanArrivesEverySourceIsRefused) {
  MirrorLinkConfig c;
  c.name = "test0";
  link = std::make_unique<MirrorLink>(io, port, c);
  Target far4(kFar4);
  link->on_guest_frame(ipv4(kGuest4, kFar4, 6, tcp_syn(42000, far4.tcp_port)));
  EXPECT_EQ(link->stats().dropped_forbidden_source, 1u);
  link->set_addresses(link_addresses(test_plan(), "test0"));
  link->on_guest_frame(ipv4(kGuest4, kFar4, 17, udp_dgram(42001, far4.udp_port)));
  EXPECT_TRUE(testing::run_until(
      io, [&] { return far4.reached(); }, 2s))
      << "a planned source to a peer is carried";
}

TEST(MirrorLinkAddresses, ComeFromThePlan) {
  const auto a = link_addresses(test_plan(), "test0");
  ASSERT_EQ(a.sources.size(), 2u);
  EXPECT_EQ(a.destinations.host_addresses.size(), 4u) << "every planned address is the host's";
  ASSERT_EQ(a.destinations.ipv4_nets.size(), 1u);
  EXPECT_EQ(a.destinations.ipv4_nets[0].prefix_len, 24);
  EXPECT_TRUE(a.destinations.link_local_peers);
  EXPECT_TRUE(link_addresses(test_plan(), "nosuch0").sources.empty());
}

}  // namespace
}  // namespace causeway::netstack::mirror
