// FdBudget: one descriptor and memory budget from which every cap of the engine is derived.
//
// Why: each table a guest (or a host client) can grow holds kernel descriptors — a fast-path
// flow one host socket, a libslirp UDP flow one host socket, a forwarded connection two (the
// host's end and the guest's: a socket inside the namespace or a relay stream). Caps chosen
// one by one can add up past RLIMIT_NOFILE, and then whichever table asks last — an accept, a
// c-ares socket, the control socket — fails with EMFILE. Here they come from one figure, the
// soft RLIMIT_NOFILE (raised to the hard limit at the top of main), so their sum cannot exceed
// it: beyond a cap the newest request is refused and counted (ctl stats "budget"), never the
// process.
//
// Derivation (derive_budget): kReservedFds stay for what is not a table (stdio, the event
// loop's epoll/eventfd/timerfd, taps, netlink, c-ares' channels, vhost-user's sockets and
// eventfds, QEMU's pidfd, the control listener). The rest, the pool, is shared in per mille:
//   table                 share  fds each  ceiling  why the ceiling
//   tcp_flows              400       1       4096   TcpFastPath's table; memory per flow small
//   slirp_sockets          150       1       1024   libslirp keeps each UDP socket 240 s and
//                                                   its last datagram (an MTU-sized mbuf,
//                                                   ~24 KiB of RSS at MTU 65520): 1024 ≈ 24 MiB
//   forward_connections    250       2       1024   TcpForwarder relays: 2 × 64 KiB buffers each
//   udp_forward_flows       50       1       4096   UDP forward flows (a namespace socket or a
//                                                   relay stream per host client)
//   auto_forwards           50       4        256   up to four listeners each (TCP/UDP × v4/v6)
//   vsock_streams           50       1        256   relay streams to the guest agent (256 KiB
//                                                   of credit each: VirtioVsockConfig)
//   dns_tcp_connections     20       1         64   DnsTcpFrontend
//   control_connections     10       1         16   ControlServer clients
//   (slack                  20)
// A cap is never below 1 (a table that cannot hold one entry is a broken feature, not a
// bound); for the sum to stay within the limit then, the pool has a floor (kMinPool), so a
// limit under kReservedFds + kMinPool is reported as too small (FdBudget::limit_too_small).
// DNS queries in flight hold no descriptor of their own (they share c-ares' sockets): their
// cap, dns_in_flight, is a memory bound only and not part of the sum.
//
// Thread safety: plain values; derive_budget is a pure function, from_process reads getrlimit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace causeway::netstack {

struct FdBudget {
  static constexpr uint64_t kReservedFds = 128;
  static constexpr uint64_t kMinPool = 128;

  uint64_t nofile = 0;  // the soft RLIMIT_NOFILE it was derived from
  uint64_t pool = 0;    // nofile - kReservedFds (at least kMinPool)
  bool limit_too_small = false;

  size_t tcp_flows = 0;
  size_t slirp_sockets = 0;
  size_t forward_connections = 0;  // per TCP forwarder
  size_t udp_forward_flows = 0;
  size_t auto_forwards = 0;
  size_t vsock_streams = 0;
  size_t dns_tcp_connections = 0;
  size_t control_connections = 0;
  size_t dns_in_flight = 0;  // no descriptors: a memory bound

  // Descriptors the caps can hold at most, all tables full (≤ pool).
  [[nodiscard]] uint64_t descriptors_at_caps() const;

  // The budget of this process: getrlimit(RLIMIT_NOFILE)'s soft limit.
  static FdBudget from_process();
};

// Pure: the budget for a soft RLIMIT_NOFILE of `nofile`.
FdBudget derive_budget(uint64_t nofile);

}  // namespace causeway::netstack
