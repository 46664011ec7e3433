// The agent protocol codec: round trips of every message, streams split at
// every byte, and every malformed shape a hostile peer can send.
#include "vmm/agent/protocol.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>

#include <algorithm>
#include <random>

namespace causeway::agent {
namespace {

NetConfig sample_net() {
  NetConfig c;
  c.mtu = 65520;
  c.ipv6 = true;
  c.addresses = {{IpAddr::v4(10, 0, 2, 15), 24}, {*IpAddr::parse("fd00::15"), 64}};
  c.routes = {{IpAddr::v4(0, 0, 0, 0), 0, IpAddr::v4(10, 0, 2, 2), 0},
              {*IpAddr::parse("::"), 0, *IpAddr::parse("fd00::2"), 1024},
              {IpAddr::v4(192, 168, 7, 0), 24, IpAddr{}, 5}};
  c.dns_servers = {IpAddr::v4(10, 0, 2, 3), *IpAddr::parse("fd00::3")};
  c.search_domains = {"example.org", "corp.example"};
  return c;
}

agent::Run sample_run() {
  agent::Run r;
  r.argv = {"sh", "-c", "echo hi; exit 7", ""};
  r.env = {"PATH=/bin", "TERM=xterm-256color", "EMPTY="};
  r.cwd = "/tmp";
  r.tty = true;
  r.rows = 50;
  r.cols = 132;
  return r;
}

NetConfig dhcp_config() {
  NetConfig c;
  c.dhcp = true;
  return c;
}

namespace mirror = netstack::mirror;

mirror::IpAddress mip(const char* text) { return *mirror::IpAddress::parse(text); }

// A mirrored state with one of everything: MAC-less and MAC'd links, a peer
// address, a broadcast, IPv6, a multipath route, an on-link gateway.
mirror::NetState sample_mirror_state() {
  mirror::NetState st;
  mirror::HostLink lan;
  lan.ifindex = 7;
  lan.name = "lan0";
  lan.mac = mirror::MacAddress{0x02, 0x43, 0x57, 0x4d, 0x00, 0x07};
  lan.mtu = 1500;
  lan.flags = 1;
  lan.kind = "tap";
  mirror::HostLink vpn;
  vpn.ifindex = 300;
  vpn.name = "vpn0";
  vpn.mtu = 1380;
  st.links = {lan, vpn};
  mirror::HostAddress a4;
  a4.link = "lan0";
  a4.local = mip("192.168.50.2");
  a4.prefix_len = 24;
  a4.broadcast = mip("192.168.50.255");
  a4.flags = 0x80;
  mirror::HostAddress a6;
  a6.link = "lan0";
  a6.local = mip("fd50::2");
  a6.prefix_len = 64;
  a6.scope = 0;
  a6.preferred_lifetime = 3600;
  mirror::HostAddress p2p;
  p2p.link = "vpn0";
  p2p.local = mip("10.8.0.2");
  p2p.peer = mip("10.8.0.1");
  p2p.prefix_len = 32;
  st.addresses = {a4, a6, p2p};
  mirror::HostRoute def;
  def.family = AF_INET;
  def.dst = mip("0.0.0.0");
  def.priority = 100;
  def.protocol = 4;
  def.pref_src = mip("192.168.50.2");
  def.mtu = 1400;
  def.nexthops = {{"lan0", mip("192.168.50.1"), 0}};
  mirror::HostRoute multi;
  multi.family = AF_INET;
  multi.table = 1000;
  multi.dst = mip("10.9.0.0");
  multi.dst_len = 16;
  multi.nexthops = {{"vpn0", std::nullopt, 0}, {"lan0", mip("192.168.50.9"), 4}};
  mirror::HostRoute v6;
  v6.family = AF_INET6;
  v6.dst = mip("fd50::");
  v6.dst_len = 64;
  v6.scope = 253;
  v6.nexthops = {{"lan0", std::nullopt, 0}};
  st.routes = {def, multi, v6};
  return st;
}

MirrorReport sample_report() {
  MirrorReport r;
  r.generation = 42;
  r.converged = false;
  r.changes = 9;
  r.passes = 2;
  r.errors = {{"add route 10.9.0.0/16 dev vpn0", "Network is unreachable"}};
  r.errors_total = 3;
  r.actual = sample_mirror_state();
  r.unmanaged = {"eth0", "lo"};
  return r;
}

std::vector<Message> host_samples() {
  return {Hello{},
          sample_net(),
          dhcp_config(),
          sample_run(),
          agent::Run{{"true"}, {}, "", false, 0, 0, ""},
          agent::Run{{"id", "-un"}, {}, "", false, 0, 0, "alice"},
          DnsConfig{{IpAddr::v4(10, 0, 2, 3), *IpAddr::parse("fd00::3")}, {"corp.example", "example.org"}},
          DnsConfig{},
          Stdin{{'a', 0, 0xff}},
          Stdin{},
          StdinEof{},
          Signal{2},
          Signal{64},
          Resize{24, 80},
          Shutdown{},
          MirrorApply{7, sample_mirror_state()},
          MirrorApply{}};
}

std::vector<Message> guest_samples() {
  ListenerAppeared la;
  la.proto = IpProto::Tcp;
  la.addr = *IpAddr::parse("::1");
  la.port = 8080;
  la.v6only = true;
  ListenerGone lg;
  lg.proto = IpProto::Udp;
  lg.addr = IpAddr::v4(127, 0, 0, 1);
  lg.port = 5353;
  return {Ready{kProtocolVersion, "0.1.0", "6.1.0-56-cloud-amd64", 1234},
          Stdout{std::vector<uint8_t>(kMaxChunk, 'x')},
          Stderr{{'e', '\n'}},
          Exited{Exited::Kind::Exited, 0, false},
          Exited{Exited::Kind::Exited, 255, false},
          Exited{Exited::Kind::Signaled, 9, true},
          la,
          lg,
          Log{"boot: 15 modules"},
          Error{std::string("nul\0inside", 10)},
          sample_report(),
          MirrorReport{}};
}

std::vector<uint8_t> stream_of(const std::vector<Message>& ms) {
  std::vector<uint8_t> out;
  for (const auto& m : ms) encode_into(m, out);
  return out;
}

// Decodes `bytes` fed in pieces of the given sizes (the last piece takes the rest).
std::vector<Message> decode_all(Direction dir, std::span<const uint8_t> bytes, std::vector<size_t> cuts,
                                std::error_code* err = nullptr) {
  Decoder d(dir);
  std::vector<Message> out;
  size_t off = 0;
  cuts.push_back(bytes.size());
  for (size_t cut : cuts) {
    cut = std::min(cut, bytes.size());
    if (cut < off) continue;
    d.feed(bytes.subspan(off, cut - off));
    off = cut;
    while (auto m = d.next()) out.push_back(std::move(*m));
  }
  if (err) *err = d.error();
  return out;
}

// A frame with a hand-made header.
std::vector<uint8_t> frame(uint8_t type, std::vector<uint8_t> payload, uint8_t version = kWireVersion,
                           uint16_t reserved = 0, std::optional<uint32_t> len = std::nullopt) {
  const uint32_t n = len.value_or(static_cast<uint32_t>(payload.size()));
  const uint8_t header[] = {static_cast<uint8_t>(n),
                            static_cast<uint8_t>(n >> 8),
                            static_cast<uint8_t>(n >> 16),
                            static_cast<uint8_t>(n >> 24),
                            version,
                            type,
                            static_cast<uint8_t>(reserved),
                            static_cast<uint8_t>(reserved >> 8)};
  // Byte by byte: GCC 12 warns (-Warray-bounds, falsely) on inserting an empty range.
  std::vector<uint8_t> f;
  f.reserve(sizeof header + payload.size());
  for (uint8_t b : header) f.push_back(b);
  for (uint8_t b : payload) f.push_back(b);
  return f;
}

std::error_code decode_error(Direction dir, const std::vector<uint8_t>& bytes) {
  std::error_code ec;
  const auto ms = decode_all(dir, bytes, {}, &ec);
  EXPECT_TRUE(ms.empty());
  return ec;
}

std::error_code payload_error(MessageType t, const std::vector<uint8_t>& payload) {
  std::error_code ec;
  EXPECT_FALSE(decode_payload(t, payload, ec).has_value());
  return ec;
}

// ---------------------------------------------------------------- round trips
TEST(AgentProtocol, EveryHostMessageRoundTrips) {
  for (const auto& m : host_samples()) {
    SCOPED_TRACE(std::string(name_of(type_of(m))));
    EXPECT_FALSE(validate(m));
    const auto bytes = encode(m);
    EXPECT_EQ(bytes.size(), kHeaderSize + (bytes[0] | bytes[1] << 8 | bytes[2] << 16));
    const auto out = decode_all(Direction::HostToGuest, bytes, {});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], m);
  }
}

TEST(AgentProtocol, EveryGuestMessageRoundTrips) {
  for (const auto& m : guest_samples()) {
    SCOPED_TRACE(std::string(name_of(type_of(m))));
    EXPECT_FALSE(validate(m));
    const auto out = decode_all(Direction::GuestToHost, encode(m), {});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], m);
  }
}

TEST(AgentProtocol, HeaderIsLittleEndianLengthVersionTypeReserved) {
  const auto b = encode(Signal{15});
  ASSERT_EQ(b.size(), kHeaderSize + 4);
  EXPECT_EQ((std::vector<uint8_t>(b.begin(), b.begin() + 8)),
            (std::vector<uint8_t>{4, 0, 0, 0, kWireVersion, 0x06, 0, 0}));
  EXPECT_EQ((std::vector<uint8_t>(b.begin() + 8, b.end())), (std::vector<uint8_t>{15, 0, 0, 0}));
}

TEST(AgentProtocol, StreamSplitAtEveryByteYieldsTheSameMessages) {
  for (Direction dir : {Direction::HostToGuest, Direction::GuestToHost}) {
    const auto samples = dir == Direction::HostToGuest ? host_samples() : guest_samples();
    const auto bytes = stream_of(samples);
    for (size_t cut = 0; cut <= bytes.size(); ++cut) {
      std::error_code ec;
      const auto out = decode_all(dir, bytes, {cut}, &ec);
      ASSERT_FALSE(ec) << "cut at " << cut;
      ASSERT_EQ(out, samples) << "cut at " << cut;
    }
  }
}

TEST(AgentProtocol, StreamFedOneByteAtATimeYieldsTheSameMessages) {
  const auto samples = host_samples();
  const auto bytes = stream_of(samples);
  std::vector<size_t> cuts;
  for (size_t i = 1; i < bytes.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(decode_all(Direction::HostToGuest, bytes, cuts), samples);
}

TEST(AgentProtocol, EncodeChunksSplitsLargeOutputAtTheChunkLimit) {
  std::vector<uint8_t> data(3 * kMaxChunk + 5);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> bytes;
  encode_chunks(MessageType::Stdout, data, bytes);
  const auto out = decode_all(Direction::GuestToHost, bytes, {});
  ASSERT_EQ(out.size(), 4u);
  std::vector<uint8_t> joined;
  for (const auto& m : out) {
    const auto& d = std::get<Stdout>(m).data;
    EXPECT_LE(d.size(), kMaxChunk);
    joined.insert(joined.end(), d.begin(), d.end());
  }
  EXPECT_EQ(joined, data);
  bytes.clear();
  encode_chunks(MessageType::Stdin, {}, bytes);
  EXPECT_TRUE(bytes.empty());
}

TEST(AgentProtocol, IpAddrParsesAndPrintsBothFamilies) {
  EXPECT_EQ(IpAddr::parse("10.0.2.15")->to_string(), "10.0.2.15");
  EXPECT_EQ(IpAddr::parse("fd00::1")->family, 6);
  EXPECT_EQ(IpAddr::parse("fd00::1")->to_string(), "fd00::1");
  EXPECT_FALSE(IpAddr::parse("10.0.2"));
  EXPECT_FALSE(IpAddr::parse("not an address at all, and quite a long one too, longer than INET6_ADDRSTRLEN"));
  EXPECT_EQ(IpAddr{}.to_string(), "");
}

// ---------------------------------------------------------------- header errors
TEST(AgentProtocol, OversizedLengthIsRejectedFromTheHeaderAlone) {
  // Only the 8 header bytes: the decoder must not wait for (or buffer) 4 GiB.
  const auto bytes = frame(0x42, {}, kWireVersion, 0, 0xffffffffu);
  EXPECT_EQ(decode_error(Direction::GuestToHost, bytes), ProtocolError::Oversized);
  const auto just_over = frame(0x42, {}, kWireVersion, 0, static_cast<uint32_t>(kMaxPayload + 1));
  EXPECT_EQ(decode_error(Direction::GuestToHost, just_over), ProtocolError::Oversized);
}

TEST(AgentProtocol, MirrorMessagesMayBeLargerThanOthersButAreBoundedToo) {
  // A plan larger than kMaxPayload (many addresses) travels; 2 MiB + 1 does not.
  MirrorApply big;
  big.desired = sample_mirror_state();
  for (uint32_t i = 0; big.desired.addresses.size() < 8000; ++i) {
    mirror::HostAddress a;
    a.link = "lan0";
    a.local.family = AF_INET6;
    a.local.bytes = mip("fd51::").bytes;
    a.local.bytes[12] = static_cast<uint8_t>(i >> 24);
    a.local.bytes[13] = static_cast<uint8_t>(i >> 16);
    a.local.bytes[14] = static_cast<uint8_t>(i >> 8);
    a.local.bytes[15] = static_cast<uint8_t>(i);
    a.prefix_len = 128;
    big.desired.addresses.push_back(a);
  }
  std::vector<uint8_t> bytes;
  ASSERT_FALSE(encode_checked(big, bytes));
  ASSERT_GT(bytes.size(), kMaxPayload);
  std::error_code ec;
  const auto ms = decode_all(Direction::HostToGuest, bytes, {}, &ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(std::get<MirrorApply>(ms[0]), big);
  EXPECT_EQ(decode_error(Direction::HostToGuest,
                         frame(0x0a, {}, kWireVersion, 0, static_cast<uint32_t>(kMaxMirrorPayload + 1))),
            ProtocolError::Oversized);
  EXPECT_EQ(decode_error(Direction::GuestToHost,
                         frame(0x49, {}, kWireVersion, 0, static_cast<uint32_t>(kMaxMirrorPayload + 1))),
            ProtocolError::Oversized);
  // Other types keep their own limit.
  EXPECT_EQ(
      decode_error(Direction::HostToGuest, frame(0x03, {}, kWireVersion, 0, static_cast<uint32_t>(kMaxPayload + 1))),
      ProtocolError::Oversized);
}

TEST(AgentProtocol, OversizedMirrorStateIsRefusedByEncodeCheckedNotAborted) {
  MirrorApply huge;
  huge.desired = sample_mirror_state();
  // Within every count cap but over 2 MiB in total: long multipath routes.
  for (uint32_t i = 0; huge.desired.routes.size() < kMaxMirrorRoutes; ++i) {
    mirror::HostRoute r = huge.desired.routes[1];
    r.priority = i;
    r.nexthops.assign(kMaxNextHops, {"lan0", mip("192.168.50.9"), 0});
    huge.desired.routes.push_back(r);
  }
  for (uint32_t i = 0; huge.desired.addresses.size() < kMaxMirrorAddresses; ++i) {
    mirror::HostAddress a = huge.desired.addresses[1];
    a.local.bytes[14] = static_cast<uint8_t>(i >> 8);
    a.local.bytes[15] = static_cast<uint8_t>(i);
    huge.desired.addresses.push_back(a);
  }
  std::vector<uint8_t> out{1, 2, 3};
  EXPECT_EQ(encode_checked(huge, out), ProtocolError::Oversized);
  EXPECT_EQ(out.size(), 3u);  // nothing appended
}

TEST(AgentProtocol, InvalidMirrorStatesFailValidationAndTheDecoder) {
  auto with = [](auto change) {
    MirrorApply m{1, sample_mirror_state()};
    change(m.desired);
    return m;
  };
  const std::vector<std::pair<const char*, MirrorApply>> bad = {
      {"slash in a name", with([](mirror::NetState& s) { s.links[0].name = "a/b"; })},
      {"dot-dot name", with([](mirror::NetState& s) { s.links[0].name = ".."; })},
      {"empty name", with([](mirror::NetState& s) { s.links[1].name = ""; })},
      {"colon in a name", with([](mirror::NetState& s) { s.links[1].name = "eth0:1"; })},
      {"duplicate names", with([](mirror::NetState& s) { s.links[1].name = "lan0"; })},
      {"address on an unknown link", with([](mirror::NetState& s) { s.addresses[0].link = "nope"; })},
      {"prefix too long", with([](mirror::NetState& s) { s.addresses[0].prefix_len = 33; })},
      {"peer of another family", with([](mirror::NetState& s) { s.addresses[2].peer = mip("fd00::1"); })},
      {"route dst family", with([](mirror::NetState& s) { s.routes[0].dst = mip("::"); })},
      {"gateway of another family",
       with([](mirror::NetState& s) { s.routes[0].nexthops[0].gateway = mip("fe80::1"); })},
      {"next hop on an unknown link", with([](mirror::NetState& s) { s.routes[1].nexthops[0].link = "wg9"; })},
      {"too many next hops", with([](mirror::NetState& s) {
         s.routes[1].nexthops.assign(kMaxNextHops + 1, {"lan0", std::nullopt, 0});
       })},
      {"mtu over 65535", with([](mirror::NetState& s) { s.links[0].mtu = 70000; })},
  };
  const auto good = encode(MirrorApply{1, sample_mirror_state()});
  for (const auto& [what, m] : bad) {
    SCOPED_TRACE(what);
    EXPECT_TRUE(validate(m));
    std::vector<uint8_t> out;
    EXPECT_TRUE(encode_checked(m, out));
    EXPECT_TRUE(out.empty());
  }
  // The same violations on the wire: patch the encoded good message's first link name
  // ("lan0" → "la/0"); the decoder refuses it as a bad value.
  auto bytes = good;
  const std::string needle = "lan0";
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  it[2] = '/';
  EXPECT_EQ(decode_error(Direction::HostToGuest, bytes), ProtocolError::BadValue);
  // A guest's report naming an address on a link it does not list.
  MirrorReport r = sample_report();
  r.actual.links.pop_back();  // vpn0 gone, its address and next hop remain
  EXPECT_TRUE(validate(r));
}

TEST(AgentProtocol, BadWireVersionIsRejected) {
  EXPECT_EQ(decode_error(Direction::GuestToHost, frame(0x47, {0, 0}, 0)), ProtocolError::BadVersion);
  EXPECT_EQ(decode_error(Direction::GuestToHost, frame(0x47, {0, 0}, 2)), ProtocolError::BadVersion);
}

TEST(AgentProtocol, ReservedHeaderBitsAreRejected) {
  EXPECT_EQ(decode_error(Direction::GuestToHost, frame(0x47, {0, 0}, kWireVersion, 1)), ProtocolError::BadReserved);
}

TEST(AgentProtocol, UnknownTypesAreRejected) {
  for (uint8_t t : {0x00, 0x08, 0x0c, 0x3f, 0x40, 0x4a, 0x7f, 0x80, 0xff}) {
    SCOPED_TRACE(int{t});
    EXPECT_EQ(decode_error(Direction::GuestToHost, frame(t, {})), ProtocolError::UnknownType);
    EXPECT_EQ(decode_error(Direction::HostToGuest, frame(t, {})), ProtocolError::UnknownType);
  }
}

TEST(AgentProtocol, MessagesOfTheOtherDirectionAreRejected) {
  // A guest must not be able to send Run to the host, nor the host Stdout to the guest.
  EXPECT_EQ(decode_error(Direction::GuestToHost, encode(sample_run())), ProtocolError::WrongDirection);
  EXPECT_EQ(decode_error(Direction::GuestToHost, encode(Shutdown{})), ProtocolError::WrongDirection);
  EXPECT_EQ(decode_error(Direction::HostToGuest, encode(Stdout{{'x'}})), ProtocolError::WrongDirection);
  EXPECT_EQ(decode_error(Direction::HostToGuest, encode(Exited{})), ProtocolError::WrongDirection);
}

TEST(AgentProtocol, DecoderStaysBrokenAndDropsItsBufferAfterAnError) {
  Decoder d(Direction::GuestToHost);
  auto bad = frame(0x99, {});
  const auto good = encode(Log{"after"});
  bad.insert(bad.end(), good.begin(), good.end());
  d.feed(bad);
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.error(), ProtocolError::UnknownType);
  EXPECT_EQ(d.buffered(), 0u);
  d.feed(good);
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(AgentProtocol, GoodMessagesBeforeABadOneAreStillDelivered) {
  auto bytes = encode(Log{"one"});
  const auto bad = frame(0x42, {}, 9);
  bytes.insert(bytes.end(), bad.begin(), bad.end());
  std::error_code ec;
  const auto out = decode_all(Direction::GuestToHost, bytes, {}, &ec);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<Log>(out[0]).text, "one");
  EXPECT_EQ(ec, ProtocolError::BadVersion);
}

TEST(AgentProtocol, PartialFrameIsBufferedNotAnError) {
  const auto bytes = encode(Log{"partial"});
  Decoder d(Direction::GuestToHost);
  d.feed(std::span(bytes).first(bytes.size() - 1));
  EXPECT_FALSE(d.next());
  EXPECT_FALSE(d.error());
  EXPECT_EQ(d.buffered(), bytes.size() - 1);
}

// ---------------------------------------------------------------- payload errors
TEST(AgentProtocol, EveryTruncationOfEveryPayloadIsRejected) {
  for (Direction dir : {Direction::HostToGuest, Direction::GuestToHost}) {
    for (const auto& m : dir == Direction::HostToGuest ? host_samples() : guest_samples()) {
      const auto bytes = encode(m);
      const std::span<const uint8_t> payload = std::span(bytes).subspan(kHeaderSize);
      for (size_t n = 0; n < payload.size(); ++n) {
        std::error_code ec;
        EXPECT_FALSE(decode_payload(type_of(m), payload.first(n), ec)) << name_of(type_of(m)) << " truncated to " << n;
        EXPECT_TRUE(ec);
        // And framed with the shorter length, through the Decoder.
        std::vector<uint8_t> f(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(kHeaderSize + n));
        f[0] = static_cast<uint8_t>(n);
        f[1] = static_cast<uint8_t>(n >> 8);
        f[2] = static_cast<uint8_t>(n >> 16);
        EXPECT_TRUE(decode_error(dir, f));
      }
    }
  }
}

TEST(AgentProtocol, TrailingBytesAfterTheLastFieldAreRejected) {
  auto payload = encode(Signal{9});
  payload.erase(payload.begin(), payload.begin() + kHeaderSize);
  payload.push_back(0);
  EXPECT_EQ(payload_error(MessageType::Signal, payload), ProtocolError::TrailingBytes);
  EXPECT_EQ(payload_error(MessageType::Shutdown, {0}), ProtocolError::TrailingBytes);
}

TEST(AgentProtocol, HugeCountsAreRejectedBeforeAllocating) {
  // argv count 65535: over kMaxArgs.
  EXPECT_EQ(payload_error(MessageType::Run, {0xff, 0xff}), ProtocolError::TooMany);
  // argv count 1000 (allowed) but no bytes behind it.
  EXPECT_EQ(payload_error(MessageType::Run, {0xe8, 0x03}), ProtocolError::Truncated);
  // NetConfig with 65535 routes.
  EXPECT_EQ(payload_error(MessageType::NetConfig, {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}), ProtocolError::TooMany);
  // 9 DNS servers: over kMaxDnsServers.
  EXPECT_EQ(payload_error(MessageType::NetConfig, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0}), ProtocolError::TooMany);
}

TEST(AgentProtocol, OverlongFieldsAreRejected) {
  // Stdout declaring 4 GiB.
  EXPECT_EQ(payload_error(MessageType::Stdout, {0xff, 0xff, 0xff, 0xff}), ProtocolError::FieldTooLong);
  // Stdout of kMaxChunk + 1 bytes, all present.
  std::vector<uint8_t> p = {0x01, 0x80, 0, 0};
  p.resize(4 + kMaxChunk + 1, 'x');
  EXPECT_EQ(payload_error(MessageType::Stdout, p), ProtocolError::FieldTooLong);
  // Log text over kMaxTextLen.
  std::vector<uint8_t> log = {0x01, 0x10};
  log.resize(2 + 4097, 'x');
  EXPECT_EQ(payload_error(MessageType::Log, log), ProtocolError::FieldTooLong);
  // A kernel release over kMaxVersionLen.
  std::vector<uint8_t> ready = {1, 0, 0, 0, 0x01, 0x01};
  ready.resize(ready.size() + 257, 'r');
  EXPECT_EQ(payload_error(MessageType::Ready, ready), ProtocolError::FieldTooLong);
}

TEST(AgentProtocol, OutOfRangeValuesAreRejected) {
  auto ex = [](uint8_t kind, int32_t v, uint8_t core) {
    const auto u = static_cast<uint32_t>(v);
    return std::vector<uint8_t>{kind,
                                static_cast<uint8_t>(u),
                                static_cast<uint8_t>(u >> 8),
                                static_cast<uint8_t>(u >> 16),
                                static_cast<uint8_t>(u >> 24),
                                core};
  };
  EXPECT_EQ(payload_error(MessageType::Exited, ex(2, 0, 0)), ProtocolError::BadValue);    // unknown kind
  EXPECT_EQ(payload_error(MessageType::Exited, ex(0, 256, 0)), ProtocolError::BadValue);  // status > 255
  EXPECT_EQ(payload_error(MessageType::Exited, ex(0, -1, 0)), ProtocolError::BadValue);
  EXPECT_EQ(payload_error(MessageType::Exited, ex(1, 0, 0)), ProtocolError::BadValue);  // signal 0
  EXPECT_EQ(payload_error(MessageType::Exited, ex(1, 65, 0)), ProtocolError::BadValue);
  EXPECT_EQ(payload_error(MessageType::Exited, ex(0, 0, 2)), ProtocolError::BadValue);  // bool 2
  EXPECT_EQ(payload_error(MessageType::Signal, {0, 0, 0, 0}), ProtocolError::BadValue);
  EXPECT_EQ(payload_error(MessageType::Signal, {65, 0, 0, 0}), ProtocolError::BadValue);
  // Listener with address family 5.
  EXPECT_EQ(payload_error(MessageType::ListenerAppeared, {6, 5, 0, 0}), ProtocolError::BadValue);
  // Listener with no address (family 0 is only allowed for a route's gateway).
  EXPECT_EQ(payload_error(MessageType::ListenerAppeared, {6, 0, 0x50, 0, 0}), ProtocolError::BadValue);
}

TEST(AgentProtocol, InvalidMessagesFailValidationAndTheDecoder) {
  auto check = [](const Message& m, ProtocolError want) {
    SCOPED_TRACE(std::string(name_of(type_of(m))));
    EXPECT_EQ(validate(m), want);
  };
  NetConfig c = sample_net();
  c.addresses[0].prefix_len = 33;
  check(c, ProtocolError::BadValue);
  c = sample_net();
  c.routes[0].gateway = *IpAddr::parse("fd00::2");  // IPv6 gateway for an IPv4 route
  check(c, ProtocolError::BadValue);
  c = sample_net();
  c.search_domains = {"evil.example\noptions ndots:15"};
  check(c, ProtocolError::BadValue);
  c = sample_net();
  c.mtu = 70000;
  check(c, ProtocolError::BadValue);
  c = sample_net();
  c.dns_servers.resize(kMaxDnsServers + 1, IpAddr::v4(1, 1, 1, 1));
  check(c, ProtocolError::TooMany);
  agent::Run r = sample_run();
  r.argv.clear();
  check(r, ProtocolError::BadValue);
  r = sample_run();
  r.argv[0] = std::string("s\0h", 3);
  check(r, ProtocolError::BadValue);
  r = sample_run();
  r.env = {"NOEQUALS"};
  check(r, ProtocolError::BadValue);
  r = sample_run();
  r.env = {"=value"};
  check(r, ProtocolError::BadValue);
  r = sample_run();
  r.cwd.assign(kMaxPathLen + 1, 'd');
  check(r, ProtocolError::FieldTooLong);
  r = sample_run();
  r.user.assign(kMaxUserLen + 1, 'u');
  check(r, ProtocolError::FieldTooLong);
  for (const char* bad : {"root:x", "ro\not", "a\nb"}) {
    r = sample_run();
    r.user = bad;
    check(r, ProtocolError::BadValue);
  }
  r = sample_run();
  r.user = std::string("ro\0ot", 5);
  check(r, ProtocolError::BadValue);
  DnsConfig d{{IpAddr::v4(10, 0, 2, 3)}, {"ok.example"}};
  d.search = {"evil.example options"};
  check(d, ProtocolError::BadValue);
  d.search = {""};
  check(d, ProtocolError::BadValue);
  d.search = std::vector<std::string>(kMaxSearchDomains + 1, "a.example");
  check(d, ProtocolError::TooMany);
  d.search = {std::string(kMaxDomainLen + 1, 'a')};
  check(d, ProtocolError::FieldTooLong);
  d.search = {};
  d.servers = {IpAddr{}};  // no address
  check(d, ProtocolError::BadValue);
  d.servers.assign(kMaxDnsServers + 1, IpAddr::v4(1, 1, 1, 1));
  check(d, ProtocolError::TooMany);
  check(Stdin{std::vector<uint8_t>(kMaxChunk + 1)}, ProtocolError::FieldTooLong);
  check(Signal{0}, ProtocolError::BadValue);
  check(Exited{Exited::Kind::Exited, 300, false}, ProtocolError::BadValue);

  // What validate() rejects, the decoder rejects too: bypass the encoder's check by
  // patching a valid encoding.
  auto bytes = encode(agent::Run{{"sh"}, {"A=b"}, "/", false, 0, 0, ""});
  // env entry "A=b" → "A_b": no '='.
  const auto it = std::search(bytes.begin(), bytes.end(), std::begin("A=b"), std::end("A=b") - 1);
  ASSERT_NE(it, bytes.end());
  *(it + 1) = '_';
  EXPECT_EQ(decode_error(Direction::HostToGuest, bytes), ProtocolError::BadValue);
  // Run.user "al:ce" (the encoder would refuse it).
  bytes = encode(agent::Run{{"sh"}, {}, "/", false, 0, 0, "alice"});
  const auto u = std::search(bytes.begin(), bytes.end(), std::begin("alice"), std::end("alice") - 1);
  ASSERT_NE(u, bytes.end());
  *(u + 2) = ':';
  EXPECT_EQ(decode_error(Direction::HostToGuest, bytes), ProtocolError::BadValue);
  // A DnsConfig search domain with a space.
  bytes = encode(DnsConfig{{}, {"a.example"}});
  const auto dot = std::find(bytes.begin() + kHeaderSize, bytes.end(), '.');
  ASSERT_NE(dot, bytes.end());
  *dot = ' ';
  EXPECT_EQ(decode_error(Direction::HostToGuest, bytes), ProtocolError::BadValue);
}

TEST(AgentProtocol, Version3WireLayoutOfRunUserAndDnsConfig) {
  EXPECT_EQ(kProtocolVersion, 3);
  EXPECT_EQ(kAgentExecPort, 1026u);
  EXPECT_EQ(static_cast<uint8_t>(MessageType::DnsConfig), 0x0b);
  EXPECT_EQ(direction_of(MessageType::DnsConfig), Direction::HostToGuest);
  // Run's user is its last field: str "bob" after u16 cols.
  const auto run = encode(agent::Run{{"x"}, {}, "", false, 0, 0, "bob"});
  ASSERT_GE(run.size(), 5u);
  EXPECT_EQ(std::vector<uint8_t>(run.end() - 5, run.end()), (std::vector<uint8_t>{3, 0, 'b', 'o', 'b'}));
  // DnsConfig: list<ipaddr> then list<str>.
  const auto dns = encode(DnsConfig{{IpAddr::v4(10, 0, 2, 3)}, {"a.b"}});
  EXPECT_EQ(std::vector<uint8_t>(dns.begin() + kHeaderSize, dns.end()),
            (std::vector<uint8_t>{1, 0, 4, 10, 0, 2, 3, 1, 0, 3, 0, 'a', '.', 'b'}));
  // The guest never accepts its own direction's DnsConfig on the host side.
  EXPECT_EQ(decode_error(Direction::GuestToHost, dns), ProtocolError::WrongDirection);
}

TEST(AgentProtocolDeathTest, EncodingAnInvalidMessageIsABugAndAborts) {
  EXPECT_DEATH((void)encode(Signal{0}), "refusing to encode an invalid Signal");
}

// ---------------------------------------------------------------- hostile input
TEST(AgentProtocol, RandomBytesNeverCrashTheDecoder) {
  std::mt19937 rng(12345);  // fixed seed: deterministic
  for (int round = 0; round < 2000; ++round) {
    Decoder d(round % 2 ? Direction::GuestToHost : Direction::HostToGuest);
    std::vector<uint8_t> junk(rng() % 512);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    // Make a valid-looking header half of the time so payload decoders get exercised.
    if (junk.size() >= kHeaderSize && round % 2 == 0) {
      const auto n = static_cast<uint32_t>(junk.size() - kHeaderSize);
      junk[0] = static_cast<uint8_t>(n);
      junk[1] = static_cast<uint8_t>(n >> 8);
      junk[2] = junk[3] = 0;
      junk[4] = kWireVersion;
      junk[6] = junk[7] = 0;
    }
    d.feed(junk);
    while (d.next()) {}
    EXPECT_LE(d.buffered(), junk.size());
  }
}

TEST(AgentProtocol, MutatedValidFramesDecodeOrFailCleanly) {
  std::mt19937 rng(777);
  const auto samples = guest_samples();
  for (int round = 0; round < 5000; ++round) {
    auto bytes = encode(samples[rng() % samples.size()]);
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < flips; ++i) bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    std::error_code ec;
    const auto out = decode_all(Direction::GuestToHost, bytes, {rng() % bytes.size()}, &ec);
    // Either a valid message (re-encodable: it passed validation) or an error.
    for (const auto& m : out) EXPECT_FALSE(validate(m));
  }
}

}  // namespace
}  // namespace causeway::agent
