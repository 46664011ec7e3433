// Mirrored mode's data path; theory of operation in datapath.hpp.
#include "netstack/mirror/datapath.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "netstack/packet.hpp"
#include "netstack/refusal.hpp"

namespace causeway::netstack::mirror {
namespace asio = boost::asio;

namespace {

constexpr auto kSweepEvery = std::chrono::seconds(5);
constexpr auto kPingIdle = std::chrono::seconds(30);
constexpr size_t kReadBatch = 64;  // datagrams read per readable event (fairness between flows)
constexpr size_t kMaxDatagram = 65535;

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

bool v4_not_unicast(const uint8_t* a) {
  return a[0] >= 224 || (a[0] == 0) || (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255);
}
bool v6_link_local(const uint8_t* a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }

// A socket address for `addr` (4 or 16 bytes by family) and `port`; link-local
// IPv6 addresses get `scope` (the host link's ifindex).
socklen_t make_sockaddr(int family, const uint8_t* addr, uint16_t port, int scope, sockaddr_storage& ss) {
  ss = {};
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);  // SAFETY: sockaddr_storage fits any sockaddr
    a->sin_family = AF_INET;
    std::memcpy(&a->sin_addr, addr, 4);
    a->sin_port = htons(port);
    return sizeof *a;
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);  // SAFETY: as above
  a->sin6_family = AF_INET6;
  std::memcpy(&a->sin6_addr, addr, 16);
  a->sin6_port = htons(port);
  if (v6_link_local(addr)) a->sin6_scope_id = static_cast<uint32_t>(scope);
  return sizeof *a;
}

std::vector<uint8_t> flow_key(int family, const uint8_t* addr, uint16_t port) {
  std::vector<uint8_t> k(1 + 16 + 2, 0);
  k[0] = static_cast<uint8_t>(family);
  std::memcpy(k.data() + 1, addr, family == AF_INET ? 4 : 16);
  put16(k.data() + 17, port);
  return k;
}

TcpFastPathPolicy mirrored_tcp_policy(const MirrorLinkConfig& cfg) {
  TcpFastPathPolicy p;
  p.our_mac = cfg.our_mac;
  p.mtu = cfg.mtu;
  p.route = [scope = cfg.host_ifindex](const TcpSegment& s) -> std::optional<TcpConnectPlan> {
    if (s.family == AF_INET ? v4_not_unicast(s.dst.data()) : s.dst[0] == 0xff) return std::nullopt;
    TcpConnectPlan plan;
    plan.dst_len = make_sockaddr(s.family, s.dst.data(), s.dport, scope, plan.dst);
    plan.bind_len = make_sockaddr(s.family, s.src.data(), 0, scope, plan.bind);  // the guest's = the host's address
    return plan;
  };
  return p;
}

}  // namespace

struct MirrorLink::DgramFlow {
  explicit DgramFlow(asio::io_context& io) : desc(io) {}
  bool ping = false;
  int family = AF_INET;
  std::array<uint8_t, 16> gaddr{};
  uint16_t gport = 0;  // UDP: the guest's port; ping: the guest's echo id
  Mac guest_mac{};
  std::vector<uint8_t> key;
  asio::posix::stream_descriptor desc;
  std::chrono::steady_clock::time_point last{};
  std::chrono::seconds idle{180};
  bool dead = false;
};

MirrorLink::MirrorLink(asio::io_context& io, FramePort& port, MirrorLinkConfig cfg)
    : io_(io),
      port_(port),
      cfg_(std::move(cfg)),
      tcp_(io, mirrored_tcp_policy(cfg_), [this](std::span<const uint8_t> f) { send(f); }, cfg_.max_tcp_flows),
      sweep_timer_(io) {
  rx_.resize(kMaxDatagram);
  if (port_.offloads_to_guest()) {
    // Host data toward the guest as super-segments with a partial checksum (tcp_fast_path.hpp).
    tcp_.enable_tx_offload([this](std::span<const uint8_t> f, const VnetHdr& h) {
      ++stats_.frames_out;
      port_.send_offload_to_guest(f, h);
    });
  }
  sweep();
}

MirrorLink::~MirrorLink() {
  *alive_ = false;
  sweep_timer_.cancel();
  for (auto* table : {&udp_, &ping_})
    for (auto& [k, f] : *table) {
      f->dead = true;
      f->desc.close();
    }
  tcp_.reset_all();  // the guest's connections on this link cannot continue
}

void MirrorLink::set_mtu(size_t mtu) {
  cfg_.mtu = mtu;
  tcp_.set_mtu(mtu);
}

MirrorLinkStats MirrorLink::stats() const {
  MirrorLinkStats s = stats_;
  s.udp_flows = udp_.size();
  s.ping_flows = ping_.size();
  s.tcp = tcp_.stats();
  return s;
}

void MirrorLink::send(std::span<const uint8_t> frame) {
  ++stats_.frames_out;
  port_.send_to_guest(frame);
}

// ---------------------------------------------------------------- dispatch
void MirrorLink::on_guest_frame(std::span<const uint8_t> frame) {
  ++stats_.frames_in;
  if (frame.size() < kEthHeaderLen || frame.size() > cfg_.mtu + kEthHeaderLen) {
    ++stats_.dropped_malformed;
    return;
  }
  const bool group = (frame[0] & 0x01) != 0;
  if (!group && !std::equal(cfg_.our_mac.begin(), cfg_.our_mac.end(), frame.begin())) {
    ++stats_.dropped_not_for_us;
    return;
  }
  switch (get16(frame.data() + 12)) {
    case kEtherTypeArp: on_arp(frame); break;
    case kEtherTypeIpv4: on_ipv4(frame); break;
    case kEtherTypeIpv6: on_ipv6(frame); break;
    default: ++stats_.dropped_unsupported;
  }
}

bool MirrorLink::for_us_unicast(std::span<const uint8_t> frame) const {
  if (frame.size() < kEthHeaderLen + 40) return false;  // shorter than any TCP segment: the plain path judges
  if (!std::equal(cfg_.our_mac.begin(), cfg_.our_mac.end(), frame.begin())) return false;
  const uint16_t type = get16(frame.data() + 12);
  const uint8_t* ip = frame.data() + kEthHeaderLen;
  if (type == kEtherTypeIpv4) return ip[9] == 6 && (get16(ip + 6) & 0x3fff) == 0 && !v4_not_unicast(ip + 16);
  if (type == kEtherTypeIpv6) return ip[6] == 6 && ip[24] != 0xff;  // TCP straight after the header, not multicast
  return false;
}

void MirrorLink::on_guest_offload_frame(std::span<const uint8_t> frame, const VnetHdr& hdr) {
  const auto c = check_vnet_hdr(hdr, frame, cfg_.mtu);
  if (c.verdict != VnetVerdict::kOk) {
    ++stats_.frames_in;
    ++stats_.dropped_bad_offload;
    return;
  }
  // A super-segment may be as large as the largest GSO frame: check_vnet_hdr held each of the
  // segments it stands for to the MTU. (frame.hpp's check_guest_frame is NAT's: its MACs.)
  if (frame.size() > (c.offload.gso ? kMaxGsoFrame : cfg_.mtu + kEthHeaderLen)) {
    ++stats_.frames_in;
    ++stats_.dropped_malformed;
    return;
  }
  if (for_us_unicast(frame)) {
    ++stats_.frames_in;
    if (refused(frame)) return;
    ++stats_.offload_to_splicer;
    if (!tcp_.on_guest_frame(frame) && !tcp_.reject(frame)) ++stats_.dropped_malformed;
    return;
  }
  ++stats_.offload_in_software;
  finish_in_software(frame, c.offload, offload_buf_, [this](std::span<const uint8_t> f) { on_guest_frame(f); });
}

bool MirrorLink::refused(std::span<const uint8_t> frame) {
  const auto f = inspect_flow_open(frame);
  if (!f) return false;  // not opening anything on the host (a flow's segment, NDP, malformed)
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch()).count();
  if (std::find(addrs_.sources.begin(), addrs_.sources.end(), f->src) == addrs_.sources.end()) {
    // Another link's address, 0.0.0.0, 127.0.0.1…: binding it would send from an address the plan
    // did not give this link (or reach the host's loopback). Nothing is answered.
    ++stats_.dropped_forbidden_source;
    if (refusal_log_.allow(now_ms))
      spdlog::warn("mirrored link {}: refused a guest packet from an address not planned for the link "
                   "(dropped.forbidden_source; {} similar messages suppressed)",
                   cfg_.name, refusal_log_.suppressed());
    return true;
  }
  const DestClass c = classify_destination(f->dst, addrs_.destinations);
  if (c == DestClass::kAllowed) return false;
  ++stats_.dropped_forbidden_destination;
  // RST for a SYN (RFC 9293 §3.10.7.1); UDP and echo are dropped (no router address for an ICMP
  // error: see the header), as are group destinations, which are never answered.
  if (f->kind == FlowOpen::Kind::kTcpSyn && c != DestClass::kMulticast && c != DestClass::kBroadcast)
    send(build_refusal_rst(*f, cfg_.our_mac));
  if (refusal_log_.allow(now_ms))
    spdlog::warn("mirrored link {}: refused a guest packet toward a {} address (dropped.forbidden_destination; {} "
                 "similar messages suppressed)",
                 cfg_.name, to_string(c), refusal_log_.suppressed());
  return true;
}

MirrorLinkAddresses link_addresses(const NetState& plan, std::string_view link) {
  MirrorLinkAddresses a;
  a.destinations.link_local_peers = true;  // the host link's neighbours
  auto to_guest = [](const IpAddress& ip) {
    GuestAddr g{ip.family, {}};
    std::copy_n(ip.bytes.begin(), ip.size(), g.bytes.begin());
    return g;
  };
  for (const auto& h : plan.addresses) {
    if (h.local.family != AF_INET && h.local.family != AF_INET6) continue;
    a.destinations.host_addresses.push_back(to_guest(h.local));
    if (h.link != link) continue;
    a.sources.push_back(to_guest(h.local));
    if (h.local.family == AF_INET) {
      Ipv4Net n;
      std::copy_n(h.local.bytes.begin(), 4, n.addr.begin());
      n.prefix_len = h.prefix_len;
      a.destinations.ipv4_nets.push_back(n);
    }
  }
  return a;
}

// RFC 826: every IPv4 address the guest asks for is behind our MAC.
void MirrorLink::on_arp(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeaderLen + 28) {
    ++stats_.dropped_malformed;
    return;
  }
  const uint8_t* a = frame.data() + kEthHeaderLen;
  if (get16(a) != 1 || get16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) {
    ++stats_.dropped_malformed;
    return;
  }
  if (get16(a + 6) != 1) return;  // a reply or anything else: nothing to answer
  const uint8_t* sha = a + 8;
  const uint8_t* spa = a + 14;
  const uint8_t* tpa = a + 24;
  // Probes (sender 0.0.0.0, RFC 5227 §2.1.1) and announcements (sender = target) ask whether the
  // guest's own address is taken: it is the guest's, never answered.
  if (std::all_of(spa, spa + 4, [](uint8_t b) { return b == 0; }) || std::memcmp(spa, tpa, 4) == 0) return;
  out_.assign(kEthHeaderLen + 28, 0);
  uint8_t* p = out_.data();
  std::memcpy(p, sha, 6);
  std::copy(cfg_.our_mac.begin(), cfg_.our_mac.end(), p + 6);
  put16(p + 12, kEtherTypeArp);
  uint8_t* r = p + kEthHeaderLen;
  put16(r, 1);
  put16(r + 2, kEtherTypeIpv4);
  r[4] = 6;
  r[5] = 4;
  put16(r + 6, 2);
  std::copy(cfg_.our_mac.begin(), cfg_.our_mac.end(), r + 8);
  std::memcpy(r + 14, tpa, 4);
  std::memcpy(r + 18, sha, 6);
  std::memcpy(r + 24, spa, 4);
  ++stats_.arp_replies;
  send(out_);
}

void MirrorLink::on_ipv4(std::span<const uint8_t> frame) {
  const auto ip = frame.subspan(kEthHeaderLen);
  if (ip.size() < 20 || (ip[0] >> 4) != 4) {
    ++stats_.dropped_malformed;
    return;
  }
  const size_t ihl = (ip[0] & 0x0f) * 4u;
  const size_t total = get16(ip.data() + 2);
  if (ihl < 20 || total < ihl || total > ip.size()) {
    ++stats_.dropped_malformed;
    return;
  }
  if ((get16(ip.data() + 6) & 0x3fff) != 0) {
    ++stats_.dropped_fragment;
    return;
  }
  // The policy first: it counts 0.0.0.0 and the rest as forbidden destinations, whatever else they are.
  if (refused(frame)) return;
  if (v4_not_unicast(ip.data() + 16)) {
    ++stats_.dropped_not_for_us;  // broadcast, multicast: nothing on the host side to carry them to
    return;
  }
  Mac src_mac{};
  std::copy_n(frame.begin() + 6, 6, src_mac.begin());
  switch (ip[9]) {
    case 6:
      if (!tcp_.on_guest_frame(frame) && !tcp_.reject(frame)) ++stats_.dropped_malformed;
      break;
    case 17: {
      auto u = parse_udp4(frame);
      if (!u) {
        ++stats_.dropped_malformed;
        break;
      }
      on_udp(AF_INET, src_mac, reinterpret_cast<const uint8_t*>(&u->src), reinterpret_cast<const uint8_t*>(&u->dst),
             u->src_port, u->dst_port, u->payload);
      break;
    }
    case 1: {
      const auto icmp = ip.subspan(ihl, total - ihl);
      if (icmp.size() >= 8 && icmp[0] == 8 && icmp[1] == 0)
        on_echo(AF_INET, src_mac, ip.data() + 12, ip.data() + 16, icmp);
      else
        ++stats_.dropped_unsupported;
      break;
    }
    default: ++stats_.dropped_unsupported;
  }
}

void MirrorLink::on_ipv6(std::span<const uint8_t> frame) {
  const auto ip = frame.subspan(kEthHeaderLen);
  if (ip.size() < 40 || (ip[0] >> 4) != 6) {
    ++stats_.dropped_malformed;
    return;
  }
  const size_t plen = get16(ip.data() + 4);
  if (40 + plen > ip.size()) {
    ++stats_.dropped_malformed;
    return;
  }
  const auto l4 = ip.subspan(40, plen);
  // Neighbour discovery opens nothing on the host (inspect_flow_open passes it by); the rest meets the policy.
  if (refused(frame)) return;
  Mac src_mac{};
  std::copy_n(frame.begin() + 6, 6, src_mac.begin());
  switch (ip[6]) {
    case 58:
      if (l4.size() >= 24 && l4[0] == 135 && l4[1] == 0 && ip[7] == 255) {
        on_neighbor_solicit(frame, l4);
      } else if (l4.size() >= 8 && l4[0] == 128 && l4[1] == 0 && ip[24] != 0xff) {
        on_echo(AF_INET6, src_mac, ip.data() + 8, ip.data() + 24, l4);
      } else {
        ++stats_.dropped_unsupported;  // router solicitations, MLD reports, …: nothing to do
      }
      break;
    case 6:
      if (ip[24] == 0xff) {
        ++stats_.dropped_not_for_us;
      } else if (!tcp_.on_guest_frame(frame) && !tcp_.reject(frame)) {
        ++stats_.dropped_malformed;
      }
      break;
    case 17: {
      if (ip[24] == 0xff) {
        ++stats_.dropped_not_for_us;
        break;
      }
      auto u = parse_udp6(frame);
      if (!u) {
        ++stats_.dropped_malformed;
        break;
      }
      on_udp(AF_INET6, src_mac, u->src.s6_addr, u->dst.s6_addr, u->src_port, u->dst_port, u->payload);
      break;
    }
    default: ++stats_.dropped_unsupported;  // extension headers included: not carried
  }
}

// RFC 4861 §7.2.4: answer with a Neighbor Advertisement carrying our MAC as
// the target link-layer address; Router flag set (we are the way out).
void MirrorLink::on_neighbor_solicit(std::span<const uint8_t> frame, std::span<const uint8_t> icmp) {
  const uint8_t* ip = frame.data() + kEthHeaderLen;
  const uint8_t* src = ip + 8;
  const uint8_t* target = icmp.data() + 8;
  if (std::all_of(src, src + 16, [](uint8_t b) { return b == 0; })) return;  // DAD (§7.2.2): the guest's own
  if (target[0] == 0xff) {
    ++stats_.dropped_malformed;
    return;
  }
  constexpr size_t kNaLen = 24 + 8;
  out_.assign(kEthHeaderLen + 40 + kNaLen, 0);
  uint8_t* p = out_.data();
  std::copy_n(frame.begin() + 6, 6, p);  // to the soliciting MAC
  std::copy(cfg_.our_mac.begin(), cfg_.our_mac.end(), p + 6);
  put16(p + 12, kEtherTypeIpv6);
  uint8_t* o = p + kEthHeaderLen;
  o[0] = 0x60;
  put16(o + 4, kNaLen);
  o[6] = 58;
  o[7] = 255;
  std::memcpy(o + 8, target, 16);
  std::memcpy(o + 24, src, 16);
  uint8_t* na = o + 40;
  na[0] = 136;
  na[4] = 0xe0;  // Router, Solicited, Override
  std::memcpy(na + 8, target, 16);
  na[24] = 2;  // target link-layer address option, 1 × 8 bytes
  na[25] = 1;
  std::copy(cfg_.our_mac.begin(), cfg_.our_mac.end(), na + 26);
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, o + 8, 32);
  pseudo[35] = kNaLen;
  pseudo[39] = 58;
  put16(na + 2, static_cast<uint16_t>(~checksum_fold(checksum_add({na, kNaLen}, checksum_add({pseudo, 40})))));
  ++stats_.nd_adverts;
  send(out_);
}

// ---------------------------------------------------------------- datagram flows
bool MirrorLink::make_room(std::map<std::vector<uint8_t>, std::shared_ptr<DgramFlow>>& table, size_t cap) {
  if (cap == 0) return false;
  if (table.size() < cap) return true;
  auto oldest = std::min_element(table.begin(), table.end(),
                                 [](const auto& a, const auto& b) { return a.second->last < b.second->last; });
  oldest->second->dead = true;
  oldest->second->desc.close();
  table.erase(oldest);
  ++stats_.udp_evicted;
  return true;
}

void MirrorLink::on_udp(int family, const Mac& src_mac, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                        uint16_t dport, std::span<const uint8_t> payload) {
  auto key = flow_key(family, src, sport);
  auto it = udp_.find(key);
  if (it == udp_.end()) {
    if (!make_room(udp_, cfg_.max_udp_flows)) return;
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ++stats_.udp_errors;
      return;
    }
    sockaddr_storage local{};
    // The guest's own port when the host does not use it (protocols that expect the source port
    // they sent from keep working), else an ephemeral one.
    socklen_t len = make_sockaddr(family, src, sport, cfg_.host_ifindex, local);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0) {
      len = make_sockaddr(family, src, 0, cfg_.host_ifindex, local);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0) {
        ::close(fd);  // the address is no longer the host's: a sync is on its way
        ++stats_.udp_errors;
        return;
      }
    }
    auto f = std::make_shared<DgramFlow>(io_);
    f->family = family;
    std::memcpy(f->gaddr.data(), src, family == AF_INET ? 4 : 16);
    f->gport = sport;
    f->key = key;
    f->desc.assign(fd);
    f->idle = dport == 53 ? cfg_.dns_idle : cfg_.udp_idle;
    it = udp_.emplace(std::move(key), f).first;
    ++stats_.udp_flows_opened;
    read_flow(f);
  }
  auto& f = *it->second;
  f.guest_mac = src_mac;
  f.last = std::chrono::steady_clock::now();
  sockaddr_storage to{};
  const socklen_t tlen = make_sockaddr(family, dst, dport, cfg_.host_ifindex, to);
  if (::sendto(f.desc.native_handle(), payload.data(), payload.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
               tlen) < 0) {
    ++stats_.udp_errors;  // EAGAIN (a full socket) is loss, as on a wire; the rest is the host's refusal
    return;
  }
  ++stats_.udp_out;
}

void MirrorLink::on_echo(int family, const Mac& src_mac, const uint8_t* src, const uint8_t* dst,
                         std::span<const uint8_t> icmp) {
  const uint16_t id = get16(icmp.data() + 4);
  auto key = flow_key(family, src, id);
  auto it = ping_.find(key);
  if (it == ping_.end()) {
    if (!make_room(ping_, cfg_.max_ping_flows)) return;
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            family == AF_INET ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
    if (fd < 0) {
      // EACCES: this group is outside net.ipv4.ping_group_range (which also governs IPv6).
      if (stats_.ping_errors++ == 0)
        spdlog::warn("mirrored link {}: no ping socket ({}); is net.ipv4.ping_group_range set?", cfg_.name,
                     std::strerror(errno));
      return;
    }
    sockaddr_storage local{};
    const socklen_t len = make_sockaddr(family, src, 0, cfg_.host_ifindex, local);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0) {
      ::close(fd);
      ++stats_.ping_errors;
      return;
    }
    auto f = std::make_shared<DgramFlow>(io_);
    f->ping = true;
    f->family = family;
    std::memcpy(f->gaddr.data(), src, family == AF_INET ? 4 : 16);
    f->gport = id;
    f->key = key;
    f->desc.assign(fd);
    f->idle = kPingIdle;
    it = ping_.emplace(std::move(key), f).first;
    read_flow(f);
  }
  auto& f = *it->second;
  f.guest_mac = src_mac;
  f.last = std::chrono::steady_clock::now();
  sockaddr_storage to{};
  const socklen_t tlen = make_sockaddr(family, dst, 0, cfg_.host_ifindex, to);
  // The kernel sets the identifier (the socket's) and the checksum.
  if (::sendto(f.desc.native_handle(), icmp.data(), icmp.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), tlen) <
      0) {
    ++stats_.ping_errors;
    return;
  }
  ++stats_.ping_out;
}

void MirrorLink::read_flow(const std::shared_ptr<DgramFlow>& f) {
  f->desc.async_wait(asio::posix::descriptor_base::wait_read,
                     [this, f, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                       if (alive.expired() || f->dead || ec) return;
                       for (size_t i = 0; i < kReadBatch; ++i) {
                         sockaddr_storage peer{};
                         socklen_t plen = sizeof peer;
                         const ssize_t n = ::recvfrom(f->desc.native_handle(), rx_.data(), rx_.size(), MSG_DONTWAIT,
                                                      reinterpret_cast<sockaddr*>(&peer), &plen);
                         if (n < 0) break;  // EAGAIN, or an ICMP error queued on the socket: nothing to deliver
                         deliver(*f, peer, {rx_.data(), static_cast<size_t>(n)});
                         if (f->dead) return;
                       }
                       read_flow(f);
                     });
}

void MirrorLink::deliver(DgramFlow& f, const sockaddr_storage& peer, std::span<const uint8_t> data) {
  f.last = std::chrono::steady_clock::now();
  const bool v4 = f.family == AF_INET;
  const uint8_t* paddr = v4 ? reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in&>(peer).sin_addr)
                            : reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr.s6_addr;
  const uint16_t pport = ntohs(v4 ? reinterpret_cast<const sockaddr_in&>(peer).sin_port
                                  : reinterpret_cast<const sockaddr_in6&>(peer).sin6_port);
  const size_t iplen = v4 ? 20 : 40;
  if (!f.ping) {
    if (iplen + 8 + data.size() > cfg_.mtu) {
      ++stats_.too_big;
      return;
    }
    std::vector<uint8_t> frame;
    if (v4) {
      in_addr s{}, d{};
      std::memcpy(&s, paddr, 4);
      std::memcpy(&d, f.gaddr.data(), 4);
      frame = build_udp4(cfg_.our_mac, f.guest_mac, s, pport, d, f.gport, data);
    } else {
      in6_addr s{}, d{};
      std::memcpy(&s, paddr, 16);
      std::memcpy(&d, f.gaddr.data(), 16);
      frame = build_udp6(cfg_.our_mac, f.guest_mac, s, pport, d, f.gport, data);
    }
    ++stats_.udp_in;
    send(frame);
    return;
  }
  // A ping socket hands us the ICMP message without the IP header.
  if (data.size() < 8 || data[0] != (v4 ? 0 : 129) || iplen + data.size() > cfg_.mtu) {
    ++stats_.too_big;
    return;
  }
  out_.assign(kEthHeaderLen + iplen + data.size(), 0);
  uint8_t* p = out_.data();
  std::copy(f.guest_mac.begin(), f.guest_mac.end(), p);
  std::copy(cfg_.our_mac.begin(), cfg_.our_mac.end(), p + 6);
  put16(p + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = p + kEthHeaderLen;
  uint8_t* icmp = ip + iplen;
  std::memcpy(icmp, data.data(), data.size());
  put16(icmp + 4, f.gport);  // the guest's identifier back
  put16(icmp + 2, 0);
  if (v4) {
    ip[0] = 0x45;
    put16(ip + 2, static_cast<uint16_t>(20 + data.size()));
    ip[8] = 64;
    ip[9] = 1;
    std::memcpy(ip + 12, paddr, 4);
    std::memcpy(ip + 16, f.gaddr.data(), 4);
    put16(ip + 10, static_cast<uint16_t>(~checksum_fold(checksum_add({ip, 20}))));
    put16(icmp + 2, static_cast<uint16_t>(~checksum_fold(checksum_add({icmp, data.size()}))));
  } else {
    ip[0] = 0x60;
    put16(ip + 4, static_cast<uint16_t>(data.size()));
    ip[6] = 58;
    ip[7] = 64;
    std::memcpy(ip + 8, paddr, 16);
    std::memcpy(ip + 24, f.gaddr.data(), 16);
    uint8_t pseudo[40] = {};
    std::memcpy(pseudo, ip + 8, 32);
    put16(pseudo + 34, static_cast<uint16_t>(data.size()));
    pseudo[39] = 58;
    put16(icmp + 2,
          static_cast<uint16_t>(~checksum_fold(checksum_add({icmp, data.size()}, checksum_add({pseudo, 40})))));
  }
  ++stats_.ping_in;
  send(out_);
}

void MirrorLink::sweep() {
  const auto now = std::chrono::steady_clock::now();
  for (auto* table : {&udp_, &ping_}) {
    for (auto it = table->begin(); it != table->end();) {
      if (now - it->second->last > it->second->idle) {
        it->second->dead = true;
        it->second->desc.close();
        it = table->erase(it);
      } else {
        ++it;
      }
    }
  }
  sweep_timer_.expires_after(kSweepEvery);
  sweep_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (!ec && !alive.expired()) sweep();
  });
}

nlohmann::json to_json(const MirrorLinkStats& s) {
  return nlohmann::json{
      {"frames_in", s.frames_in},
      {"frames_out", s.frames_out},
      {"arp_replies", s.arp_replies},
      {"nd_adverts", s.nd_adverts},
      {"tcp",
       {{"flows", s.tcp.flows},
        {"flows_opened", s.tcp.flows_opened},
        {"connect_refused", s.tcp.connect_refused},
        {"flows_full", s.tcp.flows_full},
        {"bytes_in", s.tcp.bytes_in},
        {"bytes_out", s.tcp.bytes_out},
        {"retransmits", s.tcp.retransmits},
        {"out_of_order", s.tcp.out_of_order},
        {"resets_to_guest", s.tcp.resets_to_guest},
        {"resets_from_guest", s.tcp.resets_from_guest}}},
      {"udp",
       {{"flows", s.udp_flows},
        {"flows_opened", s.udp_flows_opened},
        {"datagrams_out", s.udp_out},
        {"datagrams_in", s.udp_in},
        {"errors", s.udp_errors},
        {"evicted", s.udp_evicted}}},
      {"ping", {{"flows", s.ping_flows}, {"out", s.ping_out}, {"in", s.ping_in}, {"errors", s.ping_errors}}},
      {"offload", {{"to_fast_path", s.offload_to_splicer}, {"in_software", s.offload_in_software}}},
      {"dropped",
       {{"malformed", s.dropped_malformed},
        {"bad_offload", s.dropped_bad_offload},
        {"fragment", s.dropped_fragment},
        {"unsupported", s.dropped_unsupported},
        {"not_for_us", s.dropped_not_for_us},
        {"forbidden_source", s.dropped_forbidden_source},
        {"forbidden_destination", s.dropped_forbidden_destination},
        {"too_big", s.too_big}}},
  };
}

}  // namespace causeway::netstack::mirror
