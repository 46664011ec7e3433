// The TCP fast path; theory of operation in tcp_fast_path.hpp.
#include "netstack/tcp_fast_path.hpp"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/byte_order.hpp"
#include "netstack/packet.hpp"

namespace causeway::netstack {
namespace asio = boost::asio;

namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;
constexpr auto kRtoMin = std::chrono::milliseconds(200);
constexpr auto kRtoMax = std::chrono::milliseconds(3000);
constexpr size_t kPeekBudget = 512 * 1024;  // bytes peeked per readable event (fairness between flows)
constexpr size_t kToHostCap = 256 * 1024;   // guest bytes we hold for a full host socket, per flow
constexpr int kSendBuffer = 4 << 20;        // SO_SNDBUF of host sockets (tcp_wmem's maximum)

// RFC 9293 §3.4 sequence arithmetic (modulo 2^32).
bool seq_lt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }
bool seq_le(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) <= 0; }

using wire::load_be16;
using wire::load_be32;
using wire::store_be16;
using wire::store_be32;

// Does this kernel let us peek TCP data at an offset (SO_PEEK_OFF on TCP: Linux 6.10)?
bool tcp_peek_off_supported() {
  static const bool ok = [] {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    int zero = 0;
    const bool r = ::setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) == 0;
    ::close(s);
    return r;
  }();
  return ok;
}

}  // namespace

std::optional<TcpSegment> parse_tcp_segment(std::span<const uint8_t> f) {
  if (f.size() < kEthHeaderLen + 20) return std::nullopt;
  TcpSegment s;
  std::copy_n(f.begin() + 6, 6, s.src_mac.begin());
  const uint16_t et = load_be16(f.data() + 12);
  size_t l4 = 0, l4_len = 0;
  const uint8_t* ip = f.data() + kEthHeaderLen;
  if (et == kEtherTypeIpv4) {
    const size_t ihl = (ip[0] & 0x0f) * 4u;
    const size_t total = load_be16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6 || total < ihl + 20 || kEthHeaderLen + total > f.size())
      return std::nullopt;
    if ((load_be16(ip + 6) & 0x3fff) != 0) return std::nullopt;  // a fragment: libslirp reassembles
    s.family = AF_INET;
    std::memcpy(s.src.data(), ip + 12, 4);
    std::memcpy(s.dst.data(), ip + 16, 4);
    l4 = kEthHeaderLen + ihl;
    l4_len = total - ihl;
  } else if (et == kEtherTypeIpv6) {
    if (f.size() < kEthHeaderLen + 40 + 20 || (ip[0] >> 4) != 6 || ip[6] != 6) return std::nullopt;
    const size_t plen = load_be16(ip + 4);
    if (plen < 20 || kEthHeaderLen + 40 + plen > f.size()) return std::nullopt;
    s.family = AF_INET6;
    std::memcpy(s.src.data(), ip + 8, 16);
    std::memcpy(s.dst.data(), ip + 24, 16);
    l4 = kEthHeaderLen + 40;
    l4_len = plen;
  } else {
    return std::nullopt;
  }
  const uint8_t* t = f.data() + l4;
  const size_t doff = (t[12] >> 4) * 4u;
  if (doff < 20 || doff > l4_len) return std::nullopt;
  s.sport = load_be16(t);
  s.dport = load_be16(t + 2);
  s.seq = load_be32(t + 4);
  s.ack = load_be32(t + 8);
  s.flags = t[13];
  s.window = load_be16(t + 14);
  if (s.flags & kSyn) {
    // Options (RFC 9293 §3.2): MSS (kind 2), window scale (kind 3, RFC 7323 §2.2).
    for (size_t i = 20; i < doff;) {
      const uint8_t kind = t[i];
      if (kind == 0) break;
      if (kind == 1) {
        ++i;
        continue;
      }
      if (i + 1 >= doff || t[i + 1] < 2 || i + t[i + 1] > doff) break;
      if (kind == 2 && t[i + 1] == 4) s.mss = load_be16(t + i + 2);
      if (kind == 3 && t[i + 1] == 3) s.wscale = static_cast<int8_t>(std::min<uint8_t>(t[i + 2], 14));
      i += t[i + 1];
    }
  }
  s.payload = f.subspan(l4 + doff, l4_len - doff);
  return s;
}

struct TcpFastPath::Flow {
  explicit Flow(asio::io_context& io) : rto_timer(io) {}
  Key key{};
  Mac guest_mac{};
  std::unique_ptr<asio::posix::stream_descriptor> desc;  // owns the host socket
  asio::steady_timer rto_timer;
  enum class State { kConnecting, kSynSent, kSynToGuest, kEstablished } state = State::kConnecting;
  uint32_t rcv_nxt = 0;                        // next guest byte expected
  uint32_t iss = 0, snd_una = 0, snd_nxt = 0;  // our side, toward the guest
  uint32_t g_wnd = 0;                          // guest's window, scaled
  uint8_t g_wscale = 0;
  bool wscale_ok = false;  // both sides sent the option
  uint16_t g_mss = 536;
  int sndbuf = 0;
  bool guest_fin = false;        // FIN received (SHUT_WR once to_host is flushed)
  bool shut_wr = false;          // shutdown(SHUT_WR) done
  std::vector<uint8_t> to_host;  // acknowledged guest bytes the socket has not taken yet
  size_t to_host_off = 0;
  bool host_eof = false;  // the host socket has no more data
  bool fin_sent = false, fin_acked = false;
  bool read_wait = false, write_wait = false;
  bool window_closed = false;  // we advertised 0
  bool ack_pending = false;    // in-order data taken, its ACK not sent yet (coalesced)
  int dupacks = 0;
  int rto_failures = 0;  // timeouts since the guest last sent an ACK
  std::chrono::milliseconds rto = kRtoMin;
  uint64_t rto_gen = 0;
  bool dead = false;

  [[nodiscard]] int fd() const { return desc ? desc->native_handle() : -1; }
  [[nodiscard]] uint32_t data_in_flight() const { return snd_nxt - snd_una - (fin_sent && !fin_acked ? 1 : 0); }
};

TcpFastPath::TcpFastPath(asio::io_context& io, const NatConfig& cfg, SendToGuest send, size_t max_flows,
                         int max_retries)
    : TcpFastPath(io, nat_tcp_policy(cfg), std::move(send), max_flows, max_retries) {}

TcpFastPath::TcpFastPath(asio::io_context& io, TcpFastPathPolicy policy, SendToGuest send, size_t max_flows,
                         int max_retries)
    : io_(io), policy_(std::move(policy)), send_(std::move(send)), max_flows_(max_flows), max_retries_(max_retries) {
  seg_buf_.resize(kPeekBudget);
}

TcpFastPath::~TcpFastPath() {
  *alive_ = false;
  for (auto& [k, f] : flows_) {
    f->dead = true;
    f->rto_timer.cancel();
    if (f->desc) f->desc->close();
  }
}

std::shared_ptr<TcpFastPath::Flow> TcpFastPath::shared(const Flow& f) const {
  auto it = flows_.find(f.key);
  return it != flows_.end() && it->second.get() == &f ? it->second : nullptr;
}

TcpFastPathStats TcpFastPath::stats() const {
  TcpFastPathStats s = stats_;
  s.flows = flows_.size();
  return s;
}

bool TcpFastPath::available() { return tcp_peek_off_supported(); }

bool TcpFastPath::reject(std::span<const uint8_t> frame) {
  auto s = parse_tcp_segment(frame);
  if (!s) return false;
  if (!(s->flags & kRst)) send_rst_for(*s);
  return true;
}

void TcpFastPath::reset_all() {
  std::vector<std::shared_ptr<Flow>> all;
  all.reserve(flows_.size());
  for (auto& [k, f] : flows_) all.push_back(f);
  for (auto& f : all) abort_flow(*f, /*rst_guest=*/true, /*rst_host=*/true);
}

bool TcpFastPath::on_guest_frame(std::span<const uint8_t> frame) {
  auto s = parse_tcp_segment(frame);
  if (!s) return false;
  Key k{s->family, s->src, s->dst, s->sport, s->dport};
  if (auto it = flows_.find(k); it != flows_.end()) {
    ++stats_.segments_in;
    auto f = it->second;  // keeps it alive through the handling
    on_segment(*f, *s);
    return true;
  }
  if ((s->flags & (kSyn | kAck | kRst)) == kSyn) return on_syn(*s);
  return false;
}

// ---------------------------------------------------------------- opening
TcpFastPathPolicy nat_tcp_policy(const NatConfig& cfg) {
  TcpFastPathPolicy p;
  p.our_mac = gateway_mac(cfg);
  p.mtu = cfg.mtu;
  p.route = [cfg](const TcpSegment& s) -> std::optional<TcpConnectPlan> {
    TcpConnectPlan plan;
    if (s.family == AF_INET) {
      in_addr d{};
      std::memcpy(&d, s.dst.data(), 4);
      const uint32_t h = ntohl(d.s_addr);
      if ((h >> 28) >= 14 || h == 0xffffffff) return std::nullopt;  // multicast, reserved, broadcast: not TCP's
      if (d.s_addr == cfg.gateway.s_addr) {
        if (!cfg.host_loopback) return std::nullopt;  // libslirp answers (it refuses too)
        d.s_addr = htonl(INADDR_LOOPBACK);
      } else if ((d.s_addr & cfg.netmask.s_addr) == (cfg.network.s_addr & cfg.netmask.s_addr)) {
        return std::nullopt;  // the DNS address, the shadow, other virtual hosts: libslirp's
      }
      auto* a = reinterpret_cast<sockaddr_in*>(&plan.dst);
      a->sin_family = AF_INET;
      a->sin_addr = d;
      a->sin_port = htons(s.dport);
      plan.dst_len = sizeof *a;
    } else {
      in6_addr d{};
      std::memcpy(&d, s.dst.data(), 16);
      if (d.s6_addr[0] == 0xff) return std::nullopt;
      if (std::memcmp(&d, &cfg.gateway6, 16) == 0) {
        if (!cfg.host_loopback) return std::nullopt;
        d = in6addr_loopback;
      } else if (std::memcmp(&d, &cfg.prefix6, 8) == 0) {
        return std::nullopt;  // fd00::3 (DNS) and other virtual hosts
      }
      auto* a = reinterpret_cast<sockaddr_in6*>(&plan.dst);
      a->sin6_family = AF_INET6;
      a->sin6_addr = d;
      a->sin6_port = htons(s.dport);
      plan.dst_len = sizeof *a;
    }
    return plan;
  };
  return p;
}

bool TcpFastPath::on_syn(const TcpSegment& s) {
  const auto plan = policy_.route ? policy_.route(s) : std::nullopt;
  if (!plan) return false;
  if (flows_.size() >= max_flows_) {
    ++stats_.flows_full;
    send_rst_for(s);  // RFC 9293 §3.10.7.1 style: the guest sees a refused connection, not a hang
    return true;
  }
  auto f = std::make_shared<Flow>(io_);
  f->key = Key{s.family, s.src, s.dst, s.sport, s.dport};
  f->guest_mac = s.src_mac;
  f->rcv_nxt = s.seq + 1;
  f->iss = initial_sequence(f->key);
  f->g_wnd = s.window;  // a SYN's window is never scaled (RFC 7323 §2.2)
  f->wscale_ok = s.wscale >= 0;
  f->g_wscale = f->wscale_ok ? static_cast<uint8_t>(s.wscale) : 0;
  f->g_mss = s.mss ? s.mss : 536;
  const int fd = ::socket(s.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ++stats_.connect_refused;
    send_rst_for(s);
    return true;
  }
  if (plan->bind_len) {
    // The port comes with connect(): without this the kernel would pick one per
    // address at bind time and run out of them long before (address, peer) pairs.
    const int on = 1;
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);  // SOL_IP: IPv6 sockets too
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&plan->bind), plan->bind_len) != 0) {
      ++stats_.connect_refused;  // the address left the host (a sync is on its way): refuse
      ::close(fd);
      send_rst_for(s);
      return true;
    }
  }
  f->desc = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  const int one = 1, zero = 0;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
  // Our window toward the guest is this socket's free send buffer: start it large instead of
  // at tcp_wmem's 16 KiB default, or every connection crawls through the autotuner's ramp.
  // (The kernel caps it at net.core.wmem_max and allocates only what is queued.)
  const int sndbuf = kSendBuffer;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  flows_[f->key] = f;
  ++stats_.segments_in;
  const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&plan->dst), plan->dst_len);
  if (r == 0 || errno != EINPROGRESS) {
    connected(f, r == 0 ? 0 : errno);
    return true;
  }
  f->desc->async_wait(asio::posix::descriptor_base::wait_write,
                      [this, f, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                        if (alive.expired() || f->dead || ec) return;
                        int err = 0;
                        socklen_t len = sizeof err;
                        if (::getsockopt(f->fd(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
                        connected(f, err);
                      });
  return true;
}

void TcpFastPath::connected(const std::shared_ptr<Flow>& f, int err) {
  if (err) {
    ++stats_.connect_refused;
    // RST|ACK acknowledging the SYN: the guest's connect() fails with ECONNREFUSED.
    send_segment(*f, kRst | kAck, 0, {});
    remove(*f);
    return;
  }
  socklen_t len = sizeof f->sndbuf;
  ::getsockopt(f->fd(), SOL_SOCKET, SO_SNDBUF, &f->sndbuf, &len);
  f->state = Flow::State::kSynSent;
  f->snd_una = f->iss;
  f->snd_nxt = f->iss + 1;
  send_segment(*f, kSyn | kAck, f->iss, {}, /*syn_options=*/true);
  ++stats_.flows_opened;
  arm_rto(f);  // resent until the guest's ACK; a guest that never answers loses the flow
}

// ---------------------------------------------------------------- host → guest opening
bool TcpFastPath::open_to_guest(UniqueFd accepted, const Key& key, const Mac& guest_mac) {
  if (!accepted || flows_.count(key)) return false;
  if (flows_.size() >= max_flows_) {
    ++stats_.flows_full;
    return false;  // the caller's close() refuses the host peer
  }
  auto f = std::make_shared<Flow>(io_);
  f->key = key;
  f->guest_mac = guest_mac;
  f->iss = initial_sequence(key);
  f->wscale_ok = true;  // offered in our SYN; settled by the guest's SYN-ACK (RFC 7323 §2.2)
  const int fd = accepted.release();
  f->desc = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  const int one = 1, zero = 0;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
  const int sndbuf = kSendBuffer;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  socklen_t len = sizeof f->sndbuf;
  ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &f->sndbuf, &len);
  f->state = Flow::State::kSynToGuest;
  f->snd_una = f->iss;
  f->snd_nxt = f->iss + 1;
  flows_[key] = f;
  send_segment(*f, kSyn, f->iss, {}, /*syn_options=*/true);  // §3.5: the active side, toward the guest
  arm_rto(f);
  return true;
}

void TcpFastPath::on_guest_synack(Flow& f, const TcpSegment& s) {
  // RST (handled by the caller) means the guest refused: the host peer sees a reset.
  if ((s.flags & (kSyn | kAck)) == kAck && s.ack != f.iss + 1) {
    // §3.10.7.3 (SYN-SENT): an ACK that does not acknowledge our SYN gets <SEQ=SEG.ACK><CTL=RST>.
    // This is what a guest still holding an older connection on the same four-tuple in TIME-WAIT
    // sends when our SYN is not acceptable there (the old connection's ACK, RFC 9293 §3.10.7.4).
    // The reset ends that TIME-WAIT (Linux's default, net.ipv4.tcp_rfc1337=0) and our SYN,
    // sent again at once, opens the new connection without waiting out the RTO. ISNs that only
    // move forward per tuple (tcp_isn.hpp) make this the rare case, not every other reuse.
    ++stats_.syn_to_guest_rejected;
    send_rst_for(s);
    send_segment(f, kSyn, f.iss, {}, /*syn_options=*/true);
    return;
  }
  if ((s.flags & (kSyn | kAck)) != (kSyn | kAck)) return;  // §3.10.7.3: nothing else is acceptable yet
  if (s.ack != f.iss + 1) {
    send_rst_for(s);
    return;
  }
  auto self = shared(f);
  if (!self) return;
  f.rcv_nxt = s.seq + 1;
  f.wscale_ok = s.wscale >= 0;
  f.g_wscale = f.wscale_ok ? static_cast<uint8_t>(s.wscale) : 0;
  f.g_wnd = s.window;  // a SYN's window is never scaled
  f.g_mss = s.mss ? s.mss : 536;
  f.state = Flow::State::kEstablished;
  f.snd_una = f.snd_nxt = f.iss + 1;
  f.rto_failures = 0;
  ++f.rto_gen;
  f.rto_timer.cancel();
  f.rto = kRtoMin;
  ++stats_.flows_opened;
  send_segment(f, kAck, f.snd_nxt, {});
  push_to_guest(f);  // the host peer may have spoken first
}

// ---------------------------------------------------------------- guest segments
void TcpFastPath::on_segment(Flow& f, const TcpSegment& s) {
  if (s.flags & kRst) {
    ++stats_.resets_from_guest;
    abort_flow(f, /*rst_guest=*/false, /*rst_host=*/true);
    return;
  }
  if (f.state == Flow::State::kSynToGuest) {
    on_guest_synack(f, s);
    return;
  }
  if (s.flags & kSyn) {
    // The guest did not get our SYN-ACK (or it is a stray): answer it again.
    if (f.state == Flow::State::kSynSent) send_segment(f, kSyn | kAck, f.iss, {}, true);
    return;
  }
  if (f.state == Flow::State::kConnecting || !(s.flags & kAck)) return;
  auto self = shared(f);
  if (!self) return;
  f.rto_failures = 0;  // the guest is alive
  if (f.state == Flow::State::kSynSent) {
    if (s.ack != f.iss + 1) {
      send_rst_for(s);  // §3.10.7.3: an unacceptable ACK in SYN-RECEIVED gets a reset
      return;
    }
    f.state = Flow::State::kEstablished;
    f.snd_una = f.iss + 1;
    ++f.rto_gen;  // the SYN-ACK's timer is done
    f.rto_timer.cancel();
    f.rto = kRtoMin;
  }
  // §3.10.7.4: an old segment with nothing new in it — a zero-window probe or a keepalive (Linux
  // sends both one below rcv_nxt) — is answered with an ACK showing our current window.
  if (s.payload.empty() && !(s.flags & kFin) && seq_lt(s.seq, f.rcv_nxt)) {
    ++stats_.probes_answered;
    send_segment(f, kAck, f.snd_nxt, {});
    if (f.dead) return;
  }
  // ACK processing (§3.10.7.4).
  const uint32_t new_wnd = static_cast<uint32_t>(s.window) << f.g_wscale;
  if (seq_lt(f.snd_una, s.ack) && seq_le(s.ack, f.snd_nxt)) {
    uint32_t acked = s.ack - f.snd_una;
    const uint32_t data = f.data_in_flight();
    if (f.fin_sent && !f.fin_acked && s.ack == f.snd_nxt) f.fin_acked = true;
    const uint32_t consume = std::min(acked, data);
    // The guest has these bytes: take them out of the host socket (MSG_TRUNC discards, no copy).
    uint32_t left = consume;
    while (left > 0) {
      const ssize_t n = ::recv(f.fd(), nullptr, left, MSG_TRUNC | MSG_DONTWAIT);
      if (n <= 0) break;
      left -= static_cast<uint32_t>(n);
    }
    f.snd_una = s.ack;
    f.dupacks = 0;
    f.rto = kRtoMin;
    ++f.rto_gen;  // restart the timer for what is still in flight
    f.rto_timer.cancel();
    if (f.snd_una != f.snd_nxt) arm_rto(self);
  } else if (s.ack == f.snd_una && f.snd_nxt != f.snd_una && s.payload.empty() && !(s.flags & kFin) &&
             new_wnd == f.g_wnd) {
    if (++f.dupacks == 3) retransmit(f);  // RFC 5681 §3.2 fast retransmit
  }
  f.g_wnd = new_wnd;
  if (!s.payload.empty() || (s.flags & kFin)) write_to_host(f, s);
  if (f.dead) return;
  push_to_guest(f);
  maybe_finish(f);
}

void TcpFastPath::write_to_host(Flow& f, const TcpSegment& s) {
  if (f.guest_fin) {
    send_segment(f, kAck, f.snd_nxt, {});  // a retransmission after its FIN: acknowledge again
    return;
  }
  if (seq_lt(f.rcv_nxt, s.seq)) {
    ++stats_.out_of_order;
    send_segment(f, kAck, f.snd_nxt, {});  // duplicate ACK: the gap is the guest's to fill
    return;
  }
  const uint32_t skip = f.rcv_nxt - s.seq;
  const bool fin = s.flags & kFin;
  if (skip > s.payload.size()) {  // entirely old (a FIN beyond it would need skip == size)
    send_segment(f, kAck, f.snd_nxt, {});
    return;
  }
  const auto data = s.payload.subspan(skip);
  size_t taken = 0;
  if (!data.empty()) {
    size_t written = 0;
    if (f.to_host_off == f.to_host.size()) {  // nothing held: straight to the socket
      const ssize_t n = ::send(f.fd(), data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        abort_flow(f, /*rst_guest=*/true, /*rst_host=*/false);
        return;
      }
      written = n > 0 ? static_cast<size_t>(n) : 0;
    }
    // What the socket did not take is held (bounded) and acknowledged; beyond the
    // bound it is not acknowledged and the guest sends it again.
    const size_t held = f.to_host.size() - f.to_host_off;
    const size_t keep = std::min(data.size() - written, kToHostCap > held ? kToHostCap - held : 0);
    if (keep > 0) {
      if (f.to_host_off == f.to_host.size()) f.to_host.clear(), f.to_host_off = 0;
      f.to_host.insert(f.to_host.end(), data.begin() + static_cast<std::ptrdiff_t>(written),
                       data.begin() + static_cast<std::ptrdiff_t>(written + keep));
      wait_writable(shared(f));
    }
    taken = written + keep;
    f.rcv_nxt += static_cast<uint32_t>(taken);
    stats_.bytes_in += taken;
  }
  if (taken == data.size() && fin) {
    f.guest_fin = true;
    f.rcv_nxt += 1;
    flush_to_host(f);  // shuts the socket's write side once nothing is held
    send_segment(f, kAck, f.snd_nxt, {});
    return;
  }
  schedule_ack(f);
}

// In-order data is acknowledged once per batch of guest frames, not per segment: the port
// hands us every frame it read in one wake-up before this posted handler runs (RFC 9293
// §3.8.6.3 allows delaying ACKs; RFC 5681 §4.2 asks for at least one per two full-sized
// segments, and a batch is acknowledged in the same loop turn, long before the guest's
// delayed-ACK timers matter). A data segment we send meanwhile carries the ACK and clears it.
void TcpFastPath::schedule_ack(Flow& f) {
  if (f.ack_pending) return;
  f.ack_pending = true;
  ack_queue_.push_back(f.key);
  if (ack_posted_) return;
  ack_posted_ = true;
  asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    ack_posted_ = false;
    auto keys = std::move(ack_queue_);
    ack_queue_.clear();
    for (const auto& k : keys) {
      auto it = flows_.find(k);
      if (it == flows_.end() || !it->second->ack_pending || it->second->dead) continue;
      send_segment(*it->second, kAck, it->second->snd_nxt, {});
    }
  });
}

void TcpFastPath::flush_to_host(Flow& f) {
  while (f.to_host_off < f.to_host.size()) {
    const ssize_t n =
        ::send(f.fd(), f.to_host.data() + f.to_host_off, f.to_host.size() - f.to_host_off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wait_writable(shared(f));
      return;
    }
    if (n <= 0) {
      abort_flow(f, /*rst_guest=*/true, /*rst_host=*/false);
      return;
    }
    f.to_host_off += static_cast<size_t>(n);
  }
  f.to_host.clear();
  f.to_host_off = 0;
  if (f.guest_fin && !f.shut_wr) {
    f.shut_wr = true;
    ::shutdown(f.fd(), SHUT_WR);  // half-close, as the guest did (§3.6)
  }
}

// ---------------------------------------------------------------- host → guest
void TcpFastPath::push_to_guest(Flow& f) {
  if (f.dead || f.state != Flow::State::kEstablished || f.fin_sent) return;
  const size_t hdr = f.key.family == AF_INET ? 40 : 60;
  const size_t mss = std::min<size_t>(f.g_mss, policy_.mtu > hdr ? policy_.mtu - hdr : 536);
  // With offloads a segment carries as many whole MSS as fit a 64 KiB IP packet (IPv4's total
  // length, IPv6's payload length), cut by the guest's kernel (gso_size = MSS), and it is peeked
  // straight into the frame behind the room for its headers (send_segment sees the payload in
  // place and does not copy it).
  const size_t l3_limit = f.key.family == AF_INET ? 65535 - 40 : 65535 - 20;
  const size_t chunk = send_offload_ ? std::max(mss, l3_limit / mss * mss) : mss;
  const size_t headers = kEthHeaderLen + hdr;
  size_t budget = kPeekBudget;
  while (budget > 0) {
    const uint32_t inflight = f.snd_nxt - f.snd_una;
    if (inflight >= f.g_wnd) return;  // the guest's window is full: its ACK resumes us
    uint8_t* into = seg_buf_.data();
    size_t room = std::min<size_t>({f.g_wnd - inflight, budget, seg_buf_.size()});
    if (send_offload_) {
      room = std::min(room, chunk);
      // SAFETY: headers (≤ 74) + room (≤ chunk ≤ 65515) fit kFrameCapacity; send_segment finds
      // the payload in place and copies nothing.
      room = std::min(room, kFrameCapacity - headers);
      into = frame_buf_.get() + headers;
    }
    const ssize_t n = ::recv(f.fd(), into, room, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_readable(shared(f));
        return;
      }
      abort_flow(f, /*rst_guest=*/true, /*rst_host=*/false);
      return;
    }
    if (n == 0) {
      // EOF and every byte before it sent: our FIN (§3.6).
      f.host_eof = true;
      f.fin_sent = true;
      send_segment(f, kFin | kAck, f.snd_nxt, {});
      f.snd_nxt += 1;
      arm_rto(shared(f));
      return;
    }
    for (size_t off = 0; off < static_cast<size_t>(n);) {
      const size_t len = std::min(chunk, static_cast<size_t>(n) - off);
      // PSH on the last segment of what the socket had (a peek that filled its room may have more).
      const bool last = off + len == static_cast<size_t>(n) && (!send_offload_ || static_cast<size_t>(n) < room);
      send_segment(f, kAck | (last ? kPsh : 0), f.snd_nxt, std::span<const uint8_t>(into + off, len), false,
                   len > mss ? static_cast<uint16_t>(mss) : 0);
      f.snd_nxt += static_cast<uint32_t>(len);
      stats_.bytes_out += len;
      off += len;
    }
    budget -= static_cast<size_t>(n);
    arm_rto(shared(f));
  }
  // Budget spent with data left: continue on a later turn, after other work.
  auto self = shared(f);
  if (!self) return;
  asio::post(io_, [this, self, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired() && !self->dead) push_to_guest(*self);
  });
}

void TcpFastPath::wait_readable(const std::shared_ptr<Flow>& f) {
  if (!f || f->read_wait || f->dead) return;
  f->read_wait = true;
  f->desc->async_wait(asio::posix::descriptor_base::wait_read,
                      [this, f, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                        if (alive.expired() || f->dead) return;
                        f->read_wait = false;
                        if (ec) return;
                        push_to_guest(*f);
                        maybe_finish(*f);
                      });
}

void TcpFastPath::wait_writable(const std::shared_ptr<Flow>& f) {
  if (!f || f->write_wait || f->dead) return;
  f->write_wait = true;
  f->desc->async_wait(asio::posix::descriptor_base::wait_write,
                      [this, f, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                        if (alive.expired() || f->dead) return;
                        f->write_wait = false;
                        if (ec) return;
                        const bool was_closed = f->window_closed;
                        flush_to_host(*f);
                        if (!f->dead && (was_closed || f->to_host.empty()))
                          send_segment(*f, kAck, f->snd_nxt, {});  // window update
                        if (!f->dead) maybe_finish(*f);
                      });
}

// ---------------------------------------------------------------- retransmission
void TcpFastPath::arm_rto(const std::shared_ptr<Flow>& f) {
  if (!f || f->dead) return;
  const uint64_t gen = ++f->rto_gen;
  f->rto_timer.expires_after(f->rto);
  f->rto_timer.async_wait([this, f, gen, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (ec || alive.expired() || f->dead || gen != f->rto_gen) return;
    if (f->snd_una == f->snd_nxt) return;
    // A guest that stopped answering altogether (it ACKs nothing, not even a zero window
    // probe) loses the flow after max_retries timeouts (~15 s), rather than holding it forever.
    if (++f->rto_failures > max_retries_) {
      abort_flow(*f, /*rst_guest=*/true, /*rst_host=*/true);
      return;
    }
    f->rto = std::min(f->rto * 2, kRtoMax);
    if (f->state == Flow::State::kSynSent) {
      ++stats_.retransmits;
      send_segment(*f, kSyn | kAck, f->iss, {}, true);  // our SYN-ACK was lost, or its ACK
    } else if (f->state == Flow::State::kSynToGuest) {
      ++stats_.retransmits;
      send_segment(*f, kSyn, f->iss, {}, true);  // our SYN to the guest, or its SYN-ACK, was lost
    } else {
      retransmit(*f);
    }
    if (!f->dead && f->snd_una != f->snd_nxt) arm_rto(f);
  });
}

void TcpFastPath::retransmit(Flow& f) {
  ++stats_.retransmits;
  // Peek again from snd_una: rewind the peek offset to the unacknowledged start.
  const int zero = 0;
  ::setsockopt(f.fd(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
  f.snd_nxt = f.snd_una;
  if (f.fin_sent && !f.fin_acked) f.fin_sent = false;
  if (f.g_wnd == 0) f.g_wnd = 1;  // a zero window probe: one byte (§3.8.6.1)
  push_to_guest(f);
}

// ---------------------------------------------------------------- closing
void TcpFastPath::maybe_finish(Flow& f) {
  if (!f.dead && f.guest_fin && f.shut_wr && f.fin_sent && f.fin_acked) remove(f);
}

void TcpFastPath::abort_flow(Flow& f, bool rst_guest, bool rst_host) {
  if (rst_guest) {
    ++stats_.resets_to_guest;
    send_segment(f, kRst | kAck, f.snd_nxt, {});
  }
  if (rst_host && f.desc) {
    const linger l{1, 0};  // close() sends RST
    ::setsockopt(f.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  remove(f);
}

void TcpFastPath::remove(Flow& f) {
  if (f.dead) return;
  f.dead = true;
  f.rto_timer.cancel();
  if (f.desc) f.desc->close();
  flows_.erase(f.key);
}

// ---------------------------------------------------------------- frames
uint32_t TcpFastPath::our_window(Flow& f) const {
  // What the host socket can still take, less what we already hold for it. SO_SNDBUF was set
  // explicitly (which turns the kernel's autotuning off), so the size read once at connect
  // stays right: one ioctl per segment, not two syscalls.
  int outq = 0;
  if (f.fd() < 0 || ::ioctl(f.fd(), SIOCOUTQ, &outq) != 0) outq = 0;
  const int64_t held = static_cast<int64_t>(f.to_host.size() - f.to_host_off);
  // 7/8: SO_SNDBUF is charged with skb overhead, SIOCOUTQ counts bytes (theory of operation).
  const int64_t usable = int64_t{std::max(f.sndbuf, 0)} / 8 * 7;
  int64_t free_bytes = std::max<int64_t>(0, usable - outq - held);
  // RFC 1122 §4.2.3.3: no tiny windows; below min(usable / 8, our MSS) the window stays shut.
  const size_t hdr = f.key.family == AF_INET ? 40 : 60;
  const int64_t our_mss = static_cast<int64_t>(policy_.mtu > hdr ? policy_.mtu - hdr : 536);
  if (free_bytes < std::min(usable / 8, our_mss)) free_bytes = 0;
  const uint8_t ws = f.wscale_ok ? kWindowScale : 0;
  return static_cast<uint32_t>(std::min<int64_t>(free_bytes >> ws, 65535));
}

void TcpFastPath::send_segment(Flow& f, uint8_t flags, uint32_t seq, std::span<const uint8_t> payload, bool syn_options,
                               uint16_t gso_size) {
  const bool v4 = f.key.family == AF_INET;
  const size_t iplen = v4 ? 20 : 40;
  const size_t tcplen = (syn_options ? 28 : 20) + payload.size();
  // Only the headers need zeros: the payload is copied over (no 64 KiB fill per super-segment).
  const size_t headers = kEthHeaderLen + iplen + (syn_options ? 28 : 20);
  if (headers + payload.size() > kFrameCapacity) return;  // not reached: payloads are at most a chunk
  frame_len_ = headers + payload.size();
  std::fill_n(frame_buf_.get(), headers, uint8_t{0});
  uint8_t* p = frame_buf_.get();
  std::copy(f.guest_mac.begin(), f.guest_mac.end(), p);
  std::copy(policy_.our_mac.begin(), policy_.our_mac.end(), p + 6);
  store_be16(p + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = p + kEthHeaderLen;
  uint8_t pseudo[40] = {};
  size_t pseudo_len;
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(iplen + tcplen));
    store_be16(ip + 6, 0x4000);  // DF
    ip[8] = 64;
    ip[9] = 6;
    std::memcpy(ip + 12, f.key.daddr.data(), 4);  // from the peer the guest addressed
    std::memcpy(ip + 16, f.key.gaddr.data(), 4);
    store_be16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
    std::memcpy(pseudo, ip + 12, 8);
    pseudo[9] = 6;
    store_be16(pseudo + 10, static_cast<uint16_t>(tcplen));
    pseudo_len = 12;
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<uint16_t>(tcplen));
    ip[6] = 6;
    ip[7] = 64;
    std::memcpy(ip + 8, f.key.daddr.data(), 16);
    std::memcpy(ip + 24, f.key.gaddr.data(), 16);
    std::memcpy(pseudo, ip + 8, 32);
    store_be32(pseudo + 32, static_cast<uint32_t>(tcplen));
    pseudo[39] = 6;
    pseudo_len = 40;
  }
  uint8_t* t = ip + iplen;
  store_be16(t, f.key.dport);
  store_be16(t + 2, f.key.gport);
  store_be32(t + 4, seq);
  store_be32(t + 8, (flags & kAck) ? f.rcv_nxt : 0);
  if (flags & kAck) f.ack_pending = false;
  t[12] = static_cast<uint8_t>(((syn_options ? 28 : 20) / 4) << 4);
  t[13] = flags;
  uint32_t wnd;
  if (syn_options) {
    wnd = std::min<uint32_t>(65535, static_cast<uint32_t>(std::max(f.sndbuf, 0)));
  } else {
    wnd = (flags & kRst) ? 0 : our_window(f);
    const bool closed = wnd == 0 && !(flags & kRst);
    // A window update follows when the socket drains (again, if an update still found it shut).
    if (closed) {
      if (auto sp = shared(f)) wait_writable(sp);
    }
    f.window_closed = closed;
  }
  store_be16(t + 14, static_cast<uint16_t>(wnd));
  if (syn_options) {
    const size_t hdr = v4 ? 40 : 60;
    const uint16_t mss = static_cast<uint16_t>(std::min<size_t>(policy_.mtu > hdr ? policy_.mtu - hdr : 536, 65535));
    t[20] = 2;
    t[21] = 4;
    store_be16(t + 22, mss);
    t[24] = 1;  // NOP
    if (f.wscale_ok) {
      t[25] = 3;
      t[26] = 3;
      t[27] = kWindowScale;
    } else {
      t[25] = t[26] = t[27] = 1;  // no scaling offered: the guest did not offer it (RFC 7323 §2.2)
    }
  }
  // push_to_guest may have peeked the payload into place already (offloads): then it is not copied.
  if (payload.data() != t + (syn_options ? 28 : 20))
    std::copy(payload.begin(), payload.end(), t + (syn_options ? 28 : 20));
  ++stats_.segments_out;
  if (send_offload_ && !payload.empty()) {
    // virtio 1.x §5.1.6.2: the checksum field holds the (uncomplemented) pseudo-header sum over the
    // whole segment's TCP length; the guest's kernel finishes or trusts it (CHECKSUM_PARTIAL).
    store_be16(t + 16, checksum_fold(checksum_add({pseudo, pseudo_len})));
    VnetHdr h;
    h.flags = kVnetFNeedsCsum;
    h.csum_start = static_cast<uint16_t>(kEthHeaderLen + iplen);
    h.csum_offset = 16;
    if (gso_size) {
      h.gso_type = v4 ? kVnetGsoTcp4 : kVnetGsoTcp6;
      h.gso_size = gso_size;
      h.hdr_len = static_cast<uint16_t>(kEthHeaderLen + iplen + 20);
      ++stats_.super_segments_out;
    }
    send_offload_(std::span<const uint8_t>(frame_buf_.get(), frame_len_), h);
    return;
  }
  const uint16_t sum =
      static_cast<uint16_t>(~checksum_fold(checksum_add({t, tcplen}, checksum_add({pseudo, pseudo_len}))));
  store_be16(t + 16, sum);
  send_(std::span<const uint8_t>(frame_buf_.get(), frame_len_));
}

uint32_t TcpFastPath::initial_sequence(const Key& key) const {
  // RFC 6528 §3: F over the connection's identifying tuple, M from our clock.
  std::array<uint8_t, 1 + 16 + 16 + 2 + 2> tuple{};
  tuple[0] = static_cast<uint8_t>(key.family);
  std::copy(key.gaddr.begin(), key.gaddr.end(), tuple.begin() + 1);
  std::copy(key.daddr.begin(), key.daddr.end(), tuple.begin() + 17);
  tuple[33] = static_cast<uint8_t>(key.gport >> 8), tuple[34] = static_cast<uint8_t>(key.gport);
  tuple[35] = static_cast<uint8_t>(key.dport >> 8), tuple[36] = static_cast<uint8_t>(key.dport);
  return isn_.isn(tuple, clock_->now_ns());
}

void TcpFastPath::send_rst_for(const TcpSegment& s) {
  // RFC 9293 §3.10.7.1: <SEQ=SEG.ACK><CTL=RST> if the segment has ACK, else
  // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. Built with a throwaway flow.
  Flow tmp(io_);
  tmp.key = Key{s.family, s.src, s.dst, s.sport, s.dport};
  tmp.guest_mac = s.src_mac;
  const uint32_t seglen =
      static_cast<uint32_t>(s.payload.size()) + ((s.flags & kSyn) ? 1 : 0) + ((s.flags & kFin) ? 1 : 0);
  ++stats_.resets_to_guest;
  if (s.flags & kAck) {
    tmp.rcv_nxt = 0;
    send_segment(tmp, kRst, s.ack, {});
  } else {
    tmp.rcv_nxt = s.seq + seglen;
    send_segment(tmp, kRst | kAck, 0, {});
  }
}

}  // namespace causeway::netstack
