#include "netstack/engine.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/accept_backoff.hpp"
#include "dns/wire.hpp"
#include "netstack/dest_policy.hpp"
#include "netstack/packet.hpp"
#include "netstack/refusal.hpp"

namespace causeway::netstack {
namespace {

// Virtual gateway source ports for UDP forward flows (see header): the top of
// the dynamic range, so a guest-started flow rarely collides.
constexpr uint16_t kUdpFlowPortFirst = 61000;
constexpr uint16_t kUdpFlowPortLast = 65535;
}  // namespace

uint64_t EngineStats::dropped_total() const {
  uint64_t t = 0;
  for (auto d : dropped) t += d;
  return t;
}

Engine::Engine(boost::asio::io_context& io, const Clock& clock, NatConfig cfg, FramePort& port)
    : io_(io),
      clock_(clock),
      cfg_(std::move(cfg)),
      port_(port),
      arp_timer_(io),
      slirp_(io, clock, cfg_, [this](std::span<const uint8_t> f) { on_slirp_frame(f); }) {
  if (cfg_.tcp_fast) {
    if (TcpFastPath::available()) {
      tcp_ = std::make_unique<TcpFastPath>(
          io_, cfg_,
          [this](std::span<const uint8_t> f) {
            ++stats_.frames_out;
            stats_.bytes_out += f.size();
            port_.send_to_guest(f);
          },
          cfg_.max_tcp_flows);
      tcp_->set_clock(clock_);
      if (port_.offloads_to_guest()) {
        tcp_->enable_tx_offload([this](std::span<const uint8_t> f, const VnetHdr& h) {
          ++stats_.frames_out;
          stats_.bytes_out += f.size();
          port_.send_offload_to_guest(f, h);
        });
      }
    } else if (cfg_.tcp_fast_explicit) {
      spdlog::warn("--tcp-engine fast needs Linux 6.10 or later (TCP SO_PEEK_OFF); TCP stays on libslirp");
    } else {
      spdlog::debug("TCP fast path unavailable (needs TCP SO_PEEK_OFF, Linux 6.10+): TCP on libslirp");
    }
  }
}

struct Engine::FastForward {
  PortForward forward;
  std::unique_ptr<boost::asio::posix::stream_descriptor> listener;
  std::unique_ptr<AcceptBackoff> backoff;  // out of descriptors: pause instead of spinning
};

Engine::~Engine() {
  *alive_ = false;
  fast_.clear();
  tcp_.reset();
  relayed_.clear();  // relays close their flows on us: before our tables go
}  // then slirp_ (declared after the tables on_slirp_frame uses): slirp_cleanup closes libslirp's sockets

void Engine::on_guest_offload_frame(std::span<const uint8_t> frame, const VnetHdr& hdr) {
  const auto c = check_vnet_hdr(hdr, frame, cfg_.mtu);
  // A super-segment passes the frame checks against the largest GSO frame, not the MTU
  // (its segments were checked against the MTU by check_vnet_hdr).
  const FrameVerdict v = c.verdict != VnetVerdict::kOk ? FrameVerdict::kBadOffload
                         : c.offload.gso               ? check_guest_frame(frame, kMaxGsoFrame - kEthHeaderLen)
                                                       : check_guest_frame(frame, cfg_.mtu);
  if (v != FrameVerdict::kAccept) {
    ++stats_.dropped[static_cast<size_t>(v)];
    if (drop_log_.allow(clock_.now_ms()))
      spdlog::warn(
          "dropped a guest frame of {} bytes with offloads (flags {:#x}, gso {:#x}, gso_size {}): {} ({} "
          "similar messages suppressed)",
          frame.size(), hdr.flags, hdr.gso_type, hdr.gso_size, to_string(v), drop_log_.suppressed());
    return;
  }
  // The destination policy first: the fast path below connect()s whatever a SYN names.
  if (refuse_forbidden(frame)) return;
  // The fast path reads neither checksums nor sizes beyond the IP lengths: a TCP segment of one of
  // its flows (or a SYN it routes) is taken as it is — the whole 64 KiB in one send().
  if (tcp_ && tcp_->on_guest_frame(frame)) {
    ++stats_.offload_to_fast_path;
    ++stats_.frames_in;
    stats_.bytes_in += frame.size();
    return;
  }
  ++stats_.offload_in_software;
  // libslirp verifies checksums and knows nothing of GSO: finish both, then the usual path.
  finish_in_software(frame, c.offload, offload_buf_, [this](std::span<const uint8_t> f) {
    ++stats_.offload_segments;
    on_guest_frame(f);
  });
}

void Engine::on_guest_frame(std::span<const uint8_t> frame) {
  const FrameVerdict v = check_guest_frame(frame, cfg_.mtu);
  if (v != FrameVerdict::kAccept) {
    ++stats_.dropped[static_cast<size_t>(v)];
    if (drop_log_.allow(clock_.now_ms()))
      spdlog::warn(
          "dropped a guest frame of {} bytes: {}{} ({} similar messages suppressed)", frame.size(), to_string(v),
          frame.size() >= 6 ? " to " + format_mac(Mac{frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]}) : "",
          drop_log_.suppressed());
    return;
  }
  if (!guest_mac_known_ && ether_type(frame) == kEtherTypeIpv6)
    introduce_guest(Mac{frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]});
  if (refuse_forbidden(frame)) return;
  ++stats_.frames_in;
  stats_.bytes_in += frame.size();
  if (dns_ && take_dns_query(frame)) return;
  if (dns_tcp_shadowed_ && ether_type(frame) == kEtherTypeIpv4 && frame.size() >= kEthHeaderLen + 20 &&
      frame[kEthHeaderLen + 9] == 6 && std::memcmp(frame.data() + kEthHeaderLen + 16, &cfg_.dns.s_addr, 4) == 0) {
    if (auto ports = tcp4_ports(frame); ports && ports->second == 53) {
      rewrite_buf_.assign(frame.begin(), frame.end());
      rewrite_tcp4_address(rewrite_buf_, /*destination=*/true, dns_shadow_);
      slirp_.input(rewrite_buf_);
      slirp_.schedule_pump();
      return;
    }
  }
  if (ether_type(frame) == kEtherTypeIpv4 && frame.size() >= kEthHeaderLen + 20 &&
      std::memcmp(frame.data() + kEthHeaderLen + 12, &cfg_.guest.s_addr, 4) == 0) {
    learn_guest_mac(Mac{frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]});
    if (!udp_flows_.empty() && take_udp_flow_reply(frame)) return;
  } else if (ether_type(frame) == kEtherTypeArp) {
    // The guest's lease in an ARP request or reply (ours, libslirp's, or a gratuitous one) tells
    // us its MAC; libslirp still gets the frame.
    if (auto arp = parse_arp(frame); arp && arp->sender_ip.s_addr == cfg_.guest.s_addr)
      learn_guest_mac(arp->sender_mac);
  }
  if (tcp_ && tcp_->on_guest_frame(frame)) return;
  if (refuse_over_slirp_budget(frame)) return;
  slirp_.input(frame);
  slirp_.schedule_pump();
}

bool Engine::refuse_over_slirp_budget(std::span<const uint8_t> frame) {
  const auto f = inspect_flow_open(frame);
  if (!f || f->kind == FlowOpen::Kind::kFragment) return false;
  const bool sockets_full = slirp_.host_sockets() >= cfg_.max_slirp_sockets;
  if (f->kind == FlowOpen::Kind::kUdp) {
    // DHCP and DHCPv6 are answered inside libslirp: no socket.
    if ((f->dport == 67 && f->dst.family == AF_INET) || (f->dport == 547 && f->dst.family == AF_INET6)) return false;
    std::pair<std::array<uint8_t, 17>, uint16_t> key{{}, f->sport};
    key.first[0] = static_cast<uint8_t>(f->src.family);
    std::memcpy(key.first.data() + 1, f->src.bytes.data(), 16);
    const int64_t now = clock_.now_ms();
    if (auto it = slirp_udp_sources_.find(key); it != slirp_udp_sources_.end()) {
      it->second = now;  // libslirp's socket for this source, if it still has one, lives on
      return false;
    }
    if (slirp_udp_sources_.size() >= cfg_.max_slirp_sockets && now - slirp_sources_swept_ms_ >= 1000) {
      slirp_sources_swept_ms_ = now;
      std::erase_if(slirp_udp_sources_, [now](const auto& e) { return now - e.second > kSlirpUdpExpiryMs; });
    }
    if (!sockets_full && slirp_udp_sources_.size() < cfg_.max_slirp_sockets) {
      slirp_udp_sources_.emplace(key, now);
      return false;
    }
  } else if (!sockets_full) {
    return false;  // a SYN for libslirp's TCP, an echo request
  }
  ++stats_.refused_slirp_sockets;
  send_refusal(frame, *f, /*group=*/false);
  if (budget_log_.allow(clock_.now_ms()))
    spdlog::warn(
        "refused a new guest flow: libslirp holds {} of its {} host sockets (descriptor budget, "
        "refused.slirp_sockets; {} similar messages suppressed)",
        std::max(slirp_.host_sockets(), slirp_udp_sources_.size()), cfg_.max_slirp_sockets, budget_log_.suppressed());
  return true;
}

void Engine::send_refusal(std::span<const uint8_t> frame, const FlowOpen& f, bool group) {
  if (f.kind == FlowOpen::Kind::kTcpSyn) {
    const auto rst = build_refusal_rst(f, gateway_mac(cfg_));
    ++stats_.frames_out;
    stats_.bytes_out += rst.size();
    port_.send_to_guest(rst);
  } else if ((f.kind == FlowOpen::Kind::kUdp || f.kind == FlowOpen::Kind::kEcho) && !group) {
    // RFC 1122 §3.2.2 / RFC 4443 §2.4(e): no ICMP error about a multicast or broadcast datagram.
    GuestAddr router{f.dst.family, {}};
    if (f.dst.family == AF_INET)
      std::memcpy(router.bytes.data(), &cfg_.gateway.s_addr, 4);
    else
      std::memcpy(router.bytes.data(), cfg_.gateway6.s6_addr, 16);
    const auto err = build_admin_prohibited(frame, f, gateway_mac(cfg_), router);
    ++stats_.frames_out;
    stats_.bytes_out += err.size();
    port_.send_to_guest(err);
  }
}

bool Engine::refuse_forbidden(std::span<const uint8_t> frame) {
  const auto f = inspect_flow_open(frame);
  if (!f) return false;
  // What the engine itself answers never leaves the virtual network and stays allowed: DHCP
  // (RFC 2131 §4.1 to the limited broadcast or the server, the gateway; DHCPv6 to
  // All_DHCP_Relay_Agents_and_Servers, RFC 8415 §7.1) and the guest's replies on UDP forward
  // flows (to the gateway, possibly while host loopback is off).
  if (f->kind == FlowOpen::Kind::kUdp) {
    if (f->dport == 67 && f->dst.family == AF_INET &&
        ((f->dst.bytes[0] == 255 && f->dst.bytes[1] == 255 && f->dst.bytes[2] == 255 && f->dst.bytes[3] == 255) ||
         std::memcmp(f->dst.bytes.data(), &cfg_.gateway.s_addr, 4) == 0))
      return false;
    static constexpr std::array<uint8_t, 16> kAllDhcp{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2};
    if (f->dport == 547 && f->dst.family == AF_INET6 && f->dst.bytes == kAllDhcp) return false;
    if (f->dst.family == AF_INET && std::memcmp(f->dst.bytes.data(), &cfg_.gateway.s_addr, 4) == 0 &&
        udp_flows_.count(f->dport))
      return false;
  }
  const DestClass c = nat_destination(cfg_, f->dst, f->kind == FlowOpen::Kind::kEcho, f->dport);
  if (c == DestClass::kAllowed) return false;
  ++stats_.dropped[static_cast<size_t>(FrameVerdict::kForbiddenDestination)];
  ++stats_.forbidden[static_cast<size_t>(c)];
  const bool group = c == DestClass::kMulticast || c == DestClass::kBroadcast;
  if (f->kind == FlowOpen::Kind::kTcpSyn || f->kind == FlowOpen::Kind::kUdp) send_refusal(frame, *f, group);
  // Multicast and broadcast are what a guest's own discovery protocols send (mDNS, SSDP):
  // counted, logged at debug. The rest is a crafted frame, or a guest misconfigured to reach the
  // host's loopback: a warning, rate-limited.
  const int64_t now = clock_.now_ms();
  if (group) {
    spdlog::debug("refused a guest packet to a {} destination", to_string(c));
  } else if (forbidden_log_.allow(now)) {
    spdlog::warn(
        "refused a guest packet toward a {} address (dropped.forbidden_destination; {} similar messages "
        "suppressed)",
        to_string(c), forbidden_log_.suppressed());
  }
  return true;
}

bool Engine::direct_forward(const PortForward& f) { return f.host.ss_family == AF_INET && f.proto == Proto::kTcp; }

boost::system::error_code Engine::attach_dns(dns::Proxy& proxy, const std::string& tcp_unix_path) {
  dns_ = &proxy;
  dns_shadow_ = dns_tcp_shadow(cfg_);
  if (auto ec = slirp_.add_unix_forward(tcp_unix_path, dns_shadow_, 53)) return ec;
  dns_tcp_shadowed_ = true;
  return {};
}

bool Engine::take_dns_query(std::span<const uint8_t> frame) {
  // Cheap screen first: only UDP to the DNS address, port 53, is ours.
  const uint16_t type = ether_type(frame);
  const Mac query_dst{frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]};
  // Hands the query to the proxy; `build(answer)` makes the reply frame.
  // `overhead` is the IP+UDP header size of the family.
  auto forward = [&](std::span<const uint8_t> payload, size_t overhead, auto build) {
    ++stats_.dns_udp_queries;
    dns_->on_query(payload, dns::Transport::kUdp,
                   [this, alive = std::weak_ptr<bool>(alive_), overhead, build,
                    query = std::vector<uint8_t>(payload.begin(), payload.end())](std::vector<uint8_t> answer) {
                     auto a = alive.lock();
                     if (!a || !*a) return;
                     if (answer.size() + overhead > cfg_.mtu) {
                       // Over the link MTU and we do not fragment: a TC answer makes
                       // the guest retry over TCP (RFC 1035 §4.2.1, RFC 7766 §5).
                       answer = dns::make_error_response(query, dns::Rcode::kNoError);
                       dns::set_tc(answer);
                       ++stats_.dns_truncated;
                     }
                     const auto f = build(answer);
                     ++stats_.frames_out;
                     stats_.bytes_out += f.size();
                     port_.send_to_guest(f);
                   });
    return true;
  };
  if (type == kEtherTypeIpv4) {
    if (frame.size() < kEthHeaderLen + 28 || frame[kEthHeaderLen + 9] != 17 ||
        std::memcmp(frame.data() + kEthHeaderLen + 16, &cfg_.dns.s_addr, 4) != 0)
      return false;
    const auto v = parse_udp4(frame);
    if (!v || v->dst_port != 53) return false;
    return forward(
        v->payload, 28,
        [this, query_dst, mac = v->src_mac, src = v->src, sport = v->src_port](const std::vector<uint8_t>& answer) {
          return build_udp4(query_dst, mac, cfg_.dns, 53, src, sport, answer);
        });
  }
  if (type == kEtherTypeIpv6 && cfg_.ipv6) {
    if (frame.size() < kEthHeaderLen + 48 || frame[kEthHeaderLen + 6] != 17 ||
        std::memcmp(frame.data() + kEthHeaderLen + 24, &cfg_.dns6, 16) != 0)
      return false;
    const auto v = parse_udp6(frame);
    if (!v || v->dst_port != 53) return false;
    return forward(
        v->payload, 48,
        [this, query_dst, mac = v->src_mac, src = v->src, sport = v->src_port](const std::vector<uint8_t>& answer) {
          return build_udp6(query_dst, mac, cfg_.dns6, 53, src, sport, answer);
        });
  }
  return false;
}

bool Engine::take_udp_flow_reply(std::span<const uint8_t> frame) {
  const auto v = parse_udp4(frame);
  if (!v || v->dst.s_addr != cfg_.gateway.s_addr) return false;
  auto it = udp_flows_.find(v->dst_port);
  if (it == udp_flows_.end() || it->second.guest_port != v->src_port) return false;
  ++stats_.udp_flow_frames_in;
  auto handler = it->second.on_reply;  // the handler may close the flow
  handler(v->payload);
  return true;
}

std::optional<uint16_t> Engine::open_flow(uint16_t guest_port, ReplyHandler on_reply) {
  if (udp_flows_.size() >= cfg_.max_udp_forward_flows) {
    ++stats_.refused_udp_forward_flows;
    return std::nullopt;
  }
  constexpr int kSpan = kUdpFlowPortLast - kUdpFlowPortFirst + 1;
  for (int i = 0; i < kSpan; ++i) {
    const auto port = static_cast<uint16_t>(kUdpFlowPortFirst + (next_flow_port_ + i) % kSpan);
    if (udp_flows_.count(port)) continue;
    next_flow_port_ = static_cast<uint16_t>((next_flow_port_ + i + 1) % kSpan);
    udp_flows_.emplace(port, UdpFlow{guest_port, std::move(on_reply)});
    return port;
  }
  return std::nullopt;
}

bool Engine::send_on_flow(uint16_t flow, std::span<const uint8_t> payload) {
  auto it = udp_flows_.find(flow);
  if (it == udp_flows_.end()) return false;
  if (!guest_mac_known_ || payload.size() + 28 > cfg_.mtu) {
    ++stats_.udp_flow_drops;
    return false;
  }
  const auto f =
      build_udp4(gateway_mac(cfg_), guest_mac_, cfg_.gateway, flow, cfg_.guest, it->second.guest_port, payload);
  ++stats_.udp_flow_frames_out;
  ++stats_.frames_out;
  stats_.bytes_out += f.size();
  port_.send_to_guest(f);
  return true;
}

void Engine::close_flow(uint16_t flow) { udp_flows_.erase(flow); }

void Engine::announce_guest(const Mac& mac) {
  guest_mac_ = mac;
  guest_mac_known_ = true;
  std::array<uint8_t, kEthHeaderLen + 28> f{};
  std::fill_n(f.begin(), 6, 0xff);
  std::copy(mac.begin(), mac.end(), f.begin() + 6);
  f[12] = 0x08, f[13] = 0x06;  // ARP
  uint8_t* a = f.data() + kEthHeaderLen;
  a[1] = 1, a[2] = 0x08, a[4] = 6, a[5] = 4, a[7] = 1;  // Ethernet/IPv4, request
  std::copy(mac.begin(), mac.end(), a + 8);             // sender MAC
  std::memcpy(a + 14, &cfg_.guest.s_addr, 4);           // sender IP = target IP: an announcement
  std::memcpy(a + 24, &cfg_.guest.s_addr, 4);
  slirp_.input(f);
}

boost::system::error_code Engine::add_fast_forward(const PortForward& f) {
  const int family = f.host.ss_family;
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return {errno, boost::system::system_category()};
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  const socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&f.host), len) != 0 || ::listen(fd.get(), 1024) != 0)
    return {errno, boost::system::system_category()};
  auto ff = std::make_shared<FastForward>();
  ff->forward = f;
  ff->listener = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd.release());
  ff->backoff = std::make_unique<AcceptBackoff>(io_);
  fast_.push_back(ff);
  accept_fast(ff);
  return {};
}

void Engine::accept_fast(const std::shared_ptr<FastForward>& ff) {
  ff->listener->async_wait(
      boost::asio::posix::descriptor_base::wait_read,
      [this, ff, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || !ff->listener->is_open()) return;
        for (int i = 0; i < 64; ++i) {
          UniqueFd c(::accept4(ff->listener->native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
          if (!c) {
            const int err = errno;
            // Out of descriptors the connection stays queued and the listener
            // readable: re-arming now would spin. Pause instead.
            const auto what = "forward " + ff->forward.describe();
            if (ff->backoff->defer_if_exhausted(err, what, [this, ff, alive] {
                  if (alive.lock()) accept_fast(ff);
                })) {
              ++stats_.accept_backoffs;
              return;
            }
            break;  // EAGAIN, or the peer gave up already (ECONNABORTED)
          }
          ++stats_.tcp_forward_accepted;
          if (!guest_mac_known_) {
            if (awaiting_mac_.size() >= kMaxAwaitingMac) {
              ++stats_.tcp_forward_refused;
              continue;  // c closes here
            }
            ++stats_.tcp_forward_awaited_mac;
            awaiting_mac_.push_back({std::move(c), ff->forward.guest_port});
            if (awaiting_mac_.size() == 1) {
              arp_tries_ = 0;
              ask_guest_mac();
            }
            continue;
          }
          open_forwarded(std::move(c), ff->forward.guest_port);
        }
        accept_fast(ff);
      });
}

void Engine::open_forwarded(UniqueFd c, uint16_t guest_port) {
  TcpFastPath::Key key{AF_INET, {}, {}, guest_port, 0};
  std::memcpy(key.gaddr.data(), &cfg_.guest, 4);
  std::memcpy(key.daddr.data(), &cfg_.gateway, 4);
  // The guest sees the connection come from the gateway, from a port no flow uses. Reusing a
  // port the guest still holds in TIME-WAIT is fine: our ISNs per tuple only move forward
  // (netstack/tcp_isn.hpp).
  for (int tries = 0; tries < 64; ++tries) {
    next_forward_port_ = next_forward_port_ < cfg_.forward_port_first || next_forward_port_ >= cfg_.forward_port_last
                             ? cfg_.forward_port_first
                             : static_cast<uint16_t>(next_forward_port_ + 1);
    key.dport = next_forward_port_;
    if (!tcp_->has_flow(key)) break;
  }
  if (!tcp_->open_to_guest(std::move(c), key, guest_mac_)) {
    ++stats_.tcp_forward_refused;  // c closes here: the peer sees its connection end at once
  }
}

void Engine::learn_guest_mac(const Mac& mac) {
  guest_mac_ = mac;
  guest_mac_known_ = true;
  if (awaiting_mac_.empty()) return;
  arp_timer_.cancel();
  auto waiting = std::move(awaiting_mac_);
  awaiting_mac_.clear();
  for (auto& w : waiting) open_forwarded(std::move(w.conn), w.guest_port);
}

// A guest configured statically (the VM agent's NetConfig, a namespace's tap) may say
// nothing over IPv4 for a long time, while its IPv6 stack talks at once (router and neighbour
// solicitations). libslirp learns a guest's MAC only from IPv4 and ARP, and until then drops
// what a -p UDP forward or a hostfwd sends the guest (its ARP request goes unanswered by a
// guest whose stack is not asked). The first IPv6 frame from the guest gives its MAC: we learn
// it and hand libslirp what the guest's first IPv4 packet would have given it, an ARP request
// from the lease for the gateway (libslirp answers it; a guest ignores an unsolicited reply).
void Engine::introduce_guest(const Mac& mac) {
  if ((mac[0] & 1) != 0) return;  // a multicast source is no guest's NIC
  learn_guest_mac(mac);
  const auto f = build_arp_request(mac, cfg_.guest, cfg_.gateway);
  slirp_.input(f);
  ++stats_.guest_introductions;
}

void Engine::ask_guest_mac() {
  if (awaiting_mac_.empty()) return;
  if (arp_tries_++ >= kArpTries) {
    stats_.tcp_forward_refused += awaiting_mac_.size();
    char ip[INET_ADDRSTRLEN] = "?";
    ::inet_ntop(AF_INET, &cfg_.guest, ip, sizeof ip);
    spdlog::warn("the guest did not answer ARP for {} within {} ms: {} forwarded connection(s) closed", ip,
                 kArpTries * kArpInterval.count(), awaiting_mac_.size());
    awaiting_mac_.clear();  // closing them: the host peers see their connections end
    return;
  }
  ++stats_.arp_requests;
  ++stats_.frames_out;
  const auto f = build_arp_request(gateway_mac(cfg_), cfg_.gateway, cfg_.guest);
  stats_.bytes_out += f.size();
  port_.send_to_guest(f);
  arp_timer_.expires_after(kArpInterval);
  arp_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    ask_guest_mac();
  });
}

boost::system::error_code Engine::add_relayed_forward(const PortForward& f) {
  auto r = std::make_unique<Relayed>();
  r->forward = f;
  boost::system::error_code ec;
  if (f.proto == Proto::kUdp) {
    r->udp = std::make_unique<portfwd::UdpForwarder>(io_, clock_, f.host, f.guest_port, *this);
    if ((ec = r->udp->start())) return ec;
    relayed_.push_back(std::move(r));
    return {};
  }
  // An internal libslirp forward on a free loopback port. The port is free
  // when we look; should another process take it first, try again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0)
      return {errno, boost::system::system_category()};
    probe.reset();
    r->internal = f;
    std::memset(&r->internal.host, 0, sizeof r->internal.host);
    std::memcpy(&r->internal.host, &a, sizeof a);
    ec = slirp_.add_host_forward(r->internal, cfg_.guest);
    if (ec != boost::system::errc::address_in_use) break;
  }
  if (ec) return ec;
  r->connector = std::make_unique<portfwd::LoopbackConnector>(io_, r->internal.host);
  r->tcp = std::make_unique<portfwd::TcpForwarder>(io_, f.host, f.guest_port, *r->connector);
  if ((ec = r->tcp->start())) {
    slirp_.remove_host_forward(r->internal);
    return ec;
  }
  relayed_.push_back(std::move(r));
  return {};
}

boost::system::error_code Engine::add_forward(const PortForward& f) {
  if (std::find(forwards_.begin(), forwards_.end(), f) != forwards_.end())
    return {EEXIST, boost::system::system_category()};
  auto ec = (f.proto == Proto::kTcp && tcp_) ? add_fast_forward(f)
            : direct_forward(f)              ? slirp_.add_host_forward(f, cfg_.guest)
                                             : add_relayed_forward(f);
  if (ec) return ec;
  forwards_.push_back(f);
  slirp_.schedule_pump();
  return {};
}

boost::system::error_code Engine::remove_forward(const PortForward& f) {
  auto it = std::find(forwards_.begin(), forwards_.end(), f);
  if (it == forwards_.end()) return {ENOENT, boost::system::system_category()};
  if (auto ff = std::find_if(fast_.begin(), fast_.end(), [&](const auto& x) { return x->forward == f; });
      ff != fast_.end()) {
    (*ff)->listener->close();
    fast_.erase(ff);
  } else if (direct_forward(f)) {
    slirp_.remove_host_forward(f);
  } else {
    auto r = std::find_if(relayed_.begin(), relayed_.end(), [&](const auto& x) { return x->forward == f; });
    if (r != relayed_.end()) {
      if ((*r)->tcp) slirp_.remove_host_forward((*r)->internal);
      relayed_.erase(r);
    }
  }
  forwards_.erase(it);
  slirp_.schedule_pump();
  return {};
}

EngineStats Engine::stats() const {
  EngineStats s = stats_;
  s.pumps = slirp_.pumps();
  s.guest_errors = slirp_.guest_errors();
  s.host_sockets = slirp_.host_sockets();
  s.forwards = forwards_.size();
  s.udp_flows = udp_flows_.size();
  s.slirp_udp_sources = slirp_udp_sources_.size();
  if (tcp_) s.tcp = tcp_->stats();
  for (auto& r : relayed_)
    if (r->tcp) s.accept_backoffs += r->tcp->stats().accept_backoffs;
  return s;
}

void Engine::on_slirp_frame(std::span<const uint8_t> frame) {
  ++stats_.frames_out;
  stats_.bytes_out += frame.size();
  if (dns_tcp_shadowed_ && frame.size() >= kEthHeaderLen + 20 && ether_type(frame) == kEtherTypeIpv4 &&
      frame[kEthHeaderLen + 9] == 6 && std::memcmp(frame.data() + kEthHeaderLen + 12, &dns_shadow_.s_addr, 4) == 0) {
    if (auto ports = tcp4_ports(frame); ports && ports->first == 53) {
      // Back from the shadow to the address the guest asked (see attach_dns).
      std::vector<uint8_t> copy(frame.begin(), frame.end());
      rewrite_tcp4_address(copy, /*destination=*/false, cfg_.dns);
      const Mac dns_mac{0x52, 0x55, 0, 0, 0, 0};
      std::copy(dns_mac.begin(), dns_mac.begin() + 2, copy.begin() + 6);
      std::memcpy(copy.data() + 8, &cfg_.dns.s_addr, 4);  // source MAC 52:55:<dns address>, as for ARP
      port_.send_to_guest(copy);
      return;
    }
  }
  if (cfg_.mtu != 1500 && frame.size() > kEthHeaderLen + 28 + 240 && ether_type(frame) == kEtherTypeIpv4 &&
      frame[kEthHeaderLen + 9] == 17) {
    // A DHCP reply gets the link MTU (libslirp's server does not offer it).
    std::vector<uint8_t> copy(frame.begin(), frame.end());
    if (add_dhcp_mtu_option(copy, static_cast<uint16_t>(std::min<size_t>(cfg_.mtu, 65535)))) {
      ++stats_.dhcp_mtu_offered;
      port_.send_to_guest(copy);
      return;
    }
  }
  port_.send_to_guest(frame);
}

}  // namespace causeway::netstack
