// fuzz_seeds DIR: writes the seed corpora of the component fuzz targets into DIR/TARGET/NAME —
// real inputs, built with the code's own encoders where it has them: Ethernet frames a guest
// sends at boot (ARP, DHCP, DNS over UDP, TCP SYNs, NDP, an offload frame), virtio rings with
// those frames and vsock packets in them, the message sequence QEMU sends a vhost-user
// back-end, an agent's side of a session and of the relay handshake, and netlink dumps
// recorded from the kernel of the namespace it runs in. tests/fuzz/corpus/ is its output
// (regenerate: build the fuzz_seeds target, run it on tests/fuzz/corpus); each program's
// encoding is the one its target's header describes (tests/fuzz/fuzz_input.hpp).
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/checksum.hpp"
#include "base/vnet_hdr.hpp"
#include "tests/fuzz/fuzz_input.hpp"
#include "vmm/agent/protocol.hpp"
#include "vmm/agent/relay.hpp"
#include "vmm/devices/vsock_packet.hpp"
#include "vmm/vhost_user/message.hpp"
#include "vmm/virtio_spec.hpp"

using causeway::fuzz::FuzzWriter;
using Bytes = std::vector<uint8_t>;
namespace fs = std::filesystem;
namespace agent = causeway::agent;
namespace vu = causeway::vmm::vhost_user;
namespace vsock = causeway::vmm::vsock;

namespace {

fs::path g_root;

void write(const std::string& target, const std::string& name, const Bytes& b) {
  const auto dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// ---------------------------------------------------------------- frames a guest sends
const uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
const uint8_t kGatewayMac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};  // libslirp's, for 10.0.2.2

void put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = uint8_t(v >> 8);
  b[off + 1] = uint8_t(v);
}

Bytes eth(const uint8_t* dst, uint16_t type) {
  Bytes f(dst, dst + 6);
  f.insert(f.end(), kGuestMac, kGuestMac + 6);
  f.push_back(uint8_t(type >> 8));
  f.push_back(uint8_t(type));
  return f;
}

uint32_t ip4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

// IPv4 with a TCP or UDP payload (its checksum filled in).
Bytes ipv4(const uint8_t* dst_mac, uint32_t src, uint32_t dst, uint8_t proto, Bytes l4) {
  Bytes f = eth(dst_mac, 0x0800);
  Bytes ip(20, 0);
  ip[0] = 0x45;
  put16(ip, 2, uint16_t(20 + l4.size()));
  ip[8] = 64;
  ip[9] = proto;
  std::memcpy(&ip[12], &src, 4);
  std::memcpy(&ip[16], &dst, 4);
  put16(ip, 10, uint16_t(~causeway::wire::checksum_fold(causeway::wire::checksum_add(ip))));
  const size_t csum_off = proto == 6 ? 16 : 6;
  if (proto == 17) put16(l4, 4, uint16_t(l4.size()));
  uint32_t sum = causeway::wire::checksum_add({&ip[12], 8}) + proto + uint32_t(l4.size());
  put16(l4, csum_off, uint16_t(~causeway::wire::checksum_fold(causeway::wire::checksum_add(l4, sum))));
  f.insert(f.end(), ip.begin(), ip.end());
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

Bytes udp4(const uint8_t* dst_mac, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, const Bytes& payload) {
  Bytes u(8, 0);
  put16(u, 0, sport);
  put16(u, 2, dport);
  u.insert(u.end(), payload.begin(), payload.end());
  return ipv4(dst_mac, src, dst, 17, u);
}

Bytes tcp4(uint32_t dst, uint16_t dport, uint8_t flags, const Bytes& payload = {}) {
  Bytes t(20, 0);
  put16(t, 0, 40000);
  put16(t, 2, dport);
  t[4] = 0x12;  // seq
  t[12] = 5 << 4;
  t[13] = flags;
  put16(t, 14, 64240);
  t.insert(t.end(), payload.begin(), payload.end());
  return ipv4(kGatewayMac, ip4("10.0.2.15"), dst, 6, t);
}

Bytes arp_request(const char* target) {
  Bytes f = eth(kBroadcast, 0x0806);
  const uint8_t fixed[] = {0, 1, 8, 0, 6, 4, 0, 1};
  f.insert(f.end(), fixed, fixed + 8);
  f.insert(f.end(), kGuestMac, kGuestMac + 6);
  const uint32_t me = ip4("10.0.2.15"), t = ip4(target);
  f.insert(f.end(), reinterpret_cast<const uint8_t*>(&me), reinterpret_cast<const uint8_t*>(&me) + 4);
  f.insert(f.end(), 6, 0);
  f.insert(f.end(), reinterpret_cast<const uint8_t*>(&t), reinterpret_cast<const uint8_t*>(&t) + 4);
  return f;
}

Bytes dhcp(uint8_t type) {
  Bytes b(300, 0);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b[4] = 0x12;
  std::memcpy(&b[28], kGuestMac, 6);
  const uint8_t opts[] = {99, 130, 83, 99, 53, 1, type, 55, 3, 1, 3, 6, 255};
  std::memcpy(&b[236], opts, sizeof opts);
  return udp4(kBroadcast, 0, 68, ip4("255.255.255.255"), 67, b);
}

Bytes dns_query(const char* name, uint16_t qtype) {
  Bytes q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  std::string n = name;
  size_t start = 0;
  while (start < n.size()) {
    size_t dot = n.find('.', start);
    if (dot == std::string::npos) dot = n.size();
    q.push_back(uint8_t(dot - start));
    q.insert(q.end(), n.begin() + long(start), n.begin() + long(dot));
    start = dot + 1;
  }
  q.push_back(0);
  q.push_back(uint8_t(qtype >> 8));
  q.push_back(uint8_t(qtype));
  q.push_back(0);
  q.push_back(1);
  return q;
}

// IPv6 router solicitation from the link-local address (ICMPv6 checksum filled in).
Bytes ndp_rs() {
  const uint8_t all_routers_mac[6] = {0x33, 0x33, 0, 0, 0, 2};
  Bytes f = eth(all_routers_mac, 0x86dd);
  Bytes icmp = {133, 0, 0, 0, 0, 0, 0, 0};
  Bytes ip(40, 0);
  ip[0] = 0x60;
  put16(ip, 4, uint16_t(icmp.size()));
  ip[6] = 58;
  ip[7] = 255;
  ip[8] = 0xfe;
  ip[9] = 0x80;
  ip[16 + 8] = 0x50;
  ip[16 + 15] = 0x56;
  ip[24] = 0xff;
  ip[25] = 0x02;
  ip[39] = 2;
  uint32_t sum = causeway::wire::checksum_add({&ip[8], 32}) + uint32_t(icmp.size()) + 58;
  put16(icmp, 2, uint16_t(~causeway::wire::checksum_fold(causeway::wire::checksum_add(icmp, sum))));
  f.insert(f.end(), ip.begin(), ip.end());
  f.insert(f.end(), icmp.begin(), icmp.end());
  return f;
}

std::vector<Bytes> boot_frames() {
  return {arp_request("10.0.2.2"),
          dhcp(1),
          dhcp(3),
          ndp_rs(),
          udp4(kGatewayMac, ip4("10.0.2.15"), 33000, ip4("10.0.2.3"), 53, dns_query("example.com", 1)),
          udp4(kGatewayMac, ip4("10.0.2.15"), 33001, ip4("10.0.2.3"), 53, dns_query("host.causeway.internal", 28)),
          tcp4(ip4("10.0.2.2"), 8080, 0x02),
          tcp4(ip4("127.0.0.1"), 22, 0x02),
          udp4(kGatewayMac, ip4("10.0.2.15"), 5353, ip4("10.0.2.2"), 32768, {1, 2, 3}),
          udp4(kGatewayMac, ip4("10.0.2.15"), 40000, ip4("192.0.2.1"), 9, {'h', 'i'})};
}

Bytes vnet_hdr(const causeway::wire::VnetHdr& h) {
  Bytes b(causeway::wire::kVnetHdrLen, 0);
  causeway::wire::write_vnet_hdr(b, h);
  return b;
}

// ---------------------------------------------------------------- targets
void engine_seeds() {
  FuzzWriter all;
  int i = 0;
  for (const auto& f : boot_frames()) {
    FuzzWriter w;
    w.u8(2).u16(uint16_t(f.size())).bytes(f);
    write("engine_frame_fuzz", "frame" + std::to_string(i++), w.out);
    all.u8(i % 3 == 0 ? 6 : 0).u16(uint16_t(f.size())).bytes(f);
  }
  write("engine_frame_fuzz", "boot", all.out);
  // A TCP segment with its checksum left to the device (NEEDS_CSUM), and a 3-MSS super-segment.
  Bytes payload(4000, 'x');
  const Bytes seg = tcp4(ip4("10.0.2.2"), 8080, 0x18, payload);
  causeway::wire::VnetHdr h;
  h.flags = causeway::wire::kVnetFNeedsCsum;
  h.csum_start = 14 + 20;
  h.csum_offset = 16;
  FuzzWriter w;
  w.u8(1).u16(uint16_t(seg.size())).bytes(vnet_hdr(h)).bytes(seg);
  h.gso_type = causeway::wire::kVnetGsoTcp4;
  h.gso_size = 1460;
  h.hdr_len = 14 + 40;
  w.u8(3).u16(uint16_t(seg.size())).bytes(vnet_hdr(h)).bytes(seg);
  write("engine_frame_fuzz", "offload", w.out);
}

void stream_seeds() {
  Bytes stream;
  for (const auto& f : boot_frames()) {
    const uint32_t n = uint32_t(f.size());
    const uint8_t hdr[4] = {uint8_t(n >> 24), uint8_t(n >> 16), uint8_t(n >> 8), uint8_t(n)};
    stream.insert(stream.end(), hdr, hdr + 4);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  FuzzWriter w;
  w.u8(0);
  // In three reads, cut inside a header and inside a frame; a frame to the guest between.
  const size_t a = 2, b = 100;
  w.u8(0).u16(uint16_t(a)).bytes({stream.data(), a});
  w.u8(1).u16(uint16_t(boot_frames()[0].size())).bytes(boot_frames()[0]);
  w.u8(0).u16(uint16_t(b - a)).bytes({stream.data() + a, b - a});
  w.u8(2).u16(uint16_t(stream.size() - b)).bytes({stream.data() + b, stream.size() - b});
  write("stream_port_fuzz", "boot", w.out);
  FuzzWriter bad;
  bad.u8(1).u8(0).u16(8).bytes(Bytes{0, 0, 0, 65, 1, 2, 3, 4});  // a length over the small limit
  write("stream_port_fuzz", "bad_length", bad.out);
}

// Ring ops (hostile_guest.hpp).
enum : uint8_t { kOpChain = 0, kOpBuffer, kOpPost, kOpRaw, kOpAvailIdx, kOpUsed };

void net_seeds() {
  const uint64_t all = ~uint64_t{0};
  const Bytes hdr = vnet_hdr({});
  FuzzWriter w;
  w.u64(all).u8(0x88);
  w.u8(kOpPost).u8(0).u8(16).u16(2048);
  for (const auto& f : boot_frames()) {
    Bytes b = hdr;
    b.insert(b.end(), f.begin(), f.end());
    w.u8(kOpBuffer).u8(1).u16(uint16_t(b.size())).bytes(b);
  }
  w.u8(6).u8(1);
  const Bytes arp = arp_request("10.0.2.15");
  w.u8(7).u16(uint16_t(arp.size())).bytes(arp);
  // Header and frame in separate descriptors, then an indirect table of three.
  const Bytes f = boot_frames()[4];
  w.u8(kOpChain).u8(1).u8(1).u8(0).u16(uint16_t(hdr.size())).bytes(hdr).u8(0).u16(uint16_t(f.size())).bytes(f);
  w.u8(kOpChain).u8(1).u8(2).u8(8).u16(uint16_t(hdr.size())).bytes(hdr).u8(8).u16(20).bytes({f.data(), 20});
  w.u8(8).u16(uint16_t(f.size() - 20)).bytes({f.data() + 20, f.size() - 20});
  w.u8(6).u8(1).u8(12);
  write("virtio_net_fuzz", "boot", w.out);
  // A NEEDS_CSUM frame, then a receive side without MRG_RXBUF and a frame that does not fit.
  causeway::wire::VnetHdr h;
  h.flags = causeway::wire::kVnetFNeedsCsum;
  h.csum_start = 14 + 20;
  h.csum_offset = 16;
  Bytes b = vnet_hdr(h);
  const Bytes seg = tcp4(ip4("10.0.2.2"), 8080, 0x18, Bytes(1000, 'y'));
  b.insert(b.end(), seg.begin(), seg.end());
  FuzzWriter c;
  c.u64(all & ~(uint64_t{1} << 15)).u8(0x44);
  c.u8(kOpBuffer).u8(1).u16(uint16_t(b.size())).bytes(b).u8(6).u8(1);
  c.u8(kOpPost).u8(0).u8(2).u16(256).u8(7).u16(uint16_t(seg.size())).bytes(seg).u8(6).u8(0);
  write("virtio_net_fuzz", "csum", c.out);
}

Bytes vsock_packet(vsock::Op op, uint32_t src_port, uint32_t dst_port, const Bytes& payload = {}, uint32_t flags = 0) {
  vsock::Header h;
  h.src_cid = 3;
  h.dst_cid = vsock::kHostCid;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.len = uint32_t(payload.size());
  h.op = uint16_t(op);
  h.flags = flags;
  h.buf_alloc = 256 * 1024;
  Bytes b(vsock::kHdrSize);
  vsock::write_header(b, h);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void vsock_seeds() {
  FuzzWriter w;
  w.u64(~uint64_t{0}).u8(0x77);
  w.u8(7).u8(0);                         // listen on 1024
  w.u8(kOpPost).u8(0).u8(16).u16(4096);  // receive buffers
  auto send = [&](const Bytes& p) { w.u8(kOpBuffer).u8(1).u16(uint16_t(p.size())).bytes(p).u8(6).u8(1); };
  send(vsock_packet(vsock::Op::kRequest, 5000, 1024));
  send(vsock_packet(vsock::Op::kRw, 5000, 1024, Bytes(300, 'a')));
  send(vsock_packet(vsock::Op::kCreditRequest, 5000, 1024));
  w.u8(9).u8(0).u8(0).u16(5).bytes(Bytes{'h', 'e', 'l', 'l', 'o'});
  w.u8(6).u8(0);
  send(vsock_packet(vsock::Op::kCreditUpdate, 5000, 1024));
  send(vsock_packet(vsock::Op::kShutdown, 5000, 1024, {}, vsock::kShutdownSend));
  send(vsock_packet(vsock::Op::kRw, 7000, 1024, Bytes(10, 'b')));  // unknown connection: RST
  // The host connects to guest port 1025 (from 49152); the guest answers.
  w.u8(8).u8(1).u8(6).u8(0);
  send(vsock_packet(vsock::Op::kResponse, 1025, 49152));
  send(vsock_packet(vsock::Op::kRw, 1025, 49152, Bytes(100, 'c')));
  send(vsock_packet(vsock::Op::kRst, 1025, 49152));
  w.u8(12).u8(60).u8(kOpUsed).u8(0);
  write("virtio_vsock_fuzz", "session", w.out);
}

// The sequence QEMU sends a vhost-user net (or vsock) back-end, then a transmit kick.
void vhost_user_seeds() {
  constexpr uint64_t kUva = 0x7f0000000000, kRam = 1u << 20;
  for (int device = 0; device < 2; ++device) {
    FuzzWriter w;
    w.u8(uint8_t(device));
    auto msg = [&](vu::Request r, const Bytes& payload, uint8_t flags = 1) {
      w.u8(0).u32(uint32_t(r)).u8(flags).u16(uint16_t(payload.size())).bytes(payload).u8(0);
    };
    auto u64 = [](uint64_t v) {
      FuzzWriter x;
      x.u64(v);
      return x.out;
    };
    auto state = [](uint32_t i, uint32_t n) {
      FuzzWriter x;
      x.u32(i).u32(n);
      return x.out;
    };
    msg(vu::Request::kGetFeatures, {});
    msg(vu::Request::kSetOwner, {});
    msg(vu::Request::kGetProtocolFeatures, {});
    msg(vu::Request::kSetProtocolFeatures, u64(vu::kPfReplyAck | vu::kPfNetMtu | vu::kPfConfig));
    if (device == 1) {
      FuzzWriter c;
      c.u32(0).u32(8).u32(0).bytes(Bytes(8, 0));
      msg(vu::Request::kGetConfig, c.out);
    } else {
      FuzzWriter m;
      m.u32(1500);
      msg(vu::Request::kNetSetMtu, u64(1500), 1 | 8);
    }
    msg(vu::Request::kSetFeatures, u64(causeway::vmm::virtio::kFVersion1 | vu::kFProtocolFeatures |
                                       causeway::vmm::virtio::kFIndirectDesc | causeway::vmm::virtio::kFEventIdx));
    FuzzWriter mt;
    mt.u32(1).u32(0).u64(0).u64(kRam).u64(kUva).u64(0);
    msg(vu::Request::kSetMemTable, mt.out, 1 | 8);
    for (uint32_t q = 0; q < 2; ++q) {
      const uint64_t base = q * 0x4000;
      msg(vu::Request::kSetVringNum, state(q, 256));
      FuzzWriter a;
      a.u32(q).u32(0).u64(kUva + base).u64(kUva + base + 0x2000).u64(kUva + base + 0x1000).u64(0);
      msg(vu::Request::kSetVringAddr, a.out);
      msg(vu::Request::kSetVringBase, state(q, 0));
      msg(vu::Request::kSetVringCall, u64(q));
      msg(vu::Request::kSetVringKick, u64(q));
      msg(vu::Request::kSetVringEnable, state(q, 1));
    }
    // One transmit chain on ring 1: descriptor 0 → a buffer at 0x10000, avail.idx 1.
    const Bytes payload = device == 0 ? [] {
      Bytes b(causeway::wire::kVnetHdrLen, 0);
      const Bytes f = arp_request("10.0.2.2");
      b.insert(b.end(), f.begin(), f.end());
      return b;
    }()
                                      : vsock_packet(vsock::Op::kRequest, 5000, 1024);
    FuzzWriter d;
    d.u64(0x10000).u32(uint32_t(payload.size())).u16(0).u16(0);
    w.u8(2).u32(0x4000).u16(16).bytes(d.out);
    w.u8(2).u32(0x10000).u16(uint16_t(payload.size())).bytes(payload);
    FuzzWriter av;
    av.u16(0).u16(1).u16(0);
    w.u8(2).u32(0x4000 + 0x1000).u16(6).bytes(av.out);
    w.u8(1).u8(1).u8(3);
    msg(vu::Request::kGetVringBase, state(1, 0));
    msg(vu::Request::kGetVringBase, state(0, 0));
    write("vhost_user_session_fuzz", device == 0 ? "qemu_net" : "qemu_vsock", w.out);
  }
}

Bytes encode_msg(const agent::Message& m) { return agent::encode(m); }

void agent_seeds() {
  {
    FuzzWriter w;
    w.u8(0);
    auto deliver = [&](const Bytes& b) { w.u8(0).u16(uint16_t(b.size())).bytes(b); };
    agent::Ready r;
    r.agent_version = "0.1.0";
    r.kernel_release = "6.1.0";
    deliver(encode_msg(r));
    w.u8(4).u8(0).u8(0);  // run
    deliver(encode_msg(agent::Stdout{{'o', 'k', '\n'}}));
    deliver(encode_msg(agent::Stderr{{'!', '\n'}}));
    agent::ListenerAppeared l;
    l.addr = agent::IpAddr::v4(127, 0, 0, 1);
    l.port = 8080;
    deliver(encode_msg(l));
    w.u8(4).u8(1).u16(3).bytes(Bytes{'i', 'n', '\n'}).u8(4).u8(2);
    agent::Exited e;
    deliver(encode_msg(e));
    w.u8(2);
    write("agent_session_fuzz", "session", w.out);
  }
  {
    FuzzWriter w;
    w.u8(1).u8(4).u8(1).u16(8080);  // connect to guest port 8080
    const auto reply = agent::encode_relay_reply(0);
    Bytes b(reply.begin(), reply.end());
    b.insert(b.end(), {'h', 'i'});
    w.u8(0).u16(uint16_t(b.size())).bytes(b);
    w.u8(4).u8(2).u16(5).bytes(Bytes{'h', 'e', 'l', 'l', 'o'});
    w.u8(2).u8(7);
    w.u8(4).u8(1).u16(22).u8(6).u8(1);
    const auto refused = agent::encode_relay_reply(111);
    w.u8(0).u16(4).bytes(Bytes(refused.begin(), refused.end()));
    write("agent_session_fuzz", "relay_tcp", w.out);
  }
  {
    FuzzWriter w;
    w.u8(2).u8(4).u8(0).u16(53);  // a UDP flow to guest port 53
    const auto reply = agent::encode_relay_reply(0);
    Bytes b(reply.begin(), reply.end());
    agent::append_relay_datagram(Bytes{1, 2, 3}, b);
    w.u8(4).u8(1).u8(0).u16(4).bytes(Bytes{9, 9, 9, 9});
    w.u8(0).u16(uint16_t(b.size())).bytes(b);
    w.u8(4).u8(2).u8(0);
    write("agent_session_fuzz", "relay_udp", w.out);
  }
}

// One dump of the current namespace, as the kernel sends it (every datagram until NLMSG_DONE).
Bytes record_dump(uint16_t type) {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  struct {
    nlmsghdr h;
    rtgenmsg g;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = type;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.g.rtgen_family = AF_UNSPEC;
  Bytes out;
  if (fd < 0 || ::send(fd, &req, sizeof req, 0) < 0) return out;
  for (bool done = false; !done;) {
    uint8_t buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    size_t off = 0;
    while (size_t(n) - off >= sizeof(nlmsghdr)) {
      nlmsghdr h;
      std::memcpy(&h, buf + off, sizeof h);
      if (h.nlmsg_type == NLMSG_DONE) done = true;
      if (h.nlmsg_len < sizeof h) break;
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

void mirror_seeds() {
  const Bytes links = record_dump(RTM_GETLINK), addrs = record_dump(RTM_GETADDR), routes = record_dump(RTM_GETROUTE);
  auto dumps = [](FuzzWriter& w, const Bytes& l, const Bytes& a, const Bytes& r) {
    w.u32(uint32_t(l.size())).bytes(l).u32(uint32_t(a.size())).bytes(a).u32(uint32_t(r.size())).bytes(r);
  };
  FuzzWriter same;
  same.u8(1);
  dumps(same, links, addrs, routes);
  dumps(same, links, addrs, routes);
  write("mirror_netlink_fuzz", "same", same.out);
  FuzzWriter empty_guest;
  empty_guest.u8(3);
  dumps(empty_guest, links, addrs, routes);
  for (int pass = 0; pass < 3; ++pass) dumps(empty_guest, {}, {}, {});
  write("mirror_netlink_fuzz", "empty_guest", empty_guest.out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  g_root = argv[1];
  engine_seeds();
  stream_seeds();
  net_seeds();
  vsock_seeds();
  vhost_user_seeds();
  agent_seeds();
  mirror_seeds();
  return 0;
}
