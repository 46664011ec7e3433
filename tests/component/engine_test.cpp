// The engine in process: a simulated guest sends DHCP, ARP, ICMP and
// malformed frames through a fake frame port; a fake clock drives timers.
#include "netstack/engine.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "base/unique_fd.hpp"
#include "netstack/packet.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::netstack {
namespace {

using causeway::testing::FakeClock;
using causeway::testing::FakeFramePort;

const Mac kGuestMac{0x02, 0x43, 0x57, 0x00, 0x00, 0x0f};
const Mac kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

in_addr ip4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a;
}

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : engine(io, clock, NatConfig{}, port) {}

  std::vector<uint8_t> arp_request(in_addr target) {
    std::vector<uint8_t> f(kBroadcast.begin(), kBroadcast.end());
    f.insert(f.end(), kGuestMac.begin(), kGuestMac.end());
    f.insert(f.end(), {0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1});
    f.insert(f.end(), kGuestMac.begin(), kGuestMac.end());
    const in_addr me = ip4("10.0.2.15");
    f.insert(f.end(), reinterpret_cast<const uint8_t*>(&me), reinterpret_cast<const uint8_t*>(&me) + 4);
    f.insert(f.end(), 6, 0);
    f.insert(f.end(), reinterpret_cast<const uint8_t*>(&target), reinterpret_cast<const uint8_t*>(&target) + 4);
    return f;
  }

  std::vector<uint8_t> dhcp_discover(uint32_t xid) {
    std::vector<uint8_t> bootp(300, 0);
    bootp[0] = 1;  // BOOTREQUEST
    bootp[1] = 1;
    bootp[2] = 6;
    std::memcpy(&bootp[4], &xid, 4);
    std::copy(kGuestMac.begin(), kGuestMac.end(), bootp.begin() + 28);
    const uint8_t magic[] = {99, 130, 83, 99, 53, 1, 1 /* DISCOVER */, 255};
    std::copy(std::begin(magic), std::end(magic), bootp.begin() + 236);
    return build_udp4(kGuestMac, kBroadcast, ip4("0.0.0.0"), 68, ip4("255.255.255.255"), 67, bootp);
  }

  std::vector<uint8_t> icmp_echo_to(in_addr dst, uint16_t id) {
    // Build as UDP then rewrite into ICMP echo: same IPv4 header shape.
    std::vector<uint8_t> body(16, 0xab);
    auto f = build_udp4(kGuestMac, gateway_mac(NatConfig{}), ip4("10.0.2.15"), 0, dst, 0,
                        std::span<const uint8_t>(body.data(), body.size() - 8));
    uint8_t* ip = f.data() + kEthHeaderLen;
    ip[9] = 1;  // ICMP
    ip[10] = ip[11] = 0;
    const uint16_t hsum = static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20})));
    ip[10] = static_cast<uint8_t>(hsum >> 8);
    ip[11] = static_cast<uint8_t>(hsum);
    uint8_t* icmp = ip + 20;
    std::memset(icmp, 0, 16);
    icmp[0] = 8;  // echo request
    icmp[4] = static_cast<uint8_t>(id >> 8);
    icmp[5] = static_cast<uint8_t>(id);
    const uint16_t csum = static_cast<uint16_t>(~checksum_fold(checksum_add({icmp, 16})));
    icmp[2] = static_cast<uint8_t>(csum >> 8);
    icmp[3] = static_cast<uint8_t>(csum);
    return f;
  }

  const std::vector<uint8_t>* find_frame(const std::function<bool(const std::vector<uint8_t>&)>& pred) {
    for (auto& f : port.frames)
      if (pred(f)) return &f;
    return nullptr;
  }

  boost::asio::io_context io;
  FakeClock clock;
  FakeFramePort port;
  Engine engine;
};

TEST_F(EngineTest, AnswersArpForTheGatewayWithItsMac) {
  engine.on_guest_frame(arp_request(ip4("10.0.2.2")));
  const auto* reply =
      find_frame([](const auto& f) { return f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2; });
  ASSERT_NE(reply, nullptr) << "no ARP reply among " << port.frames.size() << " frames";
  const Mac gw = gateway_mac(NatConfig{});
  EXPECT_TRUE(std::equal(gw.begin(), gw.end(), reply->begin() + 22)) << "sender hardware address";
  EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), reply->begin())) << "sent to the guest";
}

TEST_F(EngineTest, OffersTheFirstLeaseOverDhcp) {
  engine.on_guest_frame(dhcp_discover(0x12345678));
  const auto* offer = find_frame([](const auto& f) {
    auto v = parse_udp4(f);
    return v && v->dst_port == 68 && v->payload.size() > 240 && v->payload[0] == 2;
  });
  ASSERT_NE(offer, nullptr) << "no DHCP offer";
  auto v = parse_udp4(*offer);
  in_addr yiaddr{};
  std::memcpy(&yiaddr, v->payload.data() + 16, 4);
  EXPECT_EQ(yiaddr.s_addr, ip4("10.0.2.15").s_addr);
  uint32_t xid = 0;
  std::memcpy(&xid, v->payload.data() + 4, 4);
  EXPECT_EQ(xid, 0x12345678u);
}

TEST_F(EngineTest, RepliesToPingOfTheGateway) {
  engine.on_guest_frame(arp_request(ip4("10.0.2.2")));  // let the stack learn our MAC
  port.frames.clear();
  engine.on_guest_frame(icmp_echo_to(ip4("10.0.2.2"), 0x4242));
  const auto* reply = find_frame([](const auto& f) {
    return f.size() >= kEthHeaderLen + 28 && f[12] == 0x08 && f[13] == 0 && f[kEthHeaderLen + 9] == 1 &&
           f[kEthHeaderLen + 20] == 0;
  });
  ASSERT_NE(reply, nullptr) << "no echo reply";
  EXPECT_EQ((*reply)[kEthHeaderLen + 24], 0x42);
}

TEST_F(EngineTest, CountsEveryKindOfMalformedFrameAndKeepsServing) {
  std::vector<uint8_t> runt(10, 0);
  std::vector<uint8_t> huge(NatConfig{}.mtu + kEthHeaderLen + 1, 0);
  auto foreign = arp_request(ip4("10.0.2.2"));
  foreign[0] = 0x02;  // unicast to a MAC that is not ours
  auto bad_arp = arp_request(ip4("10.0.2.2"));
  bad_arp.resize(30);
  auto vlan = arp_request(ip4("10.0.2.2"));
  vlan[12] = 0x81;
  vlan[13] = 0x00;
  auto bad_ip = dhcp_discover(1);
  bad_ip[kEthHeaderLen] = 0x41;  // IHL 1
  for (int i = 0; i < 100; ++i) {
    for (auto* f : {&runt, &huge, &foreign, &bad_arp, &vlan, &bad_ip}) engine.on_guest_frame(*f);
  }
  auto s = engine.stats();
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kTooShort)], 100u);
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kTooLong)], 100u);
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kWrongMac)], 100u);
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kMalformedArp)], 100u);
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kUnsupportedEtherType)], 100u);
  EXPECT_EQ(s.dropped[static_cast<size_t>(FrameVerdict::kMalformedIpv4)], 100u);
  EXPECT_EQ(s.frames_in, 0u);
  EXPECT_TRUE(port.frames.empty()) << "malformed input produced output";
  engine.on_guest_frame(arp_request(ip4("10.0.2.2")));
  EXPECT_FALSE(port.frames.empty()) << "engine stopped answering after the flood";
}

// A frame from a tap with offloads whose checksum is left to us (NEEDS_CSUM) reaches libslirp
// completed: libslirp verifies ICMP checksums and would drop it otherwise.
TEST_F(EngineTest, CompletesPartialChecksumsBeforeLibslirp) {
  engine.on_guest_frame(arp_request(ip4("10.0.2.2")));
  auto partial = icmp_echo_to(ip4("10.0.2.2"), 0x4343);
  partial[kEthHeaderLen + 22] = partial[kEthHeaderLen + 23] = 0;  // ICMP has no pseudo-header: partial sum 0
  auto control = partial;  // the same frame without the header: libslirp must drop it
  VnetHdr h;
  h.flags = kVnetFNeedsCsum;
  h.csum_start = kEthHeaderLen + 20;
  h.csum_offset = 2;
  auto is_reply = [](const auto& f) {
    return f.size() >= kEthHeaderLen + 28 && f[13] == 0 && f[kEthHeaderLen + 9] == 1 && f[kEthHeaderLen + 20] == 0;
  };
  port.frames.clear();
  engine.on_guest_frame(control);
  EXPECT_EQ(find_frame(is_reply), nullptr) << "libslirp answered a wrong checksum: the test proves nothing";
  engine.on_guest_offload_frame(partial, h);
  const auto* reply = find_frame(is_reply);
  ASSERT_NE(reply, nullptr) << "no echo reply: the checksum was not completed";
  EXPECT_EQ((*reply)[kEthHeaderLen + 24], 0x43);
  EXPECT_EQ(engine.stats().offload_in_software, 1u);
}

// Hostile virtio-net headers are dropped and counted, never followed.
TEST_F(EngineTest, CountsHostileOffloadHeadersAsBadOffload) {
  const auto ping = icmp_echo_to(ip4("10.0.2.2"), 1);
  std::vector<VnetHdr> bad(4);
  bad[0].flags = 0x04;  // RSC_INFO
  bad[1].gso_type = 3;  // UFO
  bad[1].gso_size = 100;
  bad[2].flags = kVnetFNeedsCsum;  // field beyond the frame
  bad[2].csum_start = static_cast<uint16_t>(ping.size());
  bad[3].flags = kVnetFNeedsCsum;  // TSO on ICMP
  bad[3].gso_type = kVnetGsoTcp4;
  bad[3].gso_size = 100;
  bad[3].csum_start = kEthHeaderLen + 20;
  bad[3].csum_offset = 16;
  port.frames.clear();
  for (const auto& h : bad) engine.on_guest_offload_frame(ping, h);
  EXPECT_EQ(engine.stats().dropped[static_cast<size_t>(FrameVerdict::kBadOffload)], 4u);
  EXPECT_TRUE(port.frames.empty());
  EXPECT_EQ(to_string(FrameVerdict::kBadOffload), "bad_offload");
}

TEST_F(EngineTest, SendsRouterAdvertisementWhenItsTimerFires) {
  // libslirp arms its RA timer at start; RFC 4861 §6.2.1 bounds the interval at 600 s.
  io.poll();
  port.frames.clear();
  clock.advance(std::chrono::seconds(601));
  engine.pump();
  const auto* ra = find_frame([](const auto& f) {
    return f.size() >= kEthHeaderLen + 41 && f[12] == 0x86 && f[13] == 0xdd && f[kEthHeaderLen + 6] == 58 &&
           f[kEthHeaderLen + 40] == 134;
  });
  EXPECT_NE(ra, nullptr) << "no router advertisement after 601 s of fake time";
}

TEST_F(EngineTest, UdpFlowsCarryDatagramsBothWaysAndBypassTheStack) {
  std::vector<std::string> replies;
  auto flow = engine.open_flow(9000, [&](std::span<const uint8_t> p) { replies.emplace_back(p.begin(), p.end()); });
  ASSERT_TRUE(flow.has_value());
  const std::string hello = "hello";
  const std::span<const uint8_t> hello_bytes(reinterpret_cast<const uint8_t*>(hello.data()), hello.size());
  EXPECT_FALSE(engine.send_on_flow(*flow, hello_bytes)) << "guest MAC not known yet";
  EXPECT_EQ(engine.stats().udp_flow_drops, 1u);

  engine.announce_guest(kGuestMac);
  port.frames.clear();
  ASSERT_TRUE(engine.send_on_flow(*flow, hello_bytes));
  ASSERT_EQ(port.frames.size(), 1u);
  auto out = parse_udp4(port.frames[0]);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->dst_port, 9000);
  EXPECT_EQ(out->src_port, *flow);
  EXPECT_EQ(out->dst.s_addr, ip4("10.0.2.15").s_addr);
  EXPECT_EQ(std::string(out->payload.begin(), out->payload.end()), "hello");

  const std::string answer = "HELLO";
  engine.on_guest_frame(
      build_udp4(kGuestMac, gateway_mac(NatConfig{}), ip4("10.0.2.15"), 9000, ip4("10.0.2.2"), *flow,
                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(answer.data()), answer.size())));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0], "HELLO");
  EXPECT_EQ(engine.stats().udp_flow_frames_in, 1u);

  // A datagram from another guest port to the same gateway port is not the flow's.
  engine.on_guest_frame(
      build_udp4(kGuestMac, gateway_mac(NatConfig{}), ip4("10.0.2.15"), 9001, ip4("10.0.2.2"), *flow, {}));
  EXPECT_EQ(replies.size(), 1u);
  engine.close_flow(*flow);
  EXPECT_FALSE(engine.send_on_flow(*flow, hello_bytes));
}

// Issue 13, item 1: a DHCP guest behind `serve` may not have sent anything from its lease when
// the first forwarded connection arrives; the engine must ask for its MAC by ARP (as libslirp
// does) instead of closing the connection (which users saw as "Connection reset by peer").
class EngineForwardTest : public EngineTest {
 protected:
  void SetUp() override {
    if (!TcpFastPath::available()) GTEST_SKIP() << "this kernel has no TCP SO_PEEK_OFF (Linux 6.10+): no fast path";
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&a), &len);
    host_port = ntohs(a.sin_port);
    probe.reset();
    auto f = make_forward("tcp", "127.0.0.1", host_port, 8080);
    ASSERT_TRUE(f.has_value());
    ASSERT_FALSE(engine.add_forward(*f));
    client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    a.sin_port = htons(host_port);
    const int rc = ::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  static bool is_arp_request_for_guest(const std::vector<uint8_t>& f) {
    auto a = parse_arp(f);
    return a && a->op == kArpRequest && a->target_ip.s_addr == ip4("10.0.2.15").s_addr &&
           a->sender_ip.s_addr == ip4("10.0.2.2").s_addr;
  }
  static bool is_syn_to_guest(const std::vector<uint8_t>& f) {
    if (f.size() < kEthHeaderLen + 40 || f[12] != 0x08 || f[13] != 0 || f[kEthHeaderLen + 9] != 6) return false;
    const uint8_t* tcp = f.data() + kEthHeaderLen + 20;
    return std::equal(kGuestMac.begin(), kGuestMac.end(), f.begin()) && (tcp[2] << 8 | tcp[3]) == 8080 &&
           (tcp[13] & 0x12) == 0x02;
  }
  uint16_t host_port = 0;
  UniqueFd client;
};

TEST_F(EngineForwardTest, AsksForTheGuestsMacByArpThenOpensTheConnection) {
  ASSERT_TRUE(causeway::testing::run_until(
      io, [&] { return find_frame(is_arp_request_for_guest) != nullptr; }, std::chrono::seconds(3)))
      << "no ARP request for 10.0.2.15 among " << port.frames.size() << " frames";
  EXPECT_EQ(find_frame(is_syn_to_guest), nullptr) << "a SYN before the guest's MAC was known";
  auto reply = arp_request(ip4("10.0.2.2"));
  reply[21] = 2;  // the guest's answer: op reply, sender 10.0.2.15 at kGuestMac
  engine.on_guest_frame(reply);
  ASSERT_TRUE(causeway::testing::run_until(
      io, [&] { return find_frame(is_syn_to_guest) != nullptr; }, std::chrono::seconds(3)))
      << "no SYN to the guest once its MAC was known";
  EXPECT_EQ(engine.stats().tcp_forward_awaited_mac, 1u);
  EXPECT_EQ(engine.stats().tcp_forward_refused, 0u);
}

TEST_F(EngineForwardTest, ClosesTheConnectionWhenTheGuestNeverAnswersArp) {
  ASSERT_TRUE(causeway::testing::run_until(
      io, [&] { return engine.stats().tcp_forward_refused == 1; }, std::chrono::seconds(3)))
      << "the connection was neither opened nor refused";
  EXPECT_EQ(engine.stats().arp_requests, 4u) << "ARP asked every 250 ms, four times";
  EXPECT_EQ(find_frame(is_syn_to_guest), nullptr);
  char b;
  EXPECT_EQ(::recv(client.get(), &b, 1, 0), 0) << "the host peer sees its connection end";
}

TEST_F(EngineTest, ForwardOnATakenPortReportsAddressInUse) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(s, 1), 0);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const int port_no = ntohs(a.sin_port);
  for (const char* host : {"127.0.0.1"}) {
    auto f = make_forward("tcp", host, port_no, 80);
    ASSERT_TRUE(f.has_value());
    auto ec = engine.add_forward(*f);
    EXPECT_EQ(ec, boost::system::errc::address_in_use) << ec.message();
  }
  EXPECT_TRUE(engine.forwards().empty());
  ::close(s);
}

TEST_F(EngineTest, ForwardsCanBeAddedListedAndRemovedOnce) {
  auto fs = parse_publish_spec("0:1");
  ASSERT_TRUE(fs.has_error());  // port 0 is refused by the parser
  // Find a free port for both families.
  int s = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const int port_no = ntohs(a.sin6_port);
  ::close(s);
  auto both = parse_publish_spec(std::to_string(port_no) + ":80");
  ASSERT_TRUE(both.has_value());
  for (auto& f : *both) EXPECT_FALSE(engine.add_forward(f)) << f.describe();
  EXPECT_EQ(engine.forwards().size(), 2u);
  EXPECT_EQ(engine.add_forward((*both)[0]), boost::system::errc::file_exists);
  for (auto& f : *both) EXPECT_FALSE(engine.remove_forward(f));
  EXPECT_EQ(engine.remove_forward((*both)[0]), boost::system::errc::no_such_file_or_directory);
  EXPECT_TRUE(engine.forwards().empty());
}

// A statically configured guest that has said nothing over IPv4 (the VM agent's NetConfig):
// its first IPv6 frame must be enough for a -p UDP forward to reach it. Without the
// introduction libslirp holds the datagram behind an ARP request the guest never answers.
TEST_F(EngineTest, UdpForwardReachesAGuestThatHasOnlySpokenIpv6) {
  int probe = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  const int host_port = ntohs(a.sin_port);
  ::close(probe);
  auto f = make_forward("udp", "127.0.0.1", host_port, 9999);
  ASSERT_TRUE(f.has_value());
  ASSERT_FALSE(engine.add_forward(*f));

  in6_addr ll{}, all_nodes{};
  inet_pton(AF_INET6, "fe80::43:57ff:fe00:f", &ll);
  inet_pton(AF_INET6, "ff02::1", &all_nodes);
  const uint8_t hello[] = {1, 2, 3};
  engine.on_guest_frame(build_udp6(kGuestMac, Mac{0x33, 0x33, 0, 0, 0, 1}, ll, 5353, all_nodes, 5353, hello));
  EXPECT_EQ(engine.stats().guest_introductions, 1u);

  int client = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_EQ(::sendto(client, "ping", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), 4);
  const std::vector<uint8_t>* got = nullptr;
  for (int i = 0; i < 100 && !got; ++i) {
    io.run_for(std::chrono::milliseconds(10));
    got = find_frame([](const auto& fr) {
      auto v = parse_udp4(fr);
      return v && v->dst_port == 9999;
    });
  }
  ::close(client);
  ASSERT_NE(got, nullptr) << "the forwarded datagram never reached the guest (" << port.frames.size() << " frames)";
  EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), got->begin())) << "sent to the guest's MAC";
}

}  // namespace
}  // namespace causeway::netstack
