// Engine: one guest's NAT-mode network, on libslirp, driven by Boost.Asio.
//
// Theory of operation
// -------------------
// The engine classifies guest frames and manages forwards; libslirp, behind a
// SlirpBridge (slirp_bridge.hpp: its poll descriptors and timers on the Asio
// loop), is the fallback for whatever no handler here takes.
//
// Guest frames pass check_guest_frame() (frame.hpp) before slirp_input():
// malformed, oversized and mis-addressed frames are dropped and counted.
// Then the destination policy (dest_policy.hpp): a TCP SYN, UDP datagram or
// ICMP echo toward an address the guest must not reach through the host —
// 127.0.0.0/8, ::1, 0.0.0.0/8, ::, their IPv4-mapped/-compatible forms,
// multicast, broadcast, link-local, the gateway while host loopback is off —
// is refused before any handler sees it (RST for TCP, ICMP administratively
// prohibited for UDP, nothing for echo) and counted as
// dropped.forbidden_destination. Neither libslirp (which connect()s to any
// address outside its virtual network) nor the fast path is trusted with
// that: this is the one gate for both, and for offload frames too. DHCP and
// the guest's replies on UDP forward flows are the engine's own and pass.
// Frames to the guest leave through FramePort::send_to_guest; libslirp's pass
// on_slirp_frame() first (the DNS shadow rewrite and the DHCP MTU option, below).
//
// Time: everything reads the injected Clock (libslirp too, through the
// bridge). With a fake clock a test drives the engine by calling
// on_guest_frame() and pump().
//
// Forwards: with the TCP fast path, a TCP forward is our own listener (either
// family, backlog 1024): each accepted connection becomes a fast-path flow the
// engine opens toward the guest's lease from the gateway (a port taken from
// 32768–60999), so neither libslirp's TCP nor its one-deep backlog is in the
// way. Without the fast path: TCP on an IPv4 host address is a libslirp host forward. TCP on
// an IPv6 host address is relayed (portfwd/) to an internal libslirp forward
// on an ephemeral 127.0.0.1 port: libslirp 4.7 resets TCP connections whose
// host side is IPv6 and guest side IPv4, and most guest servers listen on
// 0.0.0.0 only. UDP forwards do not use libslirp at all: its UDP host
// forward keeps one peer per guest port and answers from another host port
// than the client sent to (connected clients discard that; seen with socat).
// Instead the engine is a GuestDatagramChannel: each host client's flow gets
// a virtual source port on the gateway (kUdpFlowPorts), the engine writes the
// UDP frames to the guest itself and takes the guest's replies to those
// ports out of the frame stream before libslirp sees them. A guest-started
// datagram that happens to use exactly such a port pair is taken too —
// documented, and unlikely with ports from the top of the range.
//
// Limits: one Slirp instance per guest; the flow table is libslirp's own
// (unbounded in 4.7; with the fast path on, TCP does not use it). IPv4 forwards
// address the first DHCP lease (NatConfig::guest).
//
// Thread safety: confined to the executor of the io_context it was built on.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "netstack/dest_policy.hpp"
#include "netstack/forward.hpp"
#include "netstack/frame.hpp"
#include "netstack/frame_port.hpp"
#include "netstack/nat_config.hpp"
#include "netstack/refusal.hpp"
#include "netstack/slirp_bridge.hpp"
#include "netstack/tcp_fast_path.hpp"
#include "dns/proxy.hpp"
#include "portfwd/guest_datagram.hpp"
#include "portfwd/loopback_connector.hpp"
#include "portfwd/tcp_forwarder.hpp"
#include "portfwd/udp_forwarder.hpp"

namespace causeway::netstack {

struct EngineStats {
  uint64_t frames_in = 0;  // from the guest, accepted
  uint64_t bytes_in = 0;
  uint64_t frames_out = 0;  // to the guest
  uint64_t bytes_out = 0;
  // Dropped guest frames, by verdict (index: FrameVerdict).
  std::array<uint64_t, kFrameVerdictCount> dropped{};
  uint64_t guest_errors = 0;  // libslirp's guest_error callback
  uint64_t pumps = 0;
  size_t host_sockets = 0;  // descriptors libslirp watched in the last turn
  size_t forwards = 0;
  uint64_t udp_flow_frames_in = 0;  // guest replies taken for UDP forwards
  uint64_t udp_flow_frames_out = 0;
  uint64_t udp_flow_drops = 0;  // guest MAC unknown, or datagram over the MTU
  size_t udp_flows = 0;
  uint64_t dns_udp_queries = 0;
  uint64_t dns_truncated = 0;              // answers over the link MTU sent as TC=1
  uint64_t dns_answers_dropped = 0;        // guest MAC gone, or answer after the engine changed
  uint64_t dhcp_mtu_offered = 0;           // DHCP replies given the link MTU (option 26)
  uint64_t offload_to_fast_path = 0;       // offload frames the TCP fast path took whole
  uint64_t offload_in_software = 0;        // offload frames finished in software (libslirp's, or no flow)
  uint64_t offload_segments = 0;           // frames those became
  TcpFastPathStats tcp;                    // the TCP fast path (zeros when it is off)
  uint64_t tcp_forward_accepted = 0;       // host connections on fast-path TCP forwards
  uint64_t tcp_forward_refused = 0;        // closed: guest MAC still unknown after ARP, flow table full
  uint64_t tcp_forward_awaited_mac = 0;    // held while ARP asked for the guest's MAC
  uint64_t arp_requests = 0;               // ARP requests for the guest's lease we sent
  uint64_t guest_introductions = 0;        // the guest's MAC taught to libslirp from its IPv6 (introduce_guest)
  uint64_t accept_backoffs = 0;            // forward accepts paused: out of descriptors (base/accept_backoff.hpp)
  uint64_t refused_slirp_sockets = 0;      // new libslirp flows refused: NatConfig::max_slirp_sockets
  uint64_t refused_udp_forward_flows = 0;  // UDP forward flows not opened: max_udp_forward_flows
  size_t slirp_udp_sources = 0;            // guest UDP sources libslirp may still hold a socket for
  // dropped.forbidden_destination by class (index: DestClass; kAllowed stays 0).
  std::array<uint64_t, kDestClassCount> forbidden{};
  [[nodiscard]] uint64_t dropped_total() const;
};

class Engine final : public FrameSink, public portfwd::GuestDatagramChannel {
 public:
  Engine(boost::asio::io_context& io, const Clock& clock, NatConfig cfg, FramePort& port);
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // How long a guest UDP source counts against NatConfig::max_slirp_sockets after its last
  // datagram: libslirp's SO_EXPIRE (240 s) plus a margin.
  static constexpr int64_t kSlirpUdpExpiryMs = 240'000 + 10'000;

  void on_guest_frame(std::span<const uint8_t> frame) override;
  // A frame with checksum/TSO work left (a tap with offloads): a TCP segment
  // of a fast-path flow goes to the fast path whole (a 64 KiB super-segment is
  // one write to the host socket); anything else is finished in software
  // (checksum completed, super-segment cut to the MTU) and handled as plain
  // frames. A header that does not validate: dropped.bad_offload.
  void on_guest_offload_frame(std::span<const uint8_t> frame, const VnetHdr& hdr) override;

  // Tells the stack the guest's MAC for its IPv4 lease, as a gratuitous ARP
  // (RFC 5227 §2.3 announcement) would, so traffic the host starts (a
  // forwarded UDP datagram) is not lost waiting for ARP. For attachments
  // that know the guest's MAC up front (netns); nothing goes on the wire.
  void announce_guest(const Mac& mac);

  // Hands the guest's DNS to `proxy`: UDP queries to the DNS address (IPv4
  // and IPv6, port 53) are taken before libslirp. TCP to the IPv4 DNS
  // address reaches `tcp_unix_path` (a DnsTcpFrontend) through a libslirp
  // unix forward — which libslirp refuses on its nameserver address, so the
  // forward sits on kDnsTcpShadow and the engine rewrites 10.0.2.3:53 ⇄
  // shadow:53 in TCP frames both ways (checksums patched, RFC 1624). Call
  // once, right after construction.
  boost::system::error_code attach_dns(dns::Proxy& proxy, const std::string& tcp_unix_path);

  // Opens a host listener for `f`. Errors are the host's (EADDRINUSE, EACCES…).
  boost::system::error_code add_forward(const PortForward& f);
  boost::system::error_code remove_forward(const PortForward& f);
  [[nodiscard]] const std::vector<PortForward>& forwards() const { return forwards_; }

  // GuestDatagramChannel (UDP forwards).
  std::optional<uint16_t> open_flow(uint16_t guest_port, ReplyHandler on_reply) override;
  bool send_on_flow(uint16_t flow, std::span<const uint8_t> payload) override;
  void close_flow(uint16_t flow) override;

  [[nodiscard]] EngineStats stats() const;
  [[nodiscard]] const NatConfig& config() const { return cfg_; }

  // One turn of libslirp's loop (SlirpBridge::pump). Public so component tests
  // with a fake clock can drive it; production code never needs to call it.
  void pump() { slirp_.pump(); }

 private:
  struct Relayed {
    PortForward forward;   // what the user asked for ([::1]:P)
    PortForward internal;  // the libslirp forward it rides on (127.0.0.1:ephemeral)
    std::unique_ptr<portfwd::LoopbackConnector> connector;
    std::unique_ptr<portfwd::TcpForwarder> tcp;
    std::unique_ptr<portfwd::UdpForwarder> udp;
  };
  // A frame libslirp sends to the guest (from inside its send_packet callback).
  void on_slirp_frame(std::span<const uint8_t> frame);
  boost::system::error_code add_relayed_forward(const PortForward& f);
  struct FastForward;
  boost::system::error_code add_fast_forward(const PortForward& f);
  void accept_fast(const std::shared_ptr<FastForward>& ff);
  static bool direct_forward(const PortForward& f);
  // The destination policy (see the header): true when the frame was refused (answered or
  // dropped, counted).
  bool refuse_forbidden(std::span<const uint8_t> frame);
  // The libslirp part of the descriptor budget (netstack/budget.hpp). libslirp opens a host
  // socket per guest UDP source (address, port), per TCP connection it carries and per echo
  // id, keeps a UDP one until kSlirpUdpExpiry after its last datagram (its SO_EXPIRE) and has
  // no cap of its own: a frame that would open one more while libslirp holds
  // cfg_.max_slirp_sockets descriptors, or while slirp_udp_sources_ (the UDP sources seen
  // within kSlirpUdpExpiry) is full, is refused like a forbidden destination (RST, ICMP
  // administratively prohibited) and counted as refused_slirp_sockets. The newest flow is
  // refused; those libslirp holds are never cut.
  bool refuse_over_slirp_budget(std::span<const uint8_t> frame);
  void send_refusal(std::span<const uint8_t> frame, const FlowOpen& f, bool group);
  std::map<std::pair<std::array<uint8_t, 17>, uint16_t>, int64_t> slirp_udp_sources_;  // -> last seen (ms)
  int64_t slirp_sources_swept_ms_ = 0;
  RateLimitedLog budget_log_;

  boost::asio::io_context& io_;
  const Clock& clock_;
  NatConfig cfg_;
  FramePort& port_;
  EngineStats stats_;
  RateLimitedLog drop_log_;
  RateLimitedLog forbidden_log_;

  std::vector<PortForward> forwards_;
  std::vector<std::unique_ptr<Relayed>> relayed_;
  std::vector<std::shared_ptr<FastForward>> fast_;  // TCP forwards on the fast path
  uint16_t next_forward_port_ = 0;
  struct UdpFlow {
    uint16_t guest_port;
    ReplyHandler on_reply;
  };
  std::unordered_map<uint16_t, UdpFlow> udp_flows_;  // gateway source port -> flow
  uint16_t next_flow_port_ = 0;
  Mac guest_mac_{};
  bool guest_mac_known_ = false;
  // Forwarded TCP connections accepted before the guest's MAC is known — a DHCP guest behind
  // `serve` may have sent nothing from its lease yet. They wait while we ask by ARP (RFC 826),
  // as libslirp does for its own forwards; at most kMaxAwaitingMac (more are refused), for at
  // most kArpTries × kArpInterval (then refused: the host peer sees its connection closed).
  struct AwaitingMac {
    UniqueFd conn;
    uint16_t guest_port;
  };
  static constexpr size_t kMaxAwaitingMac = 128;
  static constexpr int kArpTries = 4;
  static constexpr auto kArpInterval = std::chrono::milliseconds(250);
  std::vector<AwaitingMac> awaiting_mac_;
  boost::asio::steady_timer arp_timer_;
  int arp_tries_ = 0;
  void learn_guest_mac(const Mac& mac);
  void open_forwarded(UniqueFd conn, uint16_t guest_port);
  void ask_guest_mac();
  void introduce_guest(const Mac& mac);
  bool take_udp_flow_reply(std::span<const uint8_t> frame);
  std::unique_ptr<TcpFastPath> tcp_;  // the TCP fast path, when NatConfig::tcp_fast
  bool take_dns_query(std::span<const uint8_t> frame);
  bool dns_tcp_shadowed_ = false;
  in_addr dns_shadow_{};
  std::vector<uint8_t> rewrite_buf_;
  std::vector<uint8_t> offload_buf_;  // software-finished offload frames (on_guest_offload_frame)
  dns::Proxy* dns_ = nullptr;

  // Declared after everything on_slirp_frame touches: slirp_cleanup may call back.
  SlirpBridge slirp_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::netstack
