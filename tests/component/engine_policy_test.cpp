// The engine's destination policy (issue 13): a simulated guest writes TCP
// SYNs, UDP datagrams, echo requests and fragments straight at host
// loopback, the unspecified address, their IPv4-mapped/-compatible forms,
// multicast and broadcast — through the TCP fast path and through libslirp,
// both families — and at the gateway with host loopback off. Real host
// sockets listen on the loopback addresses the frames name, so a test can
// tell "refused" from "reached the host".
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "base/byte_order.hpp"
#include "base/unique_fd.hpp"
#include "netstack/engine.hpp"
#include "netstack/packet.hpp"
#include "netstack/refusal.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::netstack {
namespace {

using namespace std::chrono_literals;
using causeway::testing::FakeClock;
using causeway::testing::FakeFramePort;

const Mac kGuestMac{0x02, 0x43, 0x57, 0x00, 0x00, 0x0f};
const Mac kRouter6Mac{0x52, 0x56, 0, 0, 0, 2};  // libslirp's IPv6 router

using causeway::wire::store_be16;
bool is_v4(const std::string& a) { return a.find(':') == std::string::npos; }

// Ethernet + IP + `l4` (protocol `proto`) from the guest, with every checksum right: libslirp
// verifies them, and a frame it drops would prove nothing.
std::vector<uint8_t> guest_packet(const std::string& src, const std::string& dst, uint8_t proto,
                                  std::vector<uint8_t> l4) {
  const bool v4 = is_v4(dst);
  const size_t iplen = v4 ? 20 : 40;
  std::vector<uint8_t> f(kEthHeaderLen + iplen, 0);
  const Mac to = v4 ? gateway_mac(NatConfig{}) : kRouter6Mac;
  std::copy(to.begin(), to.end(), f.begin());
  std::copy(kGuestMac.begin(), kGuestMac.end(), f.begin() + 6);
  store_be16(f.data() + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = f.data() + kEthHeaderLen;
  uint8_t pseudo[40] = {};
  size_t plen = 0;
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(20 + l4.size()));
    ip[8] = 64;
    ip[9] = proto;
    inet_pton(AF_INET, src.c_str(), ip + 12);
    inet_pton(AF_INET, dst.c_str(), ip + 16);
    store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[9] = proto;
    store_be16(pseudo + 10, static_cast<uint16_t>(l4.size()));
    plen = proto == 1 ? 0 : 12;  // ICMPv4 has no pseudo-header
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<uint16_t>(l4.size()));
    ip[6] = proto;
    ip[7] = 64;
    inet_pton(AF_INET6, src.c_str(), ip + 8);
    inet_pton(AF_INET6, dst.c_str(), ip + 24);
    std::memcpy(pseudo, ip + 8, 32);
    store_be16(pseudo + 34, static_cast<uint16_t>(l4.size()));
    pseudo[39] = proto;
    plen = 40;
  }
  const size_t at = proto == 6 ? 16 : proto == 17 ? 6 : 2;
  if (l4.size() >= at + 2) {
    store_be16(l4.data() + at, 0);
    store_be16(l4.data() + at, static_cast<uint16_t>(~checksum_fold(checksum_add(l4, checksum_add({pseudo, plen})))));
  }
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

std::vector<uint8_t> syn(uint16_t sport, uint16_t dport) {
  std::vector<uint8_t> t(20, 0);
  store_be16(t.data(), sport);
  store_be16(t.data() + 2, dport);
  t[7] = 100;  // seq 100
  t[12] = 5 << 4;
  t[13] = 0x02;
  store_be16(t.data() + 14, 65535);
  return t;
}

std::vector<uint8_t> udp(uint16_t sport, uint16_t dport) {
  std::vector<uint8_t> u(8 + 5, 'x');
  store_be16(u.data(), sport);
  store_be16(u.data() + 2, dport);
  store_be16(u.data() + 4, static_cast<uint16_t>(u.size()));
  return u;
}

std::vector<uint8_t> echo_request(bool v4) {
  std::vector<uint8_t> e(16, 0xab);
  e[0] = v4 ? 8 : 128;
  e[1] = 0;
  store_be16(e.data() + 4, 0x4242);
  return e;
}

// A real loopback socket the frames aim at: a TCP listener or a bound UDP socket.
struct HostSocket {
  HostSocket(const std::string& ip, int type) {
    const bool v4 = is_v4(ip);
    fd.reset(::socket(v4 ? AF_INET : AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v4) {
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
    port = ntohs(v4 ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  // Whether anything reached the socket: a connection to accept or a datagram to read. Sticky:
  // taking it off the socket must not make the next look say no.
  bool reached() {
    if (seen) return true;
    UniqueFd c(::accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char b[64];
    seen = c.valid() || ::recv(fd.get(), b, sizeof b, MSG_DONTWAIT) >= 0;
    return seen;
  }
  bool seen = false;
  UniqueFd fd;
  uint16_t port = 0;
};

enum class TcpEngine { kFast, kSlirp };

struct PolicyCase {
  TcpEngine engine;
  const char* listen;  // where the host socket is
  const char* dst;     // what the guest writes
};

class EnginePolicy : public ::testing::TestWithParam<PolicyCase> {
 protected:
  void make(bool host_loopback = true) {
    NatConfig cfg;
    cfg.tcp_fast = GetParam().engine == TcpEngine::kFast;
    cfg.host_loopback = host_loopback;
    if (cfg.tcp_fast && !TcpFastPath::available()) GTEST_SKIP() << "this kernel has no TCP SO_PEEK_OFF (Linux 6.10+)";
    engine = std::make_unique<Engine>(io, clock, cfg, port);
    engine->announce_guest(kGuestMac);
  }
  std::string guest_src() const { return is_v4(GetParam().dst) ? "10.0.2.15" : "fd00::15"; }
  uint64_t forbidden() const {
    return engine->stats().dropped[static_cast<size_t>(FrameVerdict::kForbiddenDestination)];
  }
  // Lets the engine (and libslirp's connect, were it to happen) run for a while.
  void settle() {
    testing::run_until(
        io, [] { return false; }, 200ms);
  }
  const std::vector<uint8_t>* find(const std::function<bool(const std::vector<uint8_t>&)>& pred) {
    for (auto& f : port.frames)
      if (pred(f)) return &f;
    return nullptr;
  }

  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  std::unique_ptr<Engine> engine;
};

TEST_P(EnginePolicy, SynToHostLoopbackIsResetAndNeverConnects) {
  make();
  if (::testing::Test::IsSkipped()) return;
  HostSocket host(GetParam().listen, SOCK_STREAM);
  engine->on_guest_frame(guest_packet(guest_src(), GetParam().dst, 6, syn(40000, host.port)));
  settle();
  EXPECT_FALSE(host.reached()) << "the host's loopback listener accepted the guest's connection";
  const auto* rst = find([&](const auto& f) {
    auto s = parse_tcp_segment(f);
    return s && s->sport == host.port && s->dport == 40000 && (s->flags & 0x04);
  });
  ASSERT_NE(rst, nullptr) << "no RST for the SYN";
  EXPECT_EQ(parse_tcp_segment(*rst)->ack, 101u) << "the RST acknowledges the SYN (RFC 9293 §3.10.7.1)";
  EXPECT_EQ(find([](const auto& f) {
              auto s = parse_tcp_segment(f);
              return s && (s->flags & 0x12) == 0x12;
            }),
            nullptr)
      << "a SYN-ACK went to the guest";
  EXPECT_EQ(forbidden(), 1u);
  EXPECT_EQ(engine->stats().frames_in, 0u) << "a refused frame is a dropped frame";
}

TEST_P(EnginePolicy, UdpToHostLoopbackGetsAdminProhibitedAndNeverArrives) {
  make();
  if (::testing::Test::IsSkipped()) return;
  HostSocket host(GetParam().listen, SOCK_DGRAM);
  const auto frame = guest_packet(guest_src(), GetParam().dst, 17, udp(5000, host.port));
  engine->on_guest_frame(frame);
  settle();
  EXPECT_FALSE(host.reached()) << "the datagram reached the host's loopback";
  const bool v4 = is_v4(GetParam().dst);
  const auto* err = find([&](const auto& f) {
    const size_t ip = kEthHeaderLen, l4 = ip + (v4 ? 20 : 40);
    return f.size() > l4 + 8 && f[ip + (v4 ? 9 : 6)] == (v4 ? 1 : 58) && f[l4] == (v4 ? 3 : 1) &&
           f[l4 + 1] == (v4 ? 13 : 1);
  });
  ASSERT_NE(err, nullptr) << "no ICMP administratively prohibited";
  const size_t quoted = kEthHeaderLen + (v4 ? 28 : 48);
  EXPECT_EQ(std::memcmp(err->data() + quoted, frame.data() + kEthHeaderLen, frame.size() - kEthHeaderLen), 0)
      << "the error quotes the refused datagram";
  EXPECT_EQ(forbidden(), 1u);
}

TEST_P(EnginePolicy, EchoToHostLoopbackIsDroppedAndCounted) {
  make();
  if (::testing::Test::IsSkipped()) return;
  const bool v4 = is_v4(GetParam().dst);
  engine->on_guest_frame(guest_packet(guest_src(), GetParam().dst, v4 ? 1 : 58, echo_request(v4)));
  settle();
  EXPECT_EQ(forbidden(), 1u);
  EXPECT_EQ(find([&](const auto& f) {
              return f.size() > kEthHeaderLen + 48 && f[kEthHeaderLen + (v4 ? 20 : 40)] == (v4 ? 0 : 129);
            }),
            nullptr)
      << "an echo reply came back";
}

// A tap with offloads hands the fast path TCP frames whole (on_guest_offload_frame): the policy
// is applied there too, before the fast path can connect().
TEST_P(EnginePolicy, OffloadedSynToHostLoopbackIsResetToo) {
  make();
  if (::testing::Test::IsSkipped()) return;
  HostSocket host(GetParam().listen, SOCK_STREAM);
  auto frame = guest_packet(guest_src(), GetParam().dst, 6, syn(40001, host.port));
  const size_t l4 = kEthHeaderLen + (is_v4(GetParam().dst) ? 20 : 40);
  VnetHdr h;
  h.flags = kVnetFNeedsCsum;
  h.csum_start = static_cast<uint16_t>(l4);
  h.csum_offset = 16;
  engine->on_guest_offload_frame(frame, h);
  settle();
  EXPECT_FALSE(host.reached());
  EXPECT_NE(find([](const auto& f) {
              auto s = parse_tcp_segment(f);
              return s && (s->flags & 0x04);
            }),
            nullptr);
  EXPECT_EQ(forbidden(), 1u);
}

TEST_P(EnginePolicy, FragmentToHostLoopbackIsDropped) {
  make();
  if (::testing::Test::IsSkipped()) return;
  HostSocket host(GetParam().listen, SOCK_STREAM);
  // The first half of a SYN (ports and sequence, no flags) with more fragments to come.
  auto t = syn(40002, host.port);
  t.resize(8);
  if (is_v4(GetParam().dst)) {
    auto frame = guest_packet(guest_src(), GetParam().dst, 6, t);
    uint8_t* ip = frame.data() + kEthHeaderLen;
    ip[6] = 0x20;  // MF
    store_be16(ip + 10, 0);
    store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
    engine->on_guest_frame(frame);
  } else {
    std::vector<uint8_t> frag{6, 0, 0, 1, 0, 0, 0, 7};  // RFC 8200 §4.5: next header TCP, offset 0, M
    frag.insert(frag.end(), t.begin(), t.end());
    engine->on_guest_frame(guest_packet(guest_src(), GetParam().dst, 44, frag));
  }
  settle();
  EXPECT_EQ(forbidden(), 1u);
  EXPECT_TRUE(port.frames.empty()) << "a fragment is never answered";
}

std::string case_name(const ::testing::TestParamInfo<PolicyCase>& info) {
  std::string n = info.param.engine == TcpEngine::kFast ? "Fast_" : "Slirp_";
  for (const char* c = info.param.dst; *c; ++c) n += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
  return n;
}

// Every form of "the host itself": loopback, unspecified (Linux connects 0.0.0.0 and :: to the
// local host), IPv4-mapped and -compatible disguises (an AF_INET6 socket connects ::ffff:127.0.0.1
// to the IPv4 loopback).
INSTANTIATE_TEST_SUITE_P(Addresses, EnginePolicy,
                         ::testing::Values(PolicyCase{TcpEngine::kFast, "127.0.0.1", "127.0.0.1"},
                                           PolicyCase{TcpEngine::kFast, "127.0.0.1", "127.1.2.3"},
                                           PolicyCase{TcpEngine::kFast, "127.0.0.1", "0.0.0.0"},
                                           PolicyCase{TcpEngine::kFast, "::1", "::1"},
                                           PolicyCase{TcpEngine::kFast, "::1", "::"},
                                           PolicyCase{TcpEngine::kFast, "127.0.0.1", "::ffff:127.0.0.1"},
                                           PolicyCase{TcpEngine::kFast, "127.0.0.1", "::127.0.0.1"},
                                           PolicyCase{TcpEngine::kSlirp, "127.0.0.1", "127.0.0.1"},
                                           PolicyCase{TcpEngine::kSlirp, "127.0.0.1", "0.0.0.0"},
                                           PolicyCase{TcpEngine::kSlirp, "::1", "::1"},
                                           PolicyCase{TcpEngine::kSlirp, "127.0.0.1", "::ffff:127.0.0.1"}),
                         case_name);

// --no-host-loopback: the gateway alias is refused by the same gate, both engines, both
// families; with host loopback on it still reaches the host's loopback (the documented rule).
class GatewayPolicy : public EnginePolicy {};

TEST_P(GatewayPolicy, GatewayIsRefusedWhileHostLoopbackIsOff) {
  make(/*host_loopback=*/false);
  if (::testing::Test::IsSkipped()) return;
  HostSocket tcp(GetParam().listen, SOCK_STREAM);
  HostSocket udp_sock(GetParam().listen, SOCK_DGRAM);
  engine->on_guest_frame(guest_packet(guest_src(), GetParam().dst, 6, syn(40003, tcp.port)));
  engine->on_guest_frame(guest_packet(guest_src(), GetParam().dst, 17, udp(5001, udp_sock.port)));
  settle();
  EXPECT_FALSE(tcp.reached());
  EXPECT_FALSE(udp_sock.reached());
  EXPECT_NE(find([](const auto& f) {
              auto s = parse_tcp_segment(f);
              return s && (s->flags & 0x04);
            }),
            nullptr);
  EXPECT_EQ(forbidden(), 2u);
  EXPECT_EQ(engine->stats().forbidden[static_cast<size_t>(DestClass::kHostLoopbackOff)], 2u);
}

TEST_P(GatewayPolicy, GatewayReachesHostLoopbackWhileAllowed) {
  make(/*host_loopback=*/true);
  if (::testing::Test::IsSkipped()) return;
  HostSocket host(GetParam().listen, SOCK_DGRAM);
  engine->on_guest_frame(guest_packet(guest_src(), GetParam().dst, 17, udp(5002, host.port)));
  EXPECT_TRUE(testing::run_until(
      io, [&] { return host.reached(); }, 2s))
      << "the gateway alias stopped working";
  EXPECT_EQ(forbidden(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Gateways, GatewayPolicy,
                         ::testing::Values(PolicyCase{TcpEngine::kFast, "127.0.0.1", "10.0.2.2"},
                                           PolicyCase{TcpEngine::kFast, "::1", "fd00::2"},
                                           PolicyCase{TcpEngine::kSlirp, "127.0.0.1", "10.0.2.2"},
                                           PolicyCase{TcpEngine::kSlirp, "::1", "fd00::2"},
                                           // libslirp maps every address of the IPv6 prefix but
                                           // DNS to the host's loopback, not only the gateway.
                                           PolicyCase{TcpEngine::kFast, "::1", "fd00::77"},
                                           PolicyCase{TcpEngine::kSlirp, "::1", "fd00::77"}),
                         case_name);

// The DNS alias on any port but 53 goes to the host's resolver, which may be on loopback itself
// (127.0.0.53 under systemd-resolved): with host loopback off it is refused like the gateway.
TEST(EngineDnsAliasPolicy, DnsAddressOffPort53IsRefusedWhileHostLoopbackIsOff) {
  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  NatConfig cfg;
  cfg.host_loopback = false;
  Engine engine(io, clock, cfg, port);
  engine.announce_guest(kGuestMac);
  engine.on_guest_frame(guest_packet("10.0.2.15", "10.0.2.3", 6, syn(40100, 8080)));
  engine.on_guest_frame(guest_packet("fd00::15", "fd00::3", 17, udp(40101, 5353)));
  const auto s = engine.stats();
  EXPECT_EQ(s.forbidden[static_cast<size_t>(DestClass::kHostLoopbackOff)], 2u);
  ASSERT_EQ(port.frames.size(), 2u) << "an RST and an ICMPv6 administratively prohibited";
  auto rst = parse_tcp_segment(port.frames[0]);
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->flags, 0x14);
  // Port 53 on the same address is the DNS service and passes the gate.
  engine.on_guest_frame(guest_packet("10.0.2.15", "10.0.2.3", 6, syn(40102, 53)));
  EXPECT_EQ(engine.stats().dropped[static_cast<size_t>(FrameVerdict::kForbiddenDestination)], 2u);
}

// Link-local destinations name no link the NAT guest can see: refused, both families.
TEST(EngineLinkLocalPolicy, LinkLocalDestinationsAreRefusedInNatMode) {
  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  Engine engine(io, clock, NatConfig{}, port);
  engine.announce_guest(kGuestMac);
  engine.on_guest_frame(guest_packet("10.0.2.15", "169.254.169.254", 6, syn(40200, 80)));
  engine.on_guest_frame(guest_packet("fd00::15", "fe80::1", 6, syn(40201, 80)));
  engine.on_guest_frame(guest_packet("10.0.2.15", "169.254.169.254", 17, udp(40202, 80)));
  const auto s = engine.stats();
  EXPECT_EQ(s.forbidden[static_cast<size_t>(DestClass::kLinkLocal)], 3u);
  size_t rsts = 0;
  for (const auto& f : port.frames)
    if (auto t = parse_tcp_segment(f); t && t->flags == 0x14) ++rsts;
  EXPECT_EQ(rsts, 2u);
}

class EngineGroupPolicy : public ::testing::Test {
 protected:
  EngineGroupPolicy() : engine(io, clock, NatConfig{}, port) { engine.announce_guest(kGuestMac); }
  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  Engine engine;
};

// Multicast and broadcast datagrams are refused without an ICMP error (RFC 1122 §3.2.2,
// RFC 4443 §2.4(e)); DHCP, the engine's own broadcast service, still passes.
TEST_F(EngineGroupPolicy, GroupDestinationsAreDroppedSilentlyButDhcpPasses) {
  for (const char* dst : {"224.0.0.251", "255.255.255.255", "10.0.2.255", "ff02::fb"})
    engine.on_guest_frame(guest_packet(is_v4(dst) ? "10.0.2.15" : "fd00::15", dst, 17, udp(5353, 5353)));
  const auto s = engine.stats();
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kForbiddenDestination)], 4u);
  EXPECT_EQ(s.forbidden[static_cast<size_t>(DestClass::kMulticast)], 2u);
  EXPECT_EQ(s.forbidden[static_cast<size_t>(DestClass::kBroadcast)], 2u);
  EXPECT_TRUE(port.frames.empty()) << "an ICMP error about a group destination";
  std::vector<uint8_t> bootp(300, 0);
  bootp[0] = 1, bootp[1] = 1, bootp[2] = 6;
  std::copy(kGuestMac.begin(), kGuestMac.end(), bootp.begin() + 28);
  const uint8_t magic[] = {99, 130, 83, 99, 53, 1, 1 /* DISCOVER */, 255};
  std::copy(std::begin(magic), std::end(magic), bootp.begin() + 236);
  auto discover = udp(68, 67);
  discover.resize(8);
  discover.insert(discover.end(), bootp.begin(), bootp.end());
  store_be16(discover.data() + 4, static_cast<uint16_t>(discover.size()));
  auto frame = guest_packet("0.0.0.0", "255.255.255.255", 17, discover);
  std::fill_n(frame.begin(), 6, 0xff);
  engine.on_guest_frame(frame);
  EXPECT_EQ(engine.stats().dropped[static_cast<size_t>(FrameVerdict::kForbiddenDestination)], 4u);
  EXPECT_FALSE(port.frames.empty()) << "no DHCP offer";
}

// The guest's replies on UDP forward flows go to the gateway; --no-host-loopback must not break
// forwards (they are the guest's own services, published on purpose).
TEST(EngineFlowPolicy, UdpForwardRepliesPassWhileHostLoopbackIsOff) {
  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  NatConfig cfg;
  cfg.host_loopback = false;
  Engine engine(io, clock, cfg, port);
  engine.announce_guest(kGuestMac);
  int replies = 0;
  auto flow = engine.open_flow(9000, [&](std::span<const uint8_t>) { ++replies; });
  ASSERT_TRUE(flow);
  engine.on_guest_frame(guest_packet("10.0.2.15", "10.0.2.2", 17, udp(9000, *flow)));
  EXPECT_EQ(replies, 1);
  EXPECT_EQ(engine.stats().dropped[static_cast<size_t>(FrameVerdict::kForbiddenDestination)], 0u);
}

// The libslirp part of the descriptor budget (netstack/budget.hpp): past max_slirp_sockets
// UDP sources, the newest flow is refused with ICMP administratively prohibited and counted;
// sources already admitted, and DHCP (answered inside libslirp), still pass.
std::vector<uint8_t> dhcp_like_probe() { return guest_packet("0.0.0.0", "255.255.255.255", 17, udp(68, 67)); }

TEST(EngineSlirpBudget, NewUdpSourcesBeyondTheCapAreRefusedAndCounted) {
  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  NatConfig cfg;
  cfg.max_slirp_sockets = 4;
  Engine engine(io, clock, cfg, port);
  engine.announce_guest(kGuestMac);
  HostSocket host("127.0.0.1", SOCK_DGRAM);
  for (uint16_t sport = 41000; sport < 41010; ++sport)
    engine.on_guest_frame(guest_packet("10.0.2.15", "10.0.2.2", 17, udp(sport, host.port)));
  EXPECT_EQ(engine.stats().refused_slirp_sockets, 6u);
  EXPECT_EQ(engine.stats().slirp_udp_sources, 4u);
  size_t prohibited = 0;
  for (const auto& f : port.frames)
    if (f.size() > kEthHeaderLen + 28 && f[kEthHeaderLen + 9] == 1 && f[kEthHeaderLen + 20] == 3 &&
        f[kEthHeaderLen + 21] == 13)
      ++prohibited;
  EXPECT_EQ(prohibited, 6u) << "each refused datagram gets ICMP administratively prohibited";

  // An admitted source keeps its flow.
  engine.on_guest_frame(guest_packet("10.0.2.15", "10.0.2.2", 17, udp(41000, host.port)));
  EXPECT_EQ(engine.stats().refused_slirp_sockets, 6u);
  testing::run_until(
      io, [&] { return host.reached(); }, 2s);
  EXPECT_TRUE(host.reached());

  // Sources idle past libslirp's expiry leave room for new ones.
  clock.advance(std::chrono::milliseconds(Engine::kSlirpUdpExpiryMs + 1000));
  engine.on_guest_frame(dhcp_like_probe());  // any frame: libslirp's next turn drops its expired sockets
  testing::run_until(
      io, [] { return false; }, 100ms);
  engine.on_guest_frame(guest_packet("10.0.2.15", "10.0.2.2", 17, udp(41100, host.port)));
  EXPECT_EQ(engine.stats().refused_slirp_sockets, 6u);
}

}  // namespace
}  // namespace causeway::netstack
