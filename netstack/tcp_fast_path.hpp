// TcpFastPath: the TCP fast path. Guest TCP connections are mapped onto host
// kernel sockets one to one — no second TCP stack in user space, the design
// passt/pasta use. Behind the engine's classifier (`--tcp-engine fast`).
//
// Theory of operation
// -------------------
// Scope: TCP for IPv4 and IPv6 in NAT mode and mirrored mode (a policy says
// where a SYN goes and whether the host socket is bound to the guest's source
// address), both directions:
//   guest opens   A guest SYN to D:P becomes a non-blocking connect() to D:P
//                 (to the host's loopback when D is the gateway and host
//                 loopback is allowed); the SYN-ACK goes to the guest only
//                 once the host connect succeeded, so a refused connect is an
//                 RST to the guest (RFC 9293 §3.10.7.1 as seen from the guest:
//                 its SYN is answered with RST).
//   host opens    open_to_guest(): a connection a forward's listener accepted;
//                 we send the guest a SYN (§3.5, we are the active side; MSS
//                 and window scale offered) and join the two once its SYN-ACK
//                 arrives; its RST resets the host peer (kSynToGuest).
// Everything that is not a SYN of a new flow or a segment of one of ours goes
// to the caller's fallback (libslirp in NAT mode, an RST in mirrored mode).
// The fast path connect()s what the policy's route returns and judges no
// address itself: its callers apply the destination policy (dest_policy.hpp)
// first — Engine::refuse_forbidden, MirrorLink's source and destination
// checks — so a SYN to 127.0.0.1, ::ffff:127.0.0.1 or 0.0.0.0 never gets here.
//
// Sequence space (RFC 9293 §3.3.1 names):
//   guest → host   rcv_nxt: the next guest byte we expect. A segment at
//                  rcv_nxt is written to the host socket at once; what the
//                  socket does not take is held (at most kToHostCap bytes per
//                  flow, written when the socket drains) and acknowledged;
//                  beyond that bound it is not acknowledged and the guest
//                  retransmits it. In-order data is acknowledged once per
//                  batch of guest frames (one posted flush after the port's
//                  read loop; a data segment we send carries it sooner), not
//                  per segment — RFC 9293 §3.8.6.3 allows it, and per-segment
//                  ACKs were a third of the frames we wrote. Out-of-order
//                  segments are dropped and answered with a duplicate ACK
//                  (RFC 9293 §3.10.7.4: "send an acknowledgment"); the
//                  guest's own retransmission fills the gap.
//   host → guest   snd_una..snd_nxt: bytes sent to the guest, not yet
//                  acknowledged. They are *peeked* from the host socket, not
//                  read: the socket keeps them until the guest's ACK covers
//                  them, then they are consumed (recv with MSG_TRUNC). So
//                  retransmission is peeking again from snd_una (SO_PEEK_OFF
//                  rewound), and our memory per flow is one segment buffer.
//                  Send window: the guest's advertised window (scaled,
//                  RFC 7323 §2) minus what is in flight.
// Our window toward the guest is the free space of 7/8 of the host socket's
// send buffer (7/8 SO_SNDBUF minus SIOCOUTQ minus what we hold), scaled by
// kWindowScale. 7/8 because the kernel charges each queued skb's overhead
// (truesize) to SO_SNDBUF while SIOCOUTQ counts payload bytes: advertising
// all of it promised room that send() then refused, and with 64 KiB
// super-segments the excess filled kToHostCap and stalled the flow on
// retransmission timeouts. Receiver silly-window avoidance (RFC 1122
// §4.2.3.3): a window below min(that space / 8, our MSS) is advertised as
// zero; the kernel reports the socket writable only with at least a third of
// SO_SNDBUF free, which is always above that threshold, so the window update
// sent on writability always opens the window. While it is zero the guest
// probes (a segment one below rcv_nxt, as Linux's zero-window probes and
// keepalives are): such old, empty segments are answered with an ACK
// carrying the current window (RFC 9293 §3.10.7.4), else a lost window
// update would leave the flow stalled until the guest gave up.
//
// Offloads (enable_tx_offload, a tap with a virtio-net header): data
// segments toward the guest leave with NEEDS_CSUM (the checksum field holds
// the pseudo-header sum; the guest's kernel treats it as verified) and, when
// more than one MSS is ready, as one GSO super-segment (gso_size = the MSS,
// up to 64 KiB of IP packet): one writev and no checksum loop per 64 KiB.
// Guest super-segments arrive whole through on_guest_frame (the parser reads
// only the IP lengths) and are one send() to the host socket.
//
// Retransmission (RFC 6298 in spirit, simplified for a virtual link): one
// timer per flow while our SYN-ACK, data or a FIN is unacknowledged, RTO
// from 200 ms, doubling to 3 s; three duplicate ACKs trigger an immediate
// resend (RFC 5681 §3.2). Loss on this link means the guest's receive ring
// was full. After max_retries timeouts in a row with no ACK at all from the
// guest (not even for a zero-window probe) the flow is reset both ways: a
// guest that vanished does not hold a flow forever.
//
// Closing: guest FIN → shutdown(SHUT_WR) on the host socket once every byte
// before it was written (RFC 9293 §3.6 half-close); host EOF → FIN to the
// guest after every byte. The flow is removed when both FINs are
// acknowledged. Guest RST → the host socket is closed with SO_LINGER 0 (an
// RST to the peer). A host socket error → RST to the guest.
//
// States: kConnecting (host connect() in progress; guest SYN retransmissions
// ignored) → kSynSent (our SYN-ACK sent; resent on a repeated SYN) →
// kEstablished; for host-opened flows kSynToGuest (our SYN sent, resent on
// the RTO) → kEstablished. FIN flags are tracked beside the state. Only the engine
// thread changes them.
//
// Bounds: at most max_flows flows; a SYN beyond that is answered with RST
// and counted. Per flow: the socket, one timer, a few counters. Segments for
// flows we do not know are not ours (libslirp answers them per RFC 9293).
// Checksums of guest segments are not verified (a bad one only harms the
// guest's own flow); ours are computed.
//
// Thread safety: confined to the engine executor.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <array>
#include <cstdint>
#include <optional>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "base/clock.hpp"
#include "base/unique_fd.hpp"
#include "netstack/frame.hpp"
#include "netstack/nat_config.hpp"
#include "netstack/tcp_isn.hpp"
#include "netstack/vnet_hdr.hpp"

namespace causeway::netstack {

struct TcpFastPathStats {
  uint64_t flows_opened = 0;     // SYN-ACK sent
  uint64_t connect_refused = 0;  // RST to the guest's SYN
  uint64_t flows_full = 0;       // SYN refused: max_flows
  uint64_t segments_in = 0, segments_out = 0;
  uint64_t bytes_in = 0, bytes_out = 0;  // payload guest → host, host → guest
  uint64_t out_of_order = 0;             // guest segments not at rcv_nxt (dropped, dup-ACKed)
  uint64_t retransmits = 0;              // timer or triple duplicate ACK
  uint64_t resets_from_guest = 0, resets_to_guest = 0;
  uint64_t super_segments_out = 0;     // GSO segments to the guest (more than one MSS each)
  uint64_t probes_answered = 0;        // keepalives / zero-window probes (old sequence, no data) ACKed
  uint64_t syn_to_guest_rejected = 0;  // our SYN answered with an old ACK (guest TIME-WAIT): RST + SYN again
  size_t flows = 0;
};

// A parsed TCP segment (IPv4 or IPv6, no fragments, no IPv6 extension headers).
struct TcpSegment {
  int family = 0;  // AF_INET / AF_INET6
  Mac src_mac{};
  std::array<uint8_t, 16> src{}, dst{};  // IPv4 in the first 4 bytes
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint16_t mss = 0;    // from a SYN's options; 0 if absent
  int8_t wscale = -1;  // from a SYN's options; -1 if absent
  std::span<const uint8_t> payload;
};
std::optional<TcpSegment> parse_tcp_segment(std::span<const uint8_t> frame);

// Where a guest SYN goes on the host: the address to connect() to and,
// optionally, the local address to bind() first (mirrored mode binds the
// guest's own source address, which is the host's: host routing and VPN
// policy then pick the path as for a host process).
struct TcpConnectPlan {
  sockaddr_storage dst{};
  socklen_t dst_len = 0;
  sockaddr_storage bind{};
  socklen_t bind_len = 0;  // 0: no bind
};

// What differs between attachments: the MAC our frames come from, the link
// MTU (our MSS), and which SYNs are ours. `route` returns nothing for a SYN
// that is not ours (TcpFastPath::on_guest_frame then returns false).
struct TcpFastPathPolicy {
  Mac our_mac{};
  size_t mtu = kMaxMtu;
  std::function<std::optional<TcpConnectPlan>(const TcpSegment&)> route;
};

// NAT mode: the gateway stands for the host's loopback (when allowed), other
// virtual addresses are libslirp's, everything else is connected to as is.
TcpFastPathPolicy nat_tcp_policy(const NatConfig& cfg);

class TcpFastPath {
 public:
  static constexpr uint8_t kWindowScale = 7;  // our window: up to 65535 << 7 ≈ 8 MiB
  using SendToGuest = std::function<void(std::span<const uint8_t>)>;
  using SendOffloadToGuest = std::function<void(std::span<const uint8_t>, const VnetHdr&)>;

  // max_retries: retransmission timeouts in a row without any ACK from the guest before the
  // flow is reset both ways (RTO 200 ms doubling to 3 s: 8 is ~15 s).
  TcpFastPath(boost::asio::io_context& io, const NatConfig& cfg, SendToGuest send, size_t max_flows = 4096,
              int max_retries = 8);
  TcpFastPath(boost::asio::io_context& io, TcpFastPathPolicy policy, SendToGuest send, size_t max_flows = 4096,
              int max_retries = 8);
  ~TcpFastPath();
  TcpFastPath(const TcpFastPath&) = delete;
  TcpFastPath& operator=(const TcpFastPath&) = delete;

  // Whether this kernel can peek TCP data at an offset (SO_PEEK_OFF on TCP,
  // Linux 6.10): the fast path needs it; without it the engine keeps libslirp.
  static bool available();

  // True when the frame was ours (consumed); false: hand it to libslirp.
  bool on_guest_frame(std::span<const uint8_t> frame);
  [[nodiscard]] TcpFastPathStats stats() const;
  // Answers a TCP segment nobody owns with RST (RFC 9293 §3.10.7.1), unless it
  // is itself an RST. For attachments with no libslirp behind the fast path
  // (mirrored mode). Returns false when the frame is not a TCP segment.
  bool reject(std::span<const uint8_t> frame);
  // Resets every flow both ways (the link the flows ran on went away).
  void reset_all();
  // The link MTU changed: new flows' MSS and segment sizes follow.
  void set_mtu(size_t mtu) { policy_.mtu = mtu; }
  // The guest side takes partial checksums and TCP super-segments
  // (FramePort::offloads_to_guest): data segments go through `send` with
  // NEEDS_CSUM (the pseudo-header sum in the checksum field, no software
  // checksum) and, above one MSS, as GSO super-segments of up to 64 KiB.
  void enable_tx_offload(SendOffloadToGuest send) { send_offload_ = std::move(send); }

  struct Flow;
  struct Key {
    int family;
    std::array<uint8_t, 16> gaddr, daddr;
    uint16_t gport, dport;
    auto operator<=>(const Key&) const = default;
  };

  // Host → guest (forwards): `accepted` is a connection a host listener took;
  // the fast path opens a flow to the guest with a SYN from key.daddr:dport to
  // key.gaddr:gport and joins the two once the guest's SYN-ACK arrives. A
  // guest RST (nothing listens) resets the host peer; a silent guest loses
  // the flow after max_retries SYN timeouts. False (nothing sent; closing
  // `accepted` refuses the peer) when the key is taken or the table is full.
  bool open_to_guest(UniqueFd accepted, const Key& key, const Mac& guest_mac);
  [[nodiscard]] bool has_flow(const Key& key) const { return flows_.count(key) != 0; }
  // The clock initial sequence numbers are drawn against (RFC 6528's timer); a steady clock
  // unless a test sets its own. It must outlive the fast path.
  void set_clock(const Clock& clock) { clock_ = &clock; }

 private:
  bool on_syn(const TcpSegment& s);
  void on_segment(Flow& f, const TcpSegment& s);
  void on_guest_synack(Flow& f, const TcpSegment& s);
  void start_connect(const std::shared_ptr<Flow>& f, const TcpSegment& syn);
  void connected(const std::shared_ptr<Flow>& f, int err);
  void send_segment(Flow& f, uint8_t flags, uint32_t seq, std::span<const uint8_t> payload, bool syn_options = false,
                    uint16_t gso_size = 0);
  void send_rst_for(const TcpSegment& s);
  void push_to_guest(Flow& f);
  void write_to_host(Flow& f, const TcpSegment& s);
  void schedule_ack(Flow& f);
  void flush_to_host(Flow& f);
  void on_host_readable(const std::shared_ptr<Flow>& f);
  void on_host_writable(const std::shared_ptr<Flow>& f);
  void arm_rto(const std::shared_ptr<Flow>& f);
  void retransmit(Flow& f);
  void maybe_finish(Flow& f);
  void abort_flow(Flow& f, bool rst_guest, bool rst_host);
  void remove(Flow& f);
  [[nodiscard]] uint32_t our_window(Flow& f) const;
  void wait_readable(const std::shared_ptr<Flow>& f);
  void wait_writable(const std::shared_ptr<Flow>& f);
  [[nodiscard]] std::shared_ptr<Flow> shared(const Flow& f) const;
  [[nodiscard]] uint32_t initial_sequence(const Key& key) const;

  boost::asio::io_context& io_;
  TcpFastPathPolicy policy_;
  SendToGuest send_;
  SendOffloadToGuest send_offload_;  // set by enable_tx_offload
  SteadyClock steady_clock_;
  const Clock* clock_ = &steady_clock_;
  TcpIsnGenerator isn_;
  size_t max_flows_;
  int max_retries_;
  std::map<Key, std::shared_ptr<Flow>> flows_;
  std::vector<Key> ack_queue_;  // flows with a coalesced ACK to send (schedule_ack)
  bool ack_posted_ = false;
  // The frame being built, allocated once at the largest size we build and never zero-filled as a
  // whole: a vector's resize from an ACK to a super-segment zeroed up to 64 KiB per push (3% of the
  // engine's samples under connections/s load). frame_len_ bytes of it are in use.
  static constexpr size_t kFrameCapacity = kEthHeaderLen + 40 + 28 + 65535;
  std::unique_ptr<uint8_t[]> frame_buf_ = std::make_unique_for_overwrite<uint8_t[]>(kFrameCapacity);
  size_t frame_len_ = 0;
  std::vector<uint8_t> seg_buf_;
  TcpFastPathStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::netstack
