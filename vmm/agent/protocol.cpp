// Encoder and validating decoder of the agent protocol; the wire format and
// the validation policy are documented in protocol.hpp.
//
// Decoding reads through Reader, which bounds-checks every access against the
// payload span and turns the first failure into a sticky error: field decoders
// read on regardless and the message is discarded at the end if anything went
// wrong, which keeps each decoder a straight list of fields.
#include "vmm/agent/protocol.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

namespace causeway::agent {
namespace mirror = netstack::mirror;
namespace {

// ---------------------------------------------------------------- writer
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v));
    out_.push_back(static_cast<uint8_t>(v >> 8));
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void bytes(std::span<const uint8_t> b) {
    u32(static_cast<uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void str(std::string_view s) {
    u16(static_cast<uint16_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void count(size_t n) { u16(static_cast<uint16_t>(n)); }
  void ip(const IpAddr& a) {
    u8(a.family);
    const size_t n = a.family == 4 ? 4 : a.family == 6 ? 16 : 0;
    out_.insert(out_.end(), a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(n));
  }
  // Mirrored mode's addresses (AF_INET/AF_INET6) travel as ipaddr (4/6).
  void mip(const mirror::IpAddress& a) {
    IpAddr x;
    x.family = a.family == AF_INET ? 4 : a.family == AF_INET6 ? 6 : 0;
    x.bytes = a.bytes;
    ip(x);
  }
  void mip(const std::optional<mirror::IpAddress>& a) {
    if (a) {
      mip(*a);
    } else {
      u8(0);
    }
  }
  void state(const mirror::NetState& st) {
    count(st.links.size());
    for (const auto& l : st.links) {
      i32(l.ifindex);
      str(l.name);
      boolean(l.mac.has_value());
      if (l.mac) out_.insert(out_.end(), l.mac->begin(), l.mac->end());
      u32(l.mtu);
      u32(l.flags);
      str(l.kind);
    }
    count(st.addresses.size());
    for (const auto& a : st.addresses) {
      str(a.link);
      mip(a.local);
      mip(a.peer);
      u8(a.prefix_len);
      mip(a.broadcast);
      u32(a.flags);
      u8(a.scope);
      u32(a.preferred_lifetime);
    }
    count(st.routes.size());
    for (const auto& r : st.routes) {
      u8(r.family == AF_INET6 ? 6 : 4);
      u32(r.table);
      u8(r.type);
      mip(r.dst);
      u8(r.dst_len);
      u8(r.tos);
      u32(r.priority);
      u8(r.scope);
      u8(r.protocol);
      mip(r.pref_src);
      u32(r.mtu);
      u32(r.flags);
      count(r.nexthops.size());
      for (const auto& nh : r.nexthops) {
        str(nh.link);
        mip(nh.gateway);
        u32(nh.flags);
      }
    }
  }

 private:
  std::vector<uint8_t>& out_;
};

// ---------------------------------------------------------------- reader
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> p) : p_(p) {}

  uint8_t u8() {
    if (!need(1)) return 0;
    return p_[off_++];
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    const uint16_t v = static_cast<uint16_t>(p_[off_] | (p_[off_ + 1] << 8));
    off_ += 2;
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{p_[off_ + static_cast<size_t>(i)]} << (8 * i);
    off_ += 4;
    return v;
  }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  bool boolean() {
    const uint8_t v = u8();
    if (v > 1) fail(ProtocolError::BadValue);
    return v == 1;
  }
  std::vector<uint8_t> bytes(size_t cap) {
    const uint32_t n = u32();
    if (failed()) return {};
    if (n > cap) return fail(ProtocolError::FieldTooLong), std::vector<uint8_t>{};
    if (!need(n)) return {};
    std::vector<uint8_t> v(p_.begin() + static_cast<std::ptrdiff_t>(off_),
                           p_.begin() + static_cast<std::ptrdiff_t>(off_ + n));
    off_ += n;
    return v;
  }
  // A text field; `no_nul` for strings that end up in execve() or files.
  std::string str(size_t cap, bool no_nul = true) {
    const uint16_t n = u16();
    if (failed()) return {};
    if (n > cap) return fail(ProtocolError::FieldTooLong), std::string{};
    if (!need(n)) return {};
    std::string s(reinterpret_cast<const char*>(p_.data() + off_), n);  // SAFETY: need(n) checked the range
    off_ += n;
    if (no_nul && s.find('\0') != std::string::npos) fail(ProtocolError::BadValue);
    return s;
  }
  // A list count, checked against its cap and against the bytes left (each
  // element takes at least `min_elem` bytes), so a huge count allocates nothing.
  size_t count(size_t cap, size_t min_elem) {
    const uint16_t n = u16();
    if (failed()) return 0;
    if (n > cap) return fail(ProtocolError::TooMany), 0;
    if (size_t{n} * min_elem > p_.size() - off_) return fail(ProtocolError::Truncated), 0;
    return n;
  }
  IpAddr ip(bool allow_none) {
    IpAddr a;
    a.family = u8();
    if (failed()) return a;
    size_t n = 0;
    if (a.family == 4) {
      n = 4;
    } else if (a.family == 6) {
      n = 16;
    } else if (a.family != 0 || !allow_none) {
      fail(ProtocolError::BadValue);
      return a;
    }
    if (!need(n)) return a;
    std::copy_n(p_.begin() + static_cast<std::ptrdiff_t>(off_), n, a.bytes.begin());
    off_ += n;
    return a;
  }
  IpProto proto() {
    const uint8_t v = u8();
    if (v != static_cast<uint8_t>(IpProto::Tcp) && v != static_cast<uint8_t>(IpProto::Udp))
      fail(ProtocolError::BadValue);
    return static_cast<IpProto>(v);
  }

  std::optional<mirror::IpAddress> mip(bool allow_none) {
    const IpAddr a = ip(allow_none);
    if (failed() || a.family == 0) return std::nullopt;
    mirror::IpAddress m;
    m.family = a.family == 4 ? AF_INET : AF_INET6;
    m.bytes = a.bytes;
    return m;
  }
  mirror::NetState state();

  void check(bool ok, ProtocolError e = ProtocolError::BadValue) {
    if (!ok) fail(e);
  }
  void fail(ProtocolError e) {
    if (!err_) err_ = make_error_code(e);
  }
  [[nodiscard]] bool failed() const { return static_cast<bool>(err_); }
  // Call after the last field.
  std::error_code finish() {
    if (!err_ && off_ != p_.size()) err_ = make_error_code(ProtocolError::TrailingBytes);
    return err_;
  }

 private:
  bool need(size_t n) {
    if (failed()) return false;
    if (p_.size() - off_ < n) return fail(ProtocolError::Truncated), false;
    return true;
  }

  std::span<const uint8_t> p_;
  size_t off_ = 0;
  std::error_code err_;
};

constexpr size_t kMinIp = 1;  // family byte of "none"
// Smallest wire sizes of a mirrored state's elements (empty strings, IPv4, no options).
constexpr size_t kMinMirrorLink = 4 + 2 + 1 + 4 + 4 + 2;
constexpr size_t kMinMirrorAddress = 2 + 5 + 1 + 1 + 1 + 4 + 1 + 4;
constexpr size_t kMinMirrorRoute = 1 + 4 + 1 + 5 + 1 + 1 + 4 + 1 + 1 + 1 + 4 + 4 + 2;
constexpr size_t kMinNextHop = 2 + 1 + 4;
constexpr size_t kMinOpError = 2 + 2;

mirror::NetState Reader::state() {
  mirror::NetState st;
  for (size_t n = count(kMaxMirrorLinks, kMinMirrorLink); n > 0 && !failed(); --n) {
    mirror::HostLink l;
    l.ifindex = i32();
    l.name = str(kMaxLinkName);
    if (boolean()) {
      mirror::MacAddress mac{};
      for (auto& b : mac) b = u8();
      l.mac = mac;
    }
    l.mtu = u32();
    l.flags = u32();
    l.kind = str(kMaxLinkKind);
    st.links.push_back(std::move(l));
  }
  for (size_t n = count(kMaxMirrorAddresses, kMinMirrorAddress); n > 0 && !failed(); --n) {
    mirror::HostAddress a;
    a.link = str(kMaxLinkName);
    if (auto ip = mip(false)) a.local = *ip;
    a.peer = mip(true);
    a.prefix_len = u8();
    a.broadcast = mip(true);
    a.flags = u32();
    a.scope = u8();
    a.preferred_lifetime = u32();
    st.addresses.push_back(std::move(a));
  }
  for (size_t n = count(kMaxMirrorRoutes, kMinMirrorRoute); n > 0 && !failed(); --n) {
    mirror::HostRoute r;
    const uint8_t fam = u8();
    check(fam == 4 || fam == 6);
    r.family = fam == 6 ? AF_INET6 : AF_INET;
    r.table = u32();
    r.type = u8();
    if (auto ip = mip(false)) r.dst = *ip;
    r.dst_len = u8();
    r.tos = u8();
    r.priority = u32();
    r.scope = u8();
    r.protocol = u8();
    r.pref_src = mip(true);
    r.mtu = u32();
    r.flags = u32();
    for (size_t k = count(kMaxNextHops, kMinNextHop); k > 0 && !failed(); --k) {
      mirror::NextHop nh;
      nh.link = str(kMaxLinkName);
      nh.gateway = mip(true);
      nh.flags = u32();
      r.nexthops.push_back(std::move(nh));
    }
    st.routes.push_back(std::move(r));
  }
  if (!failed()) {
    if (auto ec = check_mirror_state(st)) fail(static_cast<ProtocolError>(ec.value()));
  }
  return st;
}
constexpr size_t kMinStr = 2;  // u16 length
constexpr size_t kMinAddress = 1 + 4 + 1;
constexpr size_t kMinRoute = (1 + 4) + 1 + 1 + 4;

bool valid_prefix(const IpAddr& a, uint8_t prefix) { return prefix <= (a.family == 4 ? 32 : 128); }

// Run.user is looked up in /etc/passwd, a ':'- and line-separated file: neither can be in a name.
bool user_ok(std::string_view u) { return u.find_first_of(std::string_view(":\n\0", 3)) == std::string_view::npos; }

// ---------------------------------------------------------------- per-type rules
// Each message type has one visitor for validation and one for encoding; the
// decoder is a switch further down. They list fields in wire order.

struct Validator {
  std::error_code ec;
  void fail(ProtocolError e) {
    if (!ec) ec = make_error_code(e);
  }
  void str(std::string_view s, size_t cap, bool no_nul = true) {
    if (s.size() > cap) fail(ProtocolError::FieldTooLong);
    if (no_nul && s.find('\0') != std::string_view::npos) fail(ProtocolError::BadValue);
  }
  void ip(const IpAddr& a, bool allow_none) {
    if (!(a.family == 4 || a.family == 6 || (allow_none && a.family == 0))) fail(ProtocolError::BadValue);
  }
  void proto(IpProto p) {
    if (p != IpProto::Tcp && p != IpProto::Udp) fail(ProtocolError::BadValue);
  }

  void dns(const std::vector<IpAddr>& servers, const std::vector<std::string>& search) {
    if (servers.size() > kMaxDnsServers || search.size() > kMaxSearchDomains) fail(ProtocolError::TooMany);
    for (const auto& d : servers) ip(d, false);
    for (const auto& s : search) {
      str(s, kMaxDomainLen);
      // resolv.conf is line- and space-separated: a domain with either would inject options.
      if (s.empty() || s.find_first_of(" \t\r\n") != std::string::npos) fail(ProtocolError::BadValue);
    }
  }

  void operator()(const Hello&) {}
  void operator()(const NetConfig& c) {
    if (c.mtu > kMaxMtu) fail(ProtocolError::BadValue);
    if (c.addresses.size() > kMaxAddresses || c.routes.size() > kMaxRoutes) fail(ProtocolError::TooMany);
    for (const auto& a : c.addresses) {
      ip(a.addr, false);
      if (!valid_prefix(a.addr, a.prefix_len)) fail(ProtocolError::BadValue);
    }
    for (const auto& r : c.routes) {
      ip(r.dst, false);
      ip(r.gateway, true);
      if (!valid_prefix(r.dst, r.prefix_len)) fail(ProtocolError::BadValue);
      if (!r.gateway.none() && r.gateway.family != r.dst.family) fail(ProtocolError::BadValue);
    }
    dns(c.dns_servers, c.search_domains);
  }
  void operator()(const DnsConfig& d) { dns(d.servers, d.search); }
  void operator()(const Run& r) {
    if (r.argv.empty()) fail(ProtocolError::BadValue);
    if (r.argv.size() > kMaxArgs || r.env.size() > kMaxEnv) fail(ProtocolError::TooMany);
    for (const auto& a : r.argv) str(a, kMaxArgLen);
    for (const auto& e : r.env) {
      str(e, kMaxArgLen);
      if (e.find('=') == std::string::npos || e.front() == '=') fail(ProtocolError::BadValue);
    }
    str(r.cwd, kMaxPathLen);
    str(r.user, kMaxUserLen);
    if (!user_ok(r.user)) fail(ProtocolError::BadValue);
  }
  void operator()(const Stdin& s) {
    if (s.data.size() > kMaxChunk) fail(ProtocolError::FieldTooLong);
  }
  void operator()(const StdinEof&) {}
  void operator()(const Signal& s) {
    if (s.signo < 1 || s.signo > kMaxSignal) fail(ProtocolError::BadValue);
  }
  void operator()(const Resize&) {}
  void operator()(const Shutdown&) {}
  void operator()(const Ready& r) {
    str(r.agent_version, kMaxVersionLen);
    str(r.kernel_release, kMaxVersionLen);
  }
  void operator()(const Stdout& s) {
    if (s.data.size() > kMaxChunk) fail(ProtocolError::FieldTooLong);
  }
  void operator()(const Stderr& s) {
    if (s.data.size() > kMaxChunk) fail(ProtocolError::FieldTooLong);
  }
  void operator()(const Exited& e) {
    if (e.kind == Exited::Kind::Exited) {
      if (e.value < 0 || e.value > 255) fail(ProtocolError::BadValue);
    } else if (e.kind == Exited::Kind::Signaled) {
      if (e.value < 1 || e.value > kMaxSignal) fail(ProtocolError::BadValue);
    } else {
      fail(ProtocolError::BadValue);
    }
  }
  void listener(const Listener& l) {
    proto(l.proto);
    ip(l.addr, false);
  }
  void operator()(const ListenerAppeared& l) { listener(l); }
  void operator()(const ListenerGone& l) { listener(l); }
  // Log/Error text goes to the host's log only: NULs are harmless there.
  void operator()(const Log& l) { str(l.text, kMaxTextLen, false); }
  void operator()(const Error& e) { str(e.text, kMaxTextLen, false); }
  void state(const mirror::NetState& st) {
    if (auto e = check_mirror_state(st); e && !ec) ec = e;
  }
  void operator()(const MirrorApply& m) { state(m.desired); }
  void operator()(const MirrorReport& m) {
    if (m.errors.size() > kMaxMirrorErrors || m.unmanaged.size() > kMaxUnmanagedLinks) fail(ProtocolError::TooMany);
    for (const auto& e : m.errors) {
      str(e.op, kMaxMirrorErrorText, false);
      str(e.error, kMaxMirrorErrorText, false);
    }
    for (const auto& u : m.unmanaged) str(u, kMaxLinkName);
    state(m.actual);
  }
};

struct Encoder {
  Writer w;

  void operator()(const Hello& h) { w.u16(h.version); }
  void operator()(const NetConfig& c) {
    w.boolean(c.dhcp);
    w.u32(c.mtu);
    w.boolean(c.ipv6);
    w.boolean(c.internal);
    w.count(c.addresses.size());
    for (const auto& a : c.addresses) {
      w.ip(a.addr);
      w.u8(a.prefix_len);
    }
    w.count(c.routes.size());
    for (const auto& r : c.routes) {
      w.ip(r.dst);
      w.u8(r.prefix_len);
      w.ip(r.gateway);
      w.u32(r.metric);
    }
    w.count(c.dns_servers.size());
    for (const auto& d : c.dns_servers) w.ip(d);
    w.count(c.search_domains.size());
    for (const auto& s : c.search_domains) w.str(s);
  }
  void operator()(const Run& r) {
    w.count(r.argv.size());
    for (const auto& a : r.argv) w.str(a);
    w.count(r.env.size());
    for (const auto& e : r.env) w.str(e);
    w.str(r.cwd);
    w.boolean(r.tty);
    w.u16(r.rows);
    w.u16(r.cols);
    w.str(r.user);
  }
  void operator()(const DnsConfig& d) {
    w.count(d.servers.size());
    for (const auto& s : d.servers) w.ip(s);
    w.count(d.search.size());
    for (const auto& s : d.search) w.str(s);
  }
  void operator()(const Stdin& s) { w.bytes(s.data); }
  void operator()(const StdinEof&) {}
  void operator()(const Signal& s) { w.i32(s.signo); }
  void operator()(const Resize& r) {
    w.u16(r.rows);
    w.u16(r.cols);
  }
  void operator()(const Shutdown&) {}
  void operator()(const Ready& r) {
    w.u16(r.version);
    w.str(r.agent_version);
    w.str(r.kernel_release);
    w.u32(r.uptime_ms);
  }
  void operator()(const Stdout& s) { w.bytes(s.data); }
  void operator()(const Stderr& s) { w.bytes(s.data); }
  void operator()(const Exited& e) {
    w.u8(static_cast<uint8_t>(e.kind));
    w.i32(e.value);
    w.boolean(e.core_dumped);
  }
  void listener(const Listener& l) {
    w.u8(static_cast<uint8_t>(l.proto));
    w.ip(l.addr);
    w.u16(l.port);
    w.boolean(l.v6only);
  }
  void operator()(const ListenerAppeared& l) { listener(l); }
  void operator()(const ListenerGone& l) { listener(l); }
  void operator()(const Log& l) { w.str(l.text); }
  void operator()(const Error& e) { w.str(e.text); }
  void operator()(const MirrorApply& m) {
    w.u32(m.generation);
    w.state(m.desired);
  }
  void operator()(const MirrorReport& m) {
    w.u32(m.generation);
    w.boolean(m.converged);
    w.boolean(m.read_failed);
    w.u32(m.changes);
    w.u16(m.passes);
    w.count(m.errors.size());
    for (const auto& e : m.errors) {
      w.str(e.op);
      w.str(e.error);
    }
    w.u32(m.errors_total);
    w.state(m.actual);
    w.count(m.unmanaged.size());
    for (const auto& u : m.unmanaged) w.str(u);
  }
};

Listener read_listener(Reader& r) {
  Listener l;
  l.proto = r.proto();
  l.addr = r.ip(false);
  l.port = r.u16();
  l.v6only = r.boolean();
  return l;
}

void read_dns(Reader& r, std::vector<IpAddr>& servers, std::vector<std::string>& search) {
  for (size_t n = r.count(kMaxDnsServers, kMinIp); n > 0 && !r.failed(); --n) servers.push_back(r.ip(false));
  for (size_t n = r.count(kMaxSearchDomains, kMinStr); n > 0 && !r.failed(); --n) {
    auto s = r.str(kMaxDomainLen);
    r.check(!s.empty() && s.find_first_of(" \t\r\n") == std::string::npos);
    search.push_back(std::move(s));
  }
}

bool known_type(uint8_t t) {
  constexpr uint8_t kReserved = 0x08;  // was ConnectGuestPort; never sent
  if (t == kReserved) return false;
  return (t >= static_cast<uint8_t>(MessageType::Hello) && t <= static_cast<uint8_t>(MessageType::DnsConfig)) ||
         (t >= static_cast<uint8_t>(MessageType::Ready) && t <= static_cast<uint8_t>(MessageType::MirrorReport));
}

class ProtocolCategory final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "causeway-agent-protocol"; }
  [[nodiscard]] std::string message(int ev) const override {
    switch (static_cast<ProtocolError>(ev)) {
      case ProtocolError::Ok: return "ok";
      case ProtocolError::Oversized: return "message length over the limit";
      case ProtocolError::BadVersion: return "unsupported wire version";
      case ProtocolError::BadReserved: return "reserved header bits set";
      case ProtocolError::UnknownType: return "unknown message type";
      case ProtocolError::WrongDirection: return "message type not allowed in this direction";
      case ProtocolError::Truncated: return "field runs past the end of the message";
      case ProtocolError::TrailingBytes: return "bytes after the last field";
      case ProtocolError::FieldTooLong: return "field over its length limit";
      case ProtocolError::TooMany: return "list over its count limit";
      case ProtocolError::BadValue: return "field value out of range";
    }
    return "unknown protocol error";
  }
};

}  // namespace

// ---------------------------------------------------------------- IpAddr
std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  if (text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  IpAddr a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
    a.family = 6;
    return a;
  }
  return std::nullopt;
}

std::string IpAddr::to_string() const {
  if (family != 4 && family != 6) return {};
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

// ---------------------------------------------------------------- metadata
MessageType type_of(const Message& m) {
  static constexpr MessageType kTypes[] = {
      MessageType::Hello,        MessageType::NetConfig, MessageType::Run,
      MessageType::Stdin,        MessageType::StdinEof,  MessageType::Signal,
      MessageType::Resize,       MessageType::Shutdown,  MessageType::MirrorApply,
      MessageType::DnsConfig,    MessageType::Ready,     MessageType::Stdout,
      MessageType::Stderr,       MessageType::Exited,    MessageType::ListenerAppeared,
      MessageType::ListenerGone, MessageType::Log,       MessageType::Error,
      MessageType::MirrorReport};
  static_assert(std::size(kTypes) == std::variant_size_v<Message>);
  return kTypes[m.index()];
}

Direction direction_of(MessageType t) {
  return static_cast<uint8_t>(t) < 0x40 ? Direction::HostToGuest : Direction::GuestToHost;
}

std::string_view name_of(MessageType t) {
  switch (t) {
    case MessageType::Hello: return "Hello";
    case MessageType::NetConfig: return "NetConfig";
    case MessageType::Run: return "Run";
    case MessageType::Stdin: return "Stdin";
    case MessageType::StdinEof: return "StdinEof";
    case MessageType::Signal: return "Signal";
    case MessageType::Resize: return "Resize";
    case MessageType::Shutdown: return "Shutdown";
    case MessageType::Ready: return "Ready";
    case MessageType::Stdout: return "Stdout";
    case MessageType::Stderr: return "Stderr";
    case MessageType::Exited: return "Exited";
    case MessageType::ListenerAppeared: return "ListenerAppeared";
    case MessageType::ListenerGone: return "ListenerGone";
    case MessageType::Log: return "Log";
    case MessageType::Error: return "Error";
    case MessageType::MirrorApply: return "MirrorApply";
    case MessageType::DnsConfig: return "DnsConfig";
    case MessageType::MirrorReport: return "MirrorReport";
  }
  return "?";
}

size_t max_payload(MessageType t) {
  return t == MessageType::MirrorApply || t == MessageType::MirrorReport ? kMaxMirrorPayload : kMaxPayload;
}

std::error_code check_mirror_state(const mirror::NetState& st) {
  const auto bad = make_error_code(ProtocolError::BadValue);
  if (st.links.size() > kMaxMirrorLinks || st.addresses.size() > kMaxMirrorAddresses ||
      st.routes.size() > kMaxMirrorRoutes)
    return make_error_code(ProtocolError::TooMany);
  // A name that becomes a path in /proc/sys/net/ipv6/conf/NAME/ in the guest: the kernel's
  // own rules (dev_valid_name) plus no ':' (alias syntax).
  auto name_ok = [](const std::string& n) {
    if (n.empty() || n.size() > kMaxLinkName || n == "." || n == "..") return false;
    return n.find_first_of(std::string_view("/: \t\r\n\0", 7)) == std::string::npos;
  };
  auto family_ok = [](int f) { return f == AF_INET || f == AF_INET6; };
  std::set<std::string> names;
  for (const auto& l : st.links) {
    if (!name_ok(l.name) || l.kind.size() > kMaxLinkKind || l.mtu > kMaxMtu) return bad;
    if (!names.insert(l.name).second) return bad;  // two links of one name
  }
  for (const auto& a : st.addresses) {
    if (!names.count(a.link) || !family_ok(a.local.family) || a.prefix_len > a.local.max_prefix()) return bad;
    if (a.peer && a.peer->family != a.local.family) return bad;
    if (a.broadcast && a.broadcast->family != a.local.family) return bad;
  }
  for (const auto& r : st.routes) {
    if (!family_ok(r.family) || r.dst.family != r.family || r.dst_len > r.dst.max_prefix()) return bad;
    if (r.pref_src && r.pref_src->family != r.family) return bad;
    if (r.nexthops.size() > kMaxNextHops) return make_error_code(ProtocolError::TooMany);
    for (const auto& nh : r.nexthops) {
      if (!names.count(nh.link)) return bad;
      if (nh.gateway && nh.gateway->family != r.family) return bad;
    }
  }
  return {};
}

const std::error_category& protocol_category() {
  static const ProtocolCategory category;  // stateless: the std::error_category idiom
  return category;
}

// ---------------------------------------------------------------- encode
std::error_code validate(const Message& m) {
  Validator v;
  std::visit(v, m);
  return v.ec;
}

void encode_into(const Message& m, std::vector<uint8_t>& out) {
  if (auto ec = validate(m)) {
    // Our own bug (see the header): never send what the peer must reject.
    std::fprintf(stderr, "causeway agent protocol: refusing to encode an invalid %s: %s\n",
                 std::string(name_of(type_of(m))).c_str(), ec.message().c_str());
    std::abort();
  }
  const size_t start = out.size();
  Writer w(out);
  w.u32(0);  // payload length, patched below
  w.u8(kWireVersion);
  w.u8(static_cast<uint8_t>(type_of(m)));
  w.u16(0);
  std::visit(Encoder{Writer(out)}, m);
  const size_t len = out.size() - start - kHeaderSize;
  if (len > max_payload(type_of(m))) {
    // validate() bounds every field, but not their sum (a Run of 1024 × 16 KiB args).
    std::fprintf(stderr, "causeway agent protocol: %s of %zu bytes is over its payload limit\n",
                 std::string(name_of(type_of(m))).c_str(), len);
    std::abort();
  }
  for (int i = 0; i < 4; ++i) out[start + static_cast<size_t>(i)] = static_cast<uint8_t>(len >> (8 * i));
}

std::error_code encode_checked(const Message& m, std::vector<uint8_t>& out) {
  if (auto ec = validate(m)) return ec;
  const size_t start = out.size();
  Writer w(out);
  w.u32(0);
  w.u8(kWireVersion);
  w.u8(static_cast<uint8_t>(type_of(m)));
  w.u16(0);
  std::visit(Encoder{Writer(out)}, m);
  const size_t len = out.size() - start - kHeaderSize;
  if (len > max_payload(type_of(m))) {
    out.resize(start);
    return make_error_code(ProtocolError::Oversized);
  }
  for (int i = 0; i < 4; ++i) out[start + static_cast<size_t>(i)] = static_cast<uint8_t>(len >> (8 * i));
  return {};
}

std::vector<uint8_t> encode(const Message& m) {
  std::vector<uint8_t> out;
  encode_into(m, out);
  return out;
}

void encode_chunks(MessageType type, std::span<const uint8_t> data, std::vector<uint8_t>& out) {
  for (size_t off = 0; off < data.size(); off += kMaxChunk) {
    const auto piece = data.subspan(off, std::min(kMaxChunk, data.size() - off));
    std::vector<uint8_t> bytes(piece.begin(), piece.end());
    switch (type) {
      case MessageType::Stdin: encode_into(Stdin{std::move(bytes)}, out); break;
      case MessageType::Stdout: encode_into(Stdout{std::move(bytes)}, out); break;
      case MessageType::Stderr: encode_into(Stderr{std::move(bytes)}, out); break;
      default:
        std::fprintf(stderr, "causeway agent protocol: encode_chunks of %s\n", std::string(name_of(type)).c_str());
        std::abort();
    }
  }
}

// ---------------------------------------------------------------- decode
std::optional<Message> decode_payload(MessageType type, std::span<const uint8_t> payload, std::error_code& ec) {
  Reader r(payload);
  Message m;
  switch (type) {
    case MessageType::Hello: m = Hello{r.u16()}; break;
    case MessageType::NetConfig: {
      NetConfig c;
      c.dhcp = r.boolean();
      c.mtu = r.u32();
      r.check(c.mtu <= kMaxMtu);
      c.ipv6 = r.boolean();
      c.internal = r.boolean();
      for (size_t n = r.count(kMaxAddresses, kMinAddress); n > 0 && !r.failed(); --n) {
        NetAddress a;
        a.addr = r.ip(false);
        a.prefix_len = r.u8();
        r.check(valid_prefix(a.addr, a.prefix_len));
        c.addresses.push_back(a);
      }
      for (size_t n = r.count(kMaxRoutes, kMinRoute); n > 0 && !r.failed(); --n) {
        NetRoute rt;
        rt.dst = r.ip(false);
        rt.prefix_len = r.u8();
        rt.gateway = r.ip(true);
        rt.metric = r.u32();
        r.check(valid_prefix(rt.dst, rt.prefix_len));
        r.check(rt.gateway.none() || rt.gateway.family == rt.dst.family);
        c.routes.push_back(rt);
      }
      read_dns(r, c.dns_servers, c.search_domains);
      m = std::move(c);
      break;
    }
    case MessageType::DnsConfig: {
      DnsConfig d;
      read_dns(r, d.servers, d.search);
      m = std::move(d);
      break;
    }
    case MessageType::Run: {
      Run run;
      for (size_t n = r.count(kMaxArgs, kMinStr); n > 0 && !r.failed(); --n) run.argv.push_back(r.str(kMaxArgLen));
      r.check(!run.argv.empty());
      for (size_t n = r.count(kMaxEnv, kMinStr); n > 0 && !r.failed(); --n) {
        auto e = r.str(kMaxArgLen);
        r.check(e.find('=') != std::string::npos && e.front() != '=');
        run.env.push_back(std::move(e));
      }
      run.cwd = r.str(kMaxPathLen);
      run.tty = r.boolean();
      run.rows = r.u16();
      run.cols = r.u16();
      run.user = r.str(kMaxUserLen);
      r.check(user_ok(run.user));
      m = std::move(run);
      break;
    }
    case MessageType::Stdin: m = Stdin{r.bytes(kMaxChunk)}; break;
    case MessageType::StdinEof: m = StdinEof{}; break;
    case MessageType::Signal: {
      const int32_t s = r.i32();
      r.check(s >= 1 && s <= kMaxSignal);
      m = Signal{s};
      break;
    }
    case MessageType::Resize: {
      Resize z;
      z.rows = r.u16();
      z.cols = r.u16();
      m = z;
      break;
    }
    case MessageType::Shutdown: m = Shutdown{}; break;
    case MessageType::Ready: {
      Ready rd;
      rd.version = r.u16();
      rd.agent_version = r.str(kMaxVersionLen);
      rd.kernel_release = r.str(kMaxVersionLen);
      rd.uptime_ms = r.u32();
      m = std::move(rd);
      break;
    }
    case MessageType::Stdout: m = Stdout{r.bytes(kMaxChunk)}; break;
    case MessageType::Stderr: m = Stderr{r.bytes(kMaxChunk)}; break;
    case MessageType::Exited: {
      Exited e;
      const uint8_t kind = r.u8();
      e.value = r.i32();
      e.core_dumped = r.boolean();
      if (kind == 0) {
        e.kind = Exited::Kind::Exited;
        r.check(e.value >= 0 && e.value <= 255);
      } else if (kind == 1) {
        e.kind = Exited::Kind::Signaled;
        r.check(e.value >= 1 && e.value <= kMaxSignal);
      } else {
        r.fail(ProtocolError::BadValue);
      }
      m = e;
      break;
    }
    case MessageType::ListenerAppeared: m = ListenerAppeared{read_listener(r)}; break;
    case MessageType::ListenerGone: m = ListenerGone{read_listener(r)}; break;
    case MessageType::Log: m = Log{r.str(kMaxTextLen, false)}; break;
    case MessageType::Error: m = Error{r.str(kMaxTextLen, false)}; break;
    case MessageType::MirrorApply: {
      MirrorApply a;
      a.generation = r.u32();
      a.desired = r.state();
      m = std::move(a);
      break;
    }
    case MessageType::MirrorReport: {
      MirrorReport rep;
      rep.generation = r.u32();
      rep.converged = r.boolean();
      rep.read_failed = r.boolean();
      rep.changes = r.u32();
      rep.passes = r.u16();
      for (size_t n = r.count(kMaxMirrorErrors, kMinOpError); n > 0 && !r.failed(); --n) {
        MirrorOpError e;
        e.op = r.str(kMaxMirrorErrorText, false);
        e.error = r.str(kMaxMirrorErrorText, false);
        rep.errors.push_back(std::move(e));
      }
      rep.errors_total = r.u32();
      rep.actual = r.state();
      for (size_t n = r.count(kMaxUnmanagedLinks, kMinStr); n > 0 && !r.failed(); --n)
        rep.unmanaged.push_back(r.str(kMaxLinkName));
      m = std::move(rep);
      break;
    }
    default: r.fail(ProtocolError::UnknownType); break;
  }
  ec = r.finish();
  if (ec) return std::nullopt;
  return m;
}

void Decoder::feed(std::span<const uint8_t> bytes) {
  if (error_) return;  // broken: nothing more is parsed, nothing more is kept
  // Drop consumed frames before growing, so the buffer stays one frame plus one feed.
  if (pos_ > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

std::optional<Message> Decoder::next() {
  if (error_) return std::nullopt;
  const size_t avail = buf_.size() - pos_;
  if (avail < kHeaderSize) return std::nullopt;
  const uint8_t* h = buf_.data() + pos_;
  const uint32_t len = uint32_t{h[0]} | (uint32_t{h[1]} << 8) | (uint32_t{h[2]} << 16) | (uint32_t{h[3]} << 24);
  const uint8_t version = h[4];
  const uint8_t type = h[5];
  const uint16_t reserved = static_cast<uint16_t>(h[6] | (h[7] << 8));
  // Header checks first: a bad header is known before its payload arrives.
  if (len > kMaxMirrorPayload) {
    error_ = make_error_code(ProtocolError::Oversized);
  } else if (version != kWireVersion) {
    error_ = make_error_code(ProtocolError::BadVersion);
  } else if (reserved != 0) {
    error_ = make_error_code(ProtocolError::BadReserved);
  } else if (!known_type(type)) {
    error_ = make_error_code(ProtocolError::UnknownType);
  } else if (direction_of(static_cast<MessageType>(type)) != accept_) {
    error_ = make_error_code(ProtocolError::WrongDirection);
  } else if (len > max_payload(static_cast<MessageType>(type))) {
    error_ = make_error_code(ProtocolError::Oversized);
  }
  if (error_) {
    buf_.clear();
    buf_.shrink_to_fit();
    pos_ = 0;
    return std::nullopt;
  }
  if (avail - kHeaderSize < len) return std::nullopt;
  const std::span<const uint8_t> payload(buf_.data() + pos_ + kHeaderSize, len);
  std::error_code ec;
  auto m = decode_payload(static_cast<MessageType>(type), payload, ec);
  if (!m) {
    error_ = ec;
    buf_.clear();
    buf_.shrink_to_fit();
    pos_ = 0;
    return std::nullopt;
  }
  pos_ += kHeaderSize + len;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  ++messages_;
  return m;
}

}  // namespace causeway::agent
