// Mirrored mode, data path: one MirrorLink per mirrored guest link carries
// the guest's traffic out through host sockets bound to the guest's source
// address — which, in mirrored mode, is the host's own address on that link.
// The host's routing table, policy rules and VPN client then choose the path
// exactly as for a host process; nothing here routes.
//
//   guest link (tap in netns; macvlan on virtio-net in a VM)
//     │ Ethernet frames
//     ▼
//   MirrorLink::on_guest_frame
//     ARP request          → NeighborResponder (neighbor_responder.hpp):
//                            reply, every address is behind our MAC (proxy ARP)
//     ICMPv6 NS            → NeighborResponder: NA with our MAC (router flag),
//                            so the guest's gateways and on-link peers all
//                            resolve to us
//     TCP                  → TcpFastPath (tcp_fast_path.hpp) with a policy that
//                            binds the host socket to the guest's source
//                            address and connects to the real destination;
//                            a segment of no flow gets RST (RFC 9293 §3.10.7.1)
//     UDP                  → DatagramFlowTable (datagram_flow_table.hpp): one
//                            host socket per (guest address, guest port),
//                            bound to that address and, when free, the same
//                            port (else an ephemeral one); replies from any
//                            peer go back as frames (endpoint-independent
//                            mapping, RFC 4787 §4.1)
//     ICMP / ICMPv6 echo   → DatagramFlowTable: one ping socket (SOCK_DGRAM,
//                            IPPROTO_ICMP[V6]) per (guest address, echo id),
//                            bound to the address; the kernel picks the id on
//                            the wire, replies get the guest's id back
//     anything else        → dropped, counted by reason
//
// MirrorLink itself checks the frame, applies the address policy below and
// dispatches; it composes the three parts and sums their counters.
//
// Addresses (set_addresses, from the plan on every sync): the guest may only
// use the addresses planned for this link as sources — a SYN, datagram or
// echo from another link's address, 0.0.0.0, 127.0.0.1 or anything else gets
// nothing and counts dropped.forbidden_source — and only destinations the
// policy allows (dest_policy.hpp: no loopback, unspecified, IPv4-mapped or
// -compatible forms, multicast, broadcast of a planned network, nor any
// planned address, which is the host itself; link-local peers are real here).
// A refused SYN gets RST; a refused datagram or echo is dropped (no ICMP
// error: a mirrored link has no router address of ours to send one from, and
// one "from" the destination would be a martian for 127/8 and 0/8 that the
// guest's kernel discards). Counted as dropped.forbidden_destination. Until
// the first set_addresses every source is refused.
//
// Our side of every link is one MAC (kMirrorRouterMac): the guest sees one
// router that answers for every address. The guest's own addresses are never
// claimed: ARP probes (sender 0.0.0.0), gratuitous ARP and DAD (NS from ::)
// are not answered.
//
// Bounds: TCP flows as TcpFastPath's max_flows (RST beyond); UDP and ping
// flows capped (the oldest idle one is closed for a new one); UDP flows idle
// for udp_idle (dns_idle for port 53) are closed by a sweep every few
// seconds (idle time on the injected Clock). Replies that would not fit the link MTU are dropped and counted
// (no fragmentation toward the guest). Guest IPv4 fragments are dropped and
// counted (no reassembly: the guest's PMTU discovery keeps TCP unfragmented;
// large UDP datagrams need the MTU).
//
// Not here: inbound connections (the auto-forward machinery listens on the
// host's wildcard address in mirrored mode), DNS (the guest's resolver is
// the proxy on the NAT link), ICMP errors for UDP/TCP (the socket's error is
// a refused connect / RST for TCP; UDP errors are dropped).
//
// The guest is untrusted: every header is bounds-checked here or in
// parse_tcp_segment / parse_udp4 / parse_udp6 before use; nothing it sends
// can make us write outside a buffer or keep unbounded state.
//
// Thread safety: confined to the executor of the io_context it is built on.
#pragma once

#include <netinet/in.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "netstack/dest_policy.hpp"
#include "netstack/frame.hpp"
#include "netstack/frame_port.hpp"
#include "netstack/mirror/datagram_flow_table.hpp"
#include "netstack/mirror/neighbor_responder.hpp"
#include "netstack/mirror/plan.hpp"
#include "netstack/tcp_fast_path.hpp"

namespace causeway::netstack::mirror {

// Locally administered, outside causeway's 02:43:57 prefix that the plan
// excludes from mirroring (this MAC never names a host link).
inline constexpr Mac kMirrorRouterMac{0x02, 0x43, 0x58, 0x00, 0x00, 0x01};

struct MirrorLinkConfig {
  std::string name;      // the guest link's name (for logs and status)
  int host_ifindex = 0;  // the host link's: scope of link-local IPv6 peers (0: none)
  Mac our_mac = kMirrorRouterMac;
  size_t mtu = 1500;
  size_t max_tcp_flows = 4096;
  size_t max_udp_flows = 1024;
  size_t max_ping_flows = 256;
  std::chrono::seconds udp_idle{180};
  std::chrono::seconds dns_idle{20};
};

struct MirrorLinkStats {
  uint64_t frames_in = 0, frames_out = 0;
  uint64_t arp_replies = 0, nd_adverts = 0;
  uint64_t udp_flows_opened = 0, udp_out = 0, udp_in = 0;
  uint64_t udp_errors = 0;   // a bind or send the host refused
  uint64_t udp_evicted = 0;  // flows closed to make room (cap)
  uint64_t ping_out = 0, ping_in = 0, ping_errors = 0;
  uint64_t too_big = 0;  // replies over the link MTU, dropped
  uint64_t dropped_malformed = 0, dropped_fragment = 0, dropped_unsupported = 0, dropped_not_for_us = 0;
  uint64_t dropped_bad_offload = 0;            // a virtio-net header that does not fit its frame (base/vnet_hdr.hpp)
  uint64_t dropped_forbidden_source = 0;       // a source not planned for this link
  uint64_t dropped_forbidden_destination = 0;  // a destination the policy refuses (dest_policy.hpp)
  uint64_t offload_to_fast_path = 0;           // TCP frames with offload work taken whole by the fast path
  uint64_t offload_in_software = 0;            // other frames with offload work, finished here first
  size_t udp_flows = 0, ping_flows = 0;
  TcpFastPathStats tcp;
};
nlohmann::json to_json(const MirrorLinkStats& s);

// What a link's guest may use as source and reach as destination.
struct MirrorLinkAddresses {
  std::vector<GuestAddr> sources;  // the addresses planned for the link
  DestPolicy destinations;
};
// From a plan's desired state: `link`'s addresses as sources and their IPv4
// networks' broadcasts refused; every planned address (of any link: they are
// all the host's) refused as a destination.
MirrorLinkAddresses link_addresses(const NetState& plan, std::string_view link);

class MirrorLink final : public FrameSink {
 public:
  // `port` carries frames to the guest and must outlive the link. Time comes
  // from the steady clock.
  MirrorLink(boost::asio::io_context& io, FramePort& port, MirrorLinkConfig cfg);
  // As above, time from `clock` (idle flows, rate-limited logs), which must
  // outlive the link.
  MirrorLink(boost::asio::io_context& io, FramePort& port, MirrorLinkConfig cfg, const Clock& clock);
  ~MirrorLink() override;
  MirrorLink(const MirrorLink&) = delete;
  MirrorLink& operator=(const MirrorLink&) = delete;

  void on_guest_frame(std::span<const uint8_t> frame) override;
  // From a tap with offloads: a TCP segment (a 64 KiB super-segment, or one with a partial
  // checksum) goes to the fast path whole, which reads no checksum; anything else is finished in
  // software (checksum, segmentation) and takes the plain path.
  void on_guest_offload_frame(std::span<const uint8_t> frame, const VnetHdr& hdr) override;
  // The guest link's MTU changed (the plan follows the host's).
  void set_mtu(size_t mtu);
  // The plan's addresses for this link (see the header); replaces the previous set.
  void set_addresses(MirrorLinkAddresses a) { addrs_ = std::move(a); }
  [[nodiscard]] MirrorLinkStats stats() const;
  [[nodiscard]] const MirrorLinkConfig& config() const { return cfg_; }

 private:
  // Both public constructors land here; no `clock` means steady_ (a member, so it can only
  // be chosen inside the object's own initialization, after steady_ exists).
  MirrorLink(boost::asio::io_context& io, FramePort& port, MirrorLinkConfig cfg, const Clock* clock);

  void on_arp(std::span<const uint8_t> frame);
  void on_ipv4(std::span<const uint8_t> frame);
  void on_ipv6(std::span<const uint8_t> frame);
  void on_neighbor_solicit(std::span<const uint8_t> frame, std::span<const uint8_t> icmp);
  void send(std::span<const uint8_t> frame);
  [[nodiscard]] bool for_us_unicast(std::span<const uint8_t> frame) const;
  // The source and destination checks (see the header): true when the frame was refused.
  bool refused(std::span<const uint8_t> frame);

  FramePort& port_;
  MirrorLinkConfig cfg_;
  SteadyClock steady_;  // the clock when none is given
  const Clock& clock_;  // steady_ or the one given
  TcpFastPath tcp_;
  DatagramFlowTable flows_;
  NeighborResponder neighbors_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> offload_buf_;  // finish_in_software's scratch
  MirrorLinkStats stats_;
  MirrorLinkAddresses addrs_;
  RateLimitedLog refusal_log_;
};

}  // namespace causeway::netstack::mirror
