// Mirrored mode's data path: dispatch and policy; theory of operation in mirror_link.hpp.
#include "netstack/mirror/mirror_link.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/byte_order.hpp"
#include "netstack/mirror/sockaddr.hpp"
#include "netstack/packet.hpp"
#include "netstack/refusal.hpp"

namespace causeway::netstack::mirror {
namespace asio = boost::asio;

namespace {

using wire::load_be16;

bool v4_not_unicast(const uint8_t* a) {
  return a[0] >= 224 || (a[0] == 0) || (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255);
}

DatagramFlowConfig flow_config(const MirrorLinkConfig& cfg) {
  DatagramFlowConfig f;
  f.name = cfg.name;
  f.host_ifindex = cfg.host_ifindex;
  f.our_mac = cfg.our_mac;
  f.mtu = cfg.mtu;
  f.max_udp_flows = cfg.max_udp_flows;
  f.max_ping_flows = cfg.max_ping_flows;
  f.udp_idle = cfg.udp_idle;
  f.dns_idle = cfg.dns_idle;
  return f;
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

MirrorLink::MirrorLink(asio::io_context& io, FramePort& port, MirrorLinkConfig cfg)
    : MirrorLink(io, port, std::move(cfg), static_cast<const Clock*>(nullptr)) {}

MirrorLink::MirrorLink(asio::io_context& io, FramePort& port, MirrorLinkConfig cfg, const Clock& clock)
    : MirrorLink(io, port, std::move(cfg), &clock) {}

MirrorLink::MirrorLink(asio::io_context& io, FramePort& port, MirrorLinkConfig cfg, const Clock* clock)
    : port_(port),
      cfg_(std::move(cfg)),
      clock_(clock ? *clock : steady_),  // steady_ is declared (so constructed) before clock_
      tcp_(
          io, mirrored_tcp_policy(cfg_), [this](std::span<const uint8_t> f) { send(f); }, cfg_.max_tcp_flows),
      flows_(io, clock_, flow_config(cfg_), [this](std::span<const uint8_t> f) { send(f); }),
      neighbors_(cfg_.our_mac) {
  if (port_.offloads_to_guest()) {
    // Host data toward the guest as super-segments with a partial checksum (tcp_fast_path.hpp).
    tcp_.enable_tx_offload([this](std::span<const uint8_t> f, const VnetHdr& h) {
      ++stats_.frames_out;
      port_.send_offload_to_guest(f, h);
    });
  }
}

MirrorLink::~MirrorLink() {
  flows_.close_all();
  tcp_.reset_all();  // the guest's connections on this link cannot continue
}

void MirrorLink::set_mtu(size_t mtu) {
  cfg_.mtu = mtu;
  tcp_.set_mtu(mtu);
  flows_.set_mtu(mtu);
}

MirrorLinkStats MirrorLink::stats() const {
  MirrorLinkStats s = stats_;
  const DatagramFlowStats& d = flows_.stats();
  s.udp_flows_opened = d.udp_flows_opened;
  s.udp_out = d.udp_out;
  s.udp_in = d.udp_in;
  s.udp_errors = d.udp_errors;
  s.udp_evicted = d.udp_evicted;
  s.ping_out = d.ping_out;
  s.ping_in = d.ping_in;
  s.ping_errors = d.ping_errors;
  s.too_big = d.too_big;
  s.udp_flows = flows_.udp_flows();
  s.ping_flows = flows_.ping_flows();
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
  switch (load_be16(frame.data() + 12)) {
    case kEtherTypeArp: on_arp(frame); break;
    case kEtherTypeIpv4: on_ipv4(frame); break;
    case kEtherTypeIpv6: on_ipv6(frame); break;
    default: ++stats_.dropped_unsupported;
  }
}

bool MirrorLink::for_us_unicast(std::span<const uint8_t> frame) const {
  if (frame.size() < kEthHeaderLen + 40) return false;  // shorter than any TCP segment: the plain path judges
  if (!std::equal(cfg_.our_mac.begin(), cfg_.our_mac.end(), frame.begin())) return false;
  const uint16_t type = load_be16(frame.data() + 12);
  const uint8_t* ip = frame.data() + kEthHeaderLen;
  if (type == kEtherTypeIpv4) return ip[9] == 6 && (load_be16(ip + 6) & 0x3fff) == 0 && !v4_not_unicast(ip + 16);
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
    ++stats_.offload_to_fast_path;
    if (!tcp_.on_guest_frame(frame) && !tcp_.reject(frame)) ++stats_.dropped_malformed;
    return;
  }
  ++stats_.offload_in_software;
  finish_in_software(frame, c.offload, offload_buf_, [this](std::span<const uint8_t> f) { on_guest_frame(f); });
}

bool MirrorLink::refused(std::span<const uint8_t> frame) {
  const auto f = inspect_flow_open(frame);
  if (!f) return false;  // not opening anything on the host (a flow's segment, NDP, malformed)
  const int64_t now_ms = clock_.now_ms();
  if (std::find(addrs_.sources.begin(), addrs_.sources.end(), f->src) == addrs_.sources.end()) {
    // Another link's address, 0.0.0.0, 127.0.0.1…: binding it would send from an address the plan
    // did not give this link (or reach the host's loopback). Nothing is answered.
    ++stats_.dropped_forbidden_source;
    if (refusal_log_.allow(now_ms))
      spdlog::warn(
          "mirrored link {}: refused a guest packet from an address not planned for the link "
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
    spdlog::warn(
        "mirrored link {}: refused a guest packet toward a {} address (dropped.forbidden_destination; {} "
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

void MirrorLink::on_arp(std::span<const uint8_t> frame) {
  switch (neighbors_.answer_arp(frame, out_)) {
    case NeighborResponder::Answer::kReply:
      ++stats_.arp_replies;
      send(out_);
      break;
    case NeighborResponder::Answer::kMalformed: ++stats_.dropped_malformed; break;
    case NeighborResponder::Answer::kNone: break;
  }
}

void MirrorLink::on_ipv4(std::span<const uint8_t> frame) {
  const auto ip = frame.subspan(kEthHeaderLen);
  if (ip.size() < 20 || (ip[0] >> 4) != 4) {
    ++stats_.dropped_malformed;
    return;
  }
  const size_t ihl = (ip[0] & 0x0f) * 4u;
  const size_t total = load_be16(ip.data() + 2);
  if (ihl < 20 || total < ihl || total > ip.size()) {
    ++stats_.dropped_malformed;
    return;
  }
  if ((load_be16(ip.data() + 6) & 0x3fff) != 0) {
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
      flows_.on_udp(AF_INET, src_mac, reinterpret_cast<const uint8_t*>(&u->src),
                    reinterpret_cast<const uint8_t*>(&u->dst), u->src_port, u->dst_port, u->payload);
      break;
    }
    case 1: {
      const auto icmp = ip.subspan(ihl, total - ihl);
      if (icmp.size() >= 8 && icmp[0] == 8 && icmp[1] == 0)
        flows_.on_echo(AF_INET, src_mac, ip.data() + 12, ip.data() + 16, icmp);
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
  const size_t plen = load_be16(ip.data() + 4);
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
        flows_.on_echo(AF_INET6, src_mac, ip.data() + 8, ip.data() + 24, l4);
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
      flows_.on_udp(AF_INET6, src_mac, u->src.s6_addr, u->dst.s6_addr, u->src_port, u->dst_port, u->payload);
      break;
    }
    default: ++stats_.dropped_unsupported;  // extension headers included: not carried
  }
}

void MirrorLink::on_neighbor_solicit(std::span<const uint8_t> frame, std::span<const uint8_t> icmp) {
  switch (neighbors_.answer_neighbor_solicit(frame, icmp, out_)) {
    case NeighborResponder::Answer::kReply:
      ++stats_.nd_adverts;
      send(out_);
      break;
    case NeighborResponder::Answer::kMalformed: ++stats_.dropped_malformed; break;
    case NeighborResponder::Answer::kNone: break;
  }
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
      {"offload", {{"to_fast_path", s.offload_to_fast_path}, {"in_software", s.offload_in_software}}},
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
